"""What a CLIP run trains on, step by step, with the bookkeeping its checkpoints keep: tar
streams' positions, and the counts of examples drawn, skipped and truncated (bad ones are listed
once each in OUT/skipped.jsonl, and too many stop the run).

`PairFeed` decodes images in DataLoader workers (data/batches.py). `CachedFeed` serves
head-only training over locked backbones: every image's and caption's backbone features are
computed once and kept in the cache's features (grounding/cache.py), a file set per source and tower, so
that a step costs only the heads and another run over the same sources computes nothing."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from .. import cache
from ..data.batches import Batch, PairBatches, batch_loader
from ..data.images import DecodedImages, ImageList, TrainTransform, one_thread
from ..data.pairs import ListSource, Mixture, clean_captions
from ..errors import BadInput
from ..files import atomic_path, stamp
from ..models import CLIP
from ..models.pretrained import PackagedBackbone, digest
from ..runtime import Runtime
from .checkpoint import RunFolder
from .distributed import World
from .options import TrainConfig


class BadDataError(BadInput):
    """Too much of the training data is unusable; the message says how much and where it is listed."""

    exit_code = 1  # the run began, and stopped
    heading = "stopped"


class PairFeed:
    """In a data-parallel run each rank is fed its share of the global batch, and the counts and
    the list of bad examples are the whole global batch's, kept by rank 0."""

    def __init__(self, mixture: Mixture, model: CLIP, cfg: TrainConfig, run: RunFolder, runtime: Runtime,
                 world: World = World()):
        self.mixture, self.model, self.cfg, self.run, self.runtime = mixture, model, cfg, run, runtime
        self.world = world
        self.positions: dict[str, dict] = {}
        self.counts = {"drawn": 0, "skipped": 0, "truncated": 0, "negatives": 0}  # negatives: examples that had one
        self.iterator = None
        self.logged = {json.loads(line)["key"] for line in _lines(run.skipped)}  # each bad file listed once
        left_out = [dict(r, step=0) for s in mixture.sources for r in s.left_out]
        self._log(left_out)
        if left_out and world.main:
            print(f"left out {len(left_out)} file(s) of {cfg.data}, each listed with its reason in {run.skipped} "
                  f"(first: {left_out[0]['reason']})", file=sys.stderr)

    def state(self) -> dict:
        """What a checkpoint keeps: every rank's stream positions (gathered: call it on every rank)."""
        positions = {k: v for part in self.world.gather_objects(self.positions) for k, v in part.items()}
        return {"positions": positions, "counts": dict(self.counts), "workers": self.cfg.workers,
                "ranks": self.world.size}

    def load_state(self, state: dict) -> None:
        self.positions = state.get("positions", {})
        self.counts.update(state.get("counts", {}))
        for name, now in (("workers", self.cfg.workers), ("ranks", self.world.size)):
            if self.mixture.streaming and state.get(name, now) != now:
                flag = "--workers" if name == "workers" else "as many processes (torchrun --nproc-per-node x nodes)"
                raise BadInput(f"{self.run.out} was trained with {state[name]} {name}; a tar stream resumes exactly "
                               f"only with the same number, so pass {flag}")

    def batch(self, step: int) -> Batch:
        batch = self._next(step)
        assert batch.step == step, f"data for step {batch.step} arrived at step {step}"
        self.positions.update(batch.positions)
        negatives = 0 if batch.negatives is None else \
            len(batch.negatives) if batch.have_negative is None else int(batch.have_negative.sum())
        drawn, skipped, truncated, negatives = self.world.sum([batch.drawn, len(batch.skipped), batch.truncated,
                                                               negatives])
        records = [r for part in self.world.gather_objects(batch.skipped) for r in part] if skipped else []
        self.counts["drawn"] += int(drawn)
        self.counts["skipped"] += int(skipped)
        self.counts["truncated"] += int(truncated)
        self.counts["negatives"] += int(negatives)
        self._log(records)
        self._check_quality()
        return batch

    def _batches(self, start: int) -> PairBatches:
        v = self.model.config.vision
        return PairBatches(self.mixture, self.model.tokenizer, TrainTransform(v.image_size, v.mean, v.std),
                           self.cfg.batch_size, self.cfg.seed, start, self.cfg.steps, max(1, self.cfg.workers),
                           self.positions, self.cfg.hard_negatives, self.world.rank, self.world.size, self.cfg.grey,
                           self.cfg.drop_colour_words)

    def _next(self, step: int) -> Batch:
        if self.iterator is None:
            self.iterator = iter(batch_loader(self._batches(step), self.cfg.workers))
        return next(self.iterator)

    def _log(self, records: list[dict]) -> None:
        if not self.world.main:
            return
        new = [r for r in records if r["key"] not in self.logged]
        if new:
            self.logged.update(r["key"] for r in new)
            with open(self.run.skipped, "a") as log:
                log.writelines(json.dumps(record) + "\n" for record in new)

    def _check_quality(self) -> None:
        drawn, skipped = self.counts["drawn"], self.counts["skipped"]
        if drawn >= max(100, self.cfg.batch_size) and skipped > self.cfg.max_bad_fraction * drawn:
            raise BadDataError(
                f"{skipped} of the {drawn} training examples drawn so far ({skipped / drawn:.1%}) were unusable, over "
                f"--max-bad-fraction {self.cfg.max_bad_fraction:g}; each is listed with its reason in "
                f"{self.run.skipped}. Fix or remove them, or raise --max-bad-fraction")


