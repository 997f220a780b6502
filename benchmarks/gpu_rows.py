"""The rows of benchmarks/gpu_check.sh that are Python, and its table.

    python gpu_rows.py loss MODE                 loss rows (negscale bench loss's function)
    python gpu_rows.py model MODE PEAK_TFLOPS    ViT + BERT train step: TFLOP/s and MFU
    python gpu_rows.py run NAME RECORD.json      a train/torchrun row from `train --json`
    python gpu_rows.py table ROWS.tsv OUT TITLE  gpu_check.tsv and gpu_check.md in OUT

Each row command prints rows as ``check<TAB>status<TAB>device<TAB>result<TAB>notes``
lines; status is ok, skipped, failed or timeout. MODE is cuda or cpu (tiny sizes).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

COLUMNS = ("check", "status", "device", "result", "notes")

# bf16 dense peak TFLOP/s by device name (a substring; the first match wins)
PEAKS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("H20", 148.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)


def row(check: str, status: str, device: str, result: str, notes: str = "") -> None:
    cells = [str(c).replace("\t", " ").replace("\n", " ") for c in (check, status, device)]
    cells += [str(c).replace("\t", " ").replace("\n", " ") for c in (result, notes)]
    print("\t".join(cells), flush=True)


def _oom(exc: BaseException) -> bool:
    return "out of memory" in str(exc).lower()


# ---------------------------------------------------------------- loss


def loss(mode: str) -> None:
    """The function `negscale bench loss` calls, at the check's sizes, one B at a time.

    On CUDA the peer (open_clip's ClipLoss, else the dense reference) holds
    the full B x B score matrix: where it runs out of memory the tiled loss is
    measured alone (time, and peak memory in this process).
    """
    import torch

    from negscale import bench

    dev = torch.device(mode)
    if mode == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    batches, dim, tile = ([16384, 65536], 512, 4096) if mode == "cuda" else ([512], 64, 128)
    peer = "open_clip" if bench._clip_loss() is not None else "dense"
    why = "" if peer == "open_clip" else " (open_clip not installed: the dense reference)"
    for b in batches:
        rows = None
        try:
            rows = bench.bench_loss([b], dim, None, mode, tile=tile, repeats=3)
        except Exception as exc:  # an OOM of the peer is a result, anything else is not
            if not _oom(exc):
                raise
        if rows is None:  # out of the except block: the failed attempt's tensors are free
            gc.collect()
            if mode == "cuda":
                torch.cuda.empty_cache()
            impls, _ = bench._loss_impls(b, dim, None, dev, tile, 0.07)
            ms = bench.time_alternating({"tiled": impls["tiled"]}, dev, 3)["tiled"]
            peak = bench.peak_extra_mb(impls["tiled"], dev)
            row(f"loss-B{b}-{peer}", "ok", mode, "out of memory", f"B x B scores{why}")
            row(f"loss-B{b}-tiled", "ok", mode, f"{ms:.1f} ms", f"peak {peak or 0:.0f} MiB")
            continue
        for r in rows:
            vs = f", time x{r['time_ratio']:.2f} {peer}" if r["impl"] == "tiled" else why
            peak = "n/a" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
            row(
                f"loss-B{b}-{r['impl']}",
                "ok",
                mode,
                f"{r['ms']:.1f} ms",
                f"peak {peak} MiB, x{r['floor_x']:.2f} FLOP floor{vs}",
            )
    if mode == "cpu":
        row("loss-B16384,B65536", "skipped", "-", "-", "needs CUDA (ran B=512 on CPU)")


# ---------------------------------------------------------------- model


def peak_tflops(name: str) -> float | None:
    return next((p for key, p in PEAKS if key in name), None)


def model(mode: str, peak_arg: str) -> None:
    """ViT-B/16 + BERT-base from config (no weights), one bf16 train step at B = 256."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    from negscale.losses import contrastive_loss

    dev = torch.device(mode)
    name = "model-vitb16+bert-B256" if mode == "cuda" else "model-tiny-vit+bert-B8"
    try:
        import timm
        from transformers import BertConfig, BertModel
    except ImportError as exc:
        row(name, "skipped", "-", "-", f"cannot import: {exc}")
        return
    if mode == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
        bert = BertModel(BertConfig(), add_pooling_layer=False)  # BERT-base sized, random
        b, size, length = 256, 224, 77
    else:
        vit = timm.create_model(
            "vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, patch_size=8
        )
        cfg = BertConfig(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            vocab_size=1000,
        )
        bert = BertModel(cfg, add_pooling_layer=False)
        b, size, length = 8, 32, 16

    class Clip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vit, self.bert = vit, bert
            self.img_proj = nn.Linear(vit.num_features, 512, bias=False)
            self.txt_proj = nn.Linear(bert.config.hidden_size, 512, bias=False)

        def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
            img = F.normalize(self.img_proj(self.vit(x)), dim=-1)
            cls = self.bert(input_ids=ids).last_hidden_state[:, 0]
            txt = F.normalize(self.txt_proj(cls), dim=-1)
            return contrastive_loss(img, txt, tau=0.07, form="infonce")

    clip = Clip().to(dev)
    opt = torch.optim.AdamW(clip.parameters(), lr=1e-4, fused=mode == "cuda")
    x = torch.randn(b, 3, size, size, device=dev)
    ids = torch.randint(0, bert.config.vocab_size, (b, length), device=dev)
    amp = torch.autocast(mode, dtype=torch.bfloat16, enabled=mode == "cuda")

    def step() -> None:
        with amp:
            out = clip(x, ids)
        out.backward()
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
    if mode == "cuda":
        gpu = torch.cuda.get_device_name(0)
        peak = float(peak_arg) if peak_arg else peak_tflops(gpu)
        mfu = f"MFU {100 * tflops / peak:.1f}% of {peak:g}" if peak else "MFU n/a: set PEAK_TFLOPS"
        mem = f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
    else:
        mfu, mem = "MFU n/a on CPU", ""
    notes = f"{flops / 1e9:.4g} GFLOP/step, {sec * 1e3:.0f} ms/step, {mfu}{mem}"
    row(name, "ok", mode, f"{tflops:.3g} TFLOP/s", notes)
    if mode == "cpu":
        row("model-vitb16+bert-B256", "skipped", "-", "-", "needs CUDA (ran a tiny ViT + BERT)")


# ---------------------------------------------------------------- train and torchrun rows


def run(name: str, path: str) -> int:
    """A row from the record `negscale train --json` printed; 1 unless the run was ok."""
    try:
        r = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        row(name, "failed", "-", "no record", f"{path}: {exc}")
        return 1
    sps = r["steps"] / r["train_s"] if r.get("train_s") else float("nan")
    auc = r.get("auc")
    notes = f"status={r['status']} {r['precision']} world={r['world_size']}"
    notes += f" auc={auc:.3f}" if isinstance(auc, float) else " auc=n/a"
    notes += f", {r['steps']} steps in {r['train_s']:.1f} s (incl. any compile)"
    status = "ok" if r["status"] == "ok" else "failed"
    row(name, status, r["device"], f"{sps:.1f} steps/s", notes)
    return 0 if status == "ok" else 1


# ---------------------------------------------------------------- the table


def table(rows_path: str, out: str, title: str) -> None:
    """gpu_check.tsv and gpu_check.md in ``out``; the aligned table on stdout."""
    text = Path(rows_path).read_text()
    rows = [ln.split("\t") for ln in text.splitlines() if ln.strip()]
    rows = [(r + [""] * len(COLUMNS))[: len(COLUMNS)] for r in rows]
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(COLUMNS)] + ["\t".join(r) for r in rows]
    (folder / "gpu_check.tsv").write_text("\n".join(lines) + "\n")
    md = [f"# negscale GPU check\n\n{title}\n"]
    md.append("| " + " | ".join(COLUMNS) + " |")
    md.append("|" + "---|" * len(COLUMNS))
    md += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    (folder / "gpu_check.md").write_text("\n".join(md) + "\n")
    width = [max(len(r[i]) for r in [list(COLUMNS), *rows]) for i in range(len(COLUMNS))]
    for r in [list(COLUMNS), ["-" * w for w in width], *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)).rstrip())
    for status in ("skipped", "failed", "timeout"):
        names = [r[0] for r in rows if r[1] == status]
        if names:
            print(f"{status}: {', '.join(names)}")


def main(argv: list[str]) -> int:
    cmd, args = (argv[0], argv[1:]) if argv else ("", [])
    if cmd == "loss":
        loss(args[0])
    elif cmd == "model":
        model(args[0], args[1] if len(args) > 1 else "")
    elif cmd == "run":
        return run(args[0], args[1])
    elif cmd == "table":
        table(args[0], args[1], args[2])
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
