"""Detections and their scores: each candidate box keeps its best query; a query's detections are
the boxes over the threshold. mAP is COCO's, computed by pycocotools (mAP@[.5:.95], mAP@.5, and
each class's AP), for all classes and for the seen and held-out colour-shape pairs apart."""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from ...data.relations import holds, parse_expression
from ...errors import BadInput, need
from ...models.detector import Detector, box_iou, corners
from ...runtime import device_of
from ..towers import pixels_of
from .data import BoxedImage

KEEP = 100  # detections kept per image for mAP, as COCO keeps


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 as shares of the image's side
    query: str
    score: float


@dataclass
class Queries:
    """What to find: each query's label and unit embedding (a text's, or an example image's)."""
    labels: list[str]
    embeddings: torch.Tensor  # (queries, dim)


@torch.no_grad()
def ask(model: Detector, texts: Sequence[str] = (), examples: Mapping[str, object] | None = None) -> Queries:
    """Queries from texts, and from example images (PIL images by label) as OWL-ViT's
    image-guided detection takes them (`Detector.example_queries`)."""
    parts, labels = [], list(texts)
    if texts:
        parts.append(model.queries(model.tokenizer(list(texts), truncate=True).to(device_of(model))))
    if examples:
        pixels = torch.stack([model.preprocess(image) for image in examples.values()]).to(device_of(model))
        parts.append(model.example_queries(pixels))
        labels += list(examples)
    if not parts:
        raise BadInput("nothing to find: give query texts or example images")
    return Queries(labels, torch.cat(parts))


@torch.no_grad()
def detect_pixels(model: Detector, pixels: torch.Tensor, queries: Queries, threshold: float = 0.0,
                  keep: int = KEEP) -> list[list[Detection]]:
    """Per image, its boxes scoring over `threshold` for their best query, best first."""
    logits, boxes = model(pixels.to(device_of(model)), queries.embeddings)
    scores, best = torch.sigmoid(logits.float()).max(dim=-1)
    found = []
    for image_scores, image_best, image_boxes in zip(scores, best, corners(boxes.float()).clamp(0, 1)):
        order = image_scores.argsort(descending=True)[:keep]
        found.append([Detection(tuple(image_boxes[i].tolist()), queries.labels[image_best[i]], float(image_scores[i]))
                      for i in order if image_scores[i] > threshold])
    return found


def detect_image(model: Detector, picture, queries: Queries, threshold: float = 0.0
                 ) -> list[tuple[Detection, tuple[float, ...]]]:
    """One image's detections, each with its box in the image's own pixels (what `detect` and
    the server's /detect report)."""
    found = detect_pixels(model, model.preprocess(picture)[None], queries, threshold)[0]
    return [(d, in_image(d.box, picture.size, model.config.towers.vision.resize)) for d in found]


def detect_examples(model: Detector, examples: Sequence[BoxedImage], texts: Sequence[str],
                    batch_size: int = 64) -> list[list[Detection]]:
    model.eval()
    queries, found = ask(model, texts), []
    for start in range(0, len(examples), batch_size):
        found += detect_pixels(model, pixels_of(model, examples[start:start + batch_size]), queries)
    return found


def average_precision(examples: Sequence[BoxedImage], found: Sequence[Sequence[Detection]], classes: Sequence[str],
                      groups: dict[str, Sequence[str]] | None = None) -> dict:
    """COCO's mAP@[.5:.95] and mAP@.5 over `classes` (and over each group of them), and each
    class's AP@.5, from pycocotools; boxes on a 1000-pixel canvas (COCO's area ranges are in
    pixels; only 'all' is reported). None where there is no object of those classes to find."""
    coco_module = need("pycocotools.coco", "detect", "mAP")
    cocoeval = need("pycocotools.cocoeval", "detect", "mAP")
    side = 1000.0
    index = {c: i + 1 for i, c in enumerate(classes)}
    gt = {"images": [{"id": i + 1, "width": side, "height": side} for i in range(len(examples))],
          "categories": [{"id": i, "name": c} for c, i in index.items()], "annotations": []}
    for n, example in enumerate(examples):
        for box, label in zip(example.boxes, example.labels):
            x0, y0, x1, y1 = (float(v) * side for v in box)
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": n + 1, "category_id": index[label],
                                      "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                      "iscrowd": 0})
    results = [{"image_id": n + 1, "category_id": index[d.query], "score": d.score,
                "bbox": [d.box[0] * side, d.box[1] * side, (d.box[2] - d.box[0]) * side, (d.box[3] - d.box[1]) * side]}
               for n, image in enumerate(found) for d in image]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        truth = coco_module.COCO()
        truth.dataset = gt
        truth.createIndex()
        predicted = truth.loadRes(results) if results else None

        def evaluate(category_ids: list[int]) -> np.ndarray:
            if predicted is None:
                return np.zeros(12)  # nothing detected: every AP is 0
            run = cocoeval.COCOeval(truth, predicted, "bbox")
            run.params.catIds = category_ids
            run.evaluate()
            run.accumulate()
            run.summarize()
            return run.stats

        report = {}
        for name, members in {"all": classes, **(groups or {})}.items():
            stats = evaluate([index[c] for c in members])  # -1: no object of these classes to find
            report[name] = {"map": None if stats[0] < 0 else float(stats[0]),
                            "map50": None if stats[1] < 0 else float(stats[1])}
        per_class = {c: None if (ap := float(evaluate([index[c]])[1])) < 0 else ap for c in classes}
    report["per_class_ap50"] = per_class
    return report


