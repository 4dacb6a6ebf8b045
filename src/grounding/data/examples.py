"""The kinds of listed examples the sources give: a `Dataset` (images with label indices, for
zero-shot evaluation and probes), a `Pair` (an image file with its captions, for training) and
`CaptionedImages` (images each with their captions, for retrieval)."""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .images import ImageList, ImageRef


@dataclass
class Pair:
    """An image file with its captions (one is drawn at each use), and any hard-negative
    captions its data gives (wrong ones that look right: NegCLIP's training rows)."""

    image: Path
    captions: list[str]
    source: str
    negatives: list[str] = field(default_factory=list)


@dataclass
class Dataset:
    """Examples with one or more label indices each. `keys` name the examples in reports."""

    name: str
    classes: list[str]
    keys: list[str]
    targets: list[tuple[int, ...]]
    templates: str | tuple[str, ...] = "default"  # the built-in set that suits it, or its own
    images: list[ImageRef] = field(default_factory=list)  # files, in-memory pixels or scenes
    render_size: int = 224  # of scenes
    notes: list[str] = field(default_factory=list)
    categories: list[str] | None = None  # a group per example (emoji categories)

    def __post_init__(self) -> None:
        warn_label_collisions(self.classes)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def multi_label(self) -> bool:
        return any(len(t) != 1 for t in self.targets)

    def image(self, i: int) -> Image.Image:
        return self.images[i].read(self.render_size)

    def subset(self, indices: list[int] | np.ndarray, name: str | None = None) -> "Dataset":
        pick = lambda xs: None if xs is None else [xs[i] for i in indices]  # noqa: E731
        return Dataset(name or self.name, self.classes, pick(self.keys), pick(self.targets), self.templates,
                       pick(self.images), self.render_size, self.notes, pick(self.categories))

    def only_categories(self, categories: set[str] | tuple[str, ...]) -> "Dataset":
        """The examples of the given categories, classified among their own labels only."""
        keep = [i for i, c in enumerate(self.categories or []) if c in categories]
        labels = sorted({self.classes[t] for i in keep for t in self.targets[i]})
        index = {label: n for n, label in enumerate(labels)}
        part = self.subset(keep, f"{self.name} ({', '.join(sorted(categories))})")
        part.classes = labels
        part.targets = [tuple(index[self.classes[t]] for t in self.targets[i]) for i in keep]
        return part


def normalise_label(label: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", label.lower()).split())


def warn_label_collisions(classes: list[str]) -> None:
    """Warns, naming them, of labels given twice and of labels that read the same once normalised:
    a zero-shot classifier cannot tell them apart."""
    seen: dict[str, str] = {}
    for label in classes:
        key = normalise_label(label)
        if key in seen:
            what = f"label {label!r} is given twice" if seen[key] == label else \
                f"labels {seen[key]!r} and {label!r} read the same once normalised"
            warnings.warn(f"{what}; a zero-shot classifier cannot tell them apart", stacklevel=3)
        seen.setdefault(key, label)


class CaptionedImages(ImageList):
    """Images, each with one or more captions, read lazily by worker processes: in retrieval
    every caption looks for its image, and every image for any of its captions."""

    def __init__(self, name: str, keys: list[str], captions: list[list[str]], refs: list[ImageRef],
                 size: int = 224):
        super().__init__(refs, size)
        self.name, self.keys, self.captions = name, keys, captions
