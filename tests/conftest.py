import gzip
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from grounding.build import create_model
from grounding.config import preset

CACHE = Path.home() / ".cache" / "grounding-tests"

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    # pytest -n N: the workers share the cores, each with its share of threads, and so do the processes
    # they start; each using every core would slow them all many times over
    THREADS = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    torch.set_num_threads(THREADS)


def pytest_addoption(parser):
    parser.addoption("--all", action="store_true",
                     help="run the slow tier too (training runs, torchrun groups, parity with the peers): what CI runs")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes many seconds (runs with --all; docs/testing.md)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--all"):
        return
    skip = pytest.mark.skip(reason="the slow tier: run it with pytest --all")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def _shared_vocabularies(tmp_path_factory) -> Path:
    """The synthetic world's vocabulary, learned once for the whole session (it is the same every
    time, and learning it takes seconds)."""
    return tmp_path_factory.mktemp("vocabularies")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch, _shared_vocabularies):
    """Every test, and every process it starts, keeps its cache (grounding/cache.py) under its
    own tmp_path/cache, never in the user's; only the vocabularies are shared. The model hub is
    offline unless a test serves one (tests/test_hub.py), and its cache is the test's too."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "vocabularies").symlink_to(_shared_vocabularies)
    monkeypatch.setenv("GROUNDING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # read once, at its import
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))


@pytest.fixture(scope="session")
def openai_bpe() -> Path:
    """OpenAI's merges file, taken from the open_clip_torch wheel on PyPI (docs/testing.md)."""
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
            pytest.skip("OpenAI's BPE vocabulary is not available offline; docs/testing.md says how to fetch it")
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
def benchmark_script():
    """Loads a script of benchmarks/ as a module, to call its main() or its functions."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent.parent / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def builtin():
    """The built-in lit-minilm-effnet, loaded once for the session: tests only read it."""
    import grounding

    return grounding.load("lit-minilm-effnet").eval()


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """The tiny preset trained for 150 steps on the synthetic world (about 10 s), and its run folder."""
    from grounding.training.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("trained") / "run"
    options = TrainConfig(steps=150, batch_size=32, lr=2e-3, warmup=10, save_every=1000)
    return train(preset("tiny"), options, out, show_progress=False), out


@pytest.fixture(scope="session")
def server_world(tmp_path_factory):
    """For the server's tests: a tiny CLIP model, an index of 8 scenes embedded with it, and tiny
    VQA, caption and detection models."""
    import numpy as np

    from grounding.data.synthetic import World
    from grounding.saved import load, save_model
    from grounding.tasks.captioning.train import train_captioner
    from grounding.tasks.detection.train import train_detector
    from grounding.tasks.options import CaptionOptions, DetectOptions, VQAOptions
    from grounding.tasks.retrieval.embed import embed_images
    from grounding.tasks.retrieval.index import build_index
    from grounding.tasks.vqa.train import train_vqa
    from grounding.training.options import LoopConfig

    root = tmp_path_factory.mktemp("server")
    torch.manual_seed(0)
    save_model(create_model(preset("tiny")), root / "model")
    (root / "scenes").mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        World().sample(rng, "one").render(64).save(root / "scenes" / f"scene{i}.png")
    embed_images(load(root / "model"), str(root / "scenes"), root / "store", str(root / "model"), workers=0,
                 show_progress=False)
    build_index(root / "store")
    loop = LoopConfig(steps=1, batch_size=4, warmup=1)
    train_vqa(VQAOptions(loop=loop, towers="tiny", width=32, layers=1), root / "vqa", show_progress=False)
    train_captioner(CaptionOptions(loop=loop, towers="tiny", width=32, layers=1), root / "caption",
                    show_progress=False)
    train_detector(DetectOptions(loop=loop, towers="tiny"), root / "detect", show_progress=False)
    return root


SIGLIP_WORDS = ["red", "blue", "green", "circle", "square", "a", "photo", "of", "the", "small", "large", "triangle"]


@pytest.fixture(scope="session")
def siglip_folder(tmp_path_factory):
    """transformers' SiglipModel from a tiny random config (context 16), saved as Google's hub
    repos hold it: config.json, model.safetensors and a SentencePiece spiece.model trained here as
    SigLIP's was (NFKC, pad 0, </s> 1, <unk> 2, no start token), no tokenizer.json.
    Returns (the model, the folder)."""
    import random

    transformers = pytest.importorskip("transformers", reason="install the test extra: pip install -e '.[test]'")
    spm = pytest.importorskip("sentencepiece", reason="install the siglip extra: pip install -e '.[siglip]'")
    folder = tmp_path_factory.mktemp("siglip")
    rng = random.Random(0)
    corpus = tmp_path_factory.mktemp("spiece") / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(SIGLIP_WORDS) for _ in range(rng.randint(2, 8)))
                                for _ in range(2000)))
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(corpus.parent / "spiece"), vocab_size=40, hard_vocab_limit=False,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, normalization_rule_name="nmt_nfkc",
        minloglevel=2)
    (folder / "spiece.model").write_bytes((corpus.parent / "spiece.model").read_bytes())
    vocab = spm.SentencePieceProcessor(model_file=str(folder / "spiece.model")).get_piece_size()
    config = transformers.SiglipConfig(
        text_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16, pad_token_id=1, eos_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8))
    torch.manual_seed(0)
    model = transformers.SiglipModel(config).eval()
    with torch.no_grad():
        model.logit_bias.fill_(-3.0)
        model.logit_scale.fill_(2.0)
    model.save_pretrained(folder)
    return model, folder
