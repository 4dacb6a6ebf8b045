"""Fixtures of the bad-input suite: the corpus on disk and a tiny saved model."""
from __future__ import annotations

from pathlib import Path

import pytest
from badinput_corpus import write_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("badinputs") / "images")


@pytest.fixture(scope="session")
def saved_tiny(tmp_path_factory) -> Path:
    """A tiny model saved to a folder, for the commands (random weights: only acceptance is tested)."""
    import torch

    from grounding.build import create_model
    from grounding.config import preset
    from grounding.saved import save_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "tiny-model"
    save_model(create_model(preset("tiny")), folder)
    return folder
