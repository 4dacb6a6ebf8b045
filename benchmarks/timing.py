"""What the benchmark scripts share for timing (imported as a sibling: each script runs as
`python benchmarks/NAME.py`, with its own folder on the path)."""
from __future__ import annotations

import time
from typing import Callable


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` calls, in seconds: the run least disturbed by the machine."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)
