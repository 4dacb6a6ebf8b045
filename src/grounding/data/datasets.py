"""Labelled image datasets named by SPEC strings, for zero-shot evaluation and linear probes.

    folder:PATH            one sub-folder per class (folder name as label, or PATH/classes.txt
                           with lines "FOLDER<TAB>LABEL" or "FOLDER,LABEL")
    csv:PATH               columns image,label; several labels as "a|b" make it multi-label
    synthetic[:OPTS]       the built-in world; OPTS like per_label=10,seed=1,multi
    fashion-mnist[:train]  Debian's dataset-fashion-mnist (10,000 test photos, 10 classes)
    flags                  Debian's iso-flags-png-320x240, named by Debian's iso-codes
    emoji:STYLE[:PATH]     named emoji: google, twitter, apple, facebook, fluent-3d (data/emoji.py)
    iconify:SET[:PATH]     named icons of an Iconify set, rendered once (data/emoji.py)
    photos[:demo]          the real photos that ship in scikit-image and matplotlib, each with
                           a label, classified among the set's labels; `demo`: the four the demo
                           shows (and the built-in model's design was chosen on), among 12 labels

A dataset is indexable without loading its images, so that worker processes decode them.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..errors import BadInput, NotFound
from ..files import read_csv_rows
from . import benchmarks
from .emoji import open_emoji, open_iconify
from .examples import Dataset
from .images import IMAGE_SUFFIXES, ImageRef, listed
from .sources import SOURCES, MissingPackageError, country_names
from .specs import Spec, parse_spec
from .synthetic import World

# Real photos in the wheels, labelled before any model saw them. The demo's four were looked at
# while the built-in model was designed; the rest never were (its held-out photo test).
DEMO_PHOTOS = {"skimage/coffee.png": "coffee", "skimage/chelsea.png": "cat", "skimage/rocket.jpg": "rocket",
               "skimage/astronaut.png": "astronaut"}
DEMO_LABELS = ["coffee", "cat", "rocket", "astronaut", "dog", "car", "house", "tree", "bicycle", "pizza", "guitar",
               "clock"]
PHOTOS = {"skimage/brick.png": "brick wall", "skimage/camera.png": "cameraman", "skimage/clock_motion.png": "clock",
          "skimage/coins.png": "coins", "skimage/grass.png": "grass", "skimage/gravel.png": "gravel",
          "skimage/hubble_deep_field.jpg": "galaxies", "skimage/moon.png": "moon",
          "skimage/motorcycle_left.png": "motorcycle", "skimage/page.png": "page of text",
          "skimage/retina.jpg": "retina", "matplotlib/grace_hopper.jpg": "woman"}
FASHION_CLASSES = ["T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle boot"]


def open_dataset(text: str) -> Dataset:
    """The labelled images a SPEC names (data/specs.py, role `dataset`)."""
    spec = parse_spec(text, "dataset")
    openers = {"folder": _folder, "csv": _csv, "synthetic": _synthetic, "fashion-mnist": _fashion_mnist,
               "flags": _flags, "emoji": lambda spec: open_emoji(spec.argument),
               "iconify": lambda spec: open_iconify(spec.argument), "photos": _photos,
               "wds": benchmarks.wds, "imagenet": benchmarks.imagenet, "cars": benchmarks.cars,
               "country211": benchmarks.country211, "cifar10": benchmarks.cifar, "cifar100": benchmarks.cifar}
    data = openers[spec.kind](spec)
    if not len(data):
        raise BadInput(f"{spec}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))} files)")
    return data


def _folder(spec: Spec) -> Dataset:
    root = Path(spec.argument)
    if not root.is_dir():
        raise NotFound(f"{root}: no such folder (folder:PATH wants one sub-folder per class)")
    names = {}
    if (root / "classes.txt").is_file():
        for line in (root / "classes.txt").read_text(encoding="utf-8").splitlines():
            if line.strip():
                folder, _, label = line.partition("\t") if "\t" in line else line.partition(",")
                names[folder.strip()] = label.strip()
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise BadInput(f"{root}: no class sub-folders")
    classes = [names.get(f.name, f.name.replace("_", " ")) for f in folders]
    paths, targets = [], []
    for index, folder in enumerate(folders):
        for path in sorted(folder.rglob("*")):
            if listed(path):
                paths.append(path)
                targets.append((index,))
    return Dataset(f"folder:{root}", classes, [str(p) for p in paths], targets, images=_files(paths))


def _csv(spec: Spec) -> Dataset:
    path = Path(spec.argument)
    rows = read_csv_rows(path, {"image", "label"}, "csv:PATH wants columns image,label")
    label_lists = [[x.strip() for x in (row["label"] or "").split("|") if x.strip()] for row in rows]
    empty = [n for n, labels in enumerate(label_lists, 2) if not labels]
    if empty:
        raise BadInput(f"{path}: line {empty[0]} has an empty label ({len(empty)} such rows); fill the label in "
                       "or remove the row")
    classes = sorted({label for labels in label_lists for label in labels})
    index = {c: i for i, c in enumerate(classes)}
    paths = [(path.parent / row["image"]) for row in rows]
    targets = [tuple(index[x] for x in labels) for labels in label_lists]
    return Dataset(f"csv:{path}", classes, [str(p) for p in paths], targets, images=_files(paths))


def _synthetic(spec: Spec) -> Dataset:
    """Single-object scenes of every colour-shape label; with `multi`, scenes of 1 to 4 objects
    labelled with every pair present (the seed's 'detect all objects')."""
    world, seed, per_label = World(), spec.option("seed", 1), spec.option("per_label", 10)
    if spec.options.get("multi"):
        rng = np.random.default_rng([seed, 4])
        scenes = [world.sample(rng, "any") for _ in range(per_label * len(world.labels))]
        index = {label: i for i, label in enumerate(world.labels)}
        targets = [tuple(sorted({index[f"{o.colour} {o.shape}"] for o in s.objects})) for s in scenes]
    else:
        scenes, single = world.labelled(seed, per_label)
        targets = [(t,) for t in single]
    keys = [f"synthetic/{seed}/{i:05d}" for i in range(len(scenes))]
    return Dataset("synthetic", world.labels, keys, targets, templates="synthetic",
                   images=[ImageRef(scene=s) for s in scenes], render_size=spec.option("size", 64))


def _files(paths: list[Path]) -> list[ImageRef]:
    return [ImageRef(p) for p in paths]


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _fashion_mnist(spec: Spec) -> Dataset:
    split = spec.argument or "test"
    prefix = {"test": "t10k", "train": "train"}.get(split)
    if prefix is None:
        raise BadInput("fashion-mnist takes :test (the default) or :train")
    root = SOURCES["fashion-mnist"].require(f"{prefix}-images-idx3-ubyte.gz")
    images, labels = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
    pixels, targets = _read_idx(images), _read_idx(labels)
    keys = [f"fashion-mnist/{split}/{i:05d}" for i in range(len(targets))]
    return Dataset(f"fashion-mnist:{split}", FASHION_CLASSES, keys, [(int(t),) for t in targets],
                   templates="fashion", images=[ImageRef(pixels=p, name=k) for p, k in zip(pixels, keys)])


def _flags(spec: Spec) -> Dataset:
    flags = SOURCES["flags"].require()
    names = country_names()
    paths = sorted(p for p in flags.glob("*.png") if p.stem in names)
    classes = [names[p.stem] for p in paths]
    skipped = len(list(flags.glob("*.png"))) - len(paths)
    return Dataset("flags", classes, [str(p) for p in paths], [(i,) for i in range(len(paths))], templates="flags",
                   images=_files(paths), notes=[f"{skipped} flags without an ISO 3166-1 code (regions, organisations) left out"])


def _photos(spec: Spec) -> Dataset:
    from importlib.util import find_spec

    rest = spec.argument

    if rest not in ("", "demo"):
        raise BadInput(f"photos:{rest}: use photos (the held-out photos) or photos:demo")
    photos, labels = (DEMO_PHOTOS, DEMO_LABELS) if rest == "demo" else (PHOTOS, list(PHOTOS.values()))
    roots = {}
    for package, folder in (("skimage", "data"), ("matplotlib", "mpl-data/sample_data")):
        found = find_spec(package)
        if found is None or found.origin is None:
            raise MissingPackageError(f"photos: {package} is not installed; pip install 'grounding[photos]'")
        roots[package] = Path(found.origin).parent / folder
    paths = [roots[name.split("/")[0]] / name.split("/", 1)[1] for name in photos]
    return Dataset(f"photos:{rest}".rstrip(":"), labels, list(photos), [(labels.index(v),) for v in photos.values()],
                   images=_files(paths))
