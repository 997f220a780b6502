"""Regenerate the fit demo the README shows (report text and plot).

    OMP_NUM_THREADS=1 python docs/make_fit_example.py

Same as the commands printed at the top of each text file.
"""

from __future__ import annotations

from pathlib import Path

from negscale.fit import fit, fit_groups, load_sources, plot, render_text

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "negscale" / "examples"


def main() -> None:
    cmd = (
        "negscale fit negscale/examples/synthetic_sweep.csv --tolerance 0.001 "
        "-v --plot docs/fit_example.png"
    )
    src = load_sources([EXAMPLES / "synthetic_sweep.csv"], metric_col="auc")
    rep = fit(src, metric="auc", tolerance=0.001, bootstrap=1000, random_state=0)
    (HERE / "fit_example.txt").write_text(f"$ {cmd}\n\n" + render_text(rep, width=80, verbose=True))
    plot(rep, HERE / "fit_example.png")

    cmd = (
        "negscale fit negscale/examples/paper_clip.csv --metric-col value --group-col metric "
        "--tolerance 1 --plot docs/fit_example_paper.png"
    )
    src = load_sources([EXAMPLES / "paper_clip.csv"], metric_col="value", group_col="metric")
    reps = fit_groups(src, "metric", metric="value", tolerance=1.0, bootstrap=1000, random_state=0)
    text = f"$ {cmd}\n\n" + "\n".join(render_text(r, width=80) for _, r in reps)
    (HERE / "fit_example_paper.txt").write_text(text)
    for value, r in reps:
        if value == "imagenet_zeroshot_top1":
            plot(r, HERE / "fit_example_paper.png")


if __name__ == "__main__":
    main()
