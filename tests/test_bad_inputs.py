"""Every bad input is one `error:` line on stderr, exit 2, before any work, nothing written.

One test per mistake a new user made (and the categories around them: types,
conflicting flags, unknown filter values, unwritable paths, markup)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from negscale.cli import app

runner = CliRunner()
FAST = ["--set", "train.steps=2", "--set", "data.n_eval=64"]


def one_error(res, *needles: str) -> None:
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_a_negative_seed(tmp_path):
    res = runner.invoke(app, ["train", "quickstart", "--seed", "-1", "--results", str(tmp_path)])
    one_error(res, "train.seed", "greater than or equal to 0")
    assert not any(tmp_path.iterdir())


def test_results_under_a_path_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = runner.invoke(app, ["train", "quickstart", *FAST, "--results", str(blocker / "sub")])
    one_error(res, "--results")


def test_a_string_where_a_number_belongs(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "t"\n[train]\nbatch_size = "320"\n')
    one_error(runner.invoke(app, ["train", str(recipe), "--results", str(tmp_path / "o")]),
              "train.batch_size", "valid integer", "'320'")  # fmt: skip
    one_error(runner.invoke(app, ["train", "quickstart", "--set", "train.lr='0.1'",
                                  "--results", str(tmp_path / "o")]), "train.lr")  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_a_word_where_a_boolean_belongs(tmp_path):
    res = runner.invoke(app, ["train", "digits-supervised", "--set", "data.skip_bad=yes",
                              "--results", str(tmp_path)])  # fmt: skip
    one_error(res, "data.skip_bad", "boolean")


def test_an_axis_given_twice(tmp_path):
    res = runner.invoke(app, ["train", "quickstart", "--negatives", "8", "--set", "negatives.m=20",
                              "--results", str(tmp_path)])  # fmt: skip
    one_error(res, "--negatives", "negatives.m", "given twice")
    res = runner.invoke(app, ["sweep", "quickstart", "--seeds", "0,1", "--set", "train.seed=3",
                              "--results", str(tmp_path)])  # fmt: skip
    one_error(res, "--seeds", "train.seed")
    assert not (tmp_path / "runs").exists()


def test_a_recipe_without_sweep_axes_is_not_a_study(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "t"\n')
    one_error(runner.invoke(app, ["sweep", str(recipe), "--results", str(tmp_path / "o")]),
              "no axis to sweep", "[sweep]", "negscale train")  # fmt: skip


def test_results_filters_must_name_known_values(tmp_path):
    from test_results import make_record

    from negscale.results import write

    write(make_record("r1", design="abcd1234", status="ok", m=4), tmp_path)
    one_error(runner.invoke(app, ["results", str(tmp_path), "--status", "okay"]), "known: ok")
    one_error(runner.invoke(app, ["results", str(tmp_path), "--design", "zzzz"]), "abcd1234")
    one_error(runner.invoke(app, ["results", str(tmp_path), "--csv", "--json"]), "--csv", "--json")
    readme = tmp_path / "README.md"
    readme.write_text("# notes")
    one_error(runner.invoke(app, ["results", str(readme)]), "not a results folder")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_from_the_recipe_fails_before_the_header(tmp_path):
    res = runner.invoke(app, ["train", "quickstart", "--set", "train.device='cuda'",
                              "--results", str(tmp_path)])  # fmt: skip
    one_error(res, "CUDA is not available")
    res = runner.invoke(app, ["sweep", "quickstart", "--set", "train.device='cuda'",
                              "--results", str(tmp_path)])  # fmt: skip
    one_error(res, "CUDA is not available")


def test_an_unknown_timm_architecture_fails_before_the_header(tmp_path):
    arch = "model.image_encoder='timm:resnet_xyz'"
    res = runner.invoke(
        app, ["train", "digits-supervised", "--set", arch, "--results", str(tmp_path)]
    )
    one_error(res, "timm has no architecture 'resnet_xyz'")


def test_fit_plot_to_an_unwritable_place_fails_before_the_fit(tmp_path):
    table = tmp_path / "t.csv"
    pd.DataFrame({"m": [1, 2, 4, 8], "n": 100, "auc": [0.6, 0.7, 0.75, 0.76]}).to_csv(table)
    res = runner.invoke(app, ["fit", str(table), "--plot", str(tmp_path / "no" / "f.png")])
    one_error(res, "--plot")
    assert res.stdout == ""


def test_fit_both_directions_given(tmp_path):
    table = tmp_path / "t.csv"
    m = [1, 2, 4, 8, 16, 32]
    pd.DataFrame({"m": m, "n": 10, "auc": [0.6, 0.7, 0.75, 0.78, 0.79, 0.79]}).to_csv(table)
    res = runner.invoke(app, ["fit", str(table), "--higher-is-better", "--lower-is-better"])
    one_error(res, "--higher-is-better", "--lower-is-better")
    res = runner.invoke(app, ["fit", str(table), "--lower-is-better", "--json"])
    assert res.exit_code == 0, res.output  # one flag alone is obeyed
    assert json.loads(res.stdout)["higher_is_better"] is False


def test_markup_in_recipe_text_is_printed_as_is():
    res = runner.invoke(app, ["list", "recipes"])
    assert res.exit_code == 0
    assert "[" not in res.stdout or "pip install --no-deps animal-mnist" in " ".join(
        res.stdout.split()
    )


def test_a_corrupt_image_in_a_shard_is_skipped_with_skip_bad(tmp_path):
    """A shard image whose header is fine and whose body is cut: without skip_bad it is
    named when read; with skip_bad = true it is skipped and counted at the start."""
    import io
    import tarfile

    from data_fixtures import item, png_bytes

    shard = tmp_path / "00000.tar"
    with tarfile.open(shard, "w") as tar:
        for i in range(80):
            im, caption, _ = item(i)
            data = png_bytes(im)
            if i == 5:
                data = data[: len(data) // 2]  # the header survives, the pixels do not
            for name, blob in ((f"{i:04d}.png", data), (f"{i:04d}.txt", caption.encode())):
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    sets = ["--set", "data.name='shards'", "--set", f"data.path='{shard}'", "--set", "data.n=48",
            "--set", "data.n_eval=16", "--set", "train.steps=3", "--set", "train.batch_size=16",
            "--set", "data.image_size=16", "--set", "train.select='last'"]  # fmt: skip
    ok = runner.invoke(app, ["train", "quickstart", "-m", "3", *sets, "--set", "data.skip_bad=true",
                             "--results", str(tmp_path / "a"), "--json"])  # fmt: skip
    import json

    assert ok.exit_code in (0, 1), ok.output  # 3 steps need not learn (collapsed: exit 1)
    assert json.loads(ok.stdout)["data_skipped"] == 1
