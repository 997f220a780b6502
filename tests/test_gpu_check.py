"""benchmarks/gpu_check.sh on a machine without CUDA: tiny CPU rows, named skips, exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


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
    for ran in ("train-compile-off", "loss-B512-dense", "model-tiny-vit+bert-B8"):
        assert " cpu " in rows[ran]
    assert "status=ok" in rows["train-compile-off"] and "status=ok" in rows["torchrun-1proc-gloo"]
    skipped = lines[-1]
    for name in ("train-compile-on", "loss-B16384,B65536", "model-vitb16+bert-B256"):
        assert name in skipped and "skipped" in rows[name]
    assert "torchrun-1proc-nccl" in skipped
