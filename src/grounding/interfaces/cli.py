"""The `grounding` command line."""
from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer

from ..data.images import BATCH_SIZE, WORKERS
from ..errors import BadInput, about
from ..inference.engine import ENGINES
from ..training.options import TrainConfig
from .common import (
    App,
    BatchSize,
    Compile,
    Device,
    ImageTower,
    TextTower,
    Workers,
    choice,
    default_of,
    given,
)
from .common import Precision as InferencePrecision

app = App(add_completion=False,
          help="Ground language in images: train CLIP-style models and classify images zero-shot.")


Precision = choice("Precision", "fp32", "bf16")
Loss = choice("Loss", "clip", "siglip")
IndexKind = choice("IndexKind", "flat", "hnsw", "ivfpq")
GroundMethod = choice("GroundMethod", "occlusion", "similarity")
Format = choice("Format", "hf", "open_clip", "grounding")
TokenizerChoice = choice("TokenizerChoice", "openai", "minilm", "train")
Engine = choice("Engine", *ENGINES)


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        typer.echo(f"grounding {version('grounding')}")
        raise typer.Exit()


@app.callback()
def _setup(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                        help="Print the version and exit.")) -> None:
    """Warnings print as one plain line each (`warning: ...`), not as Python's file:line form."""
    warnings.showwarning = lambda message, *_, **__: print(f"warning: {message}", file=sys.stderr)


@app.command(short_help="Train or fine-tune a CLIP model.")
def train(
    out: Optional[Path] = typer.Option(None, help="Run folder: checkpoints, metrics.jsonl, skipped.jsonl and the "
                                       "latest weights."),
    resume: Optional[Path] = typer.Option(None, help="Continue the run in this folder from its newest checkpoint "
                                          "(--steps, --workers and --device may change)."),
    config: Optional[Path] = typer.Option(None, help="A JSON file of training options (a run's train.json is one); "
                                          "options given here override it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write a new run into an --out that holds other files "
                                                              "(a saved model, anything but a run)."),
    data: Optional[str] = default_of(TrainConfig, "data"),
    architecture: Optional[str] = default_of(TrainConfig, "architecture"),
    init: Optional[str] = default_of(TrainConfig, "init"),
    init_activation: Optional[str] = default_of(TrainConfig, "init_activation"),
    tokenizer: Optional[TokenizerChoice] = default_of(TrainConfig, "tokenizer"),
    image_tower: Optional[ImageTower] = default_of(TrainConfig, "image_tower"),
    text_tower: Optional[TextTower] = default_of(TrainConfig, "text_tower"),
    loss: Optional[Loss] = default_of(TrainConfig, "loss"),
    steps: Optional[int] = default_of(TrainConfig, "steps"),
    batch_size: Optional[int] = default_of(TrainConfig, "batch_size"),
    accum: Optional[int] = default_of(TrainConfig, "accum"),
    lr: Optional[float] = default_of(TrainConfig, "lr"),
    warmup: Optional[int] = default_of(TrainConfig, "warmup"),
    weight_decay: Optional[float] = default_of(TrainConfig, "weight_decay"),
    grad_clip: Optional[float] = default_of(TrainConfig, "grad_clip"),
    precision: Optional[Precision] = default_of(TrainConfig, "precision"),
    device: Optional[str] = default_of(TrainConfig, "device"),
    workers: Optional[int] = default_of(TrainConfig, "workers"),
    shuffle_buffer: Optional[int] = default_of(TrainConfig, "shuffle_buffer"),
    max_bad_fraction: Optional[float] = default_of(TrainConfig, "max_bad_fraction"),
    hard_negatives: Optional[bool] = default_of(TrainConfig, "hard_negatives"),
    lock_image: Optional[bool] = default_of(TrainConfig, "lock_image"),
    lock_image_unlocked_layers: Optional[int] = default_of(TrainConfig, "lock_image_unlocked_layers"),
    lock_text: Optional[bool] = default_of(TrainConfig, "lock_text"),
    lock_text_unlocked_layers: Optional[int] = default_of(TrainConfig, "lock_text_unlocked_layers"),
    epochs: Optional[float] = default_of(TrainConfig, "epochs"),
    samples: Optional[int] = default_of(TrainConfig, "samples"),
    resampled: Optional[bool] = default_of(TrainConfig, "resampled"),
    gather_with_grad: Optional[bool] = default_of(TrainConfig, "gather_with_grad"),
    local_loss: Optional[bool] = default_of(TrainConfig, "local_loss"),
    grad_checkpointing: Optional[bool] = default_of(TrainConfig, "grad_checkpointing"),
    cache_features: Optional[bool] = default_of(TrainConfig, "cache_features"),
    eval_data: Optional[str] = default_of(TrainConfig, "eval_data"),
    eval_every: Optional[int] = default_of(TrainConfig, "eval_every"),
    eval_pairs: Optional[int] = default_of(TrainConfig, "eval_pairs"),
    eval_limit: Optional[int] = default_of(TrainConfig, "eval_limit"),
    seed: Optional[int] = default_of(TrainConfig, "seed"),
    save_every: Optional[int] = default_of(TrainConfig, "save_every"),
    keep: Optional[int] = default_of(TrainConfig, "keep"),
    log_every: Optional[float] = default_of(TrainConfig, "log_every"),
    tensorboard: Optional[bool] = default_of(TrainConfig, "tensorboard"),
    recipe: Optional[str] = typer.Option(None, help="A named recipe: lit-real makes the built-in model (three image "
                                         "heads over the pretrained EfficientNet-Lite0, into the pretrained "
                                         "MiniLM's space, trained in OUT/members from seeds --seed, +1, +2 and "
                                         "joined; README). Options given here change the recipe's."),
) -> None:
    """Train or fine-tune a CLIP model on your own image-text data (or the built-in world); kill
    it any time and --resume."""
    from ..training.distributed import World
    from ..training.trainer import train as run_training

    changes = given(locals(), TrainConfig)
    if recipe is not None:
        _train_recipe(recipe, out, changes)
        return
    if (out is None) == (resume is None):
        raise typer.BadParameter("give exactly one of --out (a new run) or --resume (an existing run)")
    if resume:
        if config:
            raise BadInput("--config starts a new run; a resumed run keeps the options in its train.json", "--config")
        run_training(None, None, resume, resume=True, changes=changes)
    else:
        options = TrainConfig.from_json(config) if config else TrainConfig()
        run_training(None, dataclasses.replace(options, **changes), out, overwrite=overwrite)
    if World.here().main:
        typer.echo(f"done: {out or resume} holds the latest weights (grounding.load('{out or resume}'))")


