"""benchmarks/gpu_check.sh and benchmarks/gpu_wheels.py, on a machine without CUDA.

- the check in this environment: tiny CPU rows, named skips, the table written, exit 0;
- the rehearsal of a GPU machine without network: a fresh venv holding torch (and
  pip) and nothing else, where the check names the missing dependencies, skips the
  rows that need them, runs the loss row, installs a carried wheel into a temp dir
  and writes the table;
- gpu_wheels.py: its table matches this environment, and what it resolves for a
  target from a ``pip list --format=freeze``.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from packaging.markers import default_environment
from packaging.requirements import Requirement

import negscale

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_rows  # noqa: E402
import gpu_wheels  # noqa: E402

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="runs the full GPU check on CUDA")


def _run_check(python: str, out: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": python, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)  # the script puts negscale on the path itself
    return subprocess.run(
        ["bash", str(SCRIPT), "--out", str(out), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )


def _table(out: Path) -> dict[str, list[str]]:
    lines = (out / "gpu_check.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["check", "status", "device", "result", "notes"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    md_rows = [x for x in (out / "gpu_check.md").read_text().splitlines() if x.startswith("| ")]
    assert len(md_rows) == len(rows) + 1  # the header and one line a row
    return rows


@pytest.mark.timeout(240)
@no_cuda
def test_gpu_check_runs_cpu_rows_and_names_the_skipped_cuda_rows(tmp_path: Path) -> None:
    done = _run_check(sys.executable, tmp_path / "out", timeout=230)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("negscale GPU check") and "no CUDA device" in lines[0]
    here = f"negscale {negscale.__version__} from {ROOT / 'negscale'}"
    assert here in lines[1]  # this checkout's
    assert lines[2] == "missing runtime dependencies: none"
    rows = _table(tmp_path / "out")
    for ran in ("train-compile-off", "loss-B512-tiled", "model-tiny-vit+bert-B8"):
        assert rows[ran][1:3] == ["ok", "cpu"], rows[ran]
    assert "status=ok" in rows["train-compile-off"][4]
    assert "status=ok" in rows["torchrun-1proc-gloo"][4]
    assert "open_clip" in rows["loss-B512-tiled"][4]  # the peer, installed here
    skipped = next(x for x in lines if x.startswith("skipped: "))
    for name in ("train-compile-on", "loss-B16384,B65536", "model-vitb16+bert-B256"):
        assert name in skipped and rows[name][1] == "skipped" and "CUDA" in rows[name][4]
    assert "torchrun-1proc-nccl" in skipped
    assert lines[-1].startswith(f"table: {tmp_path / 'out'}/gpu_check.tsv")


# ---------------------------------------------------------------- the rehearsal


def _closure(names: list[str]) -> list[md.Distribution]:
    """Installed distributions ``names`` need, extras and markers as this interpreter sees them."""
    env = default_environment()
    seen: dict[str, md.Distribution] = {}
    todo = [Requirement(n) for n in names]
    while todo:
        req = todo.pop()
        key = gpu_wheels.canon(req.name)
        if key in seen:
            continue
        dist = seen[key] = md.distribution(req.name)
        for text in dist.requires or []:
            child = Requirement(text)
            extras = {"", *req.extras}
            if child.marker is None or any(
                child.marker.evaluate({**env, "extra": e}) for e in extras
            ):
                todo.append(child)
    return list(seen.values())


def _torch_only_python(tmp: Path) -> str:
    """A fresh venv that sees torch, its own requirements and pip (as a target has), nothing else.

    Nothing is downloaded or copied: a `.pth` file points at a folder of
    symlinks to those distributions' top-level files in this environment.
    """
    links = tmp / "torch-only"
    links.mkdir()
    for dist in _closure(["torch", "pip"]):
        tops = {f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}
        for top in tops - {"__pycache__"}:
            src = Path(dist.locate_file(top))
            if not top.endswith(".pth") and src.exists() and not (links / top).exists():
                (links / top).symlink_to(src)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "torch-only.pth").write_text(f"{links}\n")
    return str(venv / "bin" / "python")


_ONLY = """
import importlib.metadata as md, json, os, runpy, sys
allowed = set(json.loads(os.environ["ALLOWED"]))
owners = md.packages_distributions()
canon = lambda n: n.lower().replace("_", "-").replace(".", "-")
class Block:  # a distribution outside `allowed` is not installed, as far as imports go
    def find_spec(self, name, path=None, target=None):
        dists = {canon(d) for d in owners.get(name.split(".")[0], [])}
        if dists and not dists & allowed:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
