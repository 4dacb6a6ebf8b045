"""Zero-shot classification: `classify` (either engine), `zeroshot` (a dataset, with its report),
`benchmark` (models x datasets) and `probe`."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ...data.images import BATCH_SIZE, WORKERS
from ...errors import about
from ...inference.engine import ENGINES
from ..common import App, BatchSize, Compile, Device, Precision, Workers, choice, open_model, say_precision

Engine = choice("Engine", *ENGINES)

app = App()


def _dataset(spec: str):
    from ...data.datasets import open_dataset

    with about("--dataset"):
        return open_dataset(spec)


def _labels(labels: Optional[str], labels_file: Optional[Path]) -> list[str]:
    from ...data.examples import warn_label_collisions
    from ...files import read_lines

    if (labels is None) == (labels_file is None):
        raise typer.BadParameter("give exactly one of --labels or --labels-file")
    if labels_file is not None:
        with about("--labels-file"):
            names = read_lines(labels_file, "one label a line")
    else:
        names = [part.strip() for part in labels.split(",")]
    names = [n for n in names if n]
    if not names:
        raise typer.BadParameter("the label list is empty")
    warn_label_collisions(names)
    return names



@app.command(short_help="Classify images zero-shot from label text.")
def classify(
    images: list[str] = typer.Argument(..., metavar="IMAGE", help="Image files, folders (searched recursively) or "
                                                                  "patterns such as 'photos/**/*.jpg'."),
    model: str = typer.Option("lit-minilm-effnet", help="A saved model or run folder, a checkpoint, or the built-in "
                              "model."),
    labels: Optional[str] = typer.Option(None, help='Comma-separated labels, e.g. "cat,dog,spoon".'),
    labels_file: Optional[Path] = typer.Option(None, help="A file with one label per line."),
    templates: Optional[str] = typer.Option(None, help="A template file (one per line, with {}) or a built-in "
                                            "set: default, synthetic, fashion, flags, emoji."),
    top_k: int = typer.Option(5, min=1, help="How many labels to show per image."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object per image instead of text."),
    csv_output: bool = typer.Option(False, "--csv", help="Print a CSV: path, then label and probability per rank."),
    batch_size: BatchSize = BATCH_SIZE,
    workers: Workers = WORKERS,
    device: Device = "auto",
    precision: Precision = "fp32",
    compile: Compile = False,
    engine: Engine = typer.Option("auto", help="auto: onnxruntime for an exported folder (grounding export), and "
                                  "for the built-in model on up to --batch-size images on the CPU in fp32, starting "
                                  "in under a second (its exported copy is made on first use, once, about 20 s); "
                                  "torch: always PyTorch; onnx: always onnxruntime."),
) -> None:
    """Classify images zero-shot: each image's top labels with their probabilities. Exit code 1
    when some images could not be read (each is named on stderr)."""
    import csv
    import json

    from ...data.inputs import expand_inputs
    from ...inference.engine import Request, open_classifier
    from ...inference.templates import resolve_templates
    from ...progress import Progress

    if json_output and csv_output:
        raise typer.BadParameter("give --json or --csv, not both")
    names = _labels(labels, labels_file)
    prompts = resolve_templates(templates)
    paths = expand_inputs(images)
    request = Request(model, engine.value, device, precision, compile, len(paths), batch_size)
    classifier = open_classifier(request, note=lambda line: typer.echo(line, err=True))
    if classifier.engine == "torch":
        say_precision(classifier.runtime)
    results = classifier.classify_files(paths, classifier.classifier(names, prompts), batch_size, workers)
    k = min(top_k, len(names))
    writer = csv.writer(sys.stdout) if csv_output else None
    if writer:
        writer.writerow(["path", *(f"{what}_{r}" for r in range(1, k + 1) for what in ("label", "probability"))])
    failed = 0
    with Progress("classify", len(paths), after=2) as progress:  # a bar only when it takes time
        for path, probs, error in results:
            progress.advance()
            if error:
                progress.say(f"skipped: {error}")
                failed += 1
                continue
            top = [(names[i], float(probs[i])) for i in probs.argsort()[::-1][:k]]
            if writer:
                writer.writerow([str(path), *(f"{x:.6f}" if isinstance(x, float) else x for pair in top for x in pair)])
            elif json_output:
                print(json.dumps({"path": str(path), "top": [{"label": n, "probability": p} for n, p in top]}))
            else:
                print(f"{path}: " + ", ".join(f"{n} {p:.1%}" for n, p in top))
    classifier.after(note=lambda line: typer.echo(line, err=True))
    if failed:
        raise typer.Exit(1)



@app.command(short_help="Evaluate zero-shot accuracy on a dataset.")
def zeroshot(
    model: str = typer.Option(..., help="A saved model or run folder, or a preset name."),
    dataset: str = typer.Option(..., help="folder:PATH, csv:PATH, synthetic[:OPTS], fashion-mnist, flags, "
                                "emoji:STYLE[:PATH], iconify:SET[:PATH] or photos (README: Datasets)."),
    out: Path = typer.Option(Path("runs/zeroshot"), help="Where summary.json, predictions.jsonl and report.html go."),
    templates: Optional[str] = typer.Option(None, help="A template file or a built-in set; by default the "
                                            "dataset's own set."),
    batch_size: BatchSize = BATCH_SIZE,
    workers: Workers = WORKERS,
    limit: Optional[int] = typer.Option(None, min=1, help="Evaluate a seeded random sample of this many examples."),
    cards: bool = typer.Option(False, "--cards", help="Also export one PNG card per example into OUT/cards."),
    no_cache: bool = typer.Option(False, "--no-cache",
                                  help="Re-encode the label texts even if a cached classifier exists."),
    device: Device = "auto",
    precision: Precision = "fp32",
    compile: Compile = False,
) -> None:
    """Evaluate zero-shot classification on a labelled dataset, with a report to look at."""
    import numpy as np

    from ...evaluation.run import evaluate_zero_shot
    from ...inference.templates import resolve_templates

    data = _dataset(dataset)
    if limit and limit < len(data):
        data = data.subset(np.sort(np.random.default_rng(0).permutation(len(data))[:limit]))
    with about("--templates"):
        prompts = resolve_templates(templates, data.templates)
    clip = open_model(model, device, precision, compile)
    summary = evaluate_zero_shot(clip, data, prompts, out, batch_size, workers, cards, not no_cache)
    if summary["multi_label"]:
        typer.echo(f"mean average precision: {summary['mean_average_precision']:.3f} "
                   f"over {summary['labels']} labels, {summary['examples']} images")
    else:
        lo, hi = summary["top1_ci"]
        typer.echo(f"top-1 {summary['top1']:.2%} (95% CI {lo:.2%}-{hi:.2%}), top-5 {summary['top5']:.2%}, "
                   f"mean per-class recall {summary['mean_per_class_recall']:.2%}, "
                   f"ECE {summary['calibration']['ece']:.3f}, chance {summary['chance_top1']:.2%}")
    if summary["skipped"]:
        typer.echo(f"skipped {summary['skipped']} unreadable images (listed in {out / 'summary.json'})")
    typer.echo(f"report: {out / 'report.html'}  predictions: {out / 'predictions.jsonl'}")



@app.command(short_help="Zero-shot accuracy of several models on several datasets.")
def benchmark(
    model: list[str] = typer.Option(..., metavar="MODEL", help="A model (any --model form: a published name, a hub repo, a folder); "
                                    "give --model again for more."),
    dataset: list[str] = typer.Option(..., metavar="SPEC", help="A dataset (any --dataset SPEC: wds:DIR, imagenet:DIR, cars:DIR, "
                                      "...); give --dataset again for more."),
    out: Path = typer.Option(Path("runs/benchmark"), help="Where each pair's CLIP_benchmark-style JSON, report and "
                             "predictions go; run the same command again to finish a killed run."),
    batch_size: BatchSize = BATCH_SIZE,
    workers: Workers = WORKERS,
    cards: bool = typer.Option(False, "--cards", help="Also export one PNG card per example of each pair."),
    device: Device = "auto",
    precision: Precision = "fp32",
) -> None:
    """Evaluate every model on every dataset zero-shot, each dataset with its own class names and
    templates (the CLIP paper's for the standard benchmarks), and print the table of top-1."""
    from rich.console import Console
    from rich.table import Table

    from ...tasks.benchmark import run_benchmark, task_of

    models, datasets = list(dict.fromkeys(model)), list(dict.fromkeys(dataset))
    for spec in datasets:
        task_of(spec)  # every spec checked before the first model loads
    records = run_benchmark(models, datasets, out, lambda name: open_model(name, device, precision), batch_size,
                            workers, cards)
    table = Table("model", *datasets, title="zero-shot top-1 (mAP for multi-label sets, text-to-image R@1 for "
                  "retrieval sets)")
    for n, name in enumerate(models):  # the records come model by model, in the datasets' order
        row = records[n * len(datasets):(n + 1) * len(datasets)]
        table.add_row(name, *(f"{next(iter(r['metrics'].values())):.2%}" for r in row))
    Console().print(table)
    typer.echo(f"results: {out}/*.json (CLIP_benchmark's format), reports in {out}/MODEL__DATASET/")


@app.command(short_help="Linear probes beside zero-shot accuracy.")
def probe(
    model: str = typer.Option(..., help="A saved model or run folder, or a preset name."),
    dataset: str = typer.Option(..., help="A single-label dataset spec (as for zeroshot)."),
    shots: list[int] = typer.Option([1, 4, 16], min=1, help="Examples per class to train on; repeat the option. "
                                    "Full data is always added."),
    train_limit: int = typer.Option(5000, min=1, help="At most this many training-pool examples are encoded."),
    seed: int = typer.Option(0, min=0, help="Seeds the splits and the choice of shots."),
    workers: Workers = WORKERS,
    device: Device = "auto",
    precision: Precision = "fp32",
) -> None:
    """Linear probe on frozen features (K-shot and full), beside zero-shot accuracy."""
    from rich.console import Console
    from rich.table import Table

    from ...evaluation.run import run_probe

    _dataset(dataset)  # a bad spec is a one-line error before the model loads
    clip = open_model(model, device, precision)
    results = run_probe(clip, dataset, [*shots, None], train_limit, seed, workers)
    table = Table("shots per class", "train examples", "L2", "probe accuracy", "zero-shot top-1")
    for r in results:
        table.add_row(str(r["shots"]), str(r["train_examples"]), f"{r['l2']:.0e}", f"{r['test_accuracy']:.2%}",
                      f"{r['zero_shot_top1']:.2%}")
    Console().print(table)


@app.command("compose-eval", short_help="Composition: true captions against the same words rearranged.")
def compose_eval(
    model: str = typer.Option("lit-minilm-effnet", help="A saved model or run folder, a published name, or a preset."),
    dataset: str = typer.Option("synthetic", help="synthetic (the built-in world's swaps), winoground:DIR, "
                                "sugarcrepe:DIR or aro:DIR, in their published layouts (docs/tasks.md)."),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    batch_size: BatchSize = BATCH_SIZE,
    device: Device = "auto",
    precision: Precision = "fp32",
) -> None:
    """How often the model prefers the true caption to the same words in a wrong arrangement,
    per kind of rearrangement (the built-in world: attribute, object and relation swaps;
    SugarCrepe: its seven files; Winoground: text, image and group scores per tag)."""
    import json

    from rich.console import Console
    from rich.table import Table

    from ...data.composition import open_contests
    from ...evaluation.compositionality import contest_scores

    contests = open_contests(dataset)
    report = contest_scores(open_model(model, device, precision), contests, batch_size)
    if json_output:
        typer.echo(json.dumps(report, indent=2))
        return
    metrics = [m for m in ("accuracy", "chance", "text", "image", "group") if any(m in r for r in report.values())]
    table = Table("kind", "count", *metrics, title=f"{model} on {dataset}")
    for kind, row in report.items():
        table.add_row(kind, str(row["count"]), *(f"{row[m]:.1%}" if m in row else "" for m in metrics))
    Console().print(table)
