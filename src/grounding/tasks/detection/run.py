"""The `train-detect` job: the detector, then its mAP, written to OUT/eval/summary.json: on new
scenes of the seen colour-shape pairs, on scenes holding a held-out pair and on scenes drawn by
another renderer, each queried with all 24 pairs; or, for a COCO file, on the fifth of its images kept out of training."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ...files import write_json_atomic
from ...training.checkpoint import RunFolder
from ..options import DetectOptions
from .data import SyntheticBoxes, drawn_otherwise, open_boxes
from .evaluate import average_precision, detect_examples, referring_accuracy
from .train import train_detector


def evaluate_boxes(model, examples: list, classes: list[str]) -> dict:
    """mAP on a user's boxed images, queried with its classes."""
    return {"held-out images": {**average_precision(examples, detect_examples(model, examples, classes), classes),
                                "images": len(examples)}}


def evaluate_detector(model, seed: int, size: int = 500) -> dict:
    """mAP on `size` new scenes of each kind (the held-out pairs' AP apart from the seen ones'),
    and on the new scenes of seen pairs drawn by another renderer."""
    report = {}
    for name, split in (("held-out scenes", "train"), ("held-out combinations", "held_out"),
                        ("another renderer", "train")):
        data = SyntheticBoxes(seed=seed + 1000, split=split)  # new scenes, queried with every pair
        examples = data.batch(0, size)
        if name == "another renderer":
            rng = np.random.default_rng(seed + 2000)
            examples = [drawn_otherwise(e, rng) for e in examples]
        queries = data.seen + data.unseen
        found = detect_examples(model, examples, queries)
        report[name] = average_precision(examples, found, queries, {"seen pairs": data.seen, "held-out pairs": data.unseen})
        report[name]["images"] = size
        report[name]["referring"] = referring_accuracy(model, examples)
    return report


def run_train_detect(options: DetectOptions, out: str | Path, show_progress: bool = True, overwrite: bool = False,
                     eval_size: int = 500) -> dict:
    """OUT is locked while it runs, and refused if it holds other files than a run's, unless
    `overwrite`."""
    RunFolder(out).check_out(overwrite)
    with RunFolder(out).claimed("grounding train-detect"):
        data, held = open_boxes(options.data, options.loop.seed)
        model = train_detector(options, out, data, show_progress=show_progress)
        results = (evaluate_detector(model, options.loop.seed, eval_size) if held is None
                   else evaluate_boxes(model, held, data.classes))
        write_json_atomic(Path(out) / "eval" / "summary.json", {"options": dataclasses.asdict(options),
                                                               "results": results})
    return results