def _train_recipe(recipe: str, out: Optional[Path], changes: dict) -> None:
    from ..training.recipes import run_recipe

    if out is None:
        raise typer.BadParameter("give --out: the run folder (run the same command again to resume it)")
    with about("--recipe"):
        run_recipe(recipe, out, changes)
    typer.echo(f"done: grounding classify IMAGE --model {out} --labels 'a cat,a dog,...'")


@app.command(short_help="Train and show a small model, end to end.")
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Where the run, its checkpoints and the PNG cards go."),
    steps: int = typer.Option(300, help="Training steps; the default fits in under 5 minutes on 2 CPU cores."),
    examples: int = typer.Option(6, help="How many example results to print and draw as cards."),
    seed: int = typer.Option(0, help="Seeds training and the choice of examples."),
) -> None:
    """Train a small model on the built-in world, classify held-out images zero-shot, draw cards."""
    from ..demo import run_demo

    run_demo(out, steps=steps, n_examples=examples, seed=seed)


def _load_model(spec: str, device: str = "cpu", precision: str = "fp32", compile: bool = False):
    """inference.engine.load_model, saying on stderr what decided an `auto` precision."""
    from ..inference.engine import load_model

    model, runtime = load_model(spec, device, precision, compile)
    _say_precision(runtime)
    return model


def _say_precision(runtime) -> None:
    if runtime.why:
        typer.echo(f"precision: {runtime.precision} ({runtime.why})", err=True)


def _loadable(spec: str) -> bool:
    from ..config import PRESETS
    from ..builtin import BUILTIN

    return spec in PRESETS or spec in BUILTIN or Path(spec).exists()


def _dataset(spec: str):
    from ..data.datasets import open_dataset

    with about("--dataset"):
        return open_dataset(spec)