def in_image(box: tuple[float, float, float, float], size: tuple[int, int], resize: str) -> tuple[float, ...]:
    """A box given as shares of the model's view, in the original image's pixels: the view is the
    whole image squashed ("squash") or its centred square ("shortest")."""
    width, height = size
    if resize == "squash":
        return box[0] * width, box[1] * height, box[2] * width, box[3] * height
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return left + box[0] * side, top + box[1] * side, left + box[2] * side, top + box[3] * side


def draw_detections(image, found: Sequence[tuple[Detection, tuple[float, ...]]]):
    """A copy of the image with `detect_image`'s boxes drawn, each labelled with its query and score."""
    return draw(image, [(box, f"{d.query} {d.score:.0%}") for d, box in found])


def draw(image, boxes: Sequence[tuple[tuple[float, ...], str]]):
    """A copy of the image with each box outlined and labelled."""
    from PIL import ImageDraw

    picture = image.convert("RGB")
    pen = ImageDraw.Draw(picture)
    width = max(2, round(max(picture.size) / 200))
    for box, label in boxes:
        pen.rectangle(box, outline=(255, 0, 170), width=width)
        pen.text((box[0] + width, box[1] + width), label, fill=(255, 0, 170))
    return picture


@torch.no_grad()
def locate_pixels(model: Detector, pixels: torch.Tensor, expressions: Sequence[str]) -> list[Detection]:
    """Per image, the one box its own referring expression picks, with its score. The expression
    is taken apart (`data/relations.py`) as MAttNet takes it apart into modules, with rules in
    place of learned ones: its subject ("red circle") and anchor ("blue square") are detection
    queries on every patch; a size word keeps the subject's (or the anchor's) candidates at that
    extreme of size; a relation word keeps the (subject, anchor) pairs of distinct boxes it
    holds between, and the best pair's subject box is picked. A phrase with neither is scored
    whole."""
    parsed = [parse_expression(text) for text in expressions]
    texts = sorted({text for p in parsed for text in (p.subject, p.anchor) if text})
    logits, boxes = model(pixels.to(device_of(model)), ask(model, texts).embeddings)
    found = []
    for scores, image_boxes, part, expression in zip(torch.sigmoid(logits.float()), corners(boxes.float()).clamp(0, 1),
                                                     parsed, expressions):
        weight = scores[:, texts.index(part.subject)]
        if part.size:
            weight = weight * of_size(weight, image_boxes, part.size)
        if part.relation:
            centres = (image_boxes[:, :2] + image_boxes[:, 2:]) / 2
            offset = centres[:, None] - centres[None]  # subject's centre less the anchor's, every pair
            apart = box_iou(image_boxes, image_boxes)[0] < 0.5  # two patches boxing one object are no pair
            anchor = scores[:, texts.index(part.anchor)]
            if part.anchor_size:
                anchor = anchor * of_size(anchor, image_boxes, part.anchor_size)
            pairs = weight[:, None] * anchor[None] * (
                holds(part.relation, offset[..., 0], offset[..., 1]) & apart)
            if pairs.max() > 0:
                weight = pairs.max(dim=1).values
        best = int(weight.argmax())
        found.append(Detection(tuple(image_boxes[best].tolist()), expression, float(weight[best])))
    return found


def of_size(weight: torch.Tensor, boxes: torch.Tensor, size: str) -> torch.Tensor:
    """1 for the candidates (scoring at least half the best) whose area is within a quarter of the
    smallest candidate's ("small") or the largest's ("large"), 0 for the rest."""
    candidate = weight >= weight.max() / 2
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    if size == "small":
        keep = area <= area[candidate].min() * 1.25
    else:
        keep = area >= area[candidate].max() / 1.25
    return (candidate & keep).float()


def referring_accuracy(model: Detector, examples: Sequence[BoxedImage], batch_size: int = 64) -> dict:
    """The share of expressions whose picked box overlaps its referent at IoU 0.5 or more, over
    all and by what it takes to single the object out (name, size, relation)."""
    model.eval()
    asked = [e for e in examples if e.expression is not None]
    hits: dict[str, list[bool]] = {}
    for start in range(0, len(asked), batch_size):
        batch = asked[start:start + batch_size]
        for example, found in zip(batch, locate_pixels(model, pixels_of(model, batch), [e.expression for e in batch])):
            truth = torch.as_tensor(example.boxes[example.referent], dtype=torch.float32)[None]
            iou = float(box_iou(torch.tensor([found.box]), truth)[0][0, 0])
            hits.setdefault(example.expression_kind, []).append(iou >= 0.5)
    report = {kind: float(np.mean(h)) for kind, h in sorted(hits.items())}
    report["all"] = float(np.mean([x for h in hits.values() for x in h])) if hits else None
    report["expressions"] = len(asked)
    return report
