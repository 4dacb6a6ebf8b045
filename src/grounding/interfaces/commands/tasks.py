"""The task commands: train-vqa, vqa, train-caption, caption, train-detect, detect, locate,
detect-eval."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ...tasks.options import CaptionOptions, DetectOptions, VQAOptions
from ...training.options import TaskLoopOptions
from ..common import App, Device, ImageTower, TextTower, default_of, given, options_of

app = App()
TYPES = ("overall", "count", "colour", "shape", "relation", "existence")
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Write into an --out that holds other files (not a run "
                                                      "of this command).")]


def _options(cls, values: dict):
    """The task's options from what the command line gave; the dataclasses fill in the rest."""
    loop = TaskLoopOptions(**given(values, TaskLoopOptions)).loop(bool(values.get("init")))
    return cls(loop, **given(values, cls))


def _task_options(cls, *more: str):
    """The options every task trainer takes, declared once: its data, where the towers come from,
    the loop's, and `more` of its own (defaults and help: tasks/options.py, training/options.py)."""
    towers = options_of(cls, ("data", "towers", "image_tower", "init", "freeze", *more), {"image_tower": ImageTower})
    loop = options_of(TaskLoopOptions, ("steps", "batch_size", "lr", "seed", "save_every"))
    return lambda command: loop(towers(command))


@app.command("train-vqa", short_help="Train and evaluate a VQA model.")
@_task_options(VQAOptions, "width", "layers", "relation_target", "relation_share", "final_grid")
def train_vqa_command(
    out: Path = typer.Option(..., help="Run folder: the model, checkpoints, OUT/blind (the baseline), OUT/eval."),
    eval_data: Optional[str] = typer.Option(None, help="csv:PATH to evaluate on; by default held-out synthetic "
                                            "scenes, or the 20% of a CSV's rows kept out of training."),
    text_tower: Optional[TextTower] = default_of(VQAOptions, "text_tower"),
    overwrite: Overwrite = False,
    no_baselines: bool = typer.Option(False, "--no-baselines", help="Skip the question-only model and the majority "
                                      "answers (trained and reported beside the model by default)."),
    **options,
) -> None:
    """Train a VQA model (cross-attention from question tokens to image tokens), then evaluate it
    per question type beside its baselines. Run it again to resume."""
    from ...tasks.vqa.run import run_train_vqa

    results = run_train_vqa(_options(VQAOptions, {**locals(), **options}), out, eval_data, not no_baselines, overwrite=overwrite)
    console = Console()
    for name, summary in results.items():
        table = Table(f"{name} ({summary['examples']} questions)", *TYPES)
        for who in ("model", "blind", "majority"):
            if who in summary:
                row = summary[who]
                table.add_row(who, *(f"{row[t]:.1%}" if t in row else "-" for t in TYPES))
        console.print(table)
    console.print(f"model in {out}; per-question records in {out}/eval/*/predictions.jsonl")


@app.command("vqa", short_help="Answer a question about an image.")
def vqa_command(
    image: Path = typer.Argument(..., metavar="IMAGE", help="An image file."),
    question: str = typer.Argument(..., metavar="QUESTION", help="The question, e.g. 'how many circles are there?'"),
    model: Path = typer.Option(..., help="A folder written by grounding train-vqa."),
    top: int = typer.Option(3, help="How many answers to show."),
    device: Device = "auto",
) -> None:
    """Answer a question about an image, with the top answers and their probabilities."""
    from ...data.images import load_image
    from ...runtime import Runtime
    from ...tasks.saved import load_task_model
    from ...tasks.vqa.evaluate import top_answers

    vqa = load_task_model(model, "vqa").to(Runtime.resolve(device).device)
    answers = top_answers(vqa, load_image(image), question, top)
    typer.echo(", ".join(f"{answer} {p:.1%}" for answer, p in answers))


