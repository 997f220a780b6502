"""Small real datasets that ship with installed packages: offline, for CPU studies.

``digits``: scikit-learn's 8x8 handwritten digits (1797 images, 10 classes).
``animal-mnist``: the PyPI package ``animal-mnist`` (install it with
``pip install --no-deps animal-mnist``,
since its declared tensorflow dependency is not needed): 10,000 28x28
silhouettes, 1000 per class, as gzip-pickled uint8 arrays. Its class ids follow
the package's alphabetical list of animals.

Both become class datasets like ``folder``: template captions (image-text
pairing) or ``data.views = "two-view"`` (the positive is a second augmentation
of the same image). The images are tiny and already decoded; they are held as
uint8 (1797 * 64 bytes and 10,000 * 784 bytes) and transformed on fetch.
"""

from __future__ import annotations

import gzip
import pickle
from importlib import util
from pathlib import Path

import numpy as np

from negscale.data.assemble import holdout, one_source, spec_of
from negscale.data.base import PairedData
from negscale.data.folder import class_captions, class_prompts
from negscale.data.images import ArrayImages
from negscale.errors import NegscaleError

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ANIMALS = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
ANIMAL_INSTALL = (
    "pip install --no-deps animal-mnist (--no-deps: the package declares tensorflow, which"
    " reading its data files does not need)"
)


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 (0..16 scaled to 0..255) and integer labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return pixels, digits.target.astype(np.int64)


def load_animal_arrays() -> tuple[np.ndarray, np.ndarray]:
    """animal-mnist's arrays, read from the installed package's data files."""
    spec = util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise NegscaleError(
            f"data.name: 'animal-mnist' needs the animal-mnist package: {ANIMAL_INSTALL}"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "Animal_MNIST"
    paths = folder / "animal_data_version_3.gz", folder / "animal_label_version_3.gz"
    for p in paths:
        if not p.is_file():
            raise NegscaleError(
                f"data.name: animal-mnist data file missing: {p} ({ANIMAL_INSTALL})"
            )
    with gzip.open(paths[0], "rb") as f:
        pixels = np.asarray(pickle.load(f), dtype=np.uint8)
    with gzip.open(paths[1], "rb") as f:
        labels = np.asarray(pickle.load(f), dtype=np.int64)
    return pixels, labels


def _class_set(cfg, model, pixels: np.ndarray, labels: np.ndarray, classes: list[str], label: str):
    captions = class_captions(labels, classes, cfg.templates)
    images = ArrayImages(pixels, label)
    spec = spec_of(cfg, model, augment=True, info={"images": len(pixels)})
    rows = holdout(len(pixels), cfg.n_eval, cfg.seed)
    prompts = class_prompts(classes, cfg.templates)
    return one_source(images, captions, labels, rows, spec, classes, prompts)


def build_digits(cfg, model=None) -> PairedData:
    pixels, labels = load_digits_arrays()
    return _class_set(cfg, model, pixels, labels, DIGIT_NAMES, "digits")


def build_animal_mnist(cfg, model=None) -> PairedData:
    pixels, labels = load_animal_arrays()
    return _class_set(cfg, model, pixels, labels, ANIMALS, "animal-mnist")
