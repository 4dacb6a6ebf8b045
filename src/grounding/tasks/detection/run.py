"""The `train-detect` job: the detector, then its mAP on new scenes of the seen colour-shape
pairs and on scenes holding a held-out pair, each queried with all 24 pairs, written to
OUT/eval/summary.json."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ...files import write_json_atomic
from ...training.checkpoint import RunFolder
from ..options import DetectOptions
from .data import SyntheticBoxes
from .evaluate import average_precision, detect_examples
from .train import train_detector


def evaluate_detector(model, seed: int, size: int = 500) -> dict:
    """mAP on `size` new scenes of each kind; the held-out pairs' AP apart from the seen ones'."""
    report = {}
    for name, split in (("held-out scenes", "train"), ("held-out combinations", "held_out")):
        data = SyntheticBoxes(seed=seed + 1000, split=split)  # new scenes, queried with every pair
        examples = data.batch(0, size)
        queries = data.seen + data.unseen
        found = detect_examples(model, examples, queries)
        report[name] = average_precision(examples, found, queries, {"seen pairs": data.seen, "held-out pairs": data.unseen})
        report[name]["images"] = size
    return report


def run_train_detect(options: DetectOptions, out: str | Path, show_progress: bool = True, overwrite: bool = False,
                     eval_size: int = 500) -> dict:
    """OUT is locked while it runs, and refused if it holds other files than a run's, unless
    `overwrite`."""
    RunFolder(out).check_out(overwrite)
    with RunFolder(out).claimed("grounding train-detect"):
        model = train_detector(options, out, show_progress=show_progress)
        results = evaluate_detector(model, options.loop.seed, eval_size)
        write_json_atomic(Path(out) / "eval" / "summary.json", {"options": dataclasses.asdict(options),
                                                               "results": results})
    return results
