#!/usr/bin/env bash
# GPU check: the CUDA paths (bf16 autocast, TF32, fused AdamW, torch.compile,
# NCCL) on real hardware, in under 5 minutes on one GPU, as one table:
#
#   train      negscale train quickstart --device cuda, bf16, compile off / on: steps/s
#   loss       negscale bench loss at B = 16384 and 65536, dense and tiled vs open_clip:
#              time and peak memory
#   model      timm vit_base_patch16_224 + a BERT-base text tower (from config, no
#              weights), one train step at B = 256: FLOPs from FlopCounterMode,
#              achieved TFLOP/s and MFU against the H200's 989 TFLOP/s bf16 dense peak
#   torchrun   a 1-process torchrun run (joins an NCCL process group): steps/s
#
# Without CUDA it runs tiny CPU versions of each row (so CI exercises the
# script, under a minute), names the CUDA rows it skipped, and exits 0.
#
# usage: bash benchmarks/gpu_check.sh      (PYTHON=... to choose the interpreter;
#        PEAK_TFLOPS=... for another GPU's bf16 dense peak)
set -euo pipefail

PY=${PYTHON:-python}
PEAK=${PEAK_TFLOPS:-989}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

GPU=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')")
if [ -n "$GPU" ]; then MODE=cuda; else MODE=cpu; fi
ROWS="$WORK/rows.tsv"
: >"$ROWS"

# ---------------------------------------------------------------- train rows (the CLI)
train_row() {  # name, extra negscale args...
  local name=$1
  shift
  "$PY" -m negscale.cli train quickstart --results "$WORK/$name" --json "$@" \
    >"$WORK/$name.json" 2>"$WORK/$name.err" || {
    cat "$WORK/$name.err" >&2
    exit 1
  }
  "$PY" - "$WORK/$name.json" "$name" >>"$ROWS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
sps = r["steps"] / r["train_s"] if r["train_s"] else float("nan")
note = f"status={r['status']} {r['precision']} world={r['world_size']} auc={r['auc'] or float('nan'):.3f} (train_s incl. any compile)"
print(f"{sys.argv[2]}\t{r['device']}\t{sps:.1f} steps/s\t{note}")
PY
}

if [ "$MODE" = cuda ]; then
  for c in off on; do
    train_row "train-compile-$c" --device cuda --set train.precision=bf16 --set "train.compile=$c"
  done
else
  train_row "train-compile-off" --device cpu --set train.steps=20 --set data.n=1024 \
    --set data.n_eval=256 --set eval.prototypes=256 --set train.batch_size=128
  printf 'train-compile-on\tskipped\t-\tneeds CUDA\n' >>"$ROWS"
fi

# ---------------------------------------------------------------- loss and model rows
"$PY" - "$MODE" "$PEAK" >>"$ROWS" <<'PY'
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from negscale.bench import bench_loss
from negscale.losses import contrastive_loss

mode, peak = sys.argv[1], float(sys.argv[2])
dev = torch.device(mode)
if mode == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = True

# loss: the function `negscale bench loss` calls, at the check's sizes
batches, dim = ([16384, 65536], 512) if mode == "cuda" else ([512], 64)
for row in bench_loss(batches, dim, None, mode, tile=4096 if mode == "cuda" else 128, repeats=3):
    ratio = row["time_ratio"]
    vs = f"time x{ratio:.2f} open_clip" if ratio else ""
    print(
        f"loss-B{row['batch']}-{row['impl']}\t{mode}\t{row['ms']:.1f} ms\t"
        f"peak {row['peak_mb']:.0f} MiB {vs}"
    )
if mode == "cpu":
    print("loss-B16384,B65536\tskipped\t-\tneeds CUDA (ran B=512 on CPU)")


# model: ViT-B/16 + BERT-base from config, one bf16 train step at B = 256
def towers():
    import timm
    from transformers import BertConfig, BertModel

    if mode == "cuda":
        vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
        bert = BertModel(BertConfig(), add_pooling_layer=False)  # BERT-base sized, random
        return vit, bert, 256, 224, 77
    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, patch_size=8
    )
    cfg = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, vocab_size=1000)
    return vit, BertModel(cfg, add_pooling_layer=False), 8, 32, 16


