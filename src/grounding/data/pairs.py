"""Image-text training pairs named by SPEC strings: the one grammar of `grounding train --data`.

    synthetic               the built-in world's captioned scenes (endless, seeded)
    csv:PATH                columns image,caption, images relative to the CSV; several rows of one
                            image give it several captions, one drawn per step
    folder:PATH             images with their captions beside them: cat.jpg + cat.txt (one caption
                            a line), or PATH/captions.jsonl ({"image": "cat.jpg", "caption": "..."})
    tar:PATTERN             webdataset shards (shards-{00000..00099}.tar), streamed: KEY.jpg (or
                            another image type) with KEY.txt as its caption
    openclipart[:ROOT]      Debian's openclipart-png/-svg, captioned with their titles and keywords
    emoji:STYLE[:PATH]      named emoji of a style: google, twitter, apple, facebook, fluent-3d
    iconify:SET[:PATH]      named icons of an Iconify set (emoji: held-out groups and validation
                            concepts left out in every style, data/emoji.py)
    tuxpaint[:ROOT]         Debian's tuxpaint-stamps-default, with their English captions
    gcompris[:ROOT]         the named photos in Debian's gcompris-qt-data (objects, animals, monuments)

Specs join with `+`. A source followed by `@W` takes the share W of every batch; the sources
without a weight share what is left in proportion to their sizes (`csv:a.csv+tar:b-{0..9}.tar@0.3`).

A source is either a list (everything but tar: sampled in seeded permutations, so the batch of
step N is a pure function of the seed and N) or a stream (tar shards, read in order once per
epoch with seeded shard order and shuffle buffer, resumable from a recorded position).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from ..errors import BadInput, NotFound, need
from ..files import read_csv_rows
from . import clipart
from .examples import Pair
from .images import IMAGE_SUFFIXES, VECTOR_SUFFIXES, BadImageError, ImageRef, listed
from .specs import Spec, expand_braces, parse_mixture
from .streams import ListStream, split_off
from .synthetic import Scene, World


@dataclass
class Sample:
    """One drawn example, not yet decoded: `image()` decodes it (or raises BadImageError), and
    `captions` are its candidate captions (empty when none is usable; `problem` then says why)."""

    ref: ImageRef
    captions: list[str]
    problem: str = ""
    negatives: list[str] = field(default_factory=list)  # the data's own hard negatives, if it has any
    twin: bool = False  # the scene drawn before it, rearranged (train --image-negatives)

    @property
    def key(self) -> str:
        return self.ref.key

    def image(self, size: int) -> Image.Image:
        return self.ref.read(size)


def clean_captions(texts: list[str]) -> list[str]:
    return [t for t in (" ".join(text.split()) for text in texts) if t]


class ListSource:
    """A fixed list of pairs, walked in seeded permutations."""

    streaming = False

    def __init__(self, name: str, pairs: list[Pair], left_out: list[dict] | None = None):
        if not pairs:
            raise BadInput(f"{name}: no captioned images found")
        self.name, self.pairs, self.left_out = name, pairs, left_out or []
        self._stream: ListStream | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def hold_out(self, seed: int, count: int) -> list[Pair]:
        """Takes a seeded `count` of the pairs out of this source (for validation) and returns them."""
        if count <= 0:
            return []
        self.pairs, held = split_off(self.pairs, seed, min(0.5, count / len(self.pairs)))
        self._stream = None
        return held

    def draw(self, seed: int, step: int, n: int) -> list[Sample]:
        if self._stream is None or self._stream.seed != seed:
            self._stream = ListStream(self.pairs, seed)
        return [Sample(ImageRef(p.image), p.captions, negatives=p.negatives) for p in self._stream.batch(step, n)]


class SyntheticSource:
    """Scenes of the built-in world; held-out colour-shape pairs never appear."""

    streaming = False
    name = "synthetic"
    left_out: list[dict] = []

    def __init__(self, world: World | None = None):
        self.world = world or World()
        self.twins = False  # each scene beside its rearranged copy (train --image-negatives)

    def __len__(self) -> int:
        return 10 ** 9  # endless; only its share of a mixture reads this

    def hold_out(self, seed: int, count: int) -> list[Pair | Scene]:
        """New scenes of the world's held-out split (never drawn for training)."""
        return self.world.batch(seed, 0, count, split="held_out") if count > 0 else []

    def draw(self, seed: int, step: int, n: int) -> list[Sample]:
        if self.twins:
            return [Sample(ImageRef(scene=s), [s.caption()], twin=twin)
                    for s, twin in self.world.twinned_batch(seed, step, n)]
        return [Sample(ImageRef(scene=s), [s.caption()]) for s in self.world.batch(seed, step, n)]