@app.command("train-caption", short_help="Train and evaluate a captioner.")
@_task_options(CaptionOptions, "width", "layers")
def train_caption_command(
    out: Path = typer.Option(..., help="Run folder: the model, checkpoints and OUT/eval."),
    eval_data: Optional[str] = typer.Option(None, help="csv:PATH or tuxpaint to evaluate on; by default held-out "
                                            "synthetic scenes, or the 20% of a list's images kept out of training."),
    decoder: Optional[str] = default_of(CaptionOptions, "decoder"),
    overwrite: Overwrite = False,
    beam: int = typer.Option(1, help="Evaluate with beam search of this width (1: greedy)."),
    **options,
) -> None:
    """Train a captioner, then evaluate BLEU, ROUGE-L and CIDEr-D beside the nearest-neighbour
    caption. Run it again to resume."""
    from ...tasks.captioning.run import run_train_caption

    task = _options(CaptionOptions, {**locals(), **options})
    decoding = {"method": "beam", "beam": beam} if beam > 1 else {"method": "greedy"}
    results = run_train_caption(task, out, eval_data, overwrite=overwrite, **decoding)
    console = Console()
    metrics = ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr-D")
    for name, summary in results.items():
        table = Table(f"{name} ({summary['examples']} images)", *metrics)
        for who in ("model", "nearest_neighbour"):
            if who in summary:
                table.add_row(who.replace("_", " "), *(f"{summary[who][m]:.3f}" for m in metrics))
        console.print(table)
        if "nearest_neighbour" in summary and summary["nearest_neighbour"]["CIDEr-D"] > 0:
            ratio = summary["model"]["CIDEr-D"] / summary["nearest_neighbour"]["CIDEr-D"]
            console.print(f"CIDEr-D: {ratio:.2f}x the nearest-neighbour baseline's")
    console.print(f"model in {out}; per-image records in {out}/eval/*/predictions.jsonl")


@app.command("caption")
def caption_command(
    images: list[Path] = typer.Argument(..., metavar="IMAGE", help="The image files to caption."),
    model: Path = typer.Option(..., help="A folder written by grounding train-caption."),
    beam: int = typer.Option(1, help="Beam search of this width (1: greedy)."),
    length_penalty: float = typer.Option(0.6, help="Beam search: score / ((5 + length) / 6) ** this."),
    top_p: Optional[float] = typer.Option(None, help="Nucleus sampling from this much probability mass instead."),
    seed: int = typer.Option(0, help="Seeds nucleus sampling."),
    device: Device = "auto",
) -> None:
    """Caption images: greedy, beam search or nucleus sampling."""
    import torch

    from ...runtime import Runtime, device_of
    from ...tasks.captioning.decode import generate
    from ...tasks.saved import load_task_model

    captioner = load_task_model(model, "caption").to(Runtime.resolve(device).device)
    pixels = torch.stack([captioner.preprocess(path) for path in images]).to(device_of(captioner))
    if top_p is not None:
        captions = generate(captioner, pixels, "top-p", top_p=top_p, seed=seed)
    elif beam > 1:
        captions = generate(captioner, pixels, "beam", beam=beam, length_penalty=length_penalty)
    else:
        captions = generate(captioner, pixels)
    for path, caption in zip(images, captions):
        typer.echo(f"{path}: {caption}")


@app.command("train-detect", short_help="Train and evaluate an open-vocabulary detector.")
@_task_options(DetectOptions)
def train_detect_command(
    out: Path = typer.Option(..., help="Run folder: the model, checkpoints and OUT/eval/summary.json."),
    text_tower: Optional[TextTower] = default_of(DetectOptions, "text_tower"),
    overwrite: Overwrite = False,
    eval_images: int = typer.Option(500, min=1, help="synthetic data: new scenes of each kind it is evaluated on."),
    **options,
) -> None:
    """Train a detector (a box and an embedding per patch token, scored against the queries'
    text embeddings) on the built-in world's seen colour-shape pairs, then report COCO mAP on new
    scenes, the held-out pairs apart. Run it again to resume."""
    from ...tasks.detection.run import run_train_detect

    results = run_train_detect(_options(DetectOptions, {**locals(), **options}), out, overwrite=overwrite,
                               eval_size=eval_images)
    _print_map(results)
    typer.echo(f"model in {out}; figures in {out}/eval/summary.json")