class Clip(nn.Module):
    def __init__(self, vit, bert):
        super().__init__()
        self.vit, self.bert = vit, bert
        self.img_proj = nn.Linear(vit.num_features, 512, bias=False)
        self.txt_proj = nn.Linear(bert.config.hidden_size, 512, bias=False)

    def forward(self, x, ids):
        img = F.normalize(self.img_proj(self.vit(x)), dim=-1)
        txt = F.normalize(self.txt_proj(self.bert(input_ids=ids).last_hidden_state[:, 0]), dim=-1)
        return contrastive_loss(img, txt, tau=0.07, form="infonce")


vit, bert, b, size, length = towers()
model = Clip(vit, bert).to(dev)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=mode == "cuda")
x = torch.randn(b, 3, size, size, device=dev)
ids = torch.randint(0, bert.config.vocab_size, (b, length), device=dev)
amp = torch.autocast(mode, dtype=torch.bfloat16, enabled=mode == "cuda")


def step():
    with amp:
        loss = model(x, ids)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


counter = FlopCounterMode(display=False)
with counter:
    step()
flops = counter.get_total_flops()
for _ in range(2):
    step()
reps = 10 if mode == "cuda" else 2
if mode == "cuda":
    torch.cuda.synchronize()
t0 = time.perf_counter()
for _ in range(reps):
    step()
if mode == "cuda":
    torch.cuda.synchronize()
sec = (time.perf_counter() - t0) / reps
tflops = flops / sec / 1e12
mfu = f"MFU {100 * tflops / peak:.1f}% of {peak:g}" if mode == "cuda" else "MFU n/a on CPU"
name = "model-vitb16+bert-B256" if mode == "cuda" else "model-tiny-vit+bert-B8"
print(f"{name}\t{mode}\t{tflops:.3g} TFLOP/s\t{flops / 1e9:.4g} GFLOP/step, {sec * 1e3:.0f} ms, {mfu}")
if mode == "cpu":
    print("model-vitb16+bert-B256\tskipped\t-\tneeds CUDA (ran a tiny ViT + BERT on CPU)")
PY

# ---------------------------------------------------------------- torchrun, one process
PORT=$("$PY" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
if [ "$MODE" = cuda ]; then
  TR_ARGS=(--device cuda --set train.steps=100)
  TR_NAME=torchrun-1proc-nccl
else
  TR_ARGS=(--device cpu --set train.steps=10 --set data.n=512 --set data.n_eval=128
    --set eval.prototypes=128 --set train.batch_size=64)
  TR_NAME=torchrun-1proc-gloo
  printf 'torchrun-1proc-nccl\tskipped\t-\tneeds CUDA (ran gloo on CPU)\n' >>"$ROWS"
fi
"$PY" -m torch.distributed.run --nproc_per_node 1 --master_port "$PORT" -m negscale.cli \
  train quickstart --results "$WORK/tr" --json "${TR_ARGS[@]}" >"$WORK/tr.json" 2>"$WORK/tr.err" || {
  cat "$WORK/tr.err" >&2
  exit 1
}
"$PY" - "$WORK/tr.json" "$TR_NAME" >>"$ROWS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
sps = r["steps"] / r["train_s"] if r["train_s"] else float("nan")
print(f"{sys.argv[2]}\t{r['device']}\t{sps:.1f} steps/s\tstatus={r['status']} {r['precision']}")
PY

# ---------------------------------------------------------------- the table
echo "negscale GPU check, $(date -u +%Y-%m-%d) on ${GPU:-no CUDA device}"
"$PY" - "$ROWS" <<'PY'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
head = ["check", "device", "result", "notes"]
width = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
for r in [head, ["-" * w for w in width], *rows]:
    print("  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip())
skipped = [r[0] for r in rows if r[1] == "skipped"]
if skipped:
    print(f"skipped without CUDA: {', '.join(skipped)}")
PY
