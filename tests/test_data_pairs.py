"""The ``pairs`` dataset: users' own image-caption tables, checked against hand-made files.

Every expectation here is computed independently of the loader: token ids by
hand, image pixels from the known colours and the ImageNet statistics, splits
from which rows the test itself marked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from data_fixtures import COLOURS, SHAPES, item
from PIL import Image
from typer.testing import CliRunner

from negscale.cli import app
from negscale.config import DataConfig, ModelConfig, load_recipe
from negscale.data import DATASETS, build
from negscale.errors import NegscaleError

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
ROWS = 40

runner = CliRunner()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """40 PNGs in images/, captions naming colour and shape, label = shape; CSV and Parquet."""
    root = tmp_path_factory.mktemp("shapes")
    (root / "images").mkdir()
    rows = []
    for i in range(ROWS):
        im, caption, shape = item(i)
        im.save(root / "images" / f"{i:02d}.png")
        rows.append({"image": f"images/{i:02d}.png", "caption": caption, "label": shape})
    table = pd.DataFrame(rows)
    table.to_csv(root / "pairs.csv", index=False)
    table.to_parquet(root / "pairs.parquet", index=False)
    return root


def _cfg(path: Path, **kw) -> DataConfig:
    base = {"name": "pairs", "path": str(path), "n": 20, "n_eval": 10, "image_size": 16}
    return DataConfig(**(base | kw))


def _all(pairs) -> tuple[torch.Tensor, torch.Tensor]:
    """Every item of a lazy set, decoded (the fixtures are tiny)."""
    return pairs.fetch(torch.arange(len(pairs)))


def _norm(rgb: tuple[int, int, int]) -> torch.Tensor:
    return torch.tensor((np.array(rgb) / 255.0 - MEAN) / STD, dtype=torch.float32)


# ---------------------------------------------------------------- shapes, formats


def test_listed_with_a_summary() -> None:
    assert "pairs" in DATASETS and "CSV/Parquet" in DATASETS["pairs"].summary
    res = runner.invoke(app, ["list", "datasets"])
    assert res.exit_code == 0 and "pairs" in res.stdout


def test_shapes_dtypes_and_labels(shapes: Path) -> None:
    d = build(_cfg(shapes / "pairs.csv", caption_len=6))
    assert _all(d.train)[0].shape == (20, 3, 16, 16) and _all(d.train)[0].dtype == torch.float32
    assert _all(d.eval)[0].shape == (10, 3, 16, 16)
    assert _all(d.train)[1].shape == (20, 6) and _all(d.train)[1].dtype == torch.long
    assert d.image.kind == "image" and d.image.shape == (3, 16, 16)
    # words: a + 4 colours + 3 shapes = 8, plus pad and unknown
    assert d.text.kind == "tokens" and d.text.length == 6 and d.text.vocab == 10
    assert d.num_classes == 3 and d.train.labels.dtype == torch.int64
    # labels are shape names in alphabetical order: circle 0, square 1, triangle 2
    assert set(d.train.labels.tolist()) | set(d.eval.labels.tolist()) == {0, 1, 2}
    # 4 words then padding
    assert (_all(d.train)[1][:, 3:] == 0).all() and (_all(d.train)[1][:, :3] >= 2).all()


def test_parquet_gives_the_same_data_as_csv(shapes: Path) -> None:
    a, b = build(_cfg(shapes / "pairs.csv")), build(_cfg(shapes / "pairs.parquet"))
    for s, t in ((a.train, b.train), (a.eval, b.eval)):
        assert (
            torch.equal(_all(s)[0], _all(t)[0])
            and torch.equal(_all(s)[1], _all(t)[1])
            and torch.equal(s.labels, t.labels)
        )


def test_images_rgb_shorter_side_then_centre_crop_normalised(tmp_path: Path) -> None:
    # 48 x 16: red | green | blue bands; the centre crop at 16 px is the green band only
    wide = Image.new("RGB", (48, 16), (255, 0, 0))
    wide.paste((0, 255, 0), (16, 0, 32, 16))
    wide.paste((0, 0, 255), (32, 0, 48, 16))
    wide.save(tmp_path / "wide.png")
    # 16 x 48 greyscale: top and bottom black, middle third white -> RGB white after crop
    tall = Image.new("L", (16, 48), 0)
    tall.paste(255, (0, 16, 16, 32))
    tall.save(tmp_path / "tall.png")
    # 64 x 64 solid RGBA image, scaled down: alpha dropped, a uniform colour stays exact
    solid = Image.new("RGBA", (64, 64), (10, 120, 250, 90))
    solid.save(tmp_path / "solid.png")
    names = ["wide.png", "tall.png", "solid.png"] * 2
    pd.DataFrame(
        {"image": names, "caption": ["x"] * 6, "split": ["eval"] * 3 + ["train"] * 3}
    ).to_csv(tmp_path / "t.csv", index=False)
    d = build(_cfg(tmp_path / "t.csv", n=3, image_size=16))
    green, white = _norm((0, 255, 0)), _norm((255, 255, 255))
    want = [green, white, _norm((10, 120, 250))]  # eval rows keep table order
    for img, colour in zip(_all(d.eval)[0], want, strict=True):
        assert torch.allclose(img, colour[:, None, None].expand(3, 16, 16), atol=1e-5)


# ---------------------------------------------------------------- captions


def test_word_tokenizer_matches_hand_computed_ids(tmp_path: Path, shapes: Path) -> None:
    imgs = [str(shapes / "images" / f"{i:02d}.png") for i in range(5)]  # absolute paths work
    captions = {
        "Red circle, red!": "train",
        "a BLUE circle": "train",
        "blue_square 2": "train",
        "green circle red blue square": "eval",
        "circle circle circle circle circle": "eval",
    }
    pd.DataFrame(
        {"image": imgs, "caption": list(captions), "split": list(captions.values())}
    ).to_csv(tmp_path / "t.csv", index=False)
    # training words: blue 2, circle 2, red 2, then 2, a, square once each
    # -> ids blue 2, circle 3, red 4, "2" 5, a 6, square 7 (frequency, then alphabetical)
    d = build(_cfg(tmp_path / "t.csv", n=3, n_eval=2, caption_len=4))
    assert d.text.vocab == 8
    train = sorted(map(tuple, _all(d.train)[1].tolist()))
    assert train == sorted([(4, 3, 4, 0), (6, 2, 3, 0), (2, 7, 5, 0)])
    # eval: green is unknown (1); truncated to 4 ids
    assert _all(d.eval)[1].tolist() == [[1, 3, 4, 2], [3, 3, 3, 3]]
    # a cap of 5 ids keeps pad, unknown and the 3 most frequent words
    small = build(_cfg(tmp_path / "t.csv", n=3, n_eval=2, caption_len=4, vocab_size=5))
    assert small.text.vocab == 5
    assert sorted(map(tuple, _all(small.train)[1].tolist())) == sorted(
        [(4, 3, 4, 0), (1, 2, 3, 0), (2, 1, 1, 0)]
    )


def test_local_hf_tokenizer_and_hf_text_tower(tmp_path: Path, shapes: Path, tiny_bert) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "a", ".", *COLOURS, *SHAPES]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]")
    tok.save_pretrained(tmp_path / "tok")
    tiny_bert(len(words), "bert", max_positions=16)

    d = build(_cfg(shapes / "pairs.csv", caption_len=6, tokenizer=str(tmp_path / "tok")))
    assert d.text.vocab == len(words)
    # "A red circle." -> a(2) red(4) circle(8) .(3), padded with [PAD] = 0
    ids = {tuple(r) for r in _all(d.train)[1].tolist()} | {
        tuple(r) for r in _all(d.eval)[1].tolist()
    }
    assert (2, 4, 8, 3, 0, 0) in ids and (2, 7, 10, 3, 0, 0) in ids  # "A yellow triangle."
    # an hf text tower reads its own folder's tokenizer when data.tokenizer is not set
    tok.save_pretrained(tmp_path / "bert")
    tower = ModelConfig(text_encoder="hf", text_path=str(tmp_path / "bert"))
    own = build(_cfg(shapes / "pairs.csv", caption_len=6), tower)
    assert own.info["tokenizer"] == str(tmp_path / "bert")
    assert torch.equal(_all(own.eval)[1], _all(d.eval)[1])

    from negscale.train import run

    recipe = load_recipe(
        "quickstart",
        [
            *_run_overrides(shapes / "pairs.csv"),
            f"data.tokenizer='{tmp_path / 'tok'}'",
            "model.text_encoder='hf'",
            f"model.text_path='{tmp_path / 'bert'}'",
            "train.steps=12",  # enough to pass the trainer's collapse check
            "model.text_lr_scale=1.0",  # a random tiny BERT: not weights to protect
            "train.select=last",
        ],
    )
    rec = run(recipe, tmp_path / "results", device="cpu", progress=False)
    assert rec.status == "ok" and rec.text_encoder == "hf", rec.message


def test_integer_label_ids_keep_numeric_order_and_a_named_label_column(
    tmp_path: Path, shapes: Path
) -> None:
    imgs = [str(shapes / "images" / f"{i:02d}.png") for i in range(6)]
    klass = [10, 2, 2, 10, 1, 2]  # numeric order 1 < 2 < 10, not the text order "1" < "10" < "2"
    pd.DataFrame(
        {
            "file": imgs,
            "text": list("abcdef"),
            "klass": klass,
            "split": ["train"] * 4 + ["eval"] * 2,
        }
    ).to_parquet(tmp_path / "t.parquet")
    cfg = _cfg(
        tmp_path / "t.parquet",
        n=4,
        n_eval=2,
        image_column="file",
        caption_column="text",
        label_column="klass",
    )
    d = build(cfg)
    want = {1: 0, 2: 1, 10: 2}
    assert d.num_classes == 3 and d.eval.labels.tolist() == [want[1], want[2]]
    assert sorted(d.train.labels.tolist()) == sorted(want[k] for k in klass[:4])


# ---------------------------------------------------------------- splits and nesting


def test_train_sets_nest_over_n_and_eval_does_not_depend_on_n(shapes: Path) -> None:
    small, big = build(_cfg(shapes / "pairs.csv", n=10)), build(_cfg(shapes / "pairs.csv", n=30))
    assert len(small.train) == 10 and len(big.train) == 30
    assert torch.equal(_all(big.train)[0][:10], _all(small.train)[0])
    assert torch.equal(_all(big.train)[1][:10], _all(small.train)[1])
    assert torch.equal(_all(big.eval)[0], _all(small.eval)[0]) and torch.equal(
        _all(big.eval)[1], _all(small.eval)[1]
    )
    # every image is unique: train and eval are disjoint and together are the whole table
    train = {tuple(r) for r in _all(big.train)[0].flatten(1).tolist()}
    held = {tuple(r) for r in _all(big.eval)[0].flatten(1).tolist()}
    assert len(train) == 30 and len(held) == 10 and not train & held
    # the order comes from data.seed
    other = build(_cfg(shapes / "pairs.csv", n=30, seed=7))
    assert not torch.equal(_all(other.train)[0], _all(big.train)[0])
    again = build(_cfg(shapes / "pairs.csv", n=30))
    assert torch.equal(_all(again.train)[0], _all(big.train)[0]) and torch.equal(
        _all(again.eval)[1], _all(big.eval)[1]
    )


def test_split_column_decides_train_and_eval(tmp_path: Path, shapes: Path) -> None:
    table = pd.read_csv(shapes / "pairs.csv")
    table["image"] = [str(shapes / p) for p in table["image"]]
    table["part"] = ["eval" if "yellow" in c else "train" for c in table["caption"]]
    table.to_csv(tmp_path / "t.csv", index=False)
    d = build(_cfg(tmp_path / "t.csv", n=30, n_eval=1024, split_column="part", caption_len=4))
    # yellow never occurs in training captions: unknown (1) in every eval caption, none in train
    assert len(d.eval) == 10 and (_all(d.eval)[1][:, 1] == 1).all()
    assert len(d.train) == 30 and not (_all(d.train)[1] == 1).any()
    # more eval rows than data.n_eval: a seeded subset of them
    assert len(build(_cfg(tmp_path / "t.csv", n=30, n_eval=4, split_column="part")).eval) == 4
    with pytest.raises(NegscaleError, match=r"data\.n: 31 .* 30"):
        build(_cfg(tmp_path / "t.csv", n=31, split_column="part"))


# ---------------------------------------------------------------- end to end


def _run_overrides(path: Path) -> list[str]:
    return [
        "data.name='pairs'",
        f"data.path='{path}'",
        "data.n=30",
        "data.n_eval=10",
        "data.image_size=16",
        "data.caption_len=4",
        "train.batch_size=10",
        "train.steps=30",
        "train.select=last",
        "model.hidden=32",
        "model.embed_dim=16",
    ]


def test_train_end_to_end_with_zero_shot(tmp_path: Path, shapes: Path) -> None:
    from negscale.train import run

    recipe = load_recipe("quickstart", _run_overrides(shapes / "pairs.parquet"))
    rec = run(recipe, tmp_path, device="cpu", progress=False)
    assert rec.status == "ok" and rec.dataset == "pairs" and rec.n == 30
    assert 0.0 <= rec.zeroshot_top1 <= 1.0
    assert 0.0 <= rec.recall_at_1 <= rec.recall_at_5 <= rec.recall_at_10 <= 1.0
    assert 0.0 <= rec.auc <= 1.0 and 1.0 <= rec.mean_rank <= 10.0
    assert np.isfinite(rec.train_loss)


# ---------------------------------------------------------------- user errors


def _broken(tmp_path: Path, shapes: Path, case: str) -> list[str]:
    """Overrides for one broken input; the table lives in tmp_path."""
    table = pd.read_csv(shapes / "pairs.csv")
    table["image"] = [str(shapes / p) for p in table["image"]]
    path = tmp_path / "t.csv"
    extra: list[str] = []
    if case == "no path":
        return [o for o in _run_overrides(path) if not o.startswith("data.path")]
    if case == "unreadable":
        path = tmp_path / "t.parquet"
        path.write_bytes(b"this is not parquet")
    elif case == "wrong suffix":
        path = tmp_path / "t.json"
        path.write_text("{}")
    elif case == "no file":
        path = tmp_path / "absent.csv"
    elif case == "empty":
        table.iloc[:0].to_csv(path, index=False)
    elif case == "no caption column":
        table.drop(columns="caption").to_csv(path, index=False)
    elif case == "no label column":
        table.to_csv(path, index=False)
        extra = ["data.label_column='klass'"]
    elif case == "bad split":
        table.assign(split=["train"] * 39 + ["test"]).to_csv(path, index=False)
    elif case == "missing images":
        table.loc[[3, 5], "image"] = ["gone/a.png", "gone/b.png"]
        table.to_csv(path, index=False)
    elif case == "undecodable":
        (tmp_path / "bad.png").write_text("not an image")
        table.loc[0, "image"] = "bad.png"
        table.to_csv(path, index=False)
    elif case == "empty caption":
        table.loc[[4, 7], "caption"] = ["", "  "]
        table.to_csv(path, index=False)
    elif case == "n_eval too large":
        table.to_csv(path, index=False)
        extra = ["data.n_eval=40"]
    elif case == "n too large":
        table.to_csv(path, index=False)
        extra = ["data.n=31"]
    return [*_run_overrides(path), *extra]


@pytest.mark.parametrize(
    ("case", "field", "also"),
    [
        ("no path", "data.path", "needs"),
        ("unreadable", "data.path", "t.parquet"),
        ("wrong suffix", "data.path", "t.json"),
        ("no file", "data.path", "absent.csv"),
        ("empty", "data.path", "no rows"),
        ("no caption column", "data.caption_column", "'caption'"),
        ("no label column", "data.label_column", "'klass'"),
        ("bad split", "data.split_column", "'test'"),
        ("missing images", "data.path", "a.png"),
        ("undecodable", "data.path", "bad.png"),
        ("empty caption", "data.caption_column", "rows 5, 8"),
        ("n_eval too large", "data.n_eval", "40"),
        ("n too large", "data.n", "30"),
    ],
)
def test_bad_input_is_a_one_line_cli_error(
    tmp_path: Path, shapes: Path, case: str, field: str, also: str
) -> None:
    overrides = _broken(tmp_path, shapes, case)
    args = ["train", "quickstart", "--results", str(tmp_path / "results"), "--device", "cpu"]
    res = runner.invoke(app, [*args, *(a for o in overrides for a in ("--set", o))])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()  # the data is read before anything is printed
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert line.startswith("error:"), line
    assert f"error: {field}:" in line and also in line, line
    assert "Traceback" not in res.output
    assert not list((tmp_path / "results").glob("runs/*.parquet"))
