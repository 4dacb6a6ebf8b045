"""The `grounding` command line."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Ground language in images: train CLIP-style models and classify images zero-shot.")


class ImageTower(str, Enum):
    vit = "vit"
    resnet = "resnet"


class TextTower(str, Enum):
    transformer = "transformer"
    lstm = "lstm"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"


class Loss(str, Enum):
    clip = "clip"
    siglip = "siglip"


@app.command()
def train(
    model: str = typer.Option("small", help="A preset (tiny, small, ViT-B-32, ViT-B-16, RN50) or a JSON model config file."),
    data: str = typer.Option("synthetic", help="Training pairs: 'synthetic', the built-in world of captioned shapes."),
    steps: Optional[int] = typer.Option(None, help="Total optimizer steps [default: 1000; with --resume: the run's own]."),
    out: Optional[Path] = typer.Option(None, help="Run folder: checkpoints, metrics.jsonl, and the latest weights."),
    resume: Optional[Path] = typer.Option(None, help="Continue the run in this folder from its newest checkpoint."),
    image_tower: Optional[ImageTower] = typer.Option(None, help="Override the preset's image tower."),
    text_tower: Optional[TextTower] = typer.Option(None, help="Override the preset's text tower."),
    loss: Optional[Loss] = typer.Option(None, help="Contrastive loss: softmax InfoNCE (clip) or sigmoid (siglip)."),
    batch_size: int = typer.Option(64, help="Image-text pairs per contrastive batch."),
    accum: int = typer.Option(1, help="Split each batch into this many micro-batches; the loss still sees the whole batch."),
    lr: float = typer.Option(5e-4, help="Peak learning rate, reached after --warmup steps, then cosine-decayed."),
    warmup: int = typer.Option(50, help="Linear warmup steps."),
    weight_decay: float = typer.Option(0.2, help="AdamW weight decay on weight matrices only."),
    grad_clip: float = typer.Option(1.0, help="Clip the gradient's global norm to this."),
    precision: Precision = typer.Option(Precision.fp32, help="fp32, or bf16 autocast (weights stay fp32)."),
    hard_negatives: bool = typer.Option(False, help="Add one near-miss caption per image (NegCLIP): "
                                        "swapped or changed colours, shapes, relations."),
    seed: int = typer.Option(0, help="Seeds the weights and the data order."),
    save_every: int = typer.Option(100, help="Write a checkpoint every this many steps (and at the end)."),
    tensorboard: bool = typer.Option(False, help="Also log to OUT/tensorboard (needs grounding[tensorboard])."),
) -> None:
    """Train a CLIP model from scratch, with a live progress bar; kill it any time and --resume."""
    from ..config import resolve_config
    from ..training.trainer import TrainConfig, train as run_training

    if (out is None) == (resume is None):
        raise typer.BadParameter("give exactly one of --out (a new run) or --resume (an existing run)")
    options = TrainConfig(steps=steps or 1000, batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup,
                          grad_clip=grad_clip, accum=accum, precision=precision.value, seed=seed,
                          save_every=save_every, data=data, hard_negatives=hard_negatives,
                          tensorboard=tensorboard)
    if resume:
        run_training(None, TrainConfig(steps=steps) if steps else None, resume, resume=True)
        typer.echo(f"done: {resume} holds the latest weights (grounding.load('{resume}'))")
        return
    try:
        config = resolve_config(model, image_tower and image_tower.value, text_tower and text_tower.value)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--model")
    if loss:
        config.loss = loss.value
    run_training(config, options, out)
    typer.echo(f"done: {out} holds the latest weights (grounding.load('{out}'))")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Where the run, its checkpoints and the PNG cards go."),
    steps: int = typer.Option(300, help="Training steps; the default fits in under 5 minutes on 2 CPU cores."),
    examples: int = typer.Option(6, help="How many example results to print and draw as cards."),
    seed: int = typer.Option(0, help="Seeds training and the choice of examples."),
) -> None:
    """Train a small model on the built-in world, classify held-out images zero-shot, draw cards."""
    from ..demo import run_demo

    run_demo(out, steps=steps, n_examples=examples, seed=seed)


def main() -> None:
    app()
