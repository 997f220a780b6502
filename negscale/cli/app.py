"""The one Typer app every command registers on, and its one-line handling of click's usage errors.

It lives apart from the commands so that each command module can import it
without importing the others.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.markup import escape

from negscale.cli.common import err

_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class _OneLineErrors(typer.core.TyperGroup):
    """Click's own usage errors (``--seed abc``, a missing argument) as one ``error:`` line.

    Typer draws them in a multi-line box; scripts and users get the same one-line
    format as every other bad input, with exit code 2.
    """

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except _ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                text = exc.ctx.get_help()  # typer's rich help prints itself and returns ""
                if text:
                    typer.echo(text)
                sys.exit(exc.exit_code)
            where = f" (see: {exc.ctx.command_path} --help)" if getattr(exc, "ctx", None) else ""
            message = " ".join(exc.format_message().split())
            err.print(
                f"[red]error:[/red] {escape(message)}{where}", highlight=False, soft_wrap=True
            )
            sys.exit(exc.exit_code)
        except typer.Abort:
            err.print("[red]error:[/red] aborted", highlight=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Negative-count scaling studies for contrastive learning: train, sweep, fit.",
)
