"""Tiny image fixtures built on the fly for the data tests: shapes, class folders, tar shards."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 60),
    "blue": (40, 60, 220),
    "yellow": (230, 220, 40),
}
SHAPES = ("circle", "square", "triangle")


def draw(colour: tuple[int, int, int], shape: str, i: int) -> Image.Image:
    """A coloured shape on grey, its position and size varying with i so no two images match."""
    w, h = 28 + i % 5, 24 + i % 3  # not square: exercises resize + centre crop
    im = Image.new("RGB", (w, h), (128, 128, 128))
    d = ImageDraw.Draw(im)
    x0, y0, s = 2 + i % 6, 2 + (i // 6) % 5, 10 + i % 4
    if shape == "circle":
        d.ellipse((x0, y0, x0 + s, y0 + s), fill=colour)
    elif shape == "square":
        d.rectangle((x0, y0, x0 + s, y0 + s), fill=colour)
    else:
        d.polygon([(x0, y0 + s), (x0 + s, y0 + s), (x0 + s // 2, y0)], fill=colour)
    return im


def item(i: int) -> tuple[Image.Image, str, str]:
    """Item i of every fixture: (image, caption, shape label)."""
    names = list(COLOURS)
    colour, shape = names[i % 4], SHAPES[(i // 4) % 3]
    return draw(COLOURS[colour], shape, i), f"A {colour} {shape}.", shape


def class_folder(root: Path, count: int) -> Path:
    """``root/<shape>/<i>.png`` for items 0..count-1 (the ImageNet layout)."""
    for i in range(count):
        im, _, shape = item(i)
        (root / shape).mkdir(parents=True, exist_ok=True)
        im.save(root / shape / f"{i:03d}.png")
    return root


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def tar_shards(root: Path, counts: list[int], json_every: int = 3) -> list[Path]:
    """img2dataset-style shards: ``{key}.png`` + ``{key}.txt`` (every third: ``{key}.json``)."""
    root.mkdir(parents=True, exist_ok=True)
    paths, i = [], 0
    for s, count in enumerate(counts):
        path = root / f"{s:05d}.tar"
        with tarfile.open(path, "w") as tar:
            for _ in range(count):
                im, caption, shape = item(i)
                key = f"{s:05d}{i:04d}"
                _add(tar, f"{key}.png", png_bytes(im))
                if i % json_every == 0:
                    meta = {"caption": caption, "label": shape}
                    _add(tar, f"{key}.json", json.dumps(meta).encode())
                else:
                    _add(tar, f"{key}.txt", caption.encode())
                i += 1
        paths.append(path)
    return paths


def caption_rows(root: Path, count: int) -> list[dict[str, str]]:
    """``count`` items saved under root/img, as rows of a caption table (image, caption, label)."""
    rows = []
    (root / "img").mkdir()
    for i in range(count):
        im, caption, shape = item(i)
        im.save(root / "img" / f"{i:02d}.png")
        rows.append({"image": f"img/{i:02d}.png", "caption": caption, "label": shape})
    return rows
