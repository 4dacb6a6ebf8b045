"""The task commands of the `grounding` command line: train-vqa, vqa, train-caption, caption."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..training.options import TaskLoopOptions, help_of
from ..runtime import device_of
from .common import Device, runtime_for

TYPES = ("overall", "count", "colour", "shape", "relation", "existence")

# The options train-vqa and train-caption share.
Towers = Annotated[str, typer.Option(help="The towers' preset or JSON config (a ViT at 64 px uses 8-px patches).")]
ImageTower = Annotated[Optional[str], typer.Option(help="vit or resnet, overriding the preset's.")]
Init = Annotated[Optional[str], typer.Option(help="Start the towers (and the tokenizer) from this CLIP model.")]
Freeze = Annotated[bool, typer.Option(help="With --init: keep the towers fixed, train only what is new.")]
Width = Annotated[int, typer.Option(help="Width of the cross-attention layers.")]
Layers = Annotated[int, typer.Option(help="How many cross-attention layers.")]
Steps = Annotated[int, typer.Option(help=help_of(TaskLoopOptions, "steps"))]
BatchSize = Annotated[int, typer.Option(help=help_of(TaskLoopOptions, "batch_size"))]
LearningRate = Annotated[Optional[float], typer.Option(help=help_of(TaskLoopOptions, "lr"))]
Seed = Annotated[int, typer.Option(help=help_of(TaskLoopOptions, "seed"))]
SaveEvery = Annotated[int, typer.Option(help=help_of(TaskLoopOptions, "save_every"))]
Overwrite = Annotated[bool, typer.Option(help="Write into an --out that holds other files (not a run of this command).")]


def _loop(options: TaskLoopOptions, init: Optional[str]):
    try:
        return options.loop(bool(init))
    except ValueError as e:
        raise typer.BadParameter(str(e))


def train_vqa_command(
    out: Path = typer.Option(..., help="Run folder: the model, checkpoints, OUT/blind (the baseline), OUT/eval."),
    data: str = typer.Option("synthetic", help="synthetic, or csv:PATH with columns image,question,answer[,type] "
                             "(answers 'a|b|c' from several annotators give VQA soft scores)."),
    eval_data: Optional[str] = typer.Option(None, help="csv:PATH to evaluate on; by default held-out synthetic "
                                            "scenes, or the 20% of a CSV's rows kept out of training."),
    model: Towers = "small",
    image_tower: ImageTower = None,
    text_tower: Optional[str] = typer.Option(None, help="transformer or lstm, overriding the preset's."),
    init: Init = None,
    freeze: Freeze = False,
    width: Width = 256,
    layers: Layers = 2,
    steps: Steps = TaskLoopOptions.steps,
    batch_size: BatchSize = TaskLoopOptions.batch_size,
    lr: LearningRate = TaskLoopOptions.lr,
    seed: Seed = TaskLoopOptions.seed,
    save_every: SaveEvery = TaskLoopOptions.save_every,
    overwrite: Overwrite = False,
    baselines: bool = typer.Option(True, help="Also train the question-only model and report the majority answers."),
) -> None:
    """Train a VQA model (cross-attention from question tokens to image tokens), then evaluate it
    per question type beside its baselines. Run it again to resume."""
    from ..tasks.vqa.run import run_train_vqa
    from ..tasks.vqa.train import VQAOptions

    loop = _loop(TaskLoopOptions(steps, batch_size, lr, seed, save_every), init)
    options = VQAOptions(loop, data=data, towers=model, image_tower=image_tower,
                         text_tower=text_tower, init=init, freeze=freeze, width=width, layers=layers)
    try:
        results = run_train_vqa(options, out, eval_data, baselines, overwrite=overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        raise typer.BadParameter(str(e))
    console = Console()
    for name, summary in results.items():
        table = Table(f"{name} ({summary['examples']} questions)", *TYPES)
        for who in ("model", "blind", "majority"):
            if who in summary:
                row = summary[who]
                table.add_row(who, *(f"{row[t]:.1%}" if t in row else "-" for t in TYPES))
        console.print(table)
    console.print(f"model in {out}; per-question records in {out}/eval/*/predictions.jsonl")


def vqa_command(
    image: Path = typer.Argument(..., help="An image file."),
    question: str = typer.Argument(..., help="The question, e.g. 'how many circles are there?'"),
    model: Path = typer.Option(..., help="A folder written by grounding train-vqa."),
    top: int = typer.Option(3, help="How many answers to show."),
    device: Device = "auto",
) -> None:
    """Answer a question about an image, with the top answers and their probabilities."""
    import torch

    from ..data.images import BadImageError
    from ..tasks.saved import load_task_model

    if not question.strip():
        raise typer.BadParameter("the question is empty", param_hint="QUESTION")
    try:
        vqa = load_task_model(model, "vqa").to(runtime_for(device).device)
        pixels = vqa.preprocess(image)[None].to(device_of(vqa))
    except (FileNotFoundError, ValueError, BadImageError) as e:
        raise typer.BadParameter(str(e))
    with torch.no_grad():
        ids = vqa.tokenizer([question], truncate=True).to(device_of(vqa))
        probs = vqa(pixels, ids).softmax(dim=-1)[0].cpu()
    values, indices = probs.topk(min(top, len(probs)))
    typer.echo(", ".join(f"{vqa.config.answers[int(i)]} {float(p):.1%}" for p, i in zip(values, indices)))


def train_caption_command(
    out: Path = typer.Option(..., help="Run folder: the model, checkpoints and OUT/eval."),
    data: str = typer.Option("synthetic", help="synthetic, csv:PATH (columns image,caption), or tuxpaint "
                             "(Debian tuxpaint-stamps-default; GPL, so do not ship what it trains)."),
    eval_data: Optional[str] = typer.Option(None, help="csv:PATH or tuxpaint to evaluate on; by default held-out "
                                            "synthetic scenes, or the 20% of a list's images kept out of training."),
    decoder: str = typer.Option("transformer", help="transformer (cross-attention, KV cache) or lstm (with attention)."),
    model: Towers = "small",
    image_tower: ImageTower = None,
    init: Init = None,
    freeze: Freeze = False,
    width: Width = 256,
    layers: Layers = 2,
    steps: Steps = TaskLoopOptions.steps,
    batch_size: BatchSize = TaskLoopOptions.batch_size,
    lr: LearningRate = TaskLoopOptions.lr,
    seed: Seed = TaskLoopOptions.seed,
    save_every: SaveEvery = TaskLoopOptions.save_every,
    overwrite: Overwrite = False,
    beam: int = typer.Option(1, help="Evaluate with beam search of this width (1: greedy)."),
) -> None:
    """Train a captioner, then evaluate BLEU, ROUGE-L and CIDEr-D beside the nearest-neighbour
    caption. Run it again to resume."""
    from ..tasks.captioning.run import run_train_caption
    from ..tasks.captioning.train import CaptionOptions

    loop = _loop(TaskLoopOptions(steps, batch_size, lr, seed, save_every), init)
    options = CaptionOptions(loop, data=data, towers=model, image_tower=image_tower,
                             init=init, freeze=freeze, width=width, layers=layers, decoder=decoder)
    decoding = {"method": "beam", "beam": beam} if beam > 1 else {"method": "greedy"}
    try:
        results = run_train_caption(options, out, eval_data, overwrite=overwrite, **decoding)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        raise typer.BadParameter(str(e))
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


def caption_command(
    images: list[Path] = typer.Argument(..., help="The image files to caption."),
    model: Path = typer.Option(..., help="A folder written by grounding train-caption."),
    beam: int = typer.Option(1, help="Beam search of this width (1: greedy)."),
    length_penalty: float = typer.Option(0.6, help="Beam search: score / ((5 + length) / 6) ** this."),
    top_p: Optional[float] = typer.Option(None, help="Nucleus sampling from this much probability mass instead."),
    seed: int = typer.Option(0, help="Seeds nucleus sampling."),
    device: Device = "auto",
) -> None:
    """Caption images: greedy, beam search or nucleus sampling."""
    import torch

    from ..data.images import BadImageError
    from ..tasks.captioning.decode import generate
    from ..tasks.saved import load_task_model

    try:
        captioner = load_task_model(model, "caption").to(runtime_for(device).device)
        pixels = torch.stack([captioner.preprocess(path) for path in images]).to(device_of(captioner))
    except (FileNotFoundError, ValueError, BadImageError) as e:
        raise typer.BadParameter(str(e))
    if top_p is not None:
        captions = generate(captioner, pixels, "top-p", top_p=top_p, seed=seed)
    elif beam > 1:
        captions = generate(captioner, pixels, "beam", beam=beam, length_penalty=length_penalty)
    else:
        captions = generate(captioner, pixels)
    for path, caption in zip(images, captions):
        typer.echo(f"{path}: {caption}")


def register(app: typer.Typer) -> None:
    app.command("train-vqa", short_help="Train and evaluate a VQA model.")(train_vqa_command)
    app.command("vqa", short_help="Answer a question about an image.")(vqa_command)
    app.command("train-caption", short_help="Train and evaluate a captioner.")(train_caption_command)
    app.command("caption")(caption_command)
