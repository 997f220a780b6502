"""benchmarks/gpu_check.sh on a machine without CUDA (tiny CPU rows, named skips, exit 0),
and benchmarks/gpu_wheels.py: its table matches this environment, and what it resolves for a
target from a ``pip list --format=freeze``.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_wheels  # noqa: E402


@pytest.mark.timeout(240)
@pytest.mark.skipif(torch.cuda.is_available(), reason="runs the full GPU check on CUDA")
def test_gpu_check_runs_cpu_rows_and_names_the_skipped_cuda_rows() -> None:
    root = SCRIPT.parents[1]
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=230, cwd=root
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("negscale GPU check") and "no CUDA device" in lines[0]
    rows = {line.split()[0]: line for line in lines[3:] if line and not line.startswith("skipped")}
    for ran in ("train-compile-off", "loss-B512-tiled", "model-tiny-vit+bert-B8"):
        assert " cpu " in rows[ran]
    assert "status=ok" in rows["train-compile-off"] and "status=ok" in rows["torchrun-1proc-gloo"]
    skipped = lines[-1]
    for name in ("train-compile-on", "loss-B16384,B65536", "model-vitb16+bert-B256"):
        assert name in skipped and "skipped" in rows[name]
    assert "torchrun-1proc-nccl" in skipped


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
