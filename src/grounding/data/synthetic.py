"""The built-in grounded world: scenes of 1 to 4 coloured shapes, rendered with Pillow at any
resolution, each with a caption, hard-negative captions and question/answer pairs.

Everything is a pure function of a seed, so a training step's batch can be rebuilt exactly on
resume. Combinations of colour and shape can be held out of training, so that zero-shot
evaluation on them tests composition rather than memory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from ..errors import BadInput
from .relations import OPPOSITE, where

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
    "yellow": (235, 205, 40), "purple": (140, 60, 190), "orange": (245, 135, 30),
}
SIZES = {"small": 0.16, "large": 0.24}  # radius as a share of the image side
BACKGROUND = (245, 245, 240)
# Unseen in training by default: each colour and each shape still appears, just not together.
DEFAULT_HELD_OUT = (("green", "triangle"), ("blue", "circle"), ("yellow", "square"), ("purple", "diamond"))
NUMBER_WORDS = ("zero", "one", "two", "three", "four")
SPLITS = {"train": 0, "held_out": 1, "any": 2}  # seeds the streams of each part of the world


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    x: float  # centre, as a share of the width
    y: float  # centre, as a share of the height

    @property
    def phrase(self) -> str:
        return f"{self.size} {self.colour} {self.shape}"

    def box(self, image_size: int) -> tuple[float, float, float, float]:
        r = SIZES[self.size] * image_size
        cx, cy = self.x * image_size, self.y * image_size
        return (cx - r, cy - r, cx + r, cy + r)


def relation(a: SceneObject, b: SceneObject) -> str:
    """Where a stands relative to b, along the axis that separates them most."""
    return where(a.x - b.x, a.y - b.y)


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]

    def render(self, size: int = 64) -> Image.Image:
        # Drawn at 2x and reduced, so that edges are anti-aliased at any resolution.
        scale = 2
        image = Image.new("RGB", (size * scale, size * scale), BACKGROUND)
        draw = ImageDraw.Draw(image)
        for obj in self.objects:
            x0, y0, x1, y1 = (v * scale for v in obj.box(size))
            fill = COLOURS[obj.colour]
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            if obj.shape == "circle":
                draw.ellipse((x0, y0, x1, y1), fill=fill)
            elif obj.shape == "square":
                inset = (x1 - x0) * 0.1
                draw.rectangle((x0 + inset, y0 + inset, x1 - inset, y1 - inset), fill=fill)
            elif obj.shape == "triangle":
                draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=fill)
            else:
                draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
        return image.resize((size, size), Image.LANCZOS)

    def caption(self) -> str:
        objs = self.objects
        if len(objs) == 1:
            return f"a {objs[0].phrase}"
        if len(objs) == 2:
            return f"a {objs[0].phrase} {relation(objs[0], objs[1])} a {objs[1].phrase}"
        ordered = sorted(objs, key=lambda o: o.x)
        names = [f"a {o.phrase}" for o in ordered]
        return ", ".join(names[:-1]) + f" and {names[-1]}, from left to right"

    def swaps(self) -> dict[str, list[str]]:
        """Captions with the same words in a wrong arrangement, by kind: "attribute" (two objects'
        colours or sizes exchanged), "object" (their shapes exchanged), "relation" (the relation
        reversed). A bag-of-words model cannot tell them from the truth."""
        objs, found = self.objects, {"attribute": set(), "object": set(), "relation": set()}
        for attr, exchanged in self.exchanges(("colour", "shape", "size")):
            found["object" if attr == "shape" else "attribute"].add(exchanged.caption())
        if len(objs) == 2 and (objs[0].colour, objs[0].shape) != (objs[1].colour, objs[1].shape):
            a, b = objs  # (two red squares would make "is the red square left of the red square?")
            found["relation"].add(f"a {a.phrase} {OPPOSITE[relation(a, b)]} a {b.phrase}")
        truth = self.caption()
        return {kind: sorted(captions - {truth}) for kind, captions in found.items() if captions - {truth}}

    def exchanges(self, attrs: tuple[str, ...]) -> Iterator[tuple[str, Scene]]:
        """Each scene made by two objects exchanging one of `attrs` where they differ in it
        ("place": their x and y), with that attribute, pair by pair in order."""
        objs = self.objects
        for i in range(len(objs)):
            for j in range(i + 1, len(objs)):
                a, b = objs[i], objs[j]
                for attr in attrs:
                    fields = ("x", "y") if attr == "place" else (attr,)
                    if any(getattr(a, f) != getattr(b, f) for f in fields):
                        swapped = list(objs)
                        swapped[i] = replace(a, **{f: getattr(b, f) for f in fields})
                        swapped[j] = replace(b, **{f: getattr(a, f) for f in fields})
                        yield attr, Scene(tuple(swapped))

    def hard_negatives(self) -> list[str]:
        """Every swap of `swaps`, whatever its kind."""
        return sorted({caption for captions in self.swaps().values() for caption in captions})

    def near_miss(self, rng: np.random.Generator) -> str:
        """A caption one step from the truth: an arrangement swap where the scene has one,
        otherwise one object's colour or shape replaced. Used as a hard negative in training."""
        swaps = self.hard_negatives()
        if swaps and rng.random() < 0.5:
            return swaps[int(rng.integers(len(swaps)))]
        i = int(rng.integers(len(self.objects)))
        obj = self.objects[i]
        if rng.random() < 0.5:
            other = [s for s in SHAPES if s != obj.shape]
            changed = replace(obj, shape=other[int(rng.integers(len(other)))])
        else:
            other = [c for c in COLOURS if c != obj.colour]
            changed = replace(obj, colour=other[int(rng.integers(len(other)))])
        return Scene(self.objects[:i] + (changed,) + self.objects[i + 1:]).caption()

    def twin(self, rng: np.random.Generator, allowed: set[tuple[str, str]]) -> Scene | None:
        """The same objects in another arrangement, drawn at random: two objects' colours, shapes
        or places exchanged, so that its caption has the same words in another arrangement (a
        one-object scene: its object in another colour or shape, in the same place). A hard
        negative on the image side (NegCLIP's): trained beside this scene, each caption must tell
        the two apart. Every colour-shape pair of the twin is in `allowed`; None where no change
        allows that."""
        if len(self.objects) == 1:
            (only,) = self.objects
            options = [Scene((replace(only, colour=c, shape=s),)) for c, s in sorted(allowed)
                       if (c == only.colour) != (s == only.shape)]
        else:
            options = [scene for _, scene in self.exchanges(("colour", "shape", "place"))]
        truth = self.caption()
        for k in rng.permutation(len(options)):
            twin = options[k]
            if twin.caption() != truth and all((o.colour, o.shape) in allowed for o in twin.objects):
                return twin
        return None

    def questions(self) -> list[tuple[str, str, str]]:
        """(question, answer, type) with type one of count, colour, shape, relation, existence."""
        objs, qa = self.objects, []
        qa.append(("how many objects are there?", NUMBER_WORDS[len(objs)], "count"))
        for shape in SHAPES:
            n = sum(o.shape == shape for o in objs)
            qa.append((f"how many {shape}s are there?", NUMBER_WORDS[n], "count"))
        for obj in objs:
            if sum(o.shape == obj.shape for o in objs) == 1:
                qa.append((f"what colour is the {obj.shape}?", obj.colour, "colour"))
            if sum(o.colour == obj.colour for o in objs) == 1:
                qa.append((f"what shape is the {obj.colour} object?", obj.shape, "shape"))
        for colour in COLOURS:
            for shape in SHAPES:
                present = any(o.colour == colour and o.shape == shape for o in objs)
                qa.append((f"is there a {colour} {shape}?", "yes" if present else "no", "existence"))
        if len(objs) == 2 and (objs[0].colour, objs[0].shape) != (objs[1].colour, objs[1].shape):
            a, b = objs  # (two red squares would make "is the red square left of the red square?")
            rel = relation(a, b)
            qa.append((f"is the {a.colour} {a.shape} {rel} the {b.colour} {b.shape}?", "yes", "relation"))
            qa.append((f"is the {a.colour} {a.shape} {OPPOSITE[rel]} the {b.colour} {b.shape}?", "no", "relation"))
        return qa