@dataclass
class StreamPosition:
    """Where one data worker's stream of a tar source stands: the epoch, and how many samples of
    that epoch it has read (bad ones included)."""

    epoch: int = 0
    read: int = 0
    shard: str = ""


class ShardSource:
    """Webdataset shards, streamed with the `webdataset` library and never listed into memory.
    Each epoch the shards are shuffled with the seed, split among the data streams (whole shards
    each) and read through a seeded shuffle buffer; so a stream is a pure function of the seed,
    the epoch and the number of streams, and resumes exactly by skipping what it had read.
    `resampled`: each stream's "epoch" is a round of shards drawn at random with replacement
    instead, so streams may outnumber shards and no example is tied to a pass over the data."""

    streaming = True
    left_out: list[dict] = []

    def __init__(self, name: str, urls: list[str], shuffle_buffer: int = 1000, resampled: bool = False):
        missing = [u for u in urls if not Path(u).is_file()]
        if missing:
            raise NotFound(f"{missing[0]}: no such tar shard ({len(missing)} of {len(urls)} missing)")
        self.name, self.urls, self.shuffle_buffer, self.resampled = name, urls, shuffle_buffer, resampled

    def __len__(self) -> int:
        return 0  # unknown without reading every shard

    def hold_out(self, seed: int, count: int) -> list:
        return []  # a stream cannot set pairs aside; validate with --eval-data instead

    def samples(self, seed: int, stream: int, streams: int, position: StreamPosition,
                problems: list[dict]) -> Iterator[tuple[Sample, StreamPosition]]:
        """This stream's samples from `position` on, endlessly; unreadable shards go to `problems`."""
        wds = need("webdataset", "shards", "reading tar shards")

        def note(error: Exception) -> bool:
            last = error.args[-1] if len(error.args) > 1 else None  # webdataset puts the shard last, when it knows it
            where = last if isinstance(last, str) and last else self.name
            what = str(error.args[0] if error.args else error)
            if isinstance(error, ValueError) and "duplicate file name" in what:  # a key repeated in a row
                member = what.split(":")[0]
                problems.append({"key": f"{where}:{member}", "reason": f"{where}: {member} appears twice in a row "
                                 "(one key for two samples); the repeat is skipped: give each sample its own key"})
            else:
                problems.append({"key": where, "reason": f"{where}: unreadable from here on ({what}); the shard is "
                                                         "cut short or corrupt"})
            return True  # keep reading

        epoch, skip = position.epoch, position.read
        while True:
            if self.resampled:  # a round of as many shards as an epoch would give the stream, drawn with replacement
                rng = np.random.default_rng([seed, epoch, stream, 6])
                mine = [self.urls[i] for i in rng.integers(len(self.urls), size=max(1, len(self.urls) // streams))]
            else:
                order = np.random.default_rng([seed, epoch, 5]).permutation(len(self.urls))
                mine = [self.urls[i] for i in order[stream::streams]]
            pipeline = wds.DataPipeline(
                wds.SimpleShardList(mine), wds.tarfile_to_samples(handler=note),
                wds.shuffle(self.shuffle_buffer, initial=min(100, self.shuffle_buffer),
                            rng=random.Random(f"{seed}/{epoch}/{stream}")))
            read = 0
            for raw in pipeline:
                read += 1
                if read <= skip:
                    continue
                yield _tar_sample(raw), StreamPosition(epoch, read, raw.get("__url__", ""))
            if read == 0:
                raise BadInput(f"{self.name}: stream {stream} of {streams} read no samples; check the shards")
            epoch, skip = epoch + 1, 0


def _tar_sample(raw: dict) -> Sample:
    key = f"{raw.get('__url__', '')}:{raw.get('__key__', '')}"
    images = [k for k in raw if "." + k.lower().rsplit(".", 1)[-1] in IMAGE_SUFFIXES]
    if not images:
        return Sample(ImageRef(name=key), [], problem=f"{key}: no image member (found {', '.join(k for k in raw if k[0] != '_')})")
    sample = Sample(ImageRef(data=raw[images[0]], name=f"{key}.{images[0]}"), [])
    text = raw.get("txt")
    if text is None:
        sample.problem = f"{sample.key}: no .txt caption beside the image"
        return sample
    try:
        sample.captions = clean_captions(text.decode("utf-8").splitlines())
    except UnicodeDecodeError:
        sample.problem = f"{sample.key}: its caption is not UTF-8 text"
    return sample


@dataclass
class Mixture:
    """Sources with the number of each batch's pairs that each one gives."""

    sources: list
    weights: list[float | None] = field(default_factory=list)

    @property
    def streaming(self) -> bool:
        return any(s.streaming for s in self.sources)

    def shares(self) -> list[float]:
        given = sum(w for w in self.weights if w is not None)
        free = [i for i, w in enumerate(self.weights) if w is None]
        if free and given >= 1:
            raise BadInput(f"the weights given add up to {given:g}, leaving nothing for the sources without one")
        sizes = {i: len(self.sources[i]) for i in free}
        if any(self.sources[i].streaming for i in free):
            sizes = {i: 1 for i in free}  # a stream's size is unknown: share equally
        rest = 1 - given if free else 0
        total = sum(sizes.values())
        shares = [w if w is not None else rest * sizes[i] / total for i, w in enumerate(self.weights)]
        norm = sum(shares)
        return [s / norm for s in shares]

    def slots(self, batch_size: int) -> list[int]:
        """Pairs per source in every batch: the shares, rounded by largest remainder."""
        exact = [s * batch_size for s in self.shares()]
        slots = [int(x) for x in exact]
        for i in sorted(range(len(exact)), key=lambda i: slots[i] - exact[i])[:batch_size - sum(slots)]:
            slots[i] += 1
        return slots


def open_pairs(spec: str, shuffle_buffer: int = 1000, resampled: bool = False) -> Mixture:
    """The sources a --data SPEC names (module docstring)."""
    parts = parse_mixture(spec)
    sources = [_open_one(part, shuffle_buffer, resampled) for part, _ in parts]
    weights = [weight for _, weight in parts]
    if len(sources) > 1:
        plain = [i for i, w in enumerate(weights) if w is None and not sources[i].streaming]
        if len(plain) == len(sources):  # no weights: one list of everything, sampled evenly
            pairs = [p for s in sources for p in s.pairs] if all(isinstance(s, ListSource) for s in sources) else None
            if pairs is not None:
                left_out = [r for s in sources for r in s.left_out]
                return Mixture([ListSource(spec, pairs, left_out)], [None])
    return Mixture(sources, weights)


def listed_pairs(spec: str) -> list[Pair]:
    """Every pair of a SPEC whose sources list their images (all but synthetic and tar)."""
    sources = open_pairs(spec).sources
    if not all(isinstance(s, ListSource) for s in sources):
        raise BadInput(f"{spec!r}: want data that lists its images (csv:PATH, folder:PATH, openclipart, "
                       "emoji:STYLE, iconify:SET, tuxpaint, gcompris), not synthetic or tar")
    return [p for s in sources for p in s.pairs]


def _open_one(spec: Spec, shuffle_buffer: int, resampled: bool):
    kind, rest, name = spec.kind, spec.argument, str(spec)
    if kind == "synthetic":
        return SyntheticSource()
    if kind == "csv":
        return ListSource(name, csv_pairs(rest))
    if kind == "folder":
        return ListSource(name, *folder_pairs(rest))
    if kind == "tar":
        return ShardSource(name, expand_braces(rest), shuffle_buffer, resampled)

    if kind in ("emoji", "iconify"):
        return ListSource(name, clipart.emoji_pairs(name))
    reader = {"openclipart": clipart.clipart_pairs, "tuxpaint": clipart.tuxpaint_pairs,
              "gcompris": clipart.gcompris_pairs}[kind]
    return ListSource(name, reader(Path(rest)) if rest else reader())


def csv_pairs(path: str | Path) -> list[Pair]:
    """Rows of image,caption; the rows of one image become one pair with several captions. An
    optional `negatives` column holds hard-negative captions, separated by `|`."""
    path = Path(path)
    rows = read_csv_rows(path, {"image", "caption"}, "csv:PATH wants columns image,caption")
    by_image: dict[str, list[str]] = {}
    negatives: dict[str, list[str]] = {}
    for row in rows:
        by_image.setdefault(row["image"], []).append(row["caption"] or "")
        negatives.setdefault(row["image"], []).extend(clean_captions((row.get("negatives") or "").split("|")))
    return [Pair(path.parent / image, captions, f"csv:{path}", negatives[image])
            for image, captions in by_image.items()]


def folder_pairs(root: str | Path) -> tuple[list[Pair], list[dict]]:
    """Images under `root` with a caption file beside each (or root/captions.jsonl), and a
    record ({"key", "reason"}) of each file left out."""
    root = Path(root)
    if not root.is_dir():
        raise NotFound(f"{root}: no such folder (folder:PATH wants images with captions beside them)")
    listing = root / "captions.jsonl"
    if listing.is_file():
        by_image: dict[str, list[str]] = {}
        for n, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                captions = row["captions"] if "captions" in row else [row["caption"]]
                by_image.setdefault(row["image"], []).extend(str(c) for c in captions)
            except (json.JSONDecodeError, KeyError, TypeError):
                raise BadInput(f"{listing}:{n}: want a JSON object with 'image' and 'caption' (or 'captions')"
                               ) from None
        return [Pair(root / image, captions, f"folder:{root}") for image, captions in by_image.items()], []
    pairs, left_out = [], []
    for path in sorted(p for p in root.rglob("*") if listed(p)):  # broken links and folders fail when decoded
        if path.suffix.lower() in VECTOR_SUFFIXES:
            left_out.append({"key": str(path), "reason": f"{path}: a vector image, not supported; rasterise it first"})
            continue
        text = path.with_suffix(".txt")
        if not text.is_file():
            left_out.append({"key": str(path), "reason": f"{path}: no caption file {text.name} beside it"})
            continue
        try:
            captions = text.read_bytes().decode("utf-8").splitlines()
        except UnicodeDecodeError:
            left_out.append({"key": str(path), "reason": f"{text}: the caption is not UTF-8 text"})
            continue
        pairs.append(Pair(path, captions, f"folder:{root}"))
    return pairs, left_out


def caption_of(sample: Sample, rng: np.random.Generator) -> str | None:
    """One of the sample's usable captions (drawn only when there are several)."""
    captions = clean_captions(sample.captions)
    if not captions:
        return None
    return captions[0] if len(captions) == 1 else captions[int(rng.integers(len(captions)))]


def describe_skip(sample: Sample, error: BadImageError | None = None) -> str:
    if error is not None:
        return str(error)
    return sample.problem or f"{sample.key}: no usable caption (empty)"
