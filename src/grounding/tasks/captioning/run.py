"""The `train-caption` job: the captioner and its evaluation beside the nearest-neighbour
caption, on held-out scenes and on scenes with held-out colour-shape pairs (or on a CSV or the
Tux Paint stamps), written to OUT/eval/SET/."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ...files import write_json_atomic
from ...training.checkpoint import RunFolder
from ..options import CaptionOptions
from .data import SyntheticCaptions, caption_examples, open_captions
from .evaluate import evaluate_captions
from .train import train_captioner


def synthetic_sets(seed: int, size: int = 500) -> dict[str, list]:
    return {"held-out scenes": SyntheticCaptions(seed=seed + 1000, split="train").batch(0, size),
            "held-out combinations": SyntheticCaptions(seed=seed + 1000, split="held_out").batch(0, size)}


def run_train_caption(options: CaptionOptions, out: str | Path, eval_spec: str | None = None,
                      pool_size: int = 2000, show_progress: bool = True, overwrite: bool = False,
                      **decoding) -> dict:
    """Evaluates on `eval_spec` (csv:PATH or tuxpaint) if given, else on new synthetic scenes, or
    on the images of a CSV / Tux Paint training set that were held out of training. The
    nearest-neighbour baseline searches the training images (for the synthetic world, the first
    `pool_size` scenes training saw). OUT is locked while it runs, and refused if it holds other
    files than a run's, unless `overwrite`."""
    RunFolder(out).check_out(overwrite)
    with RunFolder(out).claimed("grounding train-caption"):
        return _train_and_evaluate(options, Path(out), eval_spec, pool_size, show_progress, decoding)


def _train_and_evaluate(options: CaptionOptions, out: Path, eval_spec: str | None, pool_size: int,
                        show_progress: bool, decoding: dict) -> dict:
    data, held_out = open_captions(options.data, options.loop.seed)
    model = train_captioner(options, out, data, show_progress=show_progress)
    if held_out is None:
        pool = [e for step in range(pool_size // 250) for e in data.batch(step, 250)]
        sets = synthetic_sets(options.loop.seed)
    else:
        pool, sets = data.examples, {"held-out images": held_out}
    if eval_spec:
        sets = {eval_spec.split(":")[0]: caption_examples(eval_spec)}
    results = {}
    for name, examples in sets.items():
        folder = out / "eval" / name.replace(" ", "-")
        results[name] = evaluate_captions(model, examples, pool, folder, **decoding)
    write_json_atomic(out / "eval" / "summary.json", {"options": dataclasses.asdict(options), "results": results})
    return results
