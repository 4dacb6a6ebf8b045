"""`grounding train` (and its recipes) and `grounding demo`."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from ...errors import BadInput, about
from ...training.options import TrainConfig
from ..common import App, ImageTower, TextTower, choice, default_of, given

TrainPrecision = choice("TrainPrecision", "fp32", "bf16")
Loss = choice("Loss", "clip", "siglip")
TokenizerChoice = choice("TokenizerChoice", "openai", "minilm", "train")

app = App()


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
    precision: Optional[TrainPrecision] = default_of(TrainConfig, "precision"),
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
    from ...training.distributed import World
    from ...training.trainer import train as run_training

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
    from ...training.recipes import run_recipe

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
    from ...demo import run_demo

    run_demo(out, steps=steps, n_examples=examples, seed=seed)