def _labels(labels: Optional[str], labels_file: Optional[Path]) -> list[str]:
    from ..data.datasets import warn_label_collisions

    if (labels is None) == (labels_file is None):
        raise typer.BadParameter("give exactly one of --labels or --labels-file")
    if labels_file is not None:
        if not labels_file.is_file():
            raise typer.BadParameter(f"{labels_file}: no such file", param_hint="--labels-file")
        names = [line.strip() for line in labels_file.read_text(encoding="utf-8").splitlines()]
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
    precision: InferencePrecision = "fp32",
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
    import time

    from rich.console import Console
    from rich.progress import Progress

    from ..data.inputs import expand_inputs
    from ..inference.engine import Request, open_classifier
    from ..inference.templates import resolve_templates

    if json_output and csv_output:
        raise typer.BadParameter("give --json or --csv, not both")
    names = _labels(labels, labels_file)
    prompts = resolve_templates(templates)
    paths = expand_inputs(images)
    request = Request(model, engine.value, device, precision, compile, len(paths), batch_size)
    classifier = open_classifier(request, note=lambda line: typer.echo(line, err=True))
    if classifier.engine == "torch":
        _say_precision(classifier.runtime)
    results = classifier.classify_files(paths, classifier.classifier(names, prompts), batch_size, workers)
    k = min(top_k, len(names))
    writer = csv.writer(sys.stdout) if csv_output else None
    if writer:
        writer.writerow(["path", *(f"{what}_{r}" for r in range(1, k + 1) for what in ("label", "probability"))])
    began, failed = time.perf_counter(), 0
    progress = Progress(console=Console(stderr=True), transient=True)
    task = progress.add_task("classify", total=len(paths), visible=False)
    with progress:
        for done, (path, probs, error) in enumerate(results, 1):
            progress.update(task, completed=done, visible=time.perf_counter() - began > 2)  # only when it takes time
            if error:
                progress.console.print(f"skipped: {error}", markup=False, highlight=False, soft_wrap=True)
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
    limit: Optional[int] = typer.Option(None, help="Evaluate a seeded random sample of this many examples."),
    cards: bool = typer.Option(False, "--cards", help="Also export one PNG card per example into OUT/cards."),
    no_cache: bool = typer.Option(False, "--no-cache",
                                  help="Re-encode the label texts even if a cached classifier exists."),
    device: Device = "auto",
    precision: InferencePrecision = "fp32",
    compile: Compile = False,
) -> None:
    """Evaluate zero-shot classification on a labelled dataset, with a report to look at."""
    import numpy as np

    from ..evaluation.run import evaluate_zero_shot
    from ..inference.templates import resolve_templates

    data = _dataset(dataset)
    if limit and limit < len(data):
        data = data.subset(np.sort(np.random.default_rng(0).permutation(len(data))[:limit]))
    with about("--templates"):
        prompts = resolve_templates(templates, data.templates)
    clip = _load_model(model, device, precision, compile)
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


@app.command(short_help="Linear probes beside zero-shot accuracy.")
def probe(
    model: str = typer.Option(..., help="A saved model or run folder, or a preset name."),
    dataset: str = typer.Option(..., help="A single-label dataset spec (as for zeroshot)."),
    shots: list[int] = typer.Option([1, 4, 16], help="Examples per class to train on; repeat the option. "
                                    "Full data is always added."),
    train_limit: int = typer.Option(5000, help="At most this many training-pool examples are encoded."),
    seed: int = typer.Option(0, help="Seeds the splits and the choice of shots."),
    workers: Workers = WORKERS,
    device: Device = "auto",
    precision: InferencePrecision = "fp32",
) -> None:
    """Linear probe on frozen features (K-shot and full), beside zero-shot accuracy."""
    from rich.console import Console
    from rich.table import Table

    from ..evaluation.run import run_probe

    _dataset(dataset)  # a bad spec is a one-line error before the model loads
    clip = _load_model(model, device, precision)
    results = run_probe(clip, dataset, [*shots, None], train_limit, seed, workers)
    table = Table("shots per class", "train examples", "L2", "probe accuracy", "zero-shot top-1")
    for r in results:
        table.add_row(str(r["shots"]), str(r["train_examples"]), f"{r['l2']:.0e}", f"{r['test_accuracy']:.2%}",
                      f"{r['zero_shot_top1']:.2%}")
    Console().print(table)


index_app = App(help="Build vector indexes over embedding stores.")
app.add_typer(index_app, name="index")
data_app = App(help="Prepare training data: webdataset shards for training at scale.",
               short_help="Prepare training data (webdataset shards).")
app.add_typer(data_app, name="data")


