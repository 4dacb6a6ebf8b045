"""OpenAI and open_clip state dicts (`.pt`, `.bin` or `.safetensors`, with or without a
`state_dict` wrapper or a `module.` prefix), and OpenAI's TorchScript archives. They carry no
config, so the architecture is read from the tensor shapes; the activation cannot be, and must
be given (OpenAI's weights use QuickGELU, most open_clip-trained ones GELU)."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..config import ModelConfig, TextConfig, VisionConfig
from ..io import atomic_path

_DROPPED = {"input_resolution", "context_length", "vocab_size", "attn_mask"}


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """Tensors only: safetensors, or torch.load with weights_only (no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    from .torchscript import is_torchscript, read_torchscript

    if is_torchscript(path):
        return read_torchscript(path)
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated zip, a TorchScript archive, pickled classes...
        raise ValueError(f"{path}: cannot be read as a plain state dict ({type(e).__name__}: {str(e)[:200]}); "
                         "it may be truncated or not a checkpoint") from None
    while isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def is_openai_state(state: dict) -> bool:
    return "visual.conv1.weight" in state and "token_embedding.weight" in state


def _count(state: dict, pattern: str) -> int:
    return len({m.group(1) for k in state if (m := re.match(pattern, k))})


def infer_config(state: dict, activation: str) -> ModelConfig:
    """The architecture from the tensor shapes."""
    text_width = state["ln_final.weight"].shape[0]
    text = TextConfig(context_length=state["positional_embedding"].shape[0],
                      vocab_size=state["token_embedding.weight"].shape[0], width=text_width,
                      layers=_count(state, r"transformer\.resblocks\.(\d+)\."), heads=text_width // 64,
                      mlp_ratio=state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / text_width,
                      activation=activation)
    if "visual.proj" in state:
        width, _, patch, _ = state["visual.conv1.weight"].shape
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        vision = VisionConfig(kind="vit", image_size=patch * grid, width=width, patch_size=patch,
                              layers=_count(state, r"visual\.transformer\.resblocks\.(\d+)\."), heads=width // 64,
                              mlp_ratio=state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width,
                              activation=activation)
    else:
        width = state["visual.layer1.0.conv1.weight"].shape[0]
        grid = round((state["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
        vision = VisionConfig(kind="resnet", image_size=grid * 32, width=width, heads=width * 32 // 64,
                              layers=tuple(_count(state, rf"visual\.layer{b}\.(\d+)\.") for b in range(1, 5)),
                              activation=activation)
    return ModelConfig(embed_dim=state["text_projection"].shape[1], vision=vision, text=text, tokenizer="openai")


def _rename(key: str) -> str:
    """OpenAI name -> this project's."""
    key = key.replace("attn.in_proj_weight", "attn.in_proj.weight").replace("attn.in_proj_bias", "attn.in_proj.bias")
    key = re.sub(r"(downsample)\.([01])\.", lambda m: f"{m.group(1)}.{int(m.group(2)) + 1}.", key)
    if not key.startswith(("visual.", "logit_scale")):
        key = "text." + key
    return key


def _rename_back(key: str) -> str:
    key = key.replace("attn.in_proj.weight", "attn.in_proj_weight").replace("attn.in_proj.bias", "attn.in_proj_bias")
    key = re.sub(r"(downsample)\.([12])\.", lambda m: f"{m.group(1)}.{int(m.group(2)) - 1}.", key)
    return key.removeprefix("text.")


def openai_to_state(state: dict) -> dict[str, torch.Tensor]:
    """Renamed and upcast to fp32 (OpenAI ships fp16 weights: fine-tuning them in fp16 is the
    cause of NaNs people report)."""
    return {_rename(k): (v.float() if v.is_floating_point() else v) for k, v in state.items() if k not in _DROPPED}


def write_open_clip(model, path: Path) -> None:
    """A state dict in open_clip's (and OpenAI's) naming, as safetensors or .pt by suffix."""
    state = {_rename_back(k): v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        if Path(path).suffix == ".safetensors":
            save_file(state, str(tmp))
        else:
            torch.save(state, tmp)