class CachedFeed(PairFeed):
    """The same examples and captions as PairFeed draws, served as backbone features. Images go
    through the evaluation preprocessing (no random crops: a cached image is one view)."""

    def __init__(self, mixture: Mixture, model: CLIP, cfg: TrainConfig, run: RunFolder, runtime: Runtime):
        super().__init__(mixture, model, cfg, run, runtime)
        if not all(isinstance(s, ListSource) for s in mixture.sources):
            raise BadInput("--cache-features needs data that lists its images (csv, folder, openclipart, emoji, "
                           "tuxpaint, gcompris): the synthetic world and tar streams never repeat an example")
        for name, locked, layers in (("image", cfg.lock_image, cfg.lock_image_unlocked_layers),
                                     ("text", cfg.lock_text, cfg.lock_text_unlocked_layers)):
            tower = model.visual if name == "image" else model.text
            if not isinstance(tower, PackagedBackbone) or not locked or layers:
                raise BadInput(f"--cache-features trains heads over locked backbones: the {name} tower must be a "
                               f"packaged one (EfficientNet-Lite0, MiniLM), locked with --lock-{name} and no "
                               "unlocked layers")
        if cfg.grey or cfg.drop_colour_words:
            raise BadInput("--grey and --drop-colour-words change images and captions with each draw, and "
                           "--cache-features encodes each once: use one or the other")
        self.chooser = self._batches(0)
        model.eval()  # features as the towers give them at use: BatchNorm on its running statistics
        pairs = [p for s in mixture.sources for p in s.pairs]
        images = _by_source([(p.source, str(p.image)) for p in pairs])
        self.image_row = {key: i for i, key in enumerate(k for group in images.values() for k in group)}
        self.images, self.errors = self._image_features(images)
        captions = _by_source([(p.source, c) for p in pairs for c in clean_captions(p.captions)])
        self.text_row = {c: i for i, c in enumerate(c for group in captions.values() for c in group)}
        self.texts, self.cut = self._text_features(captions)

    def _next(self, step: int) -> Batch:
        chosen, skipped, _, drawn = self.chooser.choose(step)
        rows, text_rows = [], []
        for sample, caption, _, _ in chosen:
            row = self.image_row[sample.key]
            if row in self.errors:
                skipped.append({"key": sample.key, "reason": self.errors[row]})
                continue
            rows.append(row)
            text_rows.append(self.text_row[caption])
        truncated = sum(self.cut[r] for r in text_rows)
        empty = torch.empty(0)
        return Batch(step, empty, empty, None, drawn, [dict(r, step=step) for r in skipped], int(truncated), {},
                     self.images[rows], self.texts[text_rows])

    @torch.no_grad()
    def _image_features(self, images: dict[str, list[str]]) -> tuple[torch.Tensor, dict[int, str]]:
        """Every image's backbone features (NaN rows for the unreadable ones), and why each of
        those could not be read."""
        paths = [Path(k) for group in images.values() for k in group]
        data = DecodedImages(ImageList.of_paths(paths), self.model.preprocess)

        def compute(offset: int) -> Callable[[int, int], torch.Tensor]:
            def rows_of(start: int, stop: int) -> torch.Tensor:
                loader = DataLoader(torch.utils.data.Subset(data, range(offset + start, offset + stop)),
                                    batch_size=64, num_workers=self.cfg.workers,
                                    worker_init_fn=one_thread if self.cfg.workers else None)
                rows = []
                for pixels, _, messages in loader:
                    with self.runtime.autocast():
                        features = self.model.visual.features(pixels.to(self.runtime.device)).float().cpu()
                    features[torch.tensor([bool(m) for m in messages])] = float("nan")
                    rows.append(features)
                print(f"image features {offset + stop}/{len(paths)}", file=sys.stderr, flush=True)
                return torch.cat(rows)
            return rows_of

        parts, offset = [], 0
        for group in images.values():
            stamped = [f"{k} {stamp(k)}" for k in group]  # a changed file is a new key
            parts.append(cached_features(self._cache("image", self.model.visual), stamped, compute(offset)))
            offset += len(group)
        features = torch.cat(parts)
        bad = torch.isnan(features).any(dim=1).nonzero().flatten().tolist()
        return features, {i: data[i][2] for i in bad}  # read again for the message: only the bad ones

    @torch.no_grad()
    def _text_features(self, captions: dict[str, list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        tokenizer = self.model.tokenizer
        texts = [c for group in captions.values() for c in group]
        cut = torch.zeros(len(texts), dtype=torch.bool)

        def compute(group: list[str]) -> Callable[[int, int], torch.Tensor]:
            def rows_of(start: int, stop: int) -> torch.Tensor:
                rows = []
                for i in range(start, stop, 256):
                    ids, _ = tokenizer.tokenize(group[i:min(i + 256, stop)], truncate=True)
                    with self.runtime.autocast():
                        rows.append(self.model.text.features(ids.to(self.runtime.device)).float().cpu())
                return torch.cat(rows)
            return rows_of

        for i in range(0, len(texts), 4096):
            _, rows = tokenizer.tokenize(texts[i:i + 4096], truncate=True)
            cut[[i + r for r in rows]] = True
        cache = self._cache("text", self.model.text)
        return torch.cat([cached_features(cache, group, compute(group), chunk=4096) for group in captions.values()]), cut

    def _cache(self, name: str, tower: PackagedBackbone) -> Path:
        """features/NAME-BACKBONE-PRECISION in the cache: the backbone's weights and the precision
        name it, so a changed one starts anew; the least recently used sets go past the limit."""
        folder = cache.folder("features") / f"{name}-{digest(tower.backbone)[:12]}-{self.cfg.precision}"
        cache.evict("features", keep=folder)
        return folder


def _by_source(items: list[tuple[str, str]]) -> dict[str, list[str]]:
    """The distinct keys of each source, in order; a key two sources share goes with the first."""
    groups: dict[str, dict[str, None]] = {}
    seen: set[str] = set()
    for source, key in items:
        if key not in seen:
            seen.add(key)
            groups.setdefault(source, {})[key] = None
    return {source: list(keys) for source, keys in groups.items()}


def cached_features(folder: Path, keys: Sequence[str], compute: Callable[[int, int], torch.Tensor],
                    chunk: int = 512) -> torch.Tensor:
    """compute(start, stop) for each chunk of `keys`, each chunk kept in its own file named by a
    hash of the keys, so that a killed run starts again at the first missing chunk."""
    tag = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:12]
    parts = []
    for start in range(0, len(keys), chunk):
        path = folder / f"{tag}-{start // chunk:05d}.safetensors"
        if not path.is_file():
            with atomic_path(path) as tmp:
                save_file({"features": compute(start, min(start + chunk, len(keys))).contiguous()}, str(tmp))
        parts.append(load_file(str(path))["features"])
    return torch.cat(parts)


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
