"""The `zeroshot` and `probe` jobs: from a model and a dataset spec to files on disk."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.benchmarks import training_split
from ..data.datasets import open_dataset
from ..data.examples import Dataset
from ..data.images import BATCH_SIZE, WORKERS
from ..data.specs import parse_spec
from ..errors import BadInput
from ..files import refuse_foreign, write_json_atomic
from ..inference.encode import cached_text_classifier
from ..inference.templates import resolve_templates
from ..models import CLIP
from . import probe as probes
from .predict import predict_zero_shot
from .report import example_records, export_cards, summarize, write_html, write_predictions


def evaluate_zero_shot(model: CLIP, dataset: Dataset, templates: tuple[str, ...], out: Path,
                       batch_size: int = BATCH_SIZE, workers: int = WORKERS, cards: bool = False, cache: bool = True,
                       show_progress: bool = True, title: str | None = None) -> dict:
    """Writes OUT/summary.json, OUT/predictions.jsonl, OUT/report.html (and OUT/cards/*.png); an
    OUT holding anything else is refused before any work."""
    refuse_foreign(out, False, {"summary.json", "predictions.jsonl", "report.html", "cards"},
                   "choose a new or empty --out (or one an earlier zeroshot wrote)")
    out.mkdir(parents=True, exist_ok=True)
    predictions = predict_zero_shot(model, dataset, templates, cache, batch_size, workers, show_progress)
    summary = summarize(dataset, predictions)
    summary["templates"] = list(templates)
    summary["skipped_files"] = predictions.skipped
    records = example_records(dataset, predictions)
    write_json_atomic(out / "summary.json", summary)
    write_predictions(out / "predictions.jsonl", records)
    write_html(out / "report.html", dataset, predictions, summary, records,
               title or f"Zero-shot on {dataset.name}")
    if cards:
        export_cards(out / "cards", dataset, records)
    return summary


def _train_split(spec: str, dataset: Dataset, seed: int) -> tuple[Dataset, Dataset]:
    """(training pool, test set): a dataset's own training split where it has one, else a seeded
    half of the examples each."""
    parsed = parse_spec(spec, "dataset")
    if parsed.kind == "fashion-mnist":
        return open_dataset("fashion-mnist:train"), dataset
    if own := training_split(parsed):
        return open_dataset(own), dataset
    if parsed.kind == "synthetic":
        return open_dataset(str(parsed.with_options(seed=parsed.option("seed", 1) + 1000))), dataset
    order = np.random.default_rng(seed).permutation(len(dataset))
    half = len(order) // 2
    return dataset.subset(order[:half], dataset.name + " (train half)"), dataset.subset(order[half:])


def run_probe(model: CLIP, spec: str, shots: list[int | None], train_limit: int = 5000, seed: int = 0,
              workers: int = WORKERS) -> list[dict]:
    """Linear-probe accuracy for each K in `shots` (None: all training examples), each beside the
    zero-shot top-1 on the same test examples (from the same features, the dataset's templates)."""
    dataset = open_dataset(spec)
    if dataset.multi_label:
        raise BadInput(f"{spec}: a linear probe needs single-label data")
    train, test = _train_split(spec, dataset, seed)
    if len(train) > train_limit:
        train = train.subset(np.sort(np.random.default_rng(seed).permutation(len(train))[:train_limit]))
    train_x, train_y = probes.features(model, train, workers=workers)
    test_x, test_y = probes.features(model, test, workers=workers)
    classifier = cached_text_classifier(model, dataset.classes, resolve_templates(None, dataset.templates))
    zero_shot = float(((test_x @ classifier.float().cpu().numpy()).argmax(axis=1) == test_y).mean())
    results = [probes.probe(train_x, train_y, test_x, test_y, len(dataset.classes), k, seed) for k in shots]
    return [dict(r, zero_shot_top1=zero_shot) for r in results]


def load_summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())
