"""grounding: models that tie words and sentences to what is in a picture.

    import grounding
    model = grounding.load("runs/demo")          # a preset name or a saved folder
    pixels = model.preprocess("photo.jpg")[None]
    ids = model.tokenizer(["a red circle", "a blue square"])
    logits_per_image, logits_per_text = model(pixels, ids)

The names below are imported on first use (PEP 562), so that a command that needs no PyTorch
(`grounding --version`, a small `grounding classify`) does not spend two seconds importing it.
"""
from __future__ import annotations

import importlib

_HOMES = {"CLIP": "models", "ModelConfig": "config", "TextConfig": "config", "VisionConfig": "config",
          "preset": "config", "create_model": "build", "load": "saved", "save_model": "saved",
          "Tokenizer": "tokenizer"}
__all__ = ["CLIP", "ModelConfig", "TextConfig", "Tokenizer", "VisionConfig", "create_model", "load", "preset",
           "save_model"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'grounding' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
