"""`grounding cache info` and `grounding cache clear`: what grounding keeps between runs."""
from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ... import cache
from ...errors import BadInput
from ..common import App

app = App()
cache_app = App(help="See and empty what grounding keeps between runs (under GROUNDING_CACHE).",
                short_help="See and empty the cache.")
app.add_typer(cache_app, name="cache")


def _size(n: int) -> str:
    return f"{n / 2 ** 20:,.1f} MiB"


@cache_app.command("info", short_help="Each kind's entries, size and limit.")
def info() -> None:
    """Each kind of entry in the cache: how many, their size, the limit past which the least
    recently used go, and what they are."""
    table = Table("kind", "entries", "size", "limit", "holds", title=str(cache.root()))
    for kind, entries, size in cache.info():
        table.add_row(kind.name, str(entries), _size(size), _size(kind.limit), kind.holds)
    Console().print(table)


@cache_app.command("clear", short_help="Empty the cache, or some kinds of it.")
def clear(kinds: Optional[list[str]] = typer.Argument(None, metavar="[KIND]...",
                                                      help=f"Kinds to empty: {', '.join(cache.KINDS)}; all if none "
                                                           "is named.")) -> None:
    """Remove cached entries; each is made again when next needed, which costs only time."""
    unknown = [k for k in kinds or [] if k not in cache.KINDS]
    if unknown:
        raise BadInput(f"unknown cache kind {unknown[0]!r}: use {', '.join(cache.KINDS)}", "KIND")
    freed = cache.clear(kinds or None)
    typer.echo(f"freed {_size(freed)} from {cache.root()}")
