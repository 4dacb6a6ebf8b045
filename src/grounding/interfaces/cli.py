"""The `grounding` command line: one app joined from the command groups in interfaces/commands/.
Each command parses its options, calls one function of the library and prints; the library's
errors become one `Error:` line in interfaces/common.py."""
from __future__ import annotations

import sys
import warnings

import typer

from .commands import cache, data, grounding, models, retrieval, serve, tasks, training, zeroshot
from .common import App

app = App(add_completion=False,
          help="Ground language in images: train CLIP-style models and classify images zero-shot.")
for group in (training, zeroshot, retrieval, grounding, tasks, models, data, cache, serve):
    app.add_typer(group.app)


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        typer.echo(f"grounding {version('grounding')}")
        raise typer.Exit()


@app.callback()
def _setup(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                        help="Print the version and exit.")) -> None:
    """Warnings print as one plain line each (`warning: ...`), not as Python's file:line form."""
    warnings.showwarning = lambda message, *_, **__: print(f"warning: {message}", file=sys.stderr)


def main() -> None:
    app()
