"""Training batches built in DataLoader worker processes: draw each source's share, decode and
crop the images, pick and tokenize a caption, and say what was skipped and why.

Worker `w` of `W` builds the batches of steps start + w, start + w + W, ..., and the DataLoader
hands them over in step order. Everything random in a batch is seeded by (seed, step) and each
example's place in it, so for list sources the batch of step N is the same with any number of
workers or ranks, and a resumed run sees what an uninterrupted one would. A tar source's data
stream is tied to the rank and `step % W` (not to the worker process), so it resumes exactly
too, given the same numbers of workers and ranks.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..errors import BadInput
from ..tokenizer import Tokenizer
from .colourless import colourless, greyscale
from .images import BadImageError, TrainTransform, one_thread
from .negatives import swapped
from .pairs import Mixture, Sample, StreamPosition, caption_of, describe_skip


@dataclass
class Batch:
    step: int
    pixels: torch.Tensor
    ids: torch.Tensor
    negatives: torch.Tensor | None
    drawn: int  # examples drawn for this batch, the bad ones included
    skipped: list[dict] = field(default_factory=list)  # {"key", "reason"} per example left out
    truncated: int = 0  # captions cut to the context length
    positions: dict[str, dict] = field(default_factory=dict)  # "source/stream" -> StreamPosition, tar sources
    image_features: torch.Tensor | None = None  # instead of pixels and ids: cached backbone features
    text_features: torch.Tensor | None = None
    have_negative: torch.Tensor | None = None  # which rows of `negatives` are real (some examples have none)


class PairBatches(IterableDataset):
    """The batches of steps start..stop. In a data-parallel run, rank `rank` of `ranks` builds
    its share of each global batch of `batch_size`: its slice of what the list sources draw (the
    global draw is the same on every rank), and its own tar streams' samples."""

    def __init__(self, mixture: Mixture, tokenizer: Tokenizer, transform: TrainTransform, batch_size: int,
                 seed: int, start: int, stop: int, streams: int = 1, positions: dict | None = None,
                 hard_negatives: bool = False, rank: int = 0, ranks: int = 1, grey: float = 0.0,
                 drop_colour_words: float = 0.0):
        self.mixture, self.tokenizer, self.transform = mixture, tokenizer, transform
        self.slots = mixture.slots(batch_size // ranks)  # this rank's examples of each source
        self.seed, self.start, self.stop, self.streams = seed, start, stop, max(1, streams)
        self.positions = positions or {}
        self.hard_negatives, self.grey, self.drop_colour_words = hard_negatives, grey, drop_colour_words
        self.rank, self.ranks = rank, ranks

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        if workers != self.streams:
            raise BadInput(f"built for {self.streams} data streams, run by {workers} workers")
        first = self.start + worker
        # the tar stream this worker continues (docs/training.md: resuming is exact): one per rank and step % W
        stream = self.rank * workers + first % workers
        problems: list[dict] = []
        readers = {}
        for i, source in enumerate(self.mixture.sources):
            if source.streaming:
                saved = self.positions.get(f"{i}/{stream}")
                position = StreamPosition(**saved) if saved else StreamPosition()
                readers[i] = source.samples(self.seed, stream, workers * self.ranks, position, problems)
        for step in range(first, self.stop, workers):
            yield self.build(step, readers, problems, stream)

    def choose(self, step: int, readers: dict | None = None, problems: list[dict] | None = None, stream: int = 0
               ) -> tuple[list, list[dict], dict, int]:
        """This rank's examples of the step as (sample, caption, source, index), the index being
        the example's place in the source's global draw; what was skipped for want of a caption;
        the tar streams' positions after it; and how many examples were drawn."""
        pick = np.random.default_rng([self.seed, step, 11])  # which caption, when there are several
        chosen, skipped, positions, drawn = [], list(problems or []), {}, 0
        if problems:
            problems.clear()
        for i, (source, n) in enumerate(zip(self.mixture.sources, self.slots)):
            if n == 0:
                continue
            mine = range(self.rank * n, (self.rank + 1) * n)  # this rank's places in the source's global draw
            if source.streaming:
                samples = []
                for _ in range(n):
                    sample, position = next(readers[i])
                    samples.append(sample)
                positions[f"{i}/{stream}"] = asdict(position)
            else:  # every rank draws (and picks captions for) the global batch, and keeps its slice
                samples = source.draw(self.seed + 7919 * i, step, n * self.ranks)
            captions = [caption_of(sample, pick) for sample in samples]
            if not source.streaming:
                samples, captions = samples[mine.start:mine.stop], captions[mine.start:mine.stop]
            for sample, caption, index in zip(samples, captions, mine):
                drawn += 1
                if caption is None:
                    skipped.append({"key": sample.key, "reason": describe_skip(sample)})
                else:
                    chosen.append((sample, caption, i, index))
        return chosen, skipped, positions, drawn

    def build(self, step: int, readers: dict, problems: list[dict], stream: int) -> Batch:
        chosen, skipped, positions, drawn = self.choose(step, readers, problems, stream)
        pixels, captions, wrong = [], [], []
        for sample, caption, source, index in chosen:
            try:
                image = sample.image(self.transform.image_size)
            except BadImageError as e:
                skipped.append({"key": sample.key, "reason": describe_skip(sample, e)})
                continue
            # each example's crop (near miss, grey copy) seeded by its place in the global batch: the same on any rank;
            # a twin is greyed (or loses its colour words) with the scene before it, so that the two stay each
            # other's hard negative
            family = index - 1 if sample.twin else index
            draw = np.random.default_rng([self.seed, step, 9, source, family]).random() \
                if self.grey or self.drop_colour_words else 1.0  # no generator per example when neither is asked
            grey, uncoloured = draw < self.grey, draw < self.grey + self.drop_colour_words
            if grey:
                image = greyscale(image)
            pixels.append(self.transform(image, np.random.default_rng([self.seed, step, 7, source, index])))
            captions.append(colourless(caption) if uncoloured else caption)
            if self.hard_negatives:
                negative = hard_negative(sample, caption, np.random.default_rng([self.seed, step, 8, source, index]))
                if uncoloured and negative:  # a swap of colours alone is no negative once they are gone
                    negative = colourless(negative) if colourless(negative) != captions[-1] else None
                wrong.append(negative)
        size = self.transform.image_size
        ids, cut = self.tokenizer.tokenize(captions, truncate=True)
        negatives = have = None
        if self.hard_negatives:  # a negative that is a caption of this batch is one of its columns already
            shown = set(captions)
            wrong = [None if text in shown else text for text in wrong]
            negatives = self.tokenizer([text or "" for text in wrong], truncate=True)
            have = None if all(wrong) else torch.tensor([text is not None for text in wrong])
        stacked = torch.stack(pixels) if pixels else torch.empty(0, 3, size, size)
        return Batch(step, stacked, ids, negatives, drawn, [dict(r, step=step) for r in skipped], len(cut),
                     positions, have_negative=have)


def hard_negative(sample: Sample, caption: str, rng: np.random.Generator) -> str | None:
    """One wrong caption for the example, or None: a scene's near miss (the built-in world),
    one of the data's own negatives (a CSV's `negatives` column), or else a rule-made swap of the
    caption's words (data/negatives.py)."""
    if sample.ref.scene is not None:
        return sample.ref.scene.near_miss(rng)
    choices = sample.negatives or swapped(caption)
    return choices[int(rng.integers(len(choices)))] if choices else None


def batch_loader(batches: PairBatches, workers: int) -> DataLoader:
    """Batches in step order, built by `workers` processes (0: in this process)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizer runs inside each worker
    return DataLoader(batches, batch_size=None, num_workers=workers, worker_init_fn=one_thread if workers else None,
                      prefetch_factor=2 if workers else None, collate_fn=_as_is)


def _as_is(batch: Batch) -> Batch:
    return batch
