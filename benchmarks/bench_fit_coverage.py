"""Does `negscale fit`'s headline interval hold the truth? Coverage on simulated studies.

Every family of negscale.fit.simulate (the shapes real studies produce) is
drawn --draws times; each study is fitted as a user would (`fit(table,
metric=..., tolerance=... when the family gives one)`), and each n group's
headline 95 % interval is scored against the true m_sat(ε), computed by the
definition on the noise-free law at the ε the fit used. Printed per family
and overall:

* coverage: the share of answers whose interval holds the truth;
* width: the median interval width in doublings (log2 hi/lo) over the
  answers with two finite ends, and the share of answers with an open end
  (a bound: "not reached", "saturated", or a side the data cannot close);
* miss > 1 doubling: the share whose interval misses the truth by more than
  a doubling;
* γ: for the families with a known exponent, the share of studies whose γ
  interval holds it.

    python benchmarks/bench_fit_coverage.py               # 40 draws a family, 2 processes
    python benchmarks/bench_fit_coverage.py --draws 25 --markdown
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

TARGETS = "targets: >= 90 % overall, >= 80 % a family, no miss > 1 doubling, γ >= 90 %"


def score(family: str, seed: int, bootstrap: int) -> dict:
    """Fit one simulated study and score every n group's headline interval."""
    from negscale.fit import fit
    from negscale.fit import simulate as sim

    st = sim.draw(family, seed)
    rep = fit(st.table, metric=st.metric, bootstrap=bootstrap, random_state=seed, **st.fit_kwargs)
    groups = []
    for g in rep.groups:
        truth = st.truth(g.n, rep.tolerance)
        lo, hi = g.answer.ci
        lo_v, hi_v = (lo or 0.0), (hi if hi is not None else np.inf)
        covered = lo_v <= truth <= hi_v
        if covered:
            miss = 0.0
        elif truth < lo_v:
            miss = np.log2(lo_v / truth) if truth > 0 else np.inf
        else:
            miss = np.log2(truth / hi_v)
        width = np.log2(hi_v / lo_v) if lo_v > 0 and np.isfinite(hi_v) else np.inf
        groups.append({"covered": covered, "miss": miss, "width": width})
    gamma_ok = None
    if st.gamma is not None and rep.scaling is not None:
        glo, ghi = rep.scaling.ci
        gamma_ok = (glo is None or glo <= st.gamma) and (ghi is None or st.gamma <= ghi)
    return {"family": family, "groups": groups, "gamma": gamma_ok}


def _row(name: str, results: list[dict]) -> dict:
    gs = [g for r in results for g in r["groups"]]
    widths = np.array([g["width"] for g in gs])
    finite = widths[np.isfinite(widths)]
    gam = [r["gamma"] for r in results if r["gamma"] is not None]
    return {
        "family": name,
        "answers": len(gs),
        "coverage": float(np.mean([g["covered"] for g in gs])),
        "width": float(np.median(finite)) if finite.size else float("nan"),
        "open": float(np.mean(~np.isfinite(widths))),
        "miss1": float(np.mean([g["miss"] > 1.0 for g in gs])),
        "gamma": float(np.mean(gam)) if gam else None,
        "gamma_n": len(gam),
    }


def table(rows: list[dict], markdown: bool) -> str:
    head = [
        "family",
        "answers",
        "coverage",
        "median width (doublings)",
        "open",
        "miss > 1 doubling",
        "γ covered",
    ]
    body = []
    for r in rows:
        gamma = "–" if r["gamma"] is None else f"{r['gamma']:.0%} of {r['gamma_n']}"
        width = "–" if np.isnan(r["width"]) else f"{r['width']:.2f}"
        body.append(
            [r["family"], str(r["answers"]), f"{r['coverage']:.0%}", width, f"{r['open']:.0%}",
             f"{r['miss1']:.1%}", gamma]
        )  # fmt: skip
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]

    def fmt_row(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in pairs)

    return "\n".join([fmt_row(head)] + [fmt_row(b) for b in body])


def main() -> None:
    from negscale.fit.simulate import FAMILIES

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=40, help="studies a family (default 40)")
    ap.add_argument("--bootstrap", type=int, default=300, help="replicates a fit (default 300)")
    ap.add_argument("--jobs", type=int, default=2, help="processes (default 2)")
    ap.add_argument("--family", action="append", help="only these families (repeatable)")
    ap.add_argument("--first", type=int, default=0, help="seed of the first draw (default 0)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    families = args.family or list(FAMILIES)
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise SystemExit(f"error: unknown family {sorted(unknown)}; known: {list(FAMILIES)}")
    seeds = range(args.first, args.first + args.draws)
    tasks = [(f, s, args.bootstrap) for f in families for s in seeds]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(score, *zip(*tasks, strict=True), chunksize=4))
    dt = time.perf_counter() - t0
    rows = [_row(f, [r for r in results if r["family"] == f]) for f in families]
    rows.append(_row("overall", results))
    print(table(rows, args.markdown))
    print(
        f"\n{args.draws} studies a family (seeds {args.first}–{args.first + args.draws - 1}), "
        f"{args.bootstrap} replicates a fit, {dt:.0f} s on "
        f"{args.jobs} process(es); {TARGETS}"
    )


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
