"""The `train-vqa` job: the model, its question-only twin, and their evaluation beside the
majority answer per question type, on held-out scenes and on scenes with held-out colour-shape
pairs (or on a CSV), written to OUT/eval/SET/."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ...files import write_json_atomic
from ...training.checkpoint import RunFolder
from ..options import VQAOptions
from .data import SyntheticQA, csv_questions, open_qa
from .evaluate import evaluate_vqa, majority_answers
from .train import train_vqa


def synthetic_sets(seed: int, size: int = 1000) -> dict[str, list]:
    return {"held-out scenes": SyntheticQA(seed=seed + 1000, split="train").batch(0, size),
            "held-out combinations": SyntheticQA(seed=seed + 1000, split="held_out").batch(0, size)}


def run_train_vqa(options: VQAOptions, out: str | Path, eval_spec: str | None = None, baselines: bool = True,
                  show_progress: bool = True, overwrite: bool = False) -> dict:
    """Evaluates on `eval_spec` (csv:PATH) if given, else on new synthetic scenes or on the rows
    of a training CSV that were held out of training. OUT is locked while it runs, and refused if
    it holds other files than a run's, unless `overwrite`."""
    RunFolder(out).check_out(overwrite)
    with RunFolder(out).claimed("grounding train-vqa"):
        return _train_and_evaluate(options, Path(out), eval_spec, baselines, show_progress)


def _train_and_evaluate(options: VQAOptions, out: Path, eval_spec: str | None, baselines: bool,
                        show_progress: bool) -> dict:
    data, held_out = open_qa(options.data, options.loop.seed, relation_share=options.relation_share)
    model = train_vqa(options, out, data, show_progress=show_progress)
    blind = train_vqa(options, out / "blind", data, blind=True, show_progress=show_progress) if baselines else None
    majority = majority_answers(data) if baselines else None
    sets = synthetic_sets(options.loop.seed) if held_out is None else {"held-out rows": held_out}
    if eval_spec:
        sets = {"eval": csv_questions(eval_spec.removeprefix("csv:"))}
    results = {}
    for name, examples in sets.items():
        folder = out / "eval" / name.replace(" ", "-")
        results[name] = evaluate_vqa(model, examples, folder, blind, majority)
    write_json_atomic(out / "eval" / "summary.json", {"options": dataclasses.asdict(options), "results": results})
    return results
