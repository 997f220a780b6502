"""``python -m negscale``: the same CLI as the ``negscale`` command (torchrun uses this form)."""

from negscale.cli import app

app(prog_name="negscale")
