"""Data-parallel scaling on this machine: training throughput of a preset with 1 process of 1
thread, and 2 processes of 1 thread each (torchrun, gloo on loopback), each process holding the
same batch (so the global batch doubles); the share of a step spent gathering features (waiting
for the slower rank included); and the peak memory and time of one training step with and
without --grad-checkpointing.

    python benchmarks/scaling.py                       # small preset, 64 pairs a process
    python benchmarks/scaling.py --preset tiny --batch 32 --repeats 3

Every measurement runs in fresh processes, one after another (never two at once); the best of
`--repeats` runs is kept. Target (#15): 2 processes reach at least 1.8x one process's pairs/s.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
WORKER = str(HERE / "scaling_worker.py")
ENV = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")


def measure(processes: int, args: argparse.Namespace, *flags: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        launch = [sys.executable] if processes == 1 else \
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
        command = launch + [WORKER, str(out), "--preset", args.preset, "--batch", str(args.batch),
                            "--steps", str(args.steps), *flags]
        subprocess.run(command, check=True, env=ENV, capture_output=True)
        return json.loads(out.read_text())


def best(processes: int, args: argparse.Namespace, *flags: str) -> dict:
    runs = [measure(processes, args, *flags) for _ in range(args.repeats)]
    return max(runs, key=lambda r: r["pairs_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=64, help="pairs per process")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    console = Console(width=150)

    table = Table(title=f"{args.preset}, {args.batch} pairs a process, 1 thread a process (best of {args.repeats})")
    for column in ("processes", "loss options", "global batch", "pairs/s", "vs 1 process", "step ms",
                   "all-gather share"):
        table.add_column(column, justify="right")
    one = best(1, args)
    table.add_row("1", "-", str(args.batch), f"{one['pairs_per_s']:.1f}", "1.00x", f"{one['step_s'] * 1000:.0f}", "-")
    for label, flags in (("default", ()), ("--gather-with-grad", ("--gather-with-grad",)),
                         ("--gather-with-grad --local-loss", ("--gather-with-grad", "--local-loss"))):
        two = best(2, args, *flags)
        table.add_row("2", label, str(2 * args.batch), f"{two['pairs_per_s']:.1f}",
                      f"{two['pairs_per_s'] / one['pairs_per_s']:.2f}x", f"{two['step_s'] * 1000:.0f}",
                      f"{two['gather_share']:.1%}")
    console.print(table)

    memory = Table(title=f"Memory one training step adds, and its time ({args.preset}, {args.batch} pairs, 1 process)")
    for column in ("", "step MiB", "peak RSS MiB", "memory saved", "step ms", "time added"):
        memory.add_column(column, justify="right")
    plain, saved = measure(1, args, "--memory"), measure(1, args, "--memory", "--grad-checkpointing")
    recomputed = best(1, args, "--grad-checkpointing")
    memory.add_row("plain", f"{plain['step_mib']:.0f}", f"{plain['peak_mib']:.0f}", "",
                   f"{one['step_s'] * 1000:.0f}", "")
    memory.add_row("--grad-checkpointing", f"{saved['step_mib']:.0f}", f"{saved['peak_mib']:.0f}",
                   f"{1 - saved['step_mib'] / plain['step_mib']:.0%}", f"{recomputed['step_s'] * 1000:.0f}",
                   f"{recomputed['step_s'] / one['step_s'] - 1:.0%}")
    console.print(memory)

if __name__ == "__main__":
    main()
