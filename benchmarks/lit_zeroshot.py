"""Zero-shot accuracy of the built-in model `lit-minilm-effnet` (README: "A real model out of the
box") on data it never trained on, each beside chance and the most frequent class; or, with
--split validation, of several candidate models on the validation sets their design is chosen on.

    python benchmarks/lit_zeroshot.py [--model runs/lit]                      # the test sets
    python benchmarks/lit_zeroshot.py --split validation --model runs/a runs/b --routes 0.2,0.4

Test: Fashion-MNIST test (10,000), flags (iso-flags-png-320x240), Twitter-style emoji of the
groups no style was trained on (Animals & Nature, Food & Drink), the photos in scikit-image and
matplotlib outside the demo's four, and the synthetic world's colour-shape labels. Reports go to
runs/lit-zeroshot/NAME/report.html. Validation: 2,000 seeded Fashion-MNIST *training* images,
Twitter-style emoji of the validation group (Travel & Places, data/emoji.py), the rectangular flags of
@iconify-json/flag (kept out of training; the built-in model learns flags from round ones), and the demo's four photos. Validation scores the models from
backbone features computed once (CACHE/features), so a sweep over route weights costs seconds.
The emoji packages are found where an earlier `--data` or `--dataset` unpacked them, or in
./node_modules; pass --npm DIR (a folder of `npm pack` .tgz files) otherwise.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

import grounding
from grounding import cache
from grounding.data.clipart import clipart_pairs
from grounding.data.datasets import open_dataset
from grounding.data.examples import Dataset, normalise_label
from grounding.data.emoji import HELD_OUT, VALIDATION
from grounding.data.images import image_loader
from grounding.data.sources import MissingPackageError
from grounding.evaluation.run import evaluate_zero_shot
from grounding.inference.encode import text_classifier
from grounding.inference.templates import TEMPLATE_SETS
from grounding.models.pretrained import digest
from grounding.training.feed import cached_features


def npm_spec(kind: str, name: str, package: str, npm: Path | None) -> str:
    found = sorted(npm.glob(f"{package}-[0-9]*.tgz")) if npm else []
    return f"{kind}:{name}:{found[-1]}" if found else f"{kind}:{name}"


def test_sets(npm: Path | None) -> dict[str, callable]:
    return {"fashion-mnist": lambda: open_dataset("fashion-mnist"), "flags": lambda: open_dataset("flags"),
            "emoji": lambda: open_dataset(npm_spec("emoji", "twitter", "emoji-datasource-twitter", npm)
                                          ).only_categories(HELD_OUT),
            "photos": lambda: open_dataset("photos"), "synthetic": lambda: open_dataset("synthetic")}


def validation_sets(npm: Path | None) -> dict[str, callable]:
    def fashion() -> Dataset:
        data = open_dataset("fashion-mnist:train")
        return data.subset(np.sort(np.random.default_rng(0).permutation(len(data))[:2000]), "Fashion-MNIST train 2k")
    return {"fashion-mnist": fashion,
            "emoji": lambda: open_dataset(npm_spec("emoji", "twitter", "emoji-datasource-twitter", npm)
                                          ).only_categories((VALIDATION,)),
            "flags": lambda: open_dataset(npm_spec("iconify", "flag", "iconify-json-flag", npm)),
            "photos": lambda: open_dataset("photos:demo")}


@torch.no_grad()
def backbone_features(model, data: Dataset) -> torch.Tensor:
    """The image backbone's features of every example, computed once per backbone."""
    def compute(start: int, stop: int) -> torch.Tensor:
        part = data.subset(range(start, stop))
        rows = [torch.zeros(0, 1)]
        for pixels, _, errors in image_loader(part, model.preprocess, 64, 2):
            if any(errors):
                raise ValueError(f"{data.name}: {[e for e in errors if e][0]}")
            rows.append(model.visual.features(pixels))
        return torch.cat(rows[1:])
    folder = cache.folder("features") / f"validation-{digest(model.visual.backbone)[:12]}"
    return cached_features(folder, [f"{data.name}/{k}" for k in data.keys], compute)