@data_app.command("shard", short_help="Write webdataset shards from any listed data.")
def data_shard(
    spec: str = typer.Argument(..., metavar="SPEC", help="Training pairs as train --data names them (csv:PATH, "
                                                         "folder:PATH, openclipart, emoji:STYLE, iconify:SET, "
                                                         "tuxpaint, joined with +)."),
    out: Path = typer.Option(..., help="A new or empty folder for the shards and manifest.json."),
    shard_size: int = typer.Option(1000, min=1, help="Samples per shard."),
) -> None:
    """Write webdataset shards (image, captions, metadata) from any training data that lists its
    images, with a manifest of counts, bytes and skipped files."""
    from ..data.shards import write_shards

    manifest = write_shards(spec, out, shard_size)
    typer.echo(f"{manifest['samples']} samples in {len(manifest['shards'])} shards ({manifest['bytes']:,} bytes), "
               f"{len(manifest['skipped'])} skipped (listed in {out / 'manifest.json'}); "
               f"train with --data '{manifest['train_with']}'")




@app.command(short_help="Encode images or texts into a store.")
def embed(
    model: str = typer.Option(..., help="A saved model or run folder, or a preset name."),
    out: Path = typer.Option(..., help="The embedding store's folder (sharded; a killed run resumes here)."),
    images: Optional[str] = typer.Option(None, help="A folder, folder:PATH, csv:PATH (an 'image' column, optional "
                                         "'caption'), tar:SHARDS-{000..009}.tar (webdataset), or any captioned "
                                         "images train --data lists (openclipart, emoji:STYLE, ...)."),
    texts: Optional[Path] = typer.Option(None, help="A file with one text per line, instead of --images."),
    shard_size: int = typer.Option(4096, help="Items per shard; each finished shard is kept on a restart."),
    batch_size: BatchSize = BATCH_SIZE,
    workers: Workers = WORKERS,
    device: Device = "auto",
    precision: InferencePrecision = "fp32",
    compile: Compile = False,
) -> None:
    """Encode a collection of images (or texts) into a sharded embedding store."""
    from ..tasks.retrieval.embed import embed_images, embed_texts

    if (images is None) == (texts is None):
        raise typer.BadParameter("give exactly one of --images or --texts")
    clip = _load_model(model, device, precision, compile)
    if images:
        store = embed_images(clip, images, out, model, shard_size, batch_size, workers)
    else:
        store = embed_texts(clip, texts, out, model, shard_size)
    _, keys, _, skipped = store.read()
    typer.echo(f"{len(keys)} embeddings in {out}" + (f"; skipped {len(skipped)} unreadable files:" if skipped else ""))
    for message in skipped:
        typer.echo(f"  {message}")


@index_app.command("build", short_help="Build a faiss index over an embedding store.")
def index_build(
    folder: Path = typer.Argument(..., metavar="FOLDER", help="An embedding store made by `grounding embed`."),
    kind: Optional[IndexKind] = typer.Option(None, help="flat (exact), hnsw (graph) or ivfpq (compressed); by "
                                             "default exact up to 100,000 vectors, hnsw above."),
) -> None:
    """Build a faiss index over an embedding store (written atomically beside it)."""
    from ..tasks.retrieval.index import build_index

    meta = build_index(folder, kind and kind.value)
    typer.echo(f"{meta['kind']} index of {meta['count']} {meta['store']['kind']} embeddings in {folder / 'index'}")


