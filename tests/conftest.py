import gzip
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from grounding.config import preset
from grounding.factory import create_model

CACHE = Path.home() / ".cache" / "grounding-tests"


@pytest.fixture(scope="session")
def openai_bpe() -> Path:
    """OpenAI's merges file, taken from the open_clip_torch wheel on PyPI (README: Testing)."""
    from grounding.tokenizer import find_openai_vocab

    try:
        return find_openai_vocab()
    except FileNotFoundError:
        pass
    target = CACHE / "bpe_simple_vocab_16e6.txt.gz"
    if not target.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        got = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "open_clip_torch==3.3.0",
                              "-d", str(CACHE)], capture_output=True, text=True)
        wheels = list(CACHE.glob("open_clip_torch-*.whl"))
        if got.returncode or not wheels:
            pytest.skip("OpenAI's BPE vocabulary is not available offline; see README 'Testing' to fetch it")
        with zipfile.ZipFile(wheels[0]) as z:
            target.write_bytes(z.read("open_clip/bpe_simple_vocab_16e6.txt.gz"))
    with gzip.open(target) as f:  # fail loudly on a corrupt cache rather than skip
        f.read(10)
    return target


@pytest.fixture(scope="session")
def tiny_model():
    torch.manual_seed(0)
    return create_model(preset("tiny")).eval()


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """The tiny preset trained for 150 steps on the synthetic world (about 10 s), and its run folder."""
    from grounding.training.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("trained") / "run"
    options = TrainConfig(steps=150, batch_size=32, lr=2e-3, warmup=10, save_every=1000)
    return train(preset("tiny"), options, out, show_progress=False), out
