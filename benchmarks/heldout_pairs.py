"""Where zero-shot on the built-in world's held-out colour-shape pairs fails (docs/tasks.md,
"Training for composition"): which half of the label a wrong answer misses, and whether the image
embeddings carry shape and colour apart from each other. Linear probes for shape and for colour
are fit on the embeddings of images of the seen pairs only and scored on new images of the seen
and of the held-out pairs: a probe that falls on the held-out pairs means the image tower's shape
(or colour) is bound to the pairs it was trained on, whatever the text tower does.

    python benchmarks/heldout_pairs.py runs/composed [more runs ...]
"""
from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from grounding.data.datasets import open_dataset
from grounding.data.synthetic import World
from grounding.inference.encode import encode_images, text_classifier
from grounding.inference.templates import TEMPLATE_SETS
from grounding.saved import load


def image_features(model, spec: str) -> tuple[np.ndarray, list[str]]:
    """Unit image embeddings of a synthetic dataset's images, and each one's label."""
    dataset = open_dataset(spec)
    features = np.zeros((len(dataset), model.config.embed_dim), np.float32)
    for batch, index, _ in encode_images(model, dataset, workers=0):
        features[index] = batch.float().numpy()
    return features, [dataset.classes[t[0]] for t in dataset.targets]


def misses(model, features: np.ndarray, labels: list[str], held: set[str]) -> Counter:
    """Zero-shot answers (the world's templates) on the held-out pairs' images, from their
    features: right, or which half of the label is wrong."""
    classes = World().labels
    classifier = text_classifier(model, classes, TEMPLATE_SETS["synthetic"]).numpy()
    kinds = Counter()
    for row, label in zip(features @ classifier, labels):
        truth, guess = label.split(), classes[int(row.argmax())].split()
        if label in held:
            kinds["right" if guess == truth else "colour right, shape wrong" if guess[0] == truth[0]
                  else "shape right, colour wrong" if guess[1] == truth[1] else "both wrong"] += 1
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="CLIP models trained on the built-in world")
    parser.add_argument("--per-label", type=int, default=20, help="training images of the probes, per label")
    args = parser.parse_args()
    torch.set_num_threads(2)
    test_spec = "synthetic:seed=1,per_label=10"  # the demo's zero-shot set (demo.measure)
    held = {f"{colour} {shape}" for colour, shape in World().held_out}
    print("| run | held-out pairs: right / colour right, shape wrong / other | shape probe, seen / held-out "
          "| colour probe, seen / held-out |")
    print("|---|---|---|---|")
    for run in args.runs:
        model = load(run)
        train_x, train_labels = image_features(model, f"synthetic:seed=5,per_label={args.per_label}")
        test_x, test_labels = image_features(model, test_spec)
        seen_train = np.array([label not in held for label in train_labels])
        unseen_test = np.array([label in held for label in test_labels])
        probes = []
        for part in (1, 0):  # shape, colour
            fit = LogisticRegression(max_iter=2000).fit(
                train_x[seen_train], [label.split()[part] for label, s in zip(train_labels, seen_train) if s])
            right = fit.predict(test_x) == np.array([label.split()[part] for label in test_labels])
            probes.append(f"{right[~unseen_test].mean():.1%} / {right[unseen_test].mean():.1%}")
        kinds = misses(model, test_x, test_labels, held)
        other = sum(kinds.values()) - kinds["right"] - kinds["colour right, shape wrong"]
        print(f"| {run} | {kinds['right']} / {kinds['colour right, shape wrong']} / {other} | {probes[0]} | {probes[1]} |")


if __name__ == "__main__":
    main()
