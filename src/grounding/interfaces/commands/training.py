"""`grounding train` (and its recipes) and `grounding demo`."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from ...errors import BadInput, about
from ...training.options import TrainConfig
from ..common import App, ImageTower, TextTower, choice, given, options_of

TrainPrecision = choice("TrainPrecision", "fp32", "bf16")
Loss = choice("Loss", "clip", "siglip")
TokenizerChoice = choice("TokenizerChoice", "openai", "minilm", "train")

app = App()


@app.command(short_help="Train or fine-tune a CLIP model.")
@options_of(TrainConfig, choices={"tokenizer": TokenizerChoice, "image_tower": ImageTower, "text_tower": TextTower,
                                  "loss": Loss, "precision": TrainPrecision})
def train(
    out: Optional[Path] = typer.Option(None, help="Run folder: checkpoints, metrics.jsonl, skipped.jsonl and the "
                                       "latest weights."),
    resume: Optional[Path] = typer.Option(None, help="Continue the run in this folder from its newest checkpoint "
                                          "(--steps, --workers and --device may change)."),
    config: Optional[Path] = typer.Option(None, help="A JSON file of training options (a run's train.json is one); "
                                          "options given here override it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write a new run into an --out that holds other files "
                                                              "(a saved model, anything but a run)."),
    recipe: Optional[str] = typer.Option(None, help="A named recipe: lit-real makes the built-in model (three image "
                                         "heads over the pretrained EfficientNet-Lite0, into the pretrained "
                                         "MiniLM's space, trained in OUT/members from seeds --seed, +1, +2 and "
                                         "joined; README). Options given here change the recipe's."),
    **options,
) -> None:
    """Train or fine-tune a CLIP model on your own image-text data (or the built-in world); kill
    it any time and --resume."""
    from ...training.distributed import World
    from ...training.trainer import train as run_training

    changes = given(options, TrainConfig)
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
    steps: int = typer.Option(300, min=1, max=10 ** 9, help="Training steps of each of the two models; the default fits in under 7 minutes on 2 CPU cores."),
    examples: int = typer.Option(6, min=0, max=240, help="How many example results to print and draw as cards."),
    seed: int = typer.Option(0, min=0, help="Seeds training and the choice of examples."),
) -> None:
    """Train a small model on the built-in world (and, for comparison, the same with twin images),
    classify held-out images zero-shot, run the swap test, draw cards."""
    from ...demo import run_demo

    run_demo(out, steps=steps, n_examples=examples, seed=seed)
