"""Training a captioner into a run folder; running the same command again resumes it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...build import attach
from ...models.captioner import Captioner, CaptionerConfig
from ...training.loop import fit
from ..options import CaptionOptions
from ..saved import run_model
from ..towers import copy_towers, freeze_towers, pixels_of, towers_for
from .data import open_captions


def new_model(options: CaptionOptions) -> Captioner:
    torch.manual_seed(options.loop.seed)
    towers, tokenizer, clip = towers_for(options)
    config = CaptionerConfig(towers, options.decoder, options.width, options.layers, options.heads,
                             vocab_size=len(tokenizer), grid_stage=options.grid_stage)
    model = attach(Captioner(config), tokenizer)
    if clip is not None:
        copy_towers(model, clip)
    return model


def train_captioner(options: CaptionOptions, out: str | Path, data=None, show_progress: bool = True) -> Captioner:
    """Trains on `data` (a source with .batch(step, size)), by default `options.data`'s."""
    out = Path(out)
    data = data or open_captions(options.data, options.loop.seed)[0]
    model = run_model(out, "caption", lambda: new_model(options), options.loop.seed)
    if options.freeze:
        freeze_towers(model)

    def backward_at(step: int) -> float:
        examples = data.batch(step, options.loop.batch_size)
        rng = np.random.default_rng([options.loop.seed, step, 11])
        captions = [e.captions[int(rng.integers(len(e.captions)))] for e in examples]
        loss = model.loss(pixels_of(model, examples), model.tokenizer(captions, truncate=True))
        loss.backward()
        return loss.item()

    return fit(model, backward_at, options.loop, out, f"train-caption ({model.config.decoder})",
               show_progress=show_progress)
