"""Training a detector into a run folder (running the same command again resumes it): each
step's images are queried with every class of the data (the built-in world's seen colour-shape
pairs, or a COCO file's categories)."""
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
from .loss import REFERRING_SCALE, detection_loss, referring_loss


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
        """The classes asked of every image, and each image's own referring expression (the
        built-in world's), in one pass of the image tower. The expression picks its patch by
        plain similarity, apart from the per-patch shift and scale that calibrate the classes'
        scores (through them it raised its referent's score for every class: mAP@.5 fell from
        0.95 to 0.40)."""
        examples = data.batch(step, options.loop.batch_size)
        pixels = pixels_of(model, examples)
        device = device_of(model)
        wanted = targets(examples, classes, device)
        patches, embeds, boxes = model.encode(pixels)
        logits = model.score(patches, embeds, model.queries(model.tokenizer(classes).to(device)))
        own = model.queries(model.tokenizer([e.expression or "" for e in examples], truncate=True).to(device))
        similarity = torch.einsum("bpd,bd->bp", embeds, own.to(embeds.dtype))
        referents = [None if e.referent is None else wanted[b]["boxes"][e.referent] for b, e in enumerate(examples)]
        loss = detection_loss(logits, boxes, wanted) + referring_loss(REFERRING_SCALE * similarity, boxes, referents)
        loss.backward()
        return loss.item()

    return fit(model, backward_at, options.loop, out, "train-detect", show_progress=show_progress)
