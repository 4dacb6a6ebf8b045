"""Images with boxes: the built-in world's scenes, each object's box and its colour-shape phrase
known exactly (a detector trains on the seen colour-shape pairs only; the held-out pairs stay
unseen as queries too, so that finding them measures composition, not memory), or a user's
boxes in COCO's instances format, which labelling tools export."""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...data.images import ImageRef
from ...data.specs import parse_spec
from ...data.streams import ListStream, split_off
from ...data.synthetic import COLOURS, SHAPES, SPLITS, World, relation
from ...errors import BadInput
from ...files import reading


@dataclass
class BoxedImage:
    ref: ImageRef
    boxes: np.ndarray  # (objects, 4) corners x0, y0, x1, y1 as shares of the side, in [0, 1]
    labels: list[str]  # each object's class, a query text
    expression: str | None = None  # a referring expression for one object of the image
    referent: int | None = None  # that object's index
    expression_kind: str = ""  # name, size or relation: what it takes to single the object out


def referring_expression(scene, rng: np.random.Generator) -> tuple[str, int, str] | None:
    """A phrase that picks out exactly one object of the scene, and its index and kind: by its
    colour and shape where no other object shares them ("the red circle"), by its size too
    ("the small red circle"), or by where it is from another object singled out by colour and
    shape ("the red circle left of the blue square"); one of those a random object allows."""
    objs = scene.objects
    named = lambda o: (o.colour, o.shape)  # noqa: E731
    unique = [o for o in objs if sum(named(p) == named(o) for p in objs) == 1]
    choices = []
    for k, target in enumerate(objs):
        if target in unique:
            choices.append((f"the {target.colour} {target.shape}", k, "name"))
        if sum((p.size, *named(p)) == (target.size, *named(target)) for p in objs) == 1 and target not in unique:
            choices.append((f"the {target.phrase}", k, "size"))
        for other in unique:
            if other is target or named(other) == named(target):
                continue
            where = relation(target, other)
            if sum(named(p) == named(target) and relation(p, other) == where for p in objs if p is not other) == 1:
                choices.append((f"the {target.colour} {target.shape} {where} the {other.colour} {other.shape}", k,
                                "relation"))
    if not choices:
        return None
    kinds = sorted({kind for _, _, kind in choices})  # each kind as likely, whatever the scene allows most
    kind = kinds[int(rng.integers(len(kinds)))]
    pool = [c for c in choices if c[2] == kind]
    return pool[int(rng.integers(len(pool)))]


def phrase(colour: str, shape: str) -> str:
    return f"{colour} {shape}"


class SyntheticBoxes:
    """A seeded stream of scenes with their boxes: batch `step` is always the same."""

    def __init__(self, world: World | None = None, seed: int = 0, split: str = "train"):
        self.world, self.seed, self.split = world or World(), seed, split
        held = set(self.world.held_out)
        every = [(c, s) for c in COLOURS for s in SHAPES]
        self.seen = [phrase(c, s) for c, s in every if (c, s) not in held]
        self.unseen = [phrase(c, s) for c, s in every if (c, s) in held]

    @property
    def classes(self) -> list[str]:
        """The queries of this split: the seen pairs in training, every pair otherwise."""
        return self.seen if self.split == "train" else self.seen + self.unseen

    def batch(self, step: int, size: int) -> list[BoxedImage]:
        rng = np.random.default_rng([self.seed, step, SPLITS[self.split], 11])
        examples = []
        for _ in range(size):
            scene = self.world.sample(rng, self.split)
            boxes = np.array([obj.box(1) for obj in scene.objects], dtype=np.float32).clip(0, 1)
            expression = referring_expression(scene, rng)
            examples.append(BoxedImage(ImageRef(scene=scene), boxes, [phrase(o.colour, o.shape) for o in scene.objects],
                                       *(expression or (None, None, ""))))
        return examples


