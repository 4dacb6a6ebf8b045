"""AdamW with decay only on weight matrices, and a cosine schedule with linear warmup."""
from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No decay on gains, biases, embeddings and the temperature: decaying them only pulls
    scales and positions toward zero."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "embedding" in name or "logit_" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def cosine_lr(step: int, base_lr: float, warmup: int, total: int) -> float:
    """Linear warmup to `base_lr` over `warmup` steps, then cosine decay to zero at `total`."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: nn.Module, lr: float, weight_decay: float,
                   betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-6) -> torch.optim.AdamW:
    """AdamW, fused into one kernel over all parameters where PyTorch has one for the device (CPU
    and CUDA): on the `small` preset, 5 ms a step on 2 cores against 19 ms for the loop over
    parameters that is the default off CUDA (the same update, to rounding)."""
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps, fused=fused)
