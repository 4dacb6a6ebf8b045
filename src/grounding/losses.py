"""Contrastive losses over the N x N image-text similarity matrix. Data-parallel training
(training/distributed.py) calls them with one rank's rows and the whole global batch's columns;
each then returns that rank's share of the global loss (the shares add up to it)."""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F


def present(negatives: torch.Tensor | None) -> torch.Tensor | None:
    """The hard negatives that are there: an example with none to give has a zero row."""
    return None if negatives is None else negatives[negatives.abs().sum(-1) > 0]


def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
              negatives: torch.Tensor | None = None, columns: tuple[torch.Tensor, torch.Tensor] | None = None,
              first: int = 0, total: int | None = None) -> torch.Tensor:
    """Symmetric InfoNCE: each image must pick its own caption among the batch's captions, and
    each caption its own image. Features are unit vectors; `logit_scale` is the log of 1/T.
    Hard-negative captions, if given, join the captions each image chooses among (NegCLIP).
    `columns` (all images, all texts) are what these rows choose among, the first of these rows
    being row `first` of `total`."""
    scale = logit_scale.exp()
    all_image, all_text = columns or (image, text)
    labels = torch.arange(first, first + len(image), device=image.device)
    per_image = scale * image @ all_text.t()
    per_text = per_image.t() if columns is None else scale * text @ all_image.t()
    if negatives is not None:
        per_image = torch.cat([per_image, scale * image @ present(negatives).t()], 1)
    summed = F.cross_entropy(per_image, labels, reduction="sum") + F.cross_entropy(per_text, labels, reduction="sum")
    return summed / (2 * (total or len(image)))


def siglip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor, logit_bias: torch.Tensor,
                negatives: torch.Tensor | None = None, others: Iterable[torch.Tensor] = (),
                total: int | None = None) -> torch.Tensor:
    """SigLIP: every image-text pair is an independent binary decision, matched or not, summed
    over the matrix and averaged over the `total` images. Hard negatives, and `others` (other
    ranks' captions), add unmatched pairs."""
    def unmatched(texts: torch.Tensor) -> torch.Tensor:
        return -F.logsigmoid(-(logit_scale.exp() * image @ texts.t() + logit_bias)).sum()

    logits = logit_scale.exp() * image @ text.t() + logit_bias
    signs = 2 * torch.eye(len(logits), device=logits.device, dtype=logits.dtype) - 1
    loss = -F.logsigmoid(signs * logits).sum()
    for texts in ([] if negatives is None else [negatives]) + list(others):
        loss = loss + unmatched(present(texts))
    return loss / (total or len(image))


def contrastive_loss(model, image: torch.Tensor, text: torch.Tensor, negatives: torch.Tensor | None = None,
                     learn_scale: bool = True) -> torch.Tensor:
    """The loss the model's config names, on unit features. With `learn_scale=False` the scale
    (and SigLIP's bias) are detached: gradient accumulation counts their gradient only once."""
    scale, bias = model.logit_scale, model.logit_bias
    if not learn_scale:
        scale = scale.detach()
        bias = None if bias is None else bias.detach()
    if model.config.loss == "siglip":
        return siglip_loss(image, text, scale, bias, negatives)
    return clip_loss(image, text, scale, negatives)
