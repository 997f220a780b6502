"""``python -m negscale.cli``: the CLI run as a module (torchrun and the benchmarks use it)."""

from negscale.cli import app

if __name__ == "__main__":  # pragma: no cover
    app()
