"""Cold start of `grounding classify` with the built-in model: one image, 12 labels, in a fresh
process each time (interpreter start, imports, the model loaded, the image decoded and
classified), timed from outside. The target: under 2 s on 2 cores.

    python benchmarks/classify_cold_start.py [--runs 5]

Each engine twice: with the labels' classifier already cached (an earlier run with the same
labels) and with new labels (one label changed each run, so their texts are encoded). The
default engine runs the built-in model's exported copy in onnxruntime; `--engine torch` is the
PyTorch path, the peer in the ratio. The copy is made by the first run in an empty cache: that
one-off run is timed too. The median of the runs is reported.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from rich.console import Console
from rich.table import Table

LABELS = "coffee,cat,rocket,astronaut,dog,car,house,tree,bicycle,pizza,guitar"


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from skimage import data as photos  # the coffee photo, written out as a JPEG file
    from PIL import Image

    Image.fromarray(photos.coffee()).save("/tmp/grounding-cold-start.jpg", quality=90)
    grounding = shutil.which("grounding") or "grounding"
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, GROUNDING_CACHE=cache)

        def command(labels: str, *extra: str) -> list[str]:
            return [grounding, "classify", "/tmp/grounding-cold-start.jpg", "--labels", labels, *extra]

        first = timed(command(LABELS + ",clock"), env)  # makes the exported copy, fills the OS file cache
        medians, rows = {}, []
        for engine, extra in (("onnxruntime (default)", ()), ("PyTorch (--engine torch)", ("--engine", "torch"))):
            timed(command(LABELS + ",clock", *extra), env)  # this engine's classifier for the cached case
            for case in ("labels cached", "new labels"):
                times = [timed(command(LABELS + (",clock" if case == "labels cached" else f",thing {engine[:4]}{i}"),
                                       *extra), env) for i in range(args.runs)]
                medians[engine, case] = statistics.median(times)
                rows.append((engine, case, times))
        import_torch = statistics.median(timed([sys.executable, "-c", "import torch"], env) for _ in range(3))
    table = Table("engine", "labels", "median s", "runs (s)", "PyTorch / this", "target 2 s")
    for engine, case, times in rows:
        median = medians[engine, case]
        table.add_row(engine, case, f"{median:.2f}", " ".join(f"{t:.2f}" for t in times),
                      f"{medians['PyTorch (--engine torch)', case] / median:.1f}x", "met" if median < 2 else "NOT met")
    console = Console(width=120)
    console.print(table)
    console.print(f"first use, empty cache (the exported copy made, once): {first:.1f} s; "
                  f"`python -c 'import torch'` alone: {import_torch:.2f} s")


if __name__ == "__main__":
    main()
