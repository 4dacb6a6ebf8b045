"""Captioned images: the synthetic world's scenes (training never shows the held-out colour-
shape pairs), any CSV of image,caption (several rows per image give several references), and
the stamps of Debian's tuxpaint-stamps-default, each with an English caption in a .txt file
beside it (GPL: use it to evaluate, and do not ship weights trained on it)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ...data.datasets import MissingPackageError
from ...data.images import SceneOrFile
from ...data.streams import ListStream, split_off
from ...data.synthetic import Scene, World
from ...io import read_csv_rows

TUXPAINT = Path("/usr/share/tuxpaint/stamps")


@dataclass
class CaptionExample(SceneOrFile):
    captions: list[str]
    scene: Scene | None = None
    path: Path | None = None


def normalise_caption(text: str) -> str:
    """Lowercase words without punctuation, as the COCO evaluation's tokeniser leaves them."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


class SyntheticCaptions:
    def __init__(self, world: World | None = None, seed: int = 0, split: str = "train"):
        self.world, self.seed, self.split = world or World(), seed, split

    def batch(self, step: int, size: int) -> list[CaptionExample]:
        scenes = self.world.batch(self.seed, step, size, self.split)
        return [CaptionExample([s.caption()], scene=s) for s in scenes]


def csv_captions(path: str | Path) -> list[CaptionExample]:
    path = Path(path)
    rows = read_csv_rows(path, {"image", "caption"}, "columns image,caption")
    by_image: dict[str, list[str]] = {}
    for row in rows:
        by_image.setdefault(row["image"], []).append(row["caption"])
    return [CaptionExample(captions, path=path.parent / image) for image, captions in by_image.items()]


def tuxpaint_captions(root: Path = TUXPAINT) -> list[CaptionExample]:
    """Each stamp PNG with the first (English) line of the .txt beside it."""
    if not root.is_dir():
        raise MissingPackageError(f"{root}: no Tux Paint stamps; install them with "
                                  "`apt-get install tuxpaint-stamps-default`")
    examples = []
    for text in sorted(root.rglob("*.txt")):
        png = text.with_suffix(".png")
        lines = text.read_text(encoding="utf-8", errors="replace").splitlines()
        if png.is_file() and lines and lines[0].strip():
            examples.append(CaptionExample([lines[0].strip()], path=png))
    return examples


def caption_examples(spec: str) -> list[CaptionExample]:
    kind, _, rest = spec.partition(":")
    if kind == "csv":
        return csv_captions(rest)
    if kind == "tuxpaint":
        return tuxpaint_captions(Path(rest) if rest else TUXPAINT)
    raise ValueError(f"unknown caption data {spec!r}: use synthetic, csv:PATH (columns image,caption) or tuxpaint")


def open_captions(spec: str, seed: int = 0, held_out: float = 0.2
                  ) -> tuple[SyntheticCaptions | ListStream, list[CaptionExample] | None]:
    """The training source, and for a fixed list the seeded share of its images kept out of
    training for evaluation (None for the synthetic world, whose test scenes are new draws)."""
    if spec == "synthetic":
        return SyntheticCaptions(seed=seed), None
    kept, held = split_off(caption_examples(spec), seed, held_out)
    return ListStream(kept, seed), held
