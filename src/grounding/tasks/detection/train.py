"""Training a detector into a run folder (running the same command again resumes it): each
step's images are queried with every class of the data (the built-in world's seen colour-shape
pairs, or a COCO file's categories). Referring expressions are not trained: trained beside the
classes, through the calibrated scores or through plain similarity, they cost most of the mAP
(docs/tasks.md)."""
from __future__ import annotations

from pathlib import Path

import torch

from ...build import attach
from ...models.detector import Detector, DetectorConfig
from ...runtime import device_of
from ...training.loop import fit
from ..options import DetectOptions
from ..saved import run_model
from ..towers import copy_towers, freeze_towers, pixels_of, towers_for
from .data import ListBoxes, SyntheticBoxes, open_boxes, targets
from .loss import detection_loss


def new_model(options: DetectOptions) -> Detector:
    torch.manual_seed(options.loop.seed)
    towers, tokenizer, clip = towers_for(options)
    towers.vision.resize = "squash"  # the whole image, so that every box is in view and maps back linearly
    model = attach(Detector(DetectorConfig(towers)), tokenizer)
    if clip is not None:
        copy_towers(model, clip)
    return model


def train_detector(options: DetectOptions, out: str | Path, data: SyntheticBoxes | ListBoxes | None = None,
                   show_progress: bool = True) -> Detector:
    out = Path(out)
    data = data or open_boxes(options.data, options.loop.seed)[0]
    model = run_model(out, "detect", lambda: new_model(options), options.loop.seed)
    if options.freeze:
        freeze_towers(model)
    classes = data.classes

    def backward_at(step: int) -> float:
        examples = data.batch(step, options.loop.batch_size)
        pixels = pixels_of(model, examples)
        ids = model.tokenizer(classes).to(device_of(model))
        logits, boxes = model(pixels, model.queries(ids))
        loss = detection_loss(logits, boxes, targets(examples, classes, pixels.device))
        loss.backward()
        return loss.item()

    return fit(model, backward_at, options.loop, out, "train-detect", show_progress=show_progress)
