"""`grounding benchmark`: several models on several datasets, one zero-shot evaluation a pair:
classification (zeroshot's) or, for the retrieval sets (coco:, flickr30k:, a wds: set of type
retrieval), retrieval both ways (retrieval-eval's).

    OUT/MODEL__DATASET.json       the pair's result in CLIP_benchmark's format (dataset, model,
                                  pretrained, task, metrics: acc1, acc5, mean_per_class_recall;
                                  or image_ and text_retrieval_recall@1/5/10), written last, so
                                  that its presence means the pair is done
    OUT/MODEL__DATASET/           the pair's summary.json and per-example records (a report.html
                                  for classification)
    OUT/summary.json              every finished pair's figures

A killed run, started again, skips the finished pairs. Each model is loaded once, for all the
datasets it still has to do."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..data.datasets import open_dataset
from ..files import folder_lock, refuse_foreign, write_json_atomic
from ..inference.templates import resolve_templates
from ..progress import Progress
from ..evaluation.run import evaluate_zero_shot
from .retrieval.evaluate import retrieval_eval


@dataclass(frozen=True)
class Pair:
    model: str
    dataset: str

    @property
    def name(self) -> str:
        return f"{slug(self.model)}__{slug(self.dataset)}"


def slug(text: str) -> str:
    """A name safe as a file name: runs of anything else become one underscore."""
    return re.sub(r"[^A-Za-z0-9+-]+", "_", text).strip("_") or "_"


def task_of(dataset: str) -> str:
    """CLIP_benchmark's name of the task a dataset SPEC serves (checking the SPEC on the way)."""
    from ..data import benchmarks
    from ..data.specs import parse_spec

    kind = dataset.partition(":")[0]
    retrieval = kind in ("coco", "flickr30k") or (
        kind == "wds" and benchmarks.wds_type(parse_spec(dataset, "pairs", "--dataset")) == "retrieval")
    if retrieval:
        return "zeroshot_retrieval"
    parse_spec(dataset, "dataset", "--dataset")
    return "zeroshot_classification"


def clip_benchmark_record(pair: Pair, summary: dict) -> dict:
    """The pair's figures as CLIP_benchmark writes them (`model`/`pretrained` split at the colon
    of open_clip's MODEL:PRETRAINED names)."""
    model, _, pretrained = pair.model.partition(":")
    if "text_to_image" in summary:  # retrieval; CLIP_benchmark's "image retrieval" finds images from text
        metrics = {f"{name}_retrieval_recall@{k}": summary[direction][f"recall@{k}"]
                   for name, direction in (("image", "text_to_image"), ("text", "image_to_text")) for k in (1, 5, 10)}
        return {"dataset": pair.dataset, "model": model, "pretrained": pretrained, "task": "zeroshot_retrieval",
                "metrics": metrics, "language": "en", "examples": summary["examples"],
                "skipped": len(summary["skipped"])}
    if summary["multi_label"]:
        metrics = {"mean_average_precision": summary["mean_average_precision"]}
    else:
        metrics = {"acc1": summary["top1"], "acc5": summary["top5"],
                   "mean_per_class_recall": summary["mean_per_class_recall"]}
    return {"dataset": pair.dataset, "model": model, "pretrained": pretrained, "task": "zeroshot_classification",
            "metrics": metrics, "language": "en", "examples": summary["examples"], "skipped": summary["skipped"]}


def run_benchmark(models: list[str], datasets: list[str], out: Path, open_model: Callable,
                  batch_size: int, workers: int, cards: bool = False, show_progress: bool = True) -> list[dict]:
    """Every model on every dataset (each with its own templates); the records of all pairs."""
    out = Path(out)
    refuse_foreign(out, False, {"*__*", "summary.json"},
                   "choose a new or empty --out (or one an earlier benchmark wrote, to finish it)")
    out.mkdir(parents=True, exist_ok=True)
    pairs = [Pair(m, d) for m in dict.fromkeys(models) for d in dict.fromkeys(datasets)]
    with folder_lock(out, "grounding benchmark"):
        todo = [p for p in pairs if not (out / f"{p.name}.json").is_file()]
        with Progress("benchmark", len(pairs), len(pairs) - len(todo), show_progress, every=0) as progress:
            for model_name, model_pairs in _by_model(todo):
                model = open_model(model_name)
                for pair in model_pairs:
                    if task_of(pair.dataset) == "zeroshot_retrieval":
                        summary = retrieval_eval(model, pair.dataset, out / pair.name, workers, show_progress=False)
                    else:
                        data = open_dataset(pair.dataset)
                        summary = evaluate_zero_shot(model, data, resolve_templates(None, data.templates),
                                                     out / pair.name, batch_size, workers, cards,
                                                     show_progress=False, title=f"{pair.model} on {pair.dataset}")
                    write_json_atomic(out / f"{pair.name}.json", clip_benchmark_record(pair, summary))
                    progress.advance(1, f"{pair.model} on {pair.dataset}")
        records = [json.loads((out / f"{p.name}.json").read_text()) for p in pairs]
        write_json_atomic(out / "summary.json", records)
    return records


def _by_model(pairs: list[Pair]) -> Iterator[tuple[str, list[Pair]]]:
    for model in dict.fromkeys(p.model for p in pairs):
        yield model, [p for p in pairs if p.model == model]