@app.command(short_help="Search an index with words or an image.")
def search(
    index: Path = typer.Argument(..., metavar="INDEX", help="An embedding store with a built index."),
    query: Optional[str] = typer.Argument(None, metavar="QUERY", help='Words to search for, e.g. "spoon".'),
    k: int = typer.Option(10, "-k", "--top-k", min=1, help="How many hits per query."),
    image: Optional[Path] = typer.Option(None, help="Search with an image instead of words."),
    queries: Optional[Path] = typer.Option(None, help="A file of queries, one per line, answered in one batch."),
    model: Optional[str] = typer.Option(None, help="The model to encode queries with; by default the index's own. "
                                        "Another model is refused."),
    sheet: Optional[Path] = typer.Option(None, help="Draw the hits of the first query as a contact sheet PNG."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per query."),
    device: Device = "auto",
    precision: InferencePrecision = "fp32",
) -> None:
    """Search an index with words (text to image) or an image (image to image or to text)."""
    import json

    from ..tasks.retrieval.index import Index
    from ..tasks.retrieval.search import contact_sheet
    from ..tasks.retrieval.search import search as run_search

    if sum(x is not None for x in (query, image, queries)) != 1:
        raise typer.BadParameter("give exactly one of QUERY, --image or --queries")
    found = Index(index)
    made_with = found.meta["store"]["model"]
    if model is None and not _loadable(made_with):
        raise typer.BadParameter(f"the index was made with {made_with}, which is not there any more; pass --model "
                                 f"with that model (fingerprint {found.meta['store']['model_fingerprint'][:16]})")
    clip = _load_model(model or made_with, device, precision)
    texts = [query] if query is not None else None
    if queries is not None:
        if not queries.is_file():
            raise typer.BadParameter(f"{queries}: no such file (one query a line)", param_hint="--queries")
        texts = [line.strip() for line in queries.read_text(encoding="utf-8").splitlines() if line.strip()]
    results = run_search(clip, found, k, texts=texts, images=[image] if image else None)
    labels = texts or [str(image)]
    for label, hits in zip(labels, results):
        if json_output:
            typer.echo(json.dumps({"query": label, "hits": [{"key": key, "score": s} for key, s in hits]}))
        else:
            typer.echo(f"{label}:")
            for rank, (key, score) in enumerate(hits, 1):
                typer.echo(f"  {rank:3d}. {score:.4f}  {key}")
    if sheet:
        contact_sheet(results[0], labels[0], sheet, found.kind)
        typer.echo(f"contact sheet: {sheet}")


@app.command("retrieval-eval", short_help="Recall@k both ways on paired data.")
def retrieval_eval(
    model: str = typer.Option(..., help="A saved model or run folder, or a preset name."),
    pairs: str = typer.Option("synthetic", help="synthetic[:n=500,seed=2], or captioned images as train --data "
                              "names them (csv:PATH with image,caption, folder:PATH, ...), each with its first caption."),
    out: Path = typer.Option(Path("runs/retrieval"), help="Where summary.json and ranks.jsonl go."),
    workers: Workers = WORKERS,
    device: Device = "auto",
    precision: InferencePrecision = "fp32",
) -> None:
    """Text-to-image and image-to-text recall@1/5/10 and ranks over paired data."""
    from ..tasks.retrieval.evaluate import retrieval_eval as run_eval

    clip = _load_model(model, device, precision)
    with about("--pairs"):
        summary = run_eval(clip, pairs, out, workers)
    for direction in ("text_to_image", "image_to_text"):
        r = summary[direction]
        typer.echo(f"{direction.replace('_', ' ')}: R@1 {r['recall@1']:.1%}  R@5 {r['recall@5']:.1%}  "
                   f"R@10 {r['recall@10']:.1%}  mean rank {r['mean_rank']:.1f}  median rank {r['median_rank']:.0f}")
    typer.echo(f"{summary['examples']} pairs (chance R@1 {summary['chance_recall@1']:.2%}); ranks in {out / 'ranks.jsonl'}")


@app.command(short_help="Show where in an image a phrase is.")
def ground(
    image: Path = typer.Argument(..., metavar="IMAGE", help="The image to look in."),
    phrase: str = typer.Argument(..., metavar="PHRASE", help='What to find, e.g. "the red circle".'),
    model: str = typer.Option(..., help="A saved model or run folder, or a preset name."),
    out: Path = typer.Option(Path("ground.png"), help="Where to draw the heat map and the box."),
    method: GroundMethod = typer.Option(GroundMethod.occlusion, help="occlusion (any tower) or similarity "
                                        "(patch tokens; docs/tasks.md)."),
    window: Optional[int] = typer.Option(None, help="Occlusion window in pixels; default half a ViT patch."),
    device: Device = "auto",
    precision: InferencePrecision = "fp32",
) -> None:
    """Show which part of an image a phrase refers to: a heat map and a box."""
    from ..data.images import BadImageError, load_image
    from ..tasks.phrase_grounding.locate import ground as run_ground
    from ..tasks.phrase_grounding.locate import save_overlay

    clip = _load_model(model, device, precision)
    heat, box, view = run_ground(clip, load_image(image), phrase, method.value, window)
    save_overlay(view, heat, box, phrase, out)
    typer.echo(f"strongest region (x0, y0, x1, y1) in the model's {view.width}px view: {box}; drawn in {out}")



@app.command(short_help="Convert a checkpoint between formats.")
def convert(
    source: str = typer.Argument(..., metavar="SOURCE", help="A model folder (grounding, Hugging Face or open_clip), "
                                                             "a state dict file or a built-in model."),
    destination: Path = typer.Argument(..., metavar="DESTINATION", help="The folder to write (open_clip: also a .pt "
                                                                        "or .safetensors file, the bare state dict, "
                                                                        "for a model with OpenAI's vocabulary)."),
    to: Format = typer.Option(..., help="hf: a Hugging Face CLIPModel folder (ViT and Transformer towers only); "
                              "open_clip: open_clip's model folder (ViT or ResNet, Transformer text), read by "
                              "create_model('local-dir:OUT'); grounding: any model."),
    activation: Optional[str] = typer.Option(None, help="For a SOURCE state dict, which carries no config: "
                                             "quick_gelu (OpenAI's weights) or gelu."),
) -> None:
    """Convert a checkpoint between formats, preprocessing settings and tokenizer included. Hugging
    Face's CLIPModel holds ViT models only (the demo's ResNet goes --to open_clip)."""
    import grounding

    from ..formats.huggingface import write_hf_folder
    from ..formats.openai import write_open_clip
    from ..saved import save_model

    clip = grounding.load(source, activation=activation)
    if to == Format.hf:
        write_hf_folder(clip, destination)
    elif to == Format.open_clip:
        write_open_clip(clip, destination)
    else:
        save_model(clip, destination)
    typer.echo(f"wrote {to.value} model to {destination}")


ExportFormat = choice("ExportFormat", "onnx", "torchscript")


@app.command("export", short_help="Export the encoders (ONNX, TorchScript).")
def export_command(
    model: str = typer.Argument(..., metavar="MODEL", help="The model to export: a run or saved folder, a "
                                                           "checkpoint, or a built-in model."),
    out: Path = typer.Argument(..., metavar="OUT", help="The folder for the two encoders, tokenizer.json and "
                                                        "preprocess.json."),
    format: ExportFormat = typer.Option(ExportFormat.onnx, "--format", help="onnx (onnxruntime and the like) or "
                                        "torchscript (torch.jit.load)."),
) -> None:
    """Export the image and text encoders for inference without grounding (docs/interop.md)."""
    from ..formats.export import export

    clip = _load_model(model, "cpu")
    files = export(clip, out, format.value)
    typer.echo(f"wrote {', '.join(p.name for p in files)} to {out}")


@app.command(short_help="Serve the web page and the HTTP API.")
def serve(
    model: str = typer.Option("lit-minilm-effnet", help="The CLIP model the page and API answer with."),
    index: Optional[Path] = typer.Option(None, help="An embedding store with a built index, for search."),
    vqa_model: Optional[Path] = typer.Option(None, help="A folder written by grounding train-vqa, for /vqa."),
    caption_model: Optional[Path] = typer.Option(None, help="A folder written by grounding train-caption, for "
                                                            "/caption."),
    host: str = typer.Option("127.0.0.1", help="The address to listen on (0.0.0.0 opens it to the network)."),
    port: int = typer.Option(8000, help="The port to listen on."),
    api_key: Optional[str] = typer.Option(None, envvar="GROUNDING_API_KEY", help="Require this key (header X-API-Key) "
                                          "on every endpoint but /health; or set GROUNDING_API_KEY."),
    max_upload_mb: float = typer.Option(10.0, min=0.01, help="The largest upload accepted, in MiB (413 above)."),
    max_pixels: int = typer.Option(40_000_000, min=1, help="The most pixels an uploaded image may have (413 above)."),
    max_batch: int = typer.Option(32, min=1, help="Images encoded together at most (requests are batched)."),
    max_wait_ms: float = typer.Option(10.0, min=0, help="How long a request waits for others to batch with."),
    device: Device = "auto",
    precision: InferencePrecision = "fp32",
) -> None:
    """Serve the web page and the HTTP API (classify, search, ground, ask, caption; docs at /docs)."""
    try:
        import uvicorn

        from .server.app import ServerSettings, create_app
    except ImportError:
        raise typer.BadParameter("the server needs FastAPI and uvicorn: pip install 'grounding[serve]'") from None
    settings = ServerSettings(model, str(index) if index else None, str(vqa_model) if vqa_model else None,
                              str(caption_model) if caption_model else None, api_key,
                              int(max_upload_mb * 2 ** 20), max_pixels, max_batch=max_batch, max_wait_ms=max_wait_ms,
                              device=device, precision=precision)
    application = create_app(settings)
    typer.echo(f"serving {model} on http://{host}:{port}/ (API docs at /docs)", err=True)
    uvicorn.run(application, host=host, port=port, log_level="warning")


from .task_commands import register  # noqa: E402  (the task commands join this app)

register(app)


def main() -> None:
    app()
