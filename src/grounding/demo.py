"""`grounding demo`: train a small model on the built-in world, then classify held-out images
zero-shot from label text and show, for a few of them, the correct label, its rank and its
probability, as text and as PNG cards."""
from __future__ import annotations

import random
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from .data.datasets import open_dataset
from .data.examples import Dataset
from .data.synthetic import World
from .evaluation.cards import save_card
from .evaluation.compositionality import compositionality_score
from .evaluation.metrics import topk_accuracy
from .evaluation.predict import predict_zero_shot
from .evaluation.zeroshot import examples
from .inference.templates import TEMPLATE_SETS
from .models import CLIP
from .training.recipes import run_recipe


def run_demo(out: Path, steps: int = 300, n_examples: int = 6, seed: int = 0) -> dict:
    console = Console()
    out = Path(out)
    world = World()
    held = ", ".join(f"{c} {s}" for c, s in world.held_out)
    console.print(f"[bold]1. Training[/] the 'small' preset with a ResNet image tower for {steps} steps on "
                  f"captioned synthetic scenes, with near-miss captions as hard negatives. "
                  f"Never shown together in training: {held}.")
    started = time.perf_counter()
    model = run_recipe("demo", out, {"steps": steps, "seed": seed})
    console.print(f"   trained in {time.perf_counter() - started:.0f} s; weights in {out}")

    console.print(f"[bold]2. Zero-shot[/]: a classifier from the text of {len(world.labels)} labels "
                  f"({', '.join(TEMPLATE_SETS['synthetic'])}), on 10 new images per label.")
    probs, targets, scenes = zero_shot(model, f"synthetic:seed={seed + 1},size={model.config.vision.image_size}")
    held = set(world.held_out)
    unseen = torch.tensor([(s.objects[0].colour, s.objects[0].shape) in held for s in scenes])
    results = {
        "top1": topk_accuracy(probs, targets), "top5": topk_accuracy(probs, targets, 5),
        "top1_unseen_pairs": topk_accuracy(probs[unseen], targets[unseen]),
        "top1_seen_pairs": topk_accuracy(probs[~unseen], targets[~unseen]),
        "chance": 1 / len(world.labels),
    }
    table = Table("images", "top-1", "top-5")
    table.add_row("all", f"{results['top1']:.1%}", f"{results['top5']:.1%}")
    table.add_row("pairs seen in training", f"{results['top1_seen_pairs']:.1%}", "")
    table.add_row("pairs never seen (composition)", f"{results['top1_unseen_pairs']:.1%}", "")
    table.add_row("chance", f"{results['chance']:.1%}", f"{5 * results['chance']:.1%}")
    console.print(table)
    comp = compositionality_score(model, world)
    results["compositionality"] = comp["score"]
    console.print(f"   compositionality: the true caption beats every swapped-word caption in {comp['score']:.1%} "
                  f"of {comp['scenes']} two-object scenes (a bag-of-words model: {comp['chance']:.1%})")

    console.print("[bold]3. Examples[/] (cards in " + str(out / "cards") + ")")
    records = examples(probs, targets, world.labels)
    picks = random.Random(seed).sample(range(len(records)), min(n_examples, len(records)))
    for n, i in enumerate(picks):
        console.print("   " + records[i].summary())
        save_card(scenes[i].render(256), records[i], out / "cards" / f"example-{n}.png")
    results["photos"] = show_builtin_model(console)
    return results


def show_builtin_model(console: Console) -> dict[str, str] | None:
    """The shipped real model (no training) on scikit-image's photos, if scikit-image is installed."""
    console.print("[bold]4. A real model out of the box[/]: lit-minilm-effnet (pretrained MiniLM and "
                  "EfficientNet-Lite0, with three image heads trained on drawings and emoji) on real photos, from "
                  "label text alone")
    from .data.sources import MissingPackageError
    from .saved import load

    try:
        photos = open_dataset("photos:demo")
    except MissingPackageError:
        console.print("   (pip install 'grounding[photos]' to see it on the photos that scikit-image ships)")
        return None
    model = load("lit-minilm-effnet")
    probs, _, _ = zero_shot(model, photos)
    answers = {}
    for name, row in zip(photos.keys, probs):
        top = row.topk(3)
        answers[name] = photos.classes[int(top.indices[0])]
        console.print(f"   {name:<22} " + ", ".join(
            f"{photos.classes[int(i)]} {float(p):.1%}" for p, i in zip(top.values, top.indices)))
    console.print(f"   labels: {', '.join(photos.classes)}")
    return answers


def zero_shot(model: CLIP, dataset: str | Dataset):
    """Probabilities over a dataset's labels (its own templates), its targets and its scenes."""
    dataset = open_dataset(dataset) if isinstance(dataset, str) else dataset
    predictions = predict_zero_shot(model, dataset, workers=0, show_progress=False)
    targets = torch.tensor([dataset.targets[i][0] for i in predictions.indices])
    return torch.from_numpy(predictions.probs), targets, [ref.scene for ref in dataset.images]