@dataclass
class World:
    """A distribution over scenes. `split='train'` never shows a held-out colour-shape pair;
    `split='held_out'` puts at least one in every scene; `split='any'` draws from everything."""

    held_out: tuple[tuple[str, str], ...] = DEFAULT_HELD_OUT
    min_objects: int = 1
    max_objects: int = 4
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    _pairs: dict = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for colour, shape in self.held_out:
            if colour not in self.colours or shape not in self.shapes:
                raise BadInput(f"held-out pair {colour} {shape} is not in this world")
        every = [(c, s) for c in self.colours for s in self.shapes]
        held = set(self.held_out)
        self._pairs = {"train": [p for p in every if p not in held], "held_out": sorted(held), "any": every}

    @property
    def labels(self) -> list[str]:
        """Every colour-shape pair as a label, e.g. 'red circle'."""
        return [f"{c} {s}" for c, s in self._pairs["any"]]

    def sample(self, rng: np.random.Generator, split: str = "train", n_objects: int | None = None) -> Scene:
        n = n_objects or int(rng.integers(self.min_objects, self.max_objects + 1))
        pairs = self._pairs["train" if split == "train" else "any"]
        chosen = [pairs[i] for i in rng.integers(len(pairs), size=n)]
        if split == "held_out":
            held = self._pairs["held_out"]
            chosen[0] = held[int(rng.integers(len(held)))]
        objects: list[SceneObject] = []
        for colour, shape in chosen:
            size = "small" if n > 2 or rng.random() < 0.5 else "large"
            objects.append(self._place(rng, colour, shape, size, objects))
        return Scene(tuple(objects))

    @staticmethod
    def _place(rng: np.random.Generator, colour: str, shape: str, size: str,
               others: list[SceneObject]) -> SceneObject:
        r = SIZES[size]
        best, best_gap = None, -math.inf
        for _ in range(50):  # rejection sampling; keeps the least crowded try if none is free
            x, y = rng.uniform(r + 0.02, 1 - r - 0.02, size=2)
            gap = min((math.hypot(x - o.x, y - o.y) - r - SIZES[o.size] for o in others), default=1.0)
            if gap > best_gap:
                best, best_gap = (float(x), float(y)), gap
            if gap > 0.03:
                break
        return SceneObject(shape, colour, size, *best)

    def batch(self, seed: int, index: int, size: int, split: str = "train") -> list[Scene]:
        """The `index`-th batch of a seeded stream: the same arguments always give the same scenes."""
        rng = np.random.default_rng([seed, index, SPLITS[split]])
        return [self.sample(rng, split) for _ in range(size)]

    def twinned_batch(self, seed: int, index: int, size: int, split: str = "train") -> list[tuple[Scene, bool]]:
        """Like `batch`, but each scene that has a twin (`Scene.twin`) is followed by it: (scene,
        whether it is the twin of the scene before it)."""
        rng = np.random.default_rng([seed, index, SPLITS[split]])
        allowed = set(self._pairs["train" if split == "train" else "any"])
        scenes: list[tuple[Scene, bool]] = []
        while len(scenes) < size:
            scene = self.sample(rng, split)
            scenes.append((scene, False))
            twin = scene.twin(rng, allowed) if len(scenes) < size else None
            if twin is not None:
                scenes.append((twin, True))
        return scenes

    def labelled(self, seed: int, per_label: int) -> tuple[list[Scene], list[int]]:
        """Single-object scenes, `per_label` of every colour-shape label (held-out pairs
        included), and each scene's label index into `labels`: a zero-shot test set."""
        rng = np.random.default_rng([seed, 3])
        scenes, targets = [], []
        for index, (colour, shape) in enumerate(self._pairs["any"]):
            for _ in range(per_label):
                size = "small" if rng.random() < 0.5 else "large"
                scenes.append(Scene((self._place(rng, colour, shape, size, []),)))
                targets.append(index)
        return scenes, targets


def synthetic_corpus(n_scenes: int = 2000) -> list[str]:
    """Captions, hard negatives and questions of the built-in world: the text a tokenizer for
    it must cover. Deterministic."""
    world, rng = World(held_out=()), np.random.default_rng(0)
    texts: list[str] = [f"a photo of a {label}." for label in world.labels]
    for _ in range(n_scenes):
        scene = world.sample(rng, "any")
        texts += [scene.caption(), *scene.hard_negatives()[:2]]
        texts += [f"{q} {a}" for q, a, _ in scene.questions()]
    return texts
