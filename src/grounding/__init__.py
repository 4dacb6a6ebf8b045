"""grounding: models that tie words and sentences to what is in a picture.

    import grounding
    model = grounding.load("runs/demo")          # a preset name or a saved folder
    pixels = model.preprocess("photo.jpg")[None]
    ids = model.tokenizer(["a red circle", "a blue square"])
    logits_per_image, logits_per_text = model(pixels, ids)
"""
from .build import create_model
from .config import ModelConfig, TextConfig, VisionConfig, preset
from .models import CLIP
from .saved import load, save_model
from .tokenizer import Tokenizer

__all__ = ["CLIP", "ModelConfig", "TextConfig", "Tokenizer", "VisionConfig", "create_model", "load", "preset",
           "save_model"]
__version__ = "0.1.0"
