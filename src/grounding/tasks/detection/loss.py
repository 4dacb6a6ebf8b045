"""The set loss of DETR and OWL-ViT: each image's objects are matched one to one to predicted
boxes by the Hungarian algorithm (scipy's), on a cost of class, L1 and generalised-IoU terms;
the matched boxes learn their objects, and every (box, query) score learns whether it is a
match, through a sigmoid focal loss (the unmatched many are easy negatives)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import need
from ...models.detector import corners, generalized_iou

CLASS, L1, GIOU = 2.0, 5.0, 2.0  # DETR's weights, in the cost and the loss alike


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al., 2017), summed."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    weight = alpha * targets + (1 - alpha) * (1 - targets)
    return (weight * ce * (1 - p_t) ** gamma).sum()


@torch.no_grad()
def match(logits: torch.Tensor, boxes: torch.Tensor, target: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(prediction rows, object columns) of the cheapest one-to-one assignment for one image."""
    linear_sum_assignment = need("scipy.optimize", "detect", "training a detector").linear_sum_assignment
    if not len(target["labels"]):
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    p = torch.sigmoid(logits[:, target["labels"]])
    class_cost = -p  # (patches, objects)
    l1_cost = torch.cdist(boxes, target["boxes"], p=1)
    giou_cost = -generalized_iou(corners(boxes), corners(target["boxes"]))
    cost = CLASS * class_cost + L1 * l1_cost + GIOU * giou_cost
    rows, cols = linear_sum_assignment(cost.float().cpu().numpy())
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)


def detection_loss(logits: torch.Tensor, boxes: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """The batch's loss, normalised by its number of objects."""
    device = logits.device
    labels = torch.zeros_like(logits)
    l1, giou, objects = logits.new_zeros(()), logits.new_zeros(()), 0
    for b, target in enumerate(targets):
        rows, cols = (i.to(device) for i in match(logits[b], boxes[b], target))
        labels[b, rows, target["labels"][cols]] = 1.0
        if len(rows):
            predicted, wanted = boxes[b, rows], target["boxes"][cols]
            l1 = l1 + F.l1_loss(predicted, wanted, reduction="sum")
            giou = giou + (1 - torch.diag(generalized_iou(corners(predicted), corners(wanted)))).sum()
        objects += len(rows)
    objects = max(objects, 1)
    return (CLASS * focal_loss(logits, labels) + L1 * l1 + GIOU * giou) / objects

