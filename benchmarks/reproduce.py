"""The lecture's two zero-shot slides and the CLIP paper's figures, reproduced: OpenAI's ViT-B/32
on the standard benchmarks, each figure beside the published one; exits 1 when any is more than
0.5 points off. Needs a network (the model comes from the hub) or its folder in the hub's cache,
and the datasets where their downloads put them:

    python benchmarks/reproduce.py --imagenet data/imagenet/val --cars data --country211 data \
        --cifar10 data/cifar-10-python.tar.gz --cifar100 data/cifar-100-python.tar.gz

Give any subset of the datasets. The cards of every Stanford Cars and Country211 example are
written (runs/reproduce/MODEL__DATASET/cards), and the examples of the lecture's two classes
(2012 Honda Accord Coupe, Belize) are printed as its slides show them: correct label, correct
rank, correct probability. Not run on this project's machine, which has no network.

The check is against CLIP_benchmark's own measurement of the same model on the same test sets
(LAION-AI/CLIP_benchmark, benchmark/benchmark.csv: acc1 of ViT-B-32 openai on imagenet1k, cars,
country211, vtab/cifar10, vtab/cifar100), an independent implementation with the same class names
and templates. The CLIP paper's figures (Radford et al., 2021, Table 11, zero-shot ViT-B/32, set
down by hand) are printed beside them: they agree within 0.2 points except CIFAR-10, where the
paper's 91.3 is 1.5 points above what CLIP_benchmark measured.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from grounding.interfaces.common import open_model
from grounding.tasks.benchmark import Pair, run_benchmark

PUBLISHED = {"ViT-B-32:openai": {"imagenet": 63.33, "cars": 59.41, "country211": 17.15, "cifar10": 89.82,
                                 "cifar100": 64.53}}  # CLIP_benchmark's measurement: the check
PAPER = {"ViT-B-32:openai": {"imagenet": 63.2, "cars": 59.4, "country211": 17.1, "cifar10": 91.3,
                             "cifar100": 65.1}}  # shown beside it
DATASETS = ("imagenet", "cars", "country211", "cifar10", "cifar100")
LECTURE = {"cars": "Honda Accord Coupe 2012", "country211": "Belize"}  # the slides' two examples
TOLERANCE = 0.5  # points


def compare(measured: dict[str, float], published: dict[str, float]) -> list[tuple[str, float, float, bool]]:
    """(dataset, published, measured, within the tolerance) for each measured dataset, in points."""
    return [(name, published[name], value, abs(value - published[name]) <= TOLERANCE)
            for name, value in measured.items() if name in published]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=next(iter(PUBLISHED)), choices=sorted(PUBLISHED))
    for name in DATASETS:
        parser.add_argument(f"--{name}", metavar="PATH", help=f"the {name} dataset (README: Datasets)")
    parser.add_argument("--out", type=Path, default=Path("runs/reproduce"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    specs = {name: f"{name}:{getattr(args, name)}" for name in PUBLISHED[args.model] if getattr(args, name)}
    if not specs:
        parser.error("give at least one dataset")
    records = run_benchmark([args.model], list(specs.values()), args.out,
                            lambda name: open_model(name, args.device), 64, args.workers, cards=True)
    measured = {name: 100 * r["metrics"]["acc1"] for name, r in zip(specs, records)}
    table = Table("dataset", "CLIP_benchmark top-1", "measured", "difference", "CLIP paper",
                  title=f"{args.model}, zero-shot")
    results = compare(measured, PUBLISHED[args.model])
    paper = PAPER.get(args.model, {})
    for name, published, value, ok in results:
        table.add_row(name, f"{published:.2f}", f"{value:.2f}", f"[{'green' if ok else 'red'}]{value - published:+.2f}",
                      f"{paper[name]:.1f}" if name in paper else "")
    console = Console()
    console.print(table)
    for name, label in LECTURE.items():
        if name in specs:
            pair = Pair(args.model, specs[name])
            rows = [json.loads(line) for line in (args.out / pair.name / "predictions.jsonl").read_text().splitlines()]
            for row in [r for r in rows if r["label"] == label][:3]:
                console.print(f"correct label: {row['label']}    correct rank: {row['rank']}    "
                              f"correct probability: {row['probability']:.2%}    ({row['path']})")
    off = [name for name, _, _, ok in results if not ok]
    if off:
        console.print(f"more than {TOLERANCE} points off: {', '.join(off)}")
    return 1 if off else 0


if __name__ == "__main__":
    sys.exit(main())
