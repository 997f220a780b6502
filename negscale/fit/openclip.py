"""Runs trained with open_clip, read as a table the fit can use (``--from open_clip``).

open_clip's training script leaves, per run, ``<logs>/<name>/params.txt`` (every
argument as ``key: value`` lines, sorted) and, with ``--save-logs``,
``<logs>/<name>/checkpoints/results.jsonl`` (one JSON object per evaluation:
zero-shot accuracies such as ``imagenet-zeroshot-val-top1``, retrieval on the
validation set as ``image_to_text_R@1`` / ``text_to_image_R@1``,
``clip_val_loss``, ``epoch``).

What a row assumes, and says so (``df.attrs["negscale_notes"]``):

* **m** = batch_size × world_size × accum_freq − 1: open_clip's ClipLoss gathers
  the features of every rank (and, with ``--accum-freq``, of the accumulated
  micro-batches), so each anchor is scored against the whole global batch;
  ``--local-loss`` only restricts which rows a rank computes, not the
  negatives an anchor sees.
* **n** = ``train_num_samples`` (the samples an epoch draws); a run without it
  is an error naming the run.
* the metrics are those of the last evaluation (or of ``epoch``), plus
  negscale's own names: ``recall_at_1`` (the mean of both directions, as
  negscale reports it), ``zeroshot_top1`` (ImageNet's zero-shot top-1),
  ``val_loss`` (``clip_val_loss``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from negscale.errors import NegscaleError
from negscale.fit.inputs import DROPPED_ATTR, NOTES_ATTR, one_design

DESIGN_KEYS = ("model", "pretrained", "lr", "wd", "warmup", "precision", "lock_image", "lock_text")


def parse_params(path: Path) -> dict[str, str]:
    """``key: value`` lines (values as written, strings)."""
    out = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _int(params: dict[str, str], key: str, default: int | None, where: Path) -> int | None:
    raw = params.get(key)
    if raw in (None, "None", ""):
        return default
    try:
        return int(float(raw))
    except ValueError:
        raise NegscaleError(f"{where}: {key} is not a number ({raw!r})") from None


def run_folders(paths: list[Path]) -> list[Path]:
    """Run folders (holding params.txt) given directly or found one level down."""
    out = []
    for p in map(Path, paths):
        if (p / "params.txt").is_file():
            out.append(p)
        elif p.is_dir() and sorted(p.glob("*/params.txt")):
            out += [q.parent for q in sorted(p.glob("*/params.txt"))]
        else:
            raise NegscaleError(f"{p}: no open_clip run here (expected params.txt)")
    return out


def _results(folder: Path) -> list[dict]:
    for path in (folder / "checkpoints" / "results.jsonl", folder / "results.jsonl"):
        if path.is_file():
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
            try:
                return [json.loads(ln) for ln in lines]
            except json.JSONDecodeError as exc:
                raise NegscaleError(f"{path}: not JSON lines ({exc})") from None
    raise NegscaleError(f"{folder}: no results.jsonl (open_clip writes it with --save-logs)")


def _pick(evals: list[dict], epoch: int | None, folder: Path) -> dict:
    if epoch is None:
        return evals[-1]
    hits = [e for e in evals if int(e.get("epoch", -1)) == epoch]
    if not hits:
        have = sorted({int(e["epoch"]) for e in evals if "epoch" in e})
        raise NegscaleError(f"{folder}: no evaluation at epoch {epoch} (have {have})")
    return hits[-1]


def read_run(folder: Path, epoch: int | None = None) -> dict:
    """One open_clip run as a row (module docstring)."""
    params = parse_params(folder / "params.txt")
    where = folder / "params.txt"
    batch = _int(params, "batch_size", None, where)
    if batch is None:
        raise NegscaleError(f"{where}: no batch_size")
    world = _int(params, "world_size", 1, where)
    accum = _int(params, "accum_freq", 1, where)
    n = _int(params, "train_num_samples", None, where)
    if n is None:
        raise NegscaleError(f"{where}: no train_num_samples, so n is unknown")
    metrics = _pick(_results(folder), epoch, folder)
    row = {
        "run_id": folder.name, "m": batch * world * accum - 1, "n": n,
        "seed": _int(params, "seed", 0, where), "batch_size": batch, "world_size": world,
        "accum_freq": accum, "setting": "self-supervised", "status": "ok",
        "design": "|".join(str(params.get(k)) for k in DESIGN_KEYS),
    }  # fmt: skip
    row.update({k: v for k, v in metrics.items() if isinstance(v, int | float)})
    i2t, t2i = metrics.get("image_to_text_R@1"), metrics.get("text_to_image_R@1")
    if i2t is not None and t2i is not None:
        row["recall_at_1"] = (float(i2t) + float(t2i)) / 2
    if "imagenet-zeroshot-val-top1" in metrics:
        row["zeroshot_top1"] = float(metrics["imagenet-zeroshot-val-top1"])
    if "clip_val_loss" in metrics:
        row["val_loss"] = float(metrics["clip_val_loss"])
    return row


def read_open_clip(paths: list[Path], epoch: int | None = None) -> pd.DataFrame:
    """Every open_clip run under ``paths`` as one table, with the assumptions noted."""
    rows = [read_run(f, epoch) for f in run_folders(paths)]
    df, dropped = one_design(pd.DataFrame(rows))
    df.attrs[DROPPED_ATTR] = dropped
    df.attrs[NOTES_ATTR] = [
        f"open_clip: {len(df)} runs; m = batch_size × world_size × accum_freq − 1 (ClipLoss "
        "gathers every rank's features, so each anchor sees the global batch; --local-loss "
        "changes which rows a rank computes, not the negatives); n = train_num_samples; "
        + (
            "the last evaluation of each run"
            if epoch is None
            else f"the evaluation at epoch {epoch}"
        )
    ]
    return df


def default_metric(df: pd.DataFrame) -> str:
    """zeroshot_top1 when the runs have it, else recall_at_1."""
    for name in ("zeroshot_top1", "recall_at_1", "val_loss"):
        if name in df.columns and df[name].notna().any():
            return name
    raise NegscaleError("open_clip runs: no zero-shot, retrieval or validation loss to fit")
