"""Contrastive losses over the N x N image-text similarity matrix."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
              negatives: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE: each image must pick its own caption among the batch's captions, and
    each caption its own image. Features are unit vectors; `logit_scale` is the log of 1/T.
    Hard-negative captions, if given, join the captions each image chooses among (NegCLIP)."""
    logits = logit_scale.exp() * image @ text.t()
    labels = torch.arange(len(logits), device=logits.device)
    per_image = logits if negatives is None else torch.cat([logits, logit_scale.exp() * image @ negatives.t()], 1)
    return (F.cross_entropy(per_image, labels) + F.cross_entropy(logits.t(), labels)) / 2


def siglip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
                logit_bias: torch.Tensor, negatives: torch.Tensor | None = None) -> torch.Tensor:
    """SigLIP: every image-text pair is an independent binary decision, matched or not,
    summed over the matrix and averaged over images. Hard negatives add unmatched pairs."""
    logits = logit_scale.exp() * image @ text.t() + logit_bias
    signs = 2 * torch.eye(len(logits), device=logits.device, dtype=logits.dtype) - 1
    loss = -F.logsigmoid(signs * logits).sum()
    if negatives is not None:
        loss = loss - F.logsigmoid(-(logit_scale.exp() * image @ negatives.t() + logit_bias)).sum()
    return loss / len(logits)


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
