#!/usr/bin/env bash
# GPU check: the CUDA paths (bf16 autocast, TF32, fused AdamW, torch.compile,
# NCCL) on real hardware, in under 8 minutes on one GPU, as one table:
#
#   train      negscale train quickstart --device cuda, bf16, compile off / on: steps/s
#   loss       negscale bench loss at B = 16384 and 65536, tiled vs open_clip (or the
#              dense reference): time and peak memory; a peer that runs out of memory
#              is a result, the tiled loss is then measured alone
#   model      timm vit_base_patch16_224 + a BERT-base text tower (from config, no
#              weights), one train step at B = 256: FLOPs from FlopCounterMode,
#              achieved TFLOP/s and MFU against the GPU's bf16 dense peak
#   torchrun   a 1-process torchrun run (joins an NCCL process group): steps/s
#
# Made for a GPU machine with PyTorch installed and no network. It never
# installs anything into that Python: negscale is imported from this checkout
# (a symlink in a temporary folder on PYTHONPATH, no dependencies installed),
# the missing runtime dependencies are named, and the rows that need them are
# skipped with the reason. `python benchmarks/gpu_wheels.py` lists the wheels to
# bring (and the pip download line for a connected machine); --wheels DIR
# installs them into a temporary folder for this run only.
#
# Without CUDA it runs tiny CPU versions of each row (CI exercises the script
# so, under a minute) and names the CUDA rows it skipped.
#
# usage: bash benchmarks/gpu_check.sh [--out DIR] [--wheels DIR] [--site DIR]...
#   --out DIR     where gpu_check.tsv, gpu_check.md and logs/ go (default: a new temp dir)
#   --wheels DIR  wheels to install (pip --no-deps --no-index --target) into a temp dir
#   --site DIR    a folder of installed dependencies to import from (repeatable)
# environment: PYTHON (the interpreter, default python or python3), PEAK_TFLOPS (bf16
#   dense peak for MFU when the GPU is not in gpu_rows.py's list), GPU_CHECK_BUDGET_S
#   (seconds for all rows, default 450; each row also has its own limit)
# exit status: 0 when no row failed or timed out (skipped rows are fine), 1 otherwise,
#   2 on a usage error or when torch cannot be imported
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
usage() { sed -n '/^# usage:/,/^# exit status/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

OUT=""
WHEELS=""
SITES=()
while [ $# -gt 0 ]; do
  case $1 in
    --out) OUT=${2:?--out needs a folder}; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --wheels) WHEELS=${2:?--wheels needs a folder}; shift 2 ;;
    --wheels=*) WHEELS=${1#*=}; shift ;;
    --site) SITES+=("$(cd "${2:?--site needs a folder}" && pwd)"); shift 2 ;;
    --site=*) SITES+=("$(cd "${1#*=}" && pwd)"); shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif command -v python >/dev/null 2>&1; then PY=python
else PY=python3; fi
case $PY in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac  # rows run elsewhere
PEAK=${PEAK_TFLOPS:-}
BUDGET=${GPU_CHECK_BUDGET_S:-450}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # nothing here needs the network: fail fast

WORK=$(mktemp -d "${TMPDIR:-/tmp}/negscale-gpu-work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
if [ -z "$OUT" ]; then OUT=$(mktemp -d "${TMPDIR:-/tmp}/negscale-gpu-check.XXXXXX"); fi
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
LOGS="$OUT/logs"

# ---------------------------------------------------------------- imports: nothing installed
# negscale from this checkout, without its dependencies: only the package is on the path.
mkdir -p "$WORK/site"
ln -s "$REPO/negscale" "$WORK/site/negscale"
PATHS="$WORK/site"
if [ -n "$WHEELS" ]; then
  shopt -s nullglob
  whl=("$WHEELS"/*.whl)
  shopt -u nullglob
  if [ ${#whl[@]} -eq 0 ]; then
    echo "gpu_check.sh: no *.whl in $WHEELS" >&2
    exit 2
  fi
  if "$PY" -m pip --version >/dev/null 2>&1; then
    # --isolated: no pip config or PIP_* variables (a container's PIP_CONSTRAINT, an index)
    "$PY" -m pip --isolated install --quiet --disable-pip-version-check --no-index --no-deps \
      --target "$WORK/deps" "${whl[@]}" >"$LOGS/wheels.log" 2>&1 || {
      cat "$LOGS/wheels.log" >&2
      exit 2
    }
  else  # no pip: unzip them (what --target does, less console scripts)
    "$PY" "$HERE/gpu_wheels.py" --unpack "$WORK/deps" "${whl[@]}"
  fi
  PATHS="$PATHS:$WORK/deps"
fi
for s in "${SITES[@]+"${SITES[@]}"}"; do PATHS="$PATHS:$s"; done
export PYTHONPATH="$PATHS${PYTHONPATH:+:$PYTHONPATH}"
cd "$WORK"  # rows never import from the caller's folder

"$PY" -c "import torch" 2>"$LOGS/torch.err" || {
  echo "gpu_check.sh: $PY cannot import torch (the check needs the installed PyTorch):" >&2
  tail -n 3 "$LOGS/torch.err" >&2
  exit 2
}
mapfile -t INFO < <("$PY" - <<'PY'
import os, platform, torch, negscale
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
cuda = f", CUDA {torch.version.cuda}" if torch.version.cuda else ""
print(f"torch {torch.__version__}{cuda}, Python {platform.python_version()}, "
      f"negscale {negscale.__version__} from {os.path.realpath(negscale.__path__[0])}")
PY
)
GPU=${INFO[0]:-}
ABOUT=${INFO[1]:-}
if [ -n "$GPU" ]; then MODE=cuda; else MODE=cpu; fi

# what each row lacks (benchmarks/gpu_wheels.py: pyproject.toml and the closure of its deps)
declare -A LACKS=()
LACK_TSV=$("$PY" "$HERE/gpu_wheels.py" --rows)
while IFS=$'\t' read -r key names; do LACKS[$key]=$names; done <<<"$LACK_TSV"
MISSING=${LACKS[missing]:-}
MISSING=${MISSING//;/, }

echo "negscale GPU check, $(date -u +%Y-%m-%d) on ${GPU:-no CUDA device}"
echo "$ABOUT"
echo "missing runtime dependencies: ${MISSING:-none}${MISSING:+ (benchmarks/gpu_wheels.py lists the wheels to bring)}"

ROWS="$WORK/rows.tsv"
: >"$ROWS"
FAILED=0
END=$((SECONDS + BUDGET))
HAVE_TIMEOUT=$(command -v timeout || true)

add() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$ROWS"; }

# skip_for ROW NAME...: true (and skipped rows added) when ROW lacks a dependency
skip_for() {
  local key=$1 names
  shift
  names=${LACKS[$key]:-}
  [ -z "$names" ] && return 1
  local shown n
  shown=$(echo "$names" | cut -d';' -f1-6 | sed 's/;/, /g')
  n=$(echo "$names" | tr ';' '\n' | wc -l)
  if [ "$n" -gt 6 ]; then shown="$shown (+$((n - 6)) more)"; fi
  for name in "$@"; do add "$name" skipped - - "missing $shown"; done
  return 0
}

# attempt NAME LIMIT CMD...: runs CMD with stdout to logs/NAME.out, stderr to logs/NAME.err,
# under min(LIMIT, what is left of the budget); on failure adds a failed/timeout row, returns 1
attempt() {
  local name=$1 limit=$2 left rc=0
  shift 2
  left=$((END - SECONDS))
  if [ "$left" -lt 15 ]; then
    add "$name" skipped - - "out of time (GPU_CHECK_BUDGET_S=$BUDGET)"
    return 1
  fi
  if [ "$left" -lt "$limit" ]; then limit=$left; fi
  echo "  running $name (at most ${limit}s) ..." >&2
  if [ -n "$HAVE_TIMEOUT" ]; then
    timeout -k 10 "$limit" "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.err" || rc=$?
  else
    "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.err" || rc=$?
  fi
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    add "$name" timeout "$MODE" - "over ${limit}s; see logs/$name.err"
    FAILED=1
    return 1
  elif [ "$rc" -ne 0 ]; then
    add "$name" failed "$MODE" "exit $rc" "$(grep -v '^\s*$' "$LOGS/$name.err" | tail -n 1 | cut -c1-200)"
    FAILED=1
    return 1
  fi
  return 0
}

# ---------------------------------------------------------------- train rows (the CLI)
train_row() {  # name, limit, extra negscale args...
  local name=$1 limit=$2
  shift 2
  attempt "$name" "$limit" "$PY" -m negscale.cli train quickstart --results "$WORK/$name" \
    --json "$@" || return 0
  "$PY" "$HERE/gpu_rows.py" run "$name" "$LOGS/$name.out" >>"$ROWS" || FAILED=1
}

if ! skip_for train train-compile-off train-compile-on; then
  if [ "$MODE" = cuda ]; then
    train_row train-compile-off 120 --device cuda --set train.precision=bf16 --set train.compile=off
    train_row train-compile-on 240 --device cuda --set train.precision=bf16 --set train.compile=on
  else
    train_row train-compile-off 120 --device cpu --set train.steps=20 --set data.n=1024 \
      --set data.n_eval=256 --set eval.prototypes=256 --set train.batch_size=128
    add train-compile-on skipped - - "needs CUDA"
  fi
fi

# ---------------------------------------------------------------- loss and model rows
if attempt loss 180 "$PY" "$HERE/gpu_rows.py" loss "$MODE"; then
  cat "$LOGS/loss.out" >>"$ROWS"
fi
if [ "$MODE" = cuda ]; then MODEL_ROWS=(model-vitb16+bert-B256); else
  MODEL_ROWS=(model-tiny-vit+bert-B8 model-vitb16+bert-B256); fi
if ! skip_for model "${MODEL_ROWS[@]}"; then
  if attempt model 150 "$PY" "$HERE/gpu_rows.py" model "$MODE" "$PEAK"; then
    cat "$LOGS/model.out" >>"$ROWS"
  fi
fi

# ---------------------------------------------------------------- torchrun, one process
if [ "$MODE" = cuda ]; then
  TR_ARGS=(--device cuda --set train.steps=100)
  TR_NAME=torchrun-1proc-nccl
  TR_ROWS=(torchrun-1proc-nccl)
else
  TR_ARGS=(--device cpu --set train.steps=10 --set data.n=512 --set data.n_eval=128
    --set eval.prototypes=128 --set train.batch_size=64)
  TR_NAME=torchrun-1proc-gloo
  TR_ROWS=(torchrun-1proc-gloo torchrun-1proc-nccl)
fi
if ! skip_for torchrun "${TR_ROWS[@]}"; then
  PORT=$("$PY" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  if attempt "$TR_NAME" 150 "$PY" -m torch.distributed.run --nproc_per_node 1 --master_port "$PORT" \
    -m negscale.cli train quickstart --results "$WORK/tr" --json "${TR_ARGS[@]}"; then
    "$PY" "$HERE/gpu_rows.py" run "$TR_NAME" "$LOGS/$TR_NAME.out" >>"$ROWS" || FAILED=1
  fi
  if [ "$MODE" = cpu ]; then add torchrun-1proc-nccl skipped - - "needs CUDA (ran gloo on CPU)"; fi
fi

# ---------------------------------------------------------------- the table
TITLE="$(date -u +%Y-%m-%d) on ${GPU:-no CUDA device}; $ABOUT; missing runtime dependencies: ${MISSING:-none}"
"$PY" "$HERE/gpu_rows.py" table "$ROWS" "$OUT" "$TITLE"
echo "table: $OUT/gpu_check.tsv and $OUT/gpu_check.md (logs in $LOGS)"
exit "$FAILED"
