"""What every tower's repeated layer shares: gradient checkpointing. A `Layer` with
`checkpointed` set keeps only its input in the forward pass of training and recomputes its
activations in the backward pass (torch.utils.checkpoint): less memory, one more forward."""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class Layer(nn.Module):
    checkpointed = False

    def __call__(self, *args, **kwargs):
        if not (self.checkpointed and self.training and torch.is_grad_enabled()):
            return super().__call__(*args, **kwargs)
        calls = []

        def run(*inner_args, **inner_kwargs):
            # the recomputation must not move BatchNorm's running statistics a second time
            with _statistics_kept(self) if calls else contextlib.nullcontext():
                calls.append(True)
                return super(Layer, self).__call__(*inner_args, **inner_kwargs)

        return checkpoint(run, *args, use_reentrant=False, **kwargs)


@contextlib.contextmanager
def _statistics_kept(module: nn.Module):
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0  # normalises by the batch's statistics as before, and leaves the running ones as they are
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def set_checkpointing(model: nn.Module, enabled: bool) -> int:
    """Turns checkpointing on or off for every layer of `model`; returns how many layers it has."""
    layers = [m for m in model.modules() if isinstance(m, Layer)]
    for layer in layers:
        layer.checkpointed = enabled
    return len(layers)
