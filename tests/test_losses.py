import math

import pytest
import torch
import torch.nn.functional as F

from grounding.config import preset
from grounding.losses import clip_loss, siglip_loss
from grounding.models import CLIP


def unit(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1).requires_grad_()


def reference_clip(image, text, scale, negatives=()):
    # written out term by term: -log softmax of each matched pair, both ways; negative
    # captions only compete for images
    n = len(image)
    total = 0.0
    for i in range(n):
        row = torch.stack([scale * image[i] @ t for t in [*text, *negatives]])
        col = torch.stack([scale * image[j] @ text[i] for j in range(n)])
        total = total - (row[i] - torch.logsumexp(row, 0)) - (col[i] - torch.logsumexp(col, 0))
    return total / (2 * n)


def reference_siglip(image, text, scale, bias, negatives=()):
    n = len(image)
    total = 0.0
    for i in range(n):
        for j, t in enumerate([*text, *negatives]):
            z = scale * image[i] @ t + bias
            p = 1 / (1 + torch.exp(-z))
            total = total - torch.log(p if i == j else 1 - p)
    return total / n


@pytest.mark.parametrize("with_negatives", [False, True])
@pytest.mark.parametrize("loss_name", ["clip", "siglip"])
def test_loss_and_gradient_match_a_direct_computation(loss_name, with_negatives):
    image, text = unit(6, 5, 0), unit(6, 5, 1)
    negatives = unit(6, 5, 2) if with_negatives else None
    extra = () if negatives is None else tuple(negatives)
    log_scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
    if loss_name == "clip":
        ours = clip_loss(image, text, log_scale, negatives)
        ref = reference_clip(image, text, log_scale.exp(), extra)
        inputs = (image, text, log_scale)
    else:
        ours = siglip_loss(image, text, log_scale, bias, negatives)
        ref = reference_siglip(image, text, log_scale.exp(), bias, extra)
        inputs = (image, text, log_scale, bias)
    assert torch.allclose(ours, ref, rtol=1e-10)
    for g_ours, g_ref in zip(torch.autograd.grad(ours, inputs), torch.autograd.grad(ref, inputs)):
        assert torch.allclose(g_ours, g_ref, rtol=1e-8, atol=1e-12)


def test_perfect_alignment_gives_low_loss_and_shuffled_high():
    feats = unit(8, 16, 0).detach() * 0 + torch.eye(8, 16, dtype=torch.float64)
    scale = torch.tensor(math.log(100.0), dtype=torch.float64)
    assert clip_loss(feats, feats, scale) < 0.01
    assert clip_loss(feats, feats.roll(1, 0), scale) > 50


def test_temperature_starts_at_0_07_and_is_clamped_at_100():
    model = CLIP(preset("tiny"))
    assert math.isclose(model.logit_scale.exp().item(), 1 / 0.07, rel_tol=1e-6)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    model.clamp_logit_scale()
    assert math.isclose(model.logit_scale.exp().item(), 100.0, rel_tol=1e-6)
