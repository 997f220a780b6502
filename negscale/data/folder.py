"""``folder``: class-per-directory images (the ImageNet layout), captions from templates.

``data.path`` is the root; each subdirectory is a class (its name is the class
name, classes sorted alphabetically), and every image file below it (any
depth, sorted) is an item. Captions are ``data.templates`` filled with the
class name; training draws one template per visit, evaluation uses the first,
and a class's zero-shot prototype is the mean embedding of its name in every
template (prompt ensembling, :func:`class_prompts`). ``data.eval_path`` is an
optional second root of the same layout (ImageNet's ``val``); without it
``data.n_eval`` images are held out by the seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from negscale.data.assemble import Rows, assemble, eval_subset, holdout, spec_of
from negscale.data.base import PairedData
from negscale.data.images import FileImages
from negscale.data.packed import PackedStrings
from negscale.errors import NegscaleError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def scan(root: Path, field: str, classes: list[str] | None = None):
    """(paths, class index per path, class names) under ``root``; names are subfolders."""
    if not root.is_dir():
        raise NegscaleError(f"{field}: no folder at {root}")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        classes = found
    elif set(found) - set(classes):
        extra = ", ".join(sorted(set(found) - set(classes))[:3])
        raise NegscaleError(f"{field}: classes not in the training folder: {extra}")
    if not classes:
        raise NegscaleError(f"{field}: {root} has no class subfolders")
    paths: list[Path] = []
    labels: list[int] = []
    for k, name in enumerate(classes):
        if not (root / name).is_dir():
            continue
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [k] * len(files)
    if not paths:
        raise NegscaleError(f"{field}: no image files under {root}")
    return paths, np.asarray(labels, dtype=np.int64), classes


def class_prompts(classes: list[str], templates: list[str]) -> list[tuple[int, str]]:
    """(class id, caption) for every class and template: the zero-shot prompt ensemble."""
    return [(k, t.replace("{}", name.replace("_", " "))) for k, name in enumerate(classes)
            for t in templates]  # fmt: skip


def class_captions(labels: np.ndarray, classes: list[str], templates: list[str]):
    """Per row: every template filled with the row's class name."""
    if not templates:
        raise NegscaleError("data.templates: need at least one caption template")
    filled = [[t.replace("{}", name.replace("_", " ")) for t in templates] for name in classes]
    if any(not c.strip() for caps in filled for c in caps):
        raise NegscaleError("data.templates: a template gives an empty caption")
    return [filled[k] for k in labels]


def build_folder(cfg, model=None) -> PairedData:
    if not cfg.path:
        raise NegscaleError("data.path: the 'folder' dataset needs a root of class folders")
    paths, labels, classes = scan(Path(cfg.path).expanduser(), "data.path")
    captions = class_captions(labels, classes, cfg.templates)
    images = FileImages(PackedStrings.of(map(str, paths)))
    if cfg.eval_path:
        e_paths, e_labels, _ = scan(Path(cfg.eval_path).expanduser(), "data.eval_path", classes)
        train_rows = np.random.default_rng([cfg.seed, 1]).permutation(len(paths))
        held = Rows(
            FileImages(PackedStrings.of(map(str, e_paths))),
            class_captions(e_labels, classes, cfg.templates),
            e_labels,
            eval_subset(np.arange(len(e_paths)), cfg.n_eval, cfg.seed),
        )
    else:
        train_rows, eval_rows = holdout(len(paths), cfg.n_eval, cfg.seed)
        held = Rows(images, captions, labels, eval_rows)
    info = {"path": str(cfg.path), "images": len(paths), "classes_found": len(classes)}
    spec = spec_of(cfg, model, augment=True, info=info)
    prompts = class_prompts(classes, cfg.templates)
    return assemble(Rows(images, captions, labels, train_rows), held, spec, classes, prompts)