@torch.no_grad()
def validate(models: list[str], routes: list[float | None], npm: Path | None, console: Console) -> None:
    sets = {}
    for name, make in validation_sets(npm).items():
        try:
            sets[name] = make()
        except MissingPackageError as e:
            console.print(f"skipped {name}: {e}")
    table = Table("model", "route", *[f"{n} ({len(d)})" for n, d in sets.items()], "mean")
    features = {}
    for path in models:
        model = grounding.load(path).eval()
        key = digest(model.visual.backbone)
        for name, data in sets.items():
            if (key, name) not in features:  # one backbone's features serve every model over it
                features[(key, name)] = backbone_features(model, data)
        classifiers = {n: text_classifier(model, d.classes, TEMPLATE_SETS[d.templates]) for n, d in sets.items()}
        for route in routes:
            if route is not None:
                if not hasattr(model.visual, "label_embeddings"):
                    continue
                model.visual.route = route
            scores = {}
            for name, data in sets.items():
                embedding = F.normalize(model.visual.from_features(features[(key, name)]), dim=-1)
                predicted = (embedding @ classifiers[name]).argmax(dim=1)
                scores[name] = float((predicted == torch.tensor([t[0] for t in data.targets])).float().mean())
            shown = "as saved" if route is None else f"{route:g}"
            mean = np.mean([v for k, v in scores.items() if k != "photos"])
            table.add_row(path, shown, *[f"{v:.1%}" for v in scores.values()], f"{mean:.1%}")
    console.print(table)
    console.print("The design is chosen on the mean of the Fashion-MNIST, emoji and flags columns, equally "
                  "weighted; the four photos are a check (at least three right), too few to rank by.")


def test(model_path: str, npm: Path | None, out: Path, console: Console) -> None:
    model = grounding.load(model_path)
    table = Table("dataset", "examples", "labels", "top-1", "top-5", "chance", "most frequent class")
    for name, make in test_sets(npm).items():
        try:
            data = make()
        except MissingPackageError as e:
            console.print(f"skipped {name}: {e}")
            continue
        summary = evaluate_zero_shot(model, data, TEMPLATE_SETS[data.templates], out / name, show_progress=False)
        majority = Counter(t[0] for t in data.targets).most_common(1)[0][1] / len(data)
        table.add_row(data.name, str(summary["examples"]), str(summary["labels"]), f"{summary['top1']:.1%}",
                      f"{summary['top5']:.1%}", f"{summary['chance_top1']:.1%}", f"{majority:.1%}")
    console.print(table)
    declare_overlap(test_sets(npm)["emoji"], console)


def declare_overlap(held_out: callable, console: Console) -> None:
    """What of the test sets' concepts the openclipart drawings (trained on whole) also name."""
    try:
        titles = [" " + normalise_label(p.captions[0]) + " " for p in clipart_pairs()]
        labels = {normalise_label(label) for label in held_out().classes}
    except MissingPackageError:
        return
    flags = sum("flag" in t for t in titles)
    named = sorted(label for label in labels if any(f" {label} " in t for t in titles))
    console.print(f"Declared: {flags} of the {len(titles)} openclipart training drawings have 'flag' in their title; "
                  f"{len(named)} of the {len(labels)} held-out emoji names appear in openclipart titles "
                  f"(e.g. {', '.join(named[:8])}): the emoji test holds out those concepts in every emoji style, "
                  "not in the drawings.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("test", "validation"), default="test")
    parser.add_argument("--model", nargs="+", default=["lit-minilm-effnet"],
                        help="the built-in model, or folders made with `grounding train --recipe lit-real`")
    parser.add_argument("--routes", default="", help="validation: ImageNet route weights to try (default: as saved)")
    parser.add_argument("--npm", type=Path, help="a folder holding the emoji-datasource-*.tgz of `npm pack`")
    parser.add_argument("--out", type=Path, default=Path("runs/lit-zeroshot"))
    args = parser.parse_args()
    console = Console()
    if args.split == "validation":
        routes = [float(r) for r in args.routes.split(",")] if args.routes else [None]
        validate(args.model, routes, args.npm, console)
    else:
        for path in args.model:
            test(path, args.npm, args.out, console)


if __name__ == "__main__":
    main()
