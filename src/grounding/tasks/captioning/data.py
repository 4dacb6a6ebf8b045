"""Captioned images: the synthetic world's scenes (training never shows the held-out colour-
shape pairs), or any list of captioned images that `grounding train --data` reads (a CSV of
image,caption, where several rows per image give several references; Tux Paint's stamps)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ...data.images import ImageRef
from ...data.specs import parse_spec
from ...data.streams import ListStream, split_off
from ...data.synthetic import World


@dataclass
class CaptionExample:
    captions: list[str]
    ref: ImageRef = ImageRef()  # its scene or its file; ref.key names it in predictions.jsonl


def normalise_caption(text: str) -> str:
    """Lowercase words without punctuation, as the COCO evaluation's tokeniser leaves them."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


class SyntheticCaptions:
    def __init__(self, world: World | None = None, seed: int = 0, split: str = "train"):
        self.world, self.seed, self.split = world or World(), seed, split

    def batch(self, step: int, size: int) -> list[CaptionExample]:
        scenes = self.world.batch(self.seed, step, size, self.split)
        return [CaptionExample([s.caption()], ImageRef(scene=s)) for s in scenes]


def caption_examples(spec: str) -> list[CaptionExample]:
    """The captioned images of a training-pairs SPEC that lists them (csv:PATH, tuxpaint, ...)."""
    from ...data.pairs import listed_pairs

    return [CaptionExample(p.captions, ImageRef(p.image)) for p in listed_pairs(spec)]


def open_captions(spec: str, seed: int = 0, held_out: float = 0.2
                  ) -> tuple[SyntheticCaptions | ListStream, list[CaptionExample] | None]:
    """The training source, and for a fixed list the seeded share of its images kept out of
    training for evaluation (None for the synthetic world, whose test scenes are new draws)."""
    if parse_spec(spec, "train").kind == "synthetic":
        return SyntheticCaptions(seed=seed), None
    kept, held = split_off(caption_examples(spec), seed, held_out)
    return ListStream(kept, seed), held
