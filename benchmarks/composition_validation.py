"""Validation figures for choosing a training recipe on the built-in world (docs/tasks.md, "Held-out
pairs"), drawn apart from the demo's test figures: zero-shot on 50 new images a label (seed 7, 200
of them the held-out colour-shape pairs, against the demo's 40) and the swap test on 1,000 new
two-object scenes (seed 11) per kind of swap. One image of the held-out pairs is 0.5 points here,
2.5 in the demo's figure.

    python benchmarks/composition_validation.py runs/a runs/b [more runs ...]
"""
from __future__ import annotations

import argparse

import torch

from grounding.data.composition import synthetic_swaps
from grounding.data.synthetic import World
from grounding.demo import pair_accuracies, zero_shot
from grounding.evaluation.compositionality import contest_scores
from grounding.saved import load

KINDS = ("attribute", "object", "relation, horizontal", "relation, vertical", "all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="CLIP models trained on the built-in world")
    args = parser.parse_args()
    torch.set_num_threads(2)
    world = World()
    swaps = synthetic_swaps(world, 1000, seed=11)
    print("| run | top-1 all | seen pairs | held-out pairs | " + " | ".join(f"{k} swap" for k in KINDS) + " |")
    print("|---" * (4 + len(KINDS)) + "|")
    for run in args.runs:
        model = load(run)
        zero = pair_accuracies(*zero_shot(model, "synthetic:seed=7,per_label=50"), world)
        scores = contest_scores(model, swaps)
        figures = [zero[k] for k in ("top1", "top1_seen_pairs", "top1_unseen_pairs")]
        figures += [scores[k]["accuracy"] for k in KINDS]
        print(f"| {run} | " + " | ".join(f"{x:.1%}" for x in figures) + " |", flush=True)


if __name__ == "__main__":
    main()
