"""The one progress reporter, for training, encoding, embedding, sharding and classify: a live bar
on a terminal; elsewhere (CI, nohup, a log file) a plain line every `every` seconds and one at the
end, so a long job is never silent and a short one prints nothing."""
from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as _Bar

EVERY = 30.0  # seconds between plain lines; training's --log-every sets its own


class Progress:
    """`with Progress("embed", total) as progress: progress.advance(n, "12.5 items/s")`.

    `show=False` keeps it silent; `after` seconds pass before the bar appears (classify: only
    when it takes time); `stream` is where it writes (stderr unless said otherwise)."""

    def __init__(self, label: str, total: int, done: int = 0, show: bool = True, every: float = EVERY,
                 after: float = 0.0, stream: TextIO | None = None, always_end: bool = False):
        self.label, self.total, self.done, self.every, self.after = label, total, done, every, after
        self.stream = stream or sys.stderr
        self.show, self.live = show, show and self.stream.isatty()
        self.first, self.always_end, self.printed = done, always_end, False
        self.began = self.last = time.perf_counter()
        self.bar = _Bar(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                        console=Console(file=self.stream), transient=after > 0, disable=not self.live)
        self.task = self.bar.add_task(label, total=total, completed=done, stats="", visible=after == 0)

    def __enter__(self) -> Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def advance(self, count: int = 1, stats: str = "") -> None:
        self.update(self.done + count, stats)

    def update(self, done: int, stats: str = "") -> None:
        self.done = done
        now = time.perf_counter()
        if self.live:
            self.bar.update(self.task, completed=done, stats=stats, visible=now - self.began >= self.after)
            return
        end = done >= self.total and (self.printed or self.always_end)
        if not self.show or not (end or now - self.last >= self.every):
            return
        self.last, self.printed = now, True
        eta = (now - self.began) / max(1, done - self.first) * (self.total - done)
        parts = [f"{self.label} {done}/{self.total}", stats, f"eta {duration(eta)}"]
        print("  ".join(part for part in parts if part), file=self.stream, flush=True)

    def say(self, message: str) -> None:
        """A line of its own (above the bar when there is one)."""
        if self.live:
            self.bar.console.print(message, markup=False, highlight=False, soft_wrap=True)
        else:
            print(message, file=self.stream, flush=True)


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