def drawn_otherwise(example: BoxedImage, rng: np.random.Generator, size: int = 96) -> BoxedImage:
    """The same scene drawn by another hand: another size, a random light background, no
    anti-aliasing, shapes a little rounder or sharper, and one or two grey distractors (a star or
    a ring, outside the vocabulary) where they overlap no object. A detector that learned the
    renderer rather than the objects loses here."""
    from PIL import Image, ImageDraw

    from ...data.synthetic import COLOURS as PAINT

    background = tuple(int(v) for v in rng.integers(200, 256, 3))
    image = Image.new("RGB", (size, size), background)
    pen = ImageDraw.Draw(image)
    for obj, (x0, y0, x1, y1) in zip(example.ref.scene.objects, example.boxes * size):
        fill, cx, cy = PAINT[obj.colour], (x0 + x1) / 2, (y0 + y1) / 2
        if obj.shape == "circle":
            pen.ellipse((x0, y0, x1, y1), fill=fill)
        elif obj.shape == "square":
            pen.rounded_rectangle((x0 + 2, y0 + 2, x1 - 2, y1 - 2), radius=size // 24, fill=fill)
        elif obj.shape == "triangle":
            pen.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=fill)
        else:
            pen.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
    for _ in range(int(rng.integers(1, 3))):
        r = size * 0.08
        cx, cy = (float(v) for v in rng.uniform(r, size - r, 2))
        if all(cx + r < x0 or cx - r > x1 or cy + r < y0 or cy - r > y1 for x0, y0, x1, y1 in example.boxes * size):
            if rng.random() < 0.5:
                pen.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(120, 120, 120), width=max(1, size // 40))
            else:
                points = [(cx + (r if i % 2 == 0 else r / 2.5) * np.cos(i * np.pi / 5 - np.pi / 2),
                           cy + (r if i % 2 == 0 else r / 2.5) * np.sin(i * np.pi / 5 - np.pi / 2)) for i in range(10)]
                pen.polygon(points, fill=(130, 130, 130))
    return BoxedImage(ImageRef(pixels=np.asarray(image), name=example.ref.key), example.boxes, example.labels,
                      example.expression, example.referent, example.expression_kind)


def coco_boxes(path: str | Path) -> tuple[list[BoxedImage], list[str]]:
    """COCO's instances JSON (`images` with file_name, width and height; `annotations` with
    image_id, category_id and bbox as x, y, width, height in pixels; `categories` with id and
    name), image files relative to the JSON's folder. Boxes are clipped to their image; a box
    with no area left, an unknown image or category, and crowd regions are left out, said in one
    warning; images without boxes stay (they teach what is not there). Returns the images and
    the class names."""
    path = Path(path)
    with reading(path, "export the annotations again as COCO JSON"):
        data = json.loads(path.read_text(encoding="utf-8"))
        categories = {c["id"]: c["name"] for c in data["categories"]}
        images = {i["id"]: (i["file_name"], float(i["width"]), float(i["height"])) for i in data["images"]}
        annotations = data.get("annotations", [])
    if not categories or not images:
        raise BadInput(f"{path}: {'no categories' if not categories else 'no images'} in it; is it COCO's instances "
                       "format (images, annotations, categories)?")
    boxes: dict[int, list] = {i: [] for i in images}
    left_out = []
    for a in annotations:
        where = f"annotation {a.get('id', '?')}"
        if a.get("image_id") not in images:
            left_out.append(f"{where}: image {a.get('image_id')!r} is not among the images")
            continue
        if a.get("category_id") not in categories:
            left_out.append(f"{where}: category {a.get('category_id')!r} is not among the categories")
            continue
        if a.get("iscrowd"):
            left_out.append(f"{where}: a crowd region, not one object")
            continue
        _, width, height = images[a["image_id"]]
        x, y, w, h = (float(v) for v in a["bbox"])
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        if x1 <= x0 or y1 <= y0:
            left_out.append(f"{where}: box {a['bbox']} has no area inside its {width:.0f}x{height:.0f} image")
            continue
        boxes[a["image_id"]].append(([x0 / width, y0 / height, x1 / width, y1 / height], categories[a["category_id"]]))
    missing = [name for name, _, _ in images.values() if not (path.parent / name).is_file()]
    if missing:
        left_out.append(f"{len(missing)} image files are not beside the JSON ({missing[0]}...)")
    examples = [BoxedImage(ImageRef(path.parent / name), np.array([b for b, _ in boxes[i]], np.float32).reshape(-1, 4),
                           [label for _, label in boxes[i]]) for i, (name, _, _) in images.items() if name not in missing]
    if left_out:
        warnings.warn(f"{path}: left out {len(left_out)} annotations or images ({left_out[0]}" +
                      (f"; and {len(left_out) - 1} more)" if len(left_out) > 1 else ")"), stacklevel=2)
    if not examples:
        raise BadInput(f"{path}: none of its images is beside it; image file_names are read relative to the JSON's "
                       "folder")
    return examples, [categories[c] for c in sorted(categories)]


class ListBoxes(ListStream[BoxedImage]):
    """A user's boxed images, with their class names as the queries."""

    def __init__(self, examples: list[BoxedImage], classes: list[str], seed: int = 0):
        super().__init__(examples, seed)
        self.classes = classes


def open_boxes(spec: str, seed: int = 0, held_out: float = 0.2) -> tuple[SyntheticBoxes | ListBoxes, list | None]:
    """The training source, and for a COCO file the seeded share of its images kept out of
    training for evaluation (None for the built-in world, whose test scenes are new draws)."""
    parsed = parse_spec(spec, "boxes", "--data")
    if parsed.kind == "synthetic":
        return SyntheticBoxes(seed=seed), None
    examples, classes = coco_boxes(parsed.argument)
    kept, held = split_off(examples, seed, held_out)
    return ListBoxes(kept, classes, seed), held


def targets(examples: list[BoxedImage], classes: list[str], device: torch.device) -> list[dict[str, torch.Tensor]]:
    """Per image, its boxes (cx, cy, w, h) and their class indices among `classes`; objects of
    other classes are left out."""
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for e in examples:
        keep = [i for i, label in enumerate(e.labels) if label in index]
        corners = torch.as_tensor(e.boxes[keep], dtype=torch.float32, device=device).reshape(-1, 4)
        centred = torch.cat([(corners[:, :2] + corners[:, 2:]) / 2, corners[:, 2:] - corners[:, :2]], dim=1)
        out.append({"boxes": centred, "labels": torch.tensor([index[e.labels[i]] for i in keep], device=device,
                                                             dtype=torch.long)})
    return out
