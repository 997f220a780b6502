"""Bundled recipes as negscale 0.1.0 shipped them: run ids computed then must never move."""

from __future__ import annotations

from pathlib import Path

QUICKSTART_V1 = """
name = "quickstart"
[data]
name = "synthetic"
flavour = "vectors"
n = 4096
[negatives]
source = "batch"
loss_form = "infonce"
[train]
batch_size = 320
steps = 300
[sweep]
negatives = [1, 3, 8, 20, 50, 130, 319]
"""

SELF_SUPERVISED_V1 = """
name = "self-supervised"
[data]
name = "synthetic"
flavour = "vectors"
n = 4096
[negatives]
source = "pool"
m = 4096
loss_form = "infonce"
pool_exact_max = 0
gamma = 0.9
[train]
batch_size = 256
steps = 300
[sweep]
ratios = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0]
"""


def write(folder: Path, text: str, name: str) -> str:
    """The recipe text as a file in ``folder``; its path as a string for load_recipe."""
    path = folder / f"{name}.toml"
    path.write_text(text)
    return str(path)