def _print_map(results: dict) -> None:
    table = Table("scenes", "queries", "mAP@[.5:.95]", "mAP@.5")
    for name, report in results.items():
        for group in [g for g in ("all", "seen pairs", "held-out pairs") if g in report]:
            table.add_row(f"{name} ({report['images']})", group,
                          *("-" if report[group][m] is None else f"{report[group][m]:.3f}" for m in ("map", "map50")))
    Console().print(table)
    referring = {name: report["referring"] for name, report in results.items() if report.get("referring", {}).get("all")
                 is not None}
    if referring:
        kinds = sorted({k for r in referring.values() for k in r if k not in ("all", "expressions")})
        table = Table("scenes", "expressions", "referring accuracy (IoU >= 0.5)", *kinds)
        for name, r in referring.items():
            table.add_row(name, str(r["expressions"]), f"{r['all']:.1%}", *(f"{r[k]:.1%}" if k in r else "-" for k in kinds))
        Console().print(table)


@app.command("detect-eval", short_help="COCO mAP of a detector.")
def detect_eval_command(
    model: Path = typer.Option(..., help="A folder written by grounding train-detect, or an OWL-ViT folder."),
    dataset: str = typer.Option("synthetic", help="synthetic (new scenes of the built-in world), or coco:JSON (COCO "
                                "instances, images beside the JSON)."),
    images: int = typer.Option(500, min=1, help="synthetic: new scenes of each kind."),
    seed: int = typer.Option(0, min=0, help="synthetic: seeds the scenes (drawn from seed + 1000)."),
    device: Device = "auto",
) -> None:
    """mAP@[.5:.95] and mAP@.5 (pycocotools): on new scenes of seen colour-shape pairs and on
    scenes holding a held-out pair, each queried with every pair; or on every image of a COCO
    file, queried with its categories."""
    from ...data.specs import parse_spec
    from ...runtime import Runtime
    from ...tasks.detection.data import coco_boxes
    from ...tasks.detection.run import evaluate_boxes, evaluate_detector
    from ...tasks.saved import load_task_model

    spec = parse_spec(dataset, "boxes", "--dataset")
    detector = load_task_model(model, "detect").to(Runtime.resolve(device).device)
    if spec.kind == "synthetic":
        _print_map(evaluate_detector(detector, seed, images))
    else:
        examples, classes = coco_boxes(spec.argument)
        _print_map({spec.argument: evaluate_boxes(detector, examples, classes)["held-out images"]})


@app.command("locate", short_help="The one box a referring expression picks out.")
def locate_command(
    image: Path = typer.Argument(..., metavar="IMAGE", help="An image file."),
    expression: str = typer.Argument(..., metavar="EXPRESSION", help='E.g. "the red circle left of the blue square".'),
    model: Path = typer.Option(..., help="A folder written by grounding train-detect, or an OWL-ViT folder."),
    out: Optional[Path] = typer.Option(None, help="A PNG of the image with the box drawn."),
    device: Device = "auto",
) -> None:
    """The one box a referring expression picks out (the phrase's one referent), with its score,
    in the image's own pixels. Relation words ("left of", "above", "under", ...) and size words
    ("small", "big") are read as such: the subject and the anchor are found apart and the pair
    the relation holds between is picked (docs/tasks.md). `grounding ground` shows the heat map
    behind a phrase."""
    from ...data.images import load_image
    from ...errors import BadInput
    from ...runtime import Runtime
    from ...tasks.detection.evaluate import draw, in_image, locate_pixels
    from ...tasks.saved import load_task_model

    if not expression.strip():
        raise BadInput("an empty expression: say which object", "EXPRESSION")
    if out is not None and out.is_dir():
        raise BadInput(f"{out} is a folder; give the file to draw into", "--out")
    detector = load_task_model(model, "detect").to(Runtime.resolve(device).device)
    picture = load_image(image)
    found = locate_pixels(detector, detector.preprocess(picture)[None], [expression])[0]
    box = in_image(found.box, picture.size, detector.config.towers.vision.resize)
    if out is not None:
        draw(picture, [(box, f"{found.score:.0%}")]).save(out)
    typer.echo(f"{expression}: ({', '.join(f'{v:.0f}' for v in box)}) score {found.score:.0%}" +
               (f"; drawn in {out}" if out else ""))


