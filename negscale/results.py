"""Run records: one Parquet file per finished run, written atomically, read back as a table.

Layout: ``<results>/runs/<run_id>.parquet`` and its training curve
``<results>/runs/<run_id>.history.parquet``. Each is written to a hidden
temporary name in the same folder (created with the process umask, so a shared
results folder stays readable) and renamed into place, so a crash never leaves
a partial file under a real name, and two processes writing the same run_id
leave one whole file.

pandas and pyarrow are imported when a table is written or read, not when the
trainer imports this module (start-up time).
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from negscale.errors import NegscaleError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

HISTORY_SUFFIX = ".history.parquet"


@dataclass
class RunRecord:
    """One finished, diverged or collapsed run; the results contract of docs/design.md."""

    # identity
    run_id: str
    study: str
    status: str
    created_at: str
    negscale_version: str
    git_sha: str | None
    torch_version: str
    device: str
    world_size: int
    recipe: str
    # design
    setting: str
    negatives: str
    loss_form: str
    m: int
    n: int
    seed: int
    batch_size: int
    steps: int
    epochs: float
    tau: float
    dataset: str
    image_encoder: str
    text_encoder: str
    embed_dim: int
    precision: str
    n_eval: int = 0  # held-out pairs actually evaluated
    num_classes: int | None = None  # classes of the data (zero-shot candidates), if labelled
    design: str | None = None  # the study design: run_id's fields minus m, n, seed (run_id.py)
    # outcome (means of both directions, then per direction)
    recall_at_1: float | None = None
    recall_at_5: float | None = None
    recall_at_10: float | None = None
    auc: float | None = None
    mean_rank: float | None = None
    recall_at_1_i2t: float | None = None
    recall_at_5_i2t: float | None = None
    recall_at_10_i2t: float | None = None
    auc_i2t: float | None = None
    mean_rank_i2t: float | None = None
    recall_at_1_t2i: float | None = None
    recall_at_5_t2i: float | None = None
    recall_at_10_t2i: float | None = None
    auc_t2i: float | None = None
    mean_rank_t2i: float | None = None
    zeroshot_top1: float | None = None
    val_loss: float | None = None
    train_loss: float | None = None
    # studies: ground truth on data with an oracle (negscale/oracle.py), else null
    val_loss_paper: float | None = None
    auc_oracle: float | None = None
    recall_at_1_oracle: float | None = None
    loss_oracle: float | None = None
    loss_oracle_finite: float | None = None
    excess_auc: float | None = None
    calibration_bound: float | None = None
    # cost
    wall_s: float = 0.0
    train_s: float = 0.0
    select_s: float = 0.0  # selection's validation evaluations (train.select = "best")
    eval_s: float = 0.0  # the held-out evaluations (step 0 and the end, ground truth included)
    samples_per_s: float = 0.0
    peak_mem_mb: float = 0.0
    loss_gflops: float = 0.0
    # negative accounting (beyond the contract's minimum)
    negatives_used: float = 0.0
    negatives_store: int = 0
    negatives_ids_sha: str | None = None
    # step (gradient caching, compute accounting)
    micro_batch: int | None = None  # train.micro_batch: gradient-cache chunk size, None = off
    encoder_gflops: float | None = None  # both towers, forward + backward, per step (measured)
    model_tflops: float | None = None  # achieved (encoder + loss) TFLOP/s over the training time
    # data
    data_skipped: int | None = None  # bad items skipped (data.skip_bad); None: no such count
    message: str | None = None
    # house: the same model evaluated at step 0 (the collapse check, negscale.collapse)
    auc_init: float | None = None
    recall_at_1_init: float | None = None
    val_loss_init: float | None = None
    # train.select = "best": the step whose weights the metrics are from, and its validation AUC
    selected_step: int | None = None
    select_auc: float | None = None

    def to_row(self) -> dict:
        return asdict(self)


_FLOAT_FIELDS = {f.name for f in fields(RunRecord) if "float" in str(f.type)}
_INT_FIELDS = {f.name for f in fields(RunRecord) if str(f.type).startswith("int")}


def _schema_table(row: dict) -> pa.Table:
    """One-row table with stable column types (null floats stay float, not object)."""
    import pyarrow as pa

    arrays, names = [], []
    for key, value in row.items():
        if key in _FLOAT_FIELDS:
            arr = pa.array([None if value is None else float(value)], type=pa.float64())
        elif key in _INT_FIELDS:
            arr = pa.array([None if value is None else int(value)], type=pa.int64())
        else:
            arr = pa.array([value])
        arrays.append(arr)
        names.append(key)
    return pa.Table.from_arrays(arrays, names=names)


def runs_dir(results: str | Path) -> Path:
    return Path(results) / "runs"


def record_path(results: str | Path, run_id: str) -> Path:
    return runs_dir(results) / f"{run_id}.parquet"


def history_path(results: str | Path, run_id: str) -> Path:
    return runs_dir(results) / f"{run_id}{HISTORY_SUFFIX}"


def _write_atomic(table: pa.Table, final: Path) -> Path:
    """Write a table to ``final`` via a hidden temporary file in the same folder, fsync, rename.

    The temporary file is created by ``os.open`` with mode 0o666, so the
    process umask decides the permissions (``mkstemp`` would force 0600).
    """
    import pyarrow.parquet as pq

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name.split('.')[0]}.{secrets.token_hex(4)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def write(record: RunRecord, results: str | Path) -> Path:
    """Write one run record atomically (see :func:`_write_atomic`)."""
    return _write_atomic(_schema_table(record.to_row()), record_path(results, record.run_id))


def write_history(rows: list[dict[str, float]], results: str | Path, run_id: str) -> Path:
    """Write a run's training curve (step, loss, lr, tau per row) atomically."""
    import pyarrow as pa

    names = ("step", "loss", "lr", "tau")
    types = (pa.int64(), pa.float64(), pa.float64(), pa.float64())
    arrays = [pa.array([r[k] for r in rows], type=t) for k, t in zip(names, types, strict=True)]
    table = pa.Table.from_arrays(arrays, names=list(names))
    return _write_atomic(table, history_path(results, run_id))


