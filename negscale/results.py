"""Run records: one Parquet file per finished run, written atomically, read back as a table.

Layout: ``<results>/runs/<run_id>.parquet``. A record is written to a hidden
temporary name in the same folder and renamed into place, so a crash never
leaves a partial record under a real name, and two processes writing the same
run_id leave one whole file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from negscale.errors import NegscaleError

OUTCOME_METRICS = ("recall_at_1", "recall_at_5", "recall_at_10", "auc", "mean_rank")


@dataclass
class RunRecord:
    """One finished (or diverged) run; the DESIGN.md results contract."""

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
    samples_per_s: float = 0.0
    peak_mem_mb: float = 0.0
    loss_gflops: float = 0.0
    # negative accounting (beyond the contract's minimum)
    negatives_used: float = 0.0
    negatives_store: int = 0
    negatives_ids_sha: str | None = None
    message: str | None = None
    extra: dict = field(default_factory=dict)

    def to_row(self) -> dict:
        row = asdict(self)
        extra = row.pop("extra")
        row.update({k: v for k, v in extra.items() if k not in row})
        return row


_FLOAT_FIELDS = {f.name for f in fields(RunRecord) if "float" in str(f.type)}
_INT_FIELDS = {f.name for f in fields(RunRecord) if str(f.type).startswith("int")}


def _schema_table(row: dict) -> pa.Table:
    """One-row table with stable column types (null floats stay float, not object)."""
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


def write(record: RunRecord, results: str | Path) -> Path:
    """Write atomically: temporary file in the same folder, fsync, rename."""
    folder = runs_dir(results)
    folder.mkdir(parents=True, exist_ok=True)
    final = record_path(results, record.run_id)
    fd, tmp = tempfile.mkstemp(prefix=f".{record.run_id}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        pq.write_table(_schema_table(record.to_row()), tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


def read_record(path: str | Path) -> pd.DataFrame:
    """Read one record file; raises if it is not a whole, valid record."""
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
            files.append(p)
        elif (p / "runs").is_dir():
            files += sorted((p / "runs").glob("*.parquet"))
        elif p.is_dir():
            files += sorted(p.glob("*.parquet"))
        else:
            raise NegscaleError(f"{p}: no such results directory or file")
    return files


def load(paths: str | Path | Iterable[str | Path], *, strict: bool = False) -> pd.DataFrame:
    """All run records under the given study folders as one DataFrame (one row per run).

    A file that cannot be read as a record (corrupt, truncated) is skipped with
    a warning, or raises with ``strict``.
    """
    frames = []
    for f in record_files(paths):
        try:
            frames.append(read_record(f))
        except Exception as exc:
            if strict:
                raise NegscaleError(f"{f}: unreadable run record ({exc})") from None
            import warnings

            warnings.warn(f"skipping unreadable run record {f}: {exc}", stacklevel=2)
    if not frames:
        return pd.DataFrame(columns=[f.name for f in fields(RunRecord) if f.name != "extra"])
    df = pd.concat(frames, ignore_index=True)
    missing = df["design"].isna() if "design" in df.columns else pd.Series(True, index=df.index)
    if missing.any() and "recipe" in df.columns:  # records written before the design column
        df.loc[missing, "design"] = [record_design(text) for text in df.loc[missing, "recipe"]]
    return df


def record_design(recipe_json: str) -> str | None:
    """The design of a record from its recipe JSON (records that predate the column)."""
    import json

    from negscale.recipe import Recipe
    from negscale.run_id import design_id, flatten

    try:  # fields newer than the record, at their schema default, are not hashed
        return design_id(flatten(json.loads(recipe_json)), Recipe().field_defaults())
    except (TypeError, ValueError):
        return None
