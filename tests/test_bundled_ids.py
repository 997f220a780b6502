"""Run ids of today's bundled recipes, pinned: a refactor must not move them.

The values were computed by negscale before the house changes of 0.3 (the
recipe layer's registries, the trainer's roles); a study users already have
keeps its ids. Moving one on purpose means a new run-id version and a README
note, never an edit of these pins.
"""

from __future__ import annotations

import hashlib

import pytest

from negscale.config import bundled_recipes, load_recipe
from negscale.sweep import GridSpec, make_plan

# recipe -> (run id of the recipe as written, runs in its grid, sha256 of the grid's ids)
PINNED = {
    "animal-mnist-clip": ("e58f6138e51b0320", 12, "0e7ccff9fa040a5d"),
    "coco-clip-vitb16": ("9e5c6acf16efd3aa", 21, "67c1a2069a9d4b0a"),
    "digits-minilm": ("569e75b433049805", 12, "df273b69afab37ea"),
    "digits-simclr": ("3b94fd0e81ce0ba4", 12, "6f52c9bea40ae2fc"),
    "digits-supervised": ("336eecdf03d71e44", 12, "e98d497865f33059"),
    "paper-fastclip-dfn": ("e71c4a713278d057", 15, "6655c13da2f247f2"),
    "quickstart": ("4732197ab843dd87", 63, "daa5f5de5fa79cb8"),
    "quickstart-supervised": ("3c0812d05e95d15a", 63, "0b75acb9018066ea"),
    "self-supervised": ("8dc8b7a7ea82522a", 63, "5076d21862b761ac"),
    "supervised-class-aware": ("fbd2472944c4c84e", 63, "8881a3148302c131"),
}


def test_every_bundled_recipe_is_pinned() -> None:
    assert set(PINNED) == set(bundled_recipes())


@pytest.mark.parametrize("name", sorted(PINNED))
def test_bundled_recipe_ids_do_not_move(name: str) -> None:
    own, runs, grid_sha = PINNED[name]
    assert load_recipe(name).run_id() == own
    ids = make_plan(name, [], GridSpec()).run_ids
    assert (len(ids), hashlib.sha256("".join(ids).encode()).hexdigest()[:16]) == (runs, grid_sha)