def read_history(results: str | Path, run_id: str) -> pd.DataFrame:
    """A run's training curve as a DataFrame (step, loss, lr, tau)."""
    import pyarrow.parquet as pq

    return pq.read_table(history_path(results, run_id)).to_pandas()


def read_record(path: str | Path) -> pd.DataFrame:
    """Read one record file; raises if it is not a whole, valid record."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if table.num_rows != 1 or "run_id" not in table.column_names:
        raise ValueError(f"{path}: not a run record")
    return table.to_pandas()


def is_valid_record(path: str | Path) -> bool:
    try:
        read_record(path)
    except Exception:
        return False
    return True


def record_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Record files under study folders (or their runs/ folders), or given directly."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            if p.suffix.lower() not in (".parquet", ".pq"):
                raise NegscaleError(f"{p}: not a results folder or a run record (.parquet)")
            files.append(p)
        elif (p / "runs").is_dir():
            files += _records_in(p / "runs")
        elif p.is_dir():
            files += _records_in(p)
        else:
            raise NegscaleError(f"{p}: no such results directory or file")
    return files


def _records_in(folder: Path) -> list[Path]:
    """Record files of a folder: its Parquet files, less the training curves."""
    return sorted(p for p in folder.glob("*.parquet") if not p.name.endswith(HISTORY_SUFFIX))


def _notice(message: str) -> None:
    print(f"notice: {message}", file=sys.stderr)


def load(
    paths: str | Path | Iterable[str | Path],
    *,
    strict: bool = False,
    notice: Callable[[str], Any] | None = None,
) -> pd.DataFrame:
    """All run records under the given study folders as one DataFrame (one row per run).

    A file that cannot be read as a record (corrupt, truncated) is skipped with
    a one-line notice (``notice``, default: stderr), or raises with ``strict``.
    """
    import pandas as pd

    frames = []
    for f in record_files(paths):
        try:
            frames.append(read_record(f))
        except Exception as exc:
            if strict:
                raise NegscaleError(f"{f}: unreadable run record ({exc})") from None
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            (notice or _notice)(f"skipping unreadable run record {f}: {reason}")
    if not frames:
        return pd.DataFrame(columns=[f.name for f in fields(RunRecord)])
    df = pd.concat(frames, ignore_index=True)
    if "recipe" in df.columns:
        # derived, so recomputed under the current rule: records written before the
        # column, or before a fix to the rule (0.2.0 split a pool study in two), join
        # the runs of their study; a recipe that cannot be read keeps its stored design
        fresh = pd.Series([record_design(text) for text in df["recipe"]], index=df.index)
        stored = df["design"] if "design" in df.columns else pd.Series(None, index=df.index)
        df["design"] = fresh.where(fresh.notna(), stored)
    return df


def record_design(recipe_json: str) -> str | None:
    """The design of a record from its recipe JSON, under the current rule."""
    import json

    from negscale.config import Recipe
    from negscale.config.run_id import design_id, flatten

    try:
        raw = json.loads(recipe_json)
    except (TypeError, ValueError):
        return None
    if not isinstance(raw, dict) or not {"data", "negatives", "train"} <= raw.keys():
        return None  # not a resolved recipe (hand-written records, tests): keep what is stored
    try:  # the current schema's defaults: fields added since are hashed only when set
        defaults = Recipe.model_validate(raw).field_defaults()
    except Exception:  # a recipe this version no longer accepts: every field counts
        defaults = {}
    try:
        return design_id(flatten(raw), defaults)
    except (TypeError, ValueError):
        return None


def check_results_dir(results: str | Path) -> Path:
    """Fail before training when the results folder cannot hold records.

    A file where the folder (or its ``runs/``, ``checkpoints/``) should be, or
    a folder that cannot be created or written, is a one-line error now rather
    than a traceback after the whole run.
    """
    root = Path(results)
    for path in (root, root / "runs", root / "checkpoints"):
        if path.exists() and not path.is_dir():
            raise NegscaleError(f"--results: {path} is a file, not a folder")
    existing = root
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise NegscaleError(f"--results: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise NegscaleError(f"--results: {existing} is not writable")
    try:  # some folders pass the access check and still refuse (/proc, a read-only mount)
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".negscale-check-"))
    except OSError as exc:
        raise NegscaleError(
            f"--results: cannot create folders in {existing} ({exc.strerror})"
        ) from None
    return root


def record_row(results: str | Path, run_id: str) -> dict | None:
    """The recorded row of a run (numbers as plain Python, missing as None), or None."""
    path = record_path(results, run_id)
    if not path.is_file():
        return None
    try:
        frame = read_record(path)
    except Exception:
        return None
    row = frame.iloc[0].to_dict()
    return {
        k: (None if _is_missing(v) else getattr(v, "item", lambda v=v: v)()) for k, v in row.items()
    }


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


LIST_COLUMNS = ("run_id", "design", "status", "m", "n", "seed", "auc", "recall_at_1")
STATUSES = ("ok", "diverged", "collapsed")


def select(frame: pd.DataFrame, *, status: str | None = None, design: str | None = None):
    """Records filtered by status (comma-separated) and design (an id or its prefix).

    Sorted by design, n, m, seed, so the runs of one study design sit together.
    """
    rows = frame
    if status:
        wanted = {s.strip() for s in status.split(",") if s.strip()}
        unknown = sorted(wanted - set(STATUSES))
        if unknown:
            raise NegscaleError(
                f"--status: unknown status {', '.join(unknown)} (known: {', '.join(STATUSES)})"
            )
        rows = rows[rows["status"].isin(wanted)]
    if design:
        ids = rows["design"].fillna("").astype(str)
        if not ids.str.startswith(design.strip()).any():
            known = sorted(set(ids) - {""})
            shown = ", ".join(d[:8] for d in known[:8]) + (", …" if len(known) > 8 else "")
            raise NegscaleError(
                f"--design: no design starts with {design.strip()!r} "
                f"(designs here: {shown or 'none'})"
            )
        rows = rows[ids.str.startswith(design.strip())]
    keys = [k for k in ("design", "n", "m", "seed", "run_id") if k in rows.columns]
    return rows.sort_values(keys, kind="stable").reset_index(drop=True)
