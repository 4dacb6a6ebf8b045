from .clip import CLIP
from .resnet import ModifiedResNet
from .text import TextLSTM, TextTransformer
from .vit import VisionTransformer

__all__ = ["CLIP", "ModifiedResNet", "TextLSTM", "TextTransformer", "VisionTransformer"]