@app.command("detect", short_help="Boxes for every object the queries name.")
def detect_command(
    images: list[str] = typer.Argument(..., metavar="IMAGE", help="Image files, folders (searched recursively) or "
                                                                  "patterns such as 'photos/*.png'."),
    queries: str = typer.Option("", help='What to find, comma-separated, e.g. "red circle,blue square".'),
    query_image: list[Path] = typer.Option([], help="An example of what to find (a crop of one object), instead "
                                           "of or beside --queries; repeat for more; labelled by file name."),
    model: Path = typer.Option(..., help="A folder written by grounding train-detect, an OWL-ViT folder, or a hub "
                               "repo holding one (google/owlvit-base-patch32)."),
    threshold: float = typer.Option(0.3, min=0.0, max=1.0, help="The least score a box is reported with."),
    out: Optional[Path] = typer.Option(None, help="A folder for each image with its boxes drawn (NAME.png)."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per image."),
    csv_output: bool = typer.Option(False, "--csv", help="A CSV: path, query, score, x0, y0, x1, y1."),
    device: Device = "auto",
) -> None:
    """Find every object each query names: its box (in the image's own pixels), query and score.
    Exit code 1 when some images could not be read (each is named on stderr)."""
    import csv
    import json

    from ...data.images import BadImageError, load_image
    from ...data.inputs import expand_inputs
    from ...errors import BadInput
    from ...files import refuse_foreign, writable_folder
    from ...runtime import Runtime
    from ...tasks.detection.evaluate import ask, detect_image, draw_detections
    from ...tasks.saved import load_task_model

    names = list(dict.fromkeys(q.strip() for q in queries.split(",") if q.strip()))
    if not names and not query_image:
        raise BadInput("no queries: give some, separated by commas, or an example with --query-image", "--queries")
    if json_output and csv_output:
        raise BadInput("choose one of --json and --csv", "--csv")
    if out is not None:
        refuse_foreign(out, False, {"*.png"}, "choose an empty or new --out for the drawn images")
        writable_folder(out)
    detector = load_task_model(model, "detect").to(Runtime.resolve(device).device)
    asked = ask(detector, names, {path.stem: load_image(path) for path in query_image})
    writer = csv.writer(typer.get_text_stream("stdout")) if csv_output else None
    if writer:
        writer.writerow(["path", "query", "score", "x0", "y0", "x1", "y1"])
    failed = 0
    for path in expand_inputs(images):
        try:
            image = load_image(path)
        except BadImageError as e:
            typer.echo(f"skipped {e}", err=True)
            failed += 1
            continue
        found = detect_image(detector, image, asked, threshold)
        if out is not None:
            draw_detections(image, found).save(out / f"{path.stem}.png")
        if writer:
            for d, box in found:
                writer.writerow([str(path), d.query, f"{d.score:.4f}", *(f"{v:.1f}" for v in box)])
        elif json_output:
            typer.echo(json.dumps({"path": str(path), "detections": [
                {"query": d.query, "score": round(d.score, 4), "box": [round(v, 1) for v in box]} for d, box in found]}))
        else:
            listed = "; ".join(f"{d.query} {d.score:.0%} at ({', '.join(f'{v:.0f}' for v in box)})" for d, box in found)
            typer.echo(f"{path}: {listed or 'nothing over the threshold'}")
    if failed:
        raise typer.Exit(1)