sys.meta_path.insert(0, Block())
sys.argv = ["negscale", "train", "quickstart", "--json", *sys.argv[1:]]
runpy.run_module("negscale.cli", run_name="__main__")
"""


@pytest.mark.timeout(120)
def test_the_train_rows_need_only_their_declared_distributions(tmp_path: Path) -> None:
    """`negscale train quickstart` runs with torch's closure and ROW_NEEDS["train"]'s only."""
    allowed = {"negscale"} | {d.metadata["Name"] for d in _closure(["torch"])}
    allowed |= {d.metadata["Name"] for d in _closure(list(gpu_wheels.ROW_NEEDS["train"]))}
    args = ["--results", str(tmp_path / "r"), "--device", "cpu", "--set", "train.steps=4"]
    args += ["--set", "data.n=256", "--set", "data.n_eval=64", "--set", "eval.prototypes=64"]
    args += ["--set", "train.batch_size=32"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env["ALLOWED"] = json.dumps(sorted(gpu_wheels.canon(a) for a in allowed))
    done = subprocess.run(
        [sys.executable, "-c", _ONLY, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["status"] == "ok"
    blocked = {"pandas", "scipy", "scikit-learn", "matplotlib", "timm", "transformers"}
    assert not blocked & set(json.loads(env["ALLOWED"]))


def _wheel_of(name: str, folder: Path) -> Path:
    """A wheel of an installed pure-Python distribution, zipped from its files (no download)."""
    dist = md.distribution(name)
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}-{dist.version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for f in dist.files or []:
            src = Path(dist.locate_file(f))
            if f.parts[0] != ".." and "__pycache__" not in f.parts and src.is_file():
                zf.write(src, f.as_posix())
    return path


@pytest.mark.timeout(150)
@no_cuda
def test_rehearsal_in_a_torch_only_venv(tmp_path: Path) -> None:
    python = _torch_only_python(tmp_path)
    probe = "import importlib.util as u; print([m for m in ('torch', 'numpy', 'negscale') "
    probe += "if u.find_spec(m)])"
    seen = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert seen.stdout.strip() == "['torch']"  # no numpy, and not the dev venv's negscale

    # what to bring, as listed on the target
    wheels = subprocess.run(
        [python, str(ROOT / "benchmarks" / "gpu_wheels.py")], capture_output=True, text=True
    )
    assert wheels.returncode == 0, wheels.stderr
    table = gpu_wheels.parse_table()
    for name in ("numpy", "timm", "transformers", "typer", "open-clip-torch"):
        assert f"  {name}=={table[name].version} " in wheels.stdout
    assert " torch==" not in wheels.stdout and " torchvision==" not in wheels.stdout
    assert "pip download --no-deps --only-binary=:all:" in wheels.stdout
    assert "torchvision is never brought" in wheels.stdout

    # the check, with one carried wheel (installed into a temp dir, not into the venv)
    carried = _wheel_of("braceexpand", tmp_path / "wheels")
    out = tmp_path / "out"
    done = _run_check(python, out, "--wheels", str(carried.parent), timeout=140)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    head, _, tail = lines[2].partition(": ")
    assert head == "missing runtime dependencies" and tail.endswith("lists the wheels to bring)")
    missing = set(tail.split(" (")[0].split(", "))
    runtime = {gpu_wheels.split_req(r)[0] for r in gpu_wheels.roots_from_pyproject()[0]}
    assert missing == runtime - {"torch", "braceexpand"}  # torchvision too: not in the venv
    rows = _table(out)
    assert rows["loss-B512-tiled"][1:3] == ["ok", "cpu"]
    assert (
        rows["loss-B512-dense"][1] == "ok"
        and "open_clip not installed" in rows["loss-B512-dense"][4]
    )
    for name in ("train-compile-off", "train-compile-on", "torchrun-1proc-gloo"):
        assert rows[name][1] == "skipped" and rows[name][4].startswith("missing typer, rich,")
    for name in ("model-tiny-vit+bert-B8", "model-vitb16+bert-B256"):
        assert rows[name][1] == "skipped" and rows[name][4].startswith("missing torchvision, timm,")
    assert subprocess.run(
        [python, "-c", "import braceexpand"], capture_output=True
    ).returncode  # untouched


# ---------------------------------------------------------------- gpu_wheels.py


def test_the_table_is_this_environments_closure() -> None:
    text = gpu_wheels.table_from_env(gpu_wheels.all_roots())
    assert text == gpu_wheels.TABLE, "run: python benchmarks/gpu_wheels.py --update-table"
    table = gpu_wheels.parse_table()
    assert "torch" not in table and "torchvision" not in table and "open-clip-torch" in table


def _target(installed: dict[str, str], python: str = "3.11") -> gpu_wheels.Target:
    return gpu_wheels.Target(python, installed, "2.31", "x86_64")


def test_a_torch_only_target_needs_the_whole_table_less_torch() -> None:
    table = gpu_wheels.parse_table()
    needs, lacking = gpu_wheels.resolve(gpu_wheels.all_roots(), _target({"torch": "2.6.0+cu124"}))
    assert {n.name for n in needs} == set(table)  # every table entry is reachable on 3.11
    assert all(n.version == table[n.name].version for n in needs)
    assert lacking == ["torchvision"]
    command = gpu_wheels.download_command(needs, _target({}))
    assert command.startswith("pip download --no-deps --only-binary=:all: --implementation cp")
    assert "--python-version 3.11 --platform manylinux_2_31_x86_64" in command
    assert "--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d wheels" in command
    assert " numpy==" in command and " torch" not in command


def test_installed_distributions_are_taken_unless_too_old() -> None:
    have = {n: d.version for n, d in gpu_wheels.parse_table().items()}
    have.update(torch="2.14.1", torchvision="0.29.1")
    assert gpu_wheels.resolve(gpu_wheels.all_roots(), _target(have)) == ([], [])
    have["numpy"] = "1.23.5"  # negscale needs >= 1.24
    needs, _ = gpu_wheels.resolve(gpu_wheels.all_roots(), _target(have))
    assert [n.name for n in needs] == ["numpy"] and "1.23.5 installed, needs" in needs[0].reason
    assert gpu_wheels.missing_runtime(_target(have)) == ["numpy 1.23.5 (needs >=1.24)"]


def test_rows_need_only_what_they_import() -> None:
    lacks = gpu_wheels.rows_missing(_target({"torch": "2.6.0", "torchvision": "0.21.0"}))
    assert lacks["loss"] == []
    assert lacks["train"][:5] == ["typer", "rich", "pydantic", "numpy", "pyarrow"]
    assert "timm" not in lacks["train"] and "scipy" not in lacks["train"]
    assert lacks["model"][:2] == ["timm", "transformers"] and "torchvision" not in lacks["model"]
    assert lacks["loss-peer"][0] == "open-clip-torch"
    no_vision = gpu_wheels.rows_missing(_target({"torch": "2.6.0"}))
    assert "torchvision" in no_vision["model"] and "torchvision" not in no_vision["train"]


def test_a_python_the_pins_do_not_support_gets_unpinned_names_and_its_own_markers() -> None:
    needs, _ = gpu_wheels.resolve(gpu_wheels.all_roots(), _target({"torch": "2.6.0"}, "3.10"))
    by = {n.name: n for n in needs}
    assert by["numpy"].version is None and by["numpy"].pin.startswith("numpy<2.7,>=1.17,")
    assert "needs Python >=3.11" in by["numpy"].reason
    assert by["timm"].pin == f"timm=={gpu_wheels.parse_table()['timm'].version}"
    assert "tomli" in by and by["tomli"].version is None  # only Python 3.10 needs it


def test_freeze_files_and_the_command_line(tmp_path: Path, capsys) -> None:
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("torch==2.6.0+cu124\ntorchvision==0.21.0\n# a comment\n-e git+x#egg=y\n")
    freeze.write_text(freeze.read_text() + "typing_extensions==4.16.0\npillow @ file:///w.whl\n")
    target = gpu_wheels.target_from_freeze(freeze, "3.12", "2.35", "aarch64")
    assert target.installed["typing-extensions"] == "4.16.0" and target.installed["pillow"] is None
    assert gpu_wheels.main(["--freeze", str(freeze), "--python-version", "3.12"]) == 0
    text = capsys.readouterr().out
    assert "  typing-extensions==" not in text and "  numpy==" in text
    assert "--python-version 3.12" in text and "--platform manylinux_2_28_x86_64" in text
    assert "pip install --no-index --no-deps --target DIR wheels/*.whl" in text
    assert gpu_wheels.main(["--freeze", str(freeze), "--python-version", "3.12", "--rows"]) == 0
    rows = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert rows["loss"] == "" and rows["train"].startswith("typer;rich;")


def test_unpack_installs_a_wheel_without_pip(tmp_path: Path) -> None:
    wheel = _wheel_of("braceexpand", tmp_path / "wheels")
    gpu_wheels.unpack(tmp_path / "site", [wheel])
    code = "import braceexpand, importlib.metadata as m; print(m.version('braceexpand'))"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == md.version("braceexpand")


# ---------------------------------------------------------------- gpu_rows.py


def test_a_peer_out_of_memory_is_a_row_and_the_tiled_loss_is_measured_alone(
    monkeypatch, capsys
) -> None:
    def oom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 16.00 GiB")

    monkeypatch.setattr("negscale.bench.bench_loss", oom)
    monkeypatch.setattr("negscale.bench._clip_loss", lambda: None)
    gpu_rows.loss("cpu")
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert rows[0][:4] == ["loss-B512-dense", "ok", "cpu", "out of memory"]
    assert rows[1][0] == "loss-B512-tiled" and rows[1][3].endswith(" ms")
    assert rows[2][:2] == ["loss-B16384,B65536", "skipped"]


def test_mfu_peaks_by_device_name() -> None:
    assert gpu_rows.peak_tflops("NVIDIA H100 80GB HBM3") == 989
    assert gpu_rows.peak_tflops("NVIDIA H100 PCIe") == 756
    assert gpu_rows.peak_tflops("NVIDIA H200") == 989 and gpu_rows.peak_tflops("NVIDIA H20") == 148
    assert gpu_rows.peak_tflops("Tesla T4") is None
