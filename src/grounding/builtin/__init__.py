"""Trained models shipped inside the package, loadable by name with no training and no network:
each folder is a saved model (docs/builtin-model.md). Here, apart from saved.py, so that naming
one needs no PyTorch (inference/onnx.py)."""
from pathlib import Path

BUILTIN = {"lit-minilm-effnet": Path(__file__).parent / "lit-minilm-effnet"}
