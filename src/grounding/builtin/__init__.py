"""Trained models shipped inside the package, loadable by name with no training and no network:
each folder is a saved model (docs/builtin-model.md). Here, apart from saved.py, so that naming
one needs no PyTorch (evaluation/exported.py)."""
from pathlib import Path

BUILTIN = {"lit-minilm-effnet": Path(__file__).parent / "lit-minilm-effnet"}
