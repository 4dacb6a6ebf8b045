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
from .errors import BadInput
from .evaluation.cards import save_card
from .evaluation.compositionality import compositionality_score
from .evaluation.metrics import topk_accuracy
from .evaluation.predict import predict_zero_shot
from .evaluation.zeroshot import examples
from .inference.templates import TEMPLATE_SETS
from .models import CLIP
from .training.checkpoint import TRAIN_FILE
from .training.options import TrainConfig
from .training.recipes import run_recipe


# The demo's second row: the same recipe and budget, with twin images (Scene.twin) in the place of
# near-miss captions, the composition-aware training that raised the swap test most, and a quarter
# of the examples grey, which raised zero-shot on the pairs never seen most (docs/tasks.md).
COMPOSED = {"hard_negatives": False, "image_negatives": True, "grey": 0.25}


def run_demo(out: Path, steps: int = 300, n_examples: int = 6, seed: int = 0) -> dict:
    console = Console()
    out = Path(out)
    _check_composed(out / "composed")  # before any training, so that nothing is spent on a refusal
    world = World()
    held = ", ".join(f"{c} {s}" for c, s in world.held_out)
    console.print(f"[bold]1. Training[/] the 'small' preset with a ResNet image tower for {steps} steps on "
                  f"captioned synthetic scenes, with near-miss captions as hard negatives; then the same "
                  f"again with twin images instead (the same objects, two of them exchanging colour, shape "
                  f"or place) and a quarter of the examples in grey with no colour words, in "
                  f"{out / 'composed'}. Never shown together in training: {held}.")
    started = time.perf_counter()
    model = run_recipe("demo", out, {"steps": steps, "seed": seed})
    composed = run_recipe("demo", out / "composed", {"steps": steps, "seed": seed, **COMPOSED})
    console.print(f"   trained in {time.perf_counter() - started:.0f} s; weights in {out}")

    console.print(f"[bold]2. Zero-shot[/]: a classifier from the text of {len(world.labels)} labels "
                  f"({', '.join(TEMPLATE_SETS['synthetic'])}), on 10 new images per label; and the swap "
                  f"test: how often the true caption of a two-object scene beats every caption of the "
                  f"same words rearranged.")
    dataset = f"synthetic:seed={seed + 1},size={model.config.vision.image_size}"
    (first, (probs, targets, scenes)), (second, _) = measure(model, dataset, world), measure(composed, dataset, world)
    results = {"demo": first, "composed": second}
    table = Table("training", "top-1", "top-5", "pairs seen", "pairs never seen", "swap test")
    rows = (("near-miss captions (the demo's model)", first),
            ("twin images and grey copies (--image-negatives --grey 0.25)", second))
    for name, row in rows:
        table.add_row(name, *(f"{row[k]:.1%}" for k in ("top1", "top5", "top1_seen_pairs", "top1_unseen_pairs",
                                                         "compositionality")))
    table.add_row("chance", f"{first['chance']:.1%}", f"{5 * first['chance']:.1%}", "", "",
                  f"{first['compositionality_chance']:.1%}")
    console.print(table)

    console.print("[bold]3. Examples[/] (cards in " + str(out / "cards") + ")")
    records = examples(probs, targets, world.labels)
    picks = random.Random(seed).sample(range(len(records)), min(n_examples, len(records)))
    for n, i in enumerate(picks):
        console.print("   " + records[i].summary())
        save_card(scenes[i].render(256), records[i], out / "cards" / f"example-{n}.png")
    results["photos"] = show_builtin_model(console)
    return results


def _check_composed(run: Path) -> None:
    """A second-row run left by an earlier version of the demo, with other options, is refused
    rather than shown under this row's name."""
    if (run / TRAIN_FILE).is_file():
        options = TrainConfig.from_json(run / TRAIN_FILE)
        if any(getattr(options, k) != v for k, v in COMPOSED.items()):
            raise BadInput(f"{run} was trained by an earlier demo with other options: remove it (or give --out) "
                           "to train the second row again")


def measure(model: CLIP, dataset: str, world: World) -> tuple[dict, tuple]:
    """Zero-shot top-1 and top-5 (apart for the seen and the never-seen pairs) and the swap
    test; and the zero-shot predictions (probabilities, targets, scenes)."""
    probs, targets, scenes = zero_shot(model, dataset)
    swaps = compositionality_score(model, world)
    return {**pair_accuracies(probs, targets, scenes, world), "chance": 1 / len(world.labels),
            "compositionality": swaps["score"], "compositionality_chance": swaps["chance"]}, (probs, targets, scenes)


def pair_accuracies(probs: torch.Tensor, targets: torch.Tensor, scenes: list, world: World) -> dict[str, float]:
    """Zero-shot top-1 and top-5 over one-object scenes, and top-1 apart for the colour-shape
    pairs training showed and for those it held out."""
    held = set(world.held_out)
    unseen = torch.tensor([(s.objects[0].colour, s.objects[0].shape) in held for s in scenes])
    return {"top1": topk_accuracy(probs, targets), "top5": topk_accuracy(probs, targets, 5),
            "top1_seen_pairs": topk_accuracy(probs[~unseen], targets[~unseen]),
            "top1_unseen_pairs": topk_accuracy(probs[unseen], targets[unseen])}


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
