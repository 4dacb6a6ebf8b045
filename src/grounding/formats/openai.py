"""OpenAI and open_clip state dicts (`.pt`, `.bin` or `.safetensors`, with or without a
`state_dict` wrapper or a `module.` prefix), OpenAI's TorchScript archives, and open_clip's model
folders. A state dict carries no config, so the architecture is read from the tensor shapes; the
activation cannot be, and must be given (OpenAI's weights use QuickGELU, most open_clip-trained
ones GELU). A model folder (`open_clip_config.json` beside `open_clip_model.safetensors`, what
open_clip's `create_model("local-dir:FOLDER")` reads) says both, and its preprocessing, and holds
a vocabulary of the model's own as Hugging Face tokenizer files."""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..build import attach
from ..config import ModelConfig, TextConfig, VisionConfig
from ..errors import BadInput, NotFound
from ..files import atomic_path, write_json_atomic
from ..models import CLIP
from ..vocabulary import folder_tokenizer, openai_vocabulary

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")
# open_clip takes a vocabulary from Hugging Face tokenizer files in a model folder when its config
# names one (any name: the folder itself is where they are read from).
HF_TOKENIZER_NAME = "grounding"

_DROPPED = {"input_resolution", "context_length", "vocab_size", "attn_mask"}


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """Tensors only: safetensors, or torch.load with weights_only (no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path}: no such checkpoint file")
    from .torchscript import is_torchscript, read_torchscript

    if is_torchscript(path):
        return read_torchscript(path)
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated zip, a TorchScript archive, pickled classes...
        raise BadInput(f"{path}: cannot be read as a plain state dict ({type(e).__name__}: {str(e)[:200]}); "
                       "it may be truncated or not a checkpoint") from None
    while isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BadInput(f"{path}: holds a {type(state).__name__}, not a state dict")
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


def open_clip_state(model) -> dict[str, torch.Tensor]:
    return {_rename_back(k): v.detach().contiguous().clone() for k, v in model.state_dict().items()}


def write_open_clip(model, path: Path) -> None:
    """open_clip's formats: a folder (its config with the preprocessing, the weights, and the
    vocabulary when it is not OpenAI's), or, for a path ending .pt or .safetensors, the bare state
    dict in open_clip's (and OpenAI's) naming, which only a model with OpenAI's vocabulary fits."""
    config = open_clip_config(model)
    path = Path(path)
    if path.suffix in (".pt", ".pth", ".bin", ".safetensors"):
        if not model.tokenizer.is_openai():
            raise BadInput(f"{path}: this model has a vocabulary of its own, which a bare state dict cannot carry; "
                           "give a folder instead (open_clip's model folder holds it)")
        with atomic_path(path) as tmp:
            if path.suffix == ".safetensors":
                save_file(open_clip_state(model), str(tmp))
            else:
                torch.save(open_clip_state(model), tmp)
        return
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / OPEN_CLIP_WEIGHTS[0]) as tmp:
        save_file(open_clip_state(model), str(tmp))
    if not model.tokenizer.is_openai():
        model.tokenizer.save_hf_files(path)
    write_json_atomic(path / OPEN_CLIP_CONFIG, config)


def open_clip_config(model) -> dict:
    """open_clip's `open_clip_config.json` for the model: its `model_cfg` and `preprocess_cfg`."""
    c = model.config
    v, t = c.vision, c.text
    if v.kind not in ("vit", "resnet") or t.kind != "transformer":
        raise BadInput(f"open_clip holds ViT and ResNet image towers and Transformer text towers, and this model "
                       f"has a {v.kind} and a {t.kind}: convert it --to grounding")
    if v.activation != t.activation:
        raise BadInput("open_clip has one activation for both towers, and this model's differ; convert it --to grounding")
    resnet = v.kind == "resnet"
    vision = {"image_size": v.image_size, "layers": list(v.layers) if resnet else v.layers, "width": v.width,
              "head_width": v.width * 32 // v.heads if resnet else v.width // v.heads, "mlp_ratio": v.mlp_ratio,
              "patch_size": None if resnet else v.patch_size}
    text = {"context_length": t.context_length, "vocab_size": t.vocab_size, "width": t.width, "heads": t.heads,
            "layers": t.layers, "mlp_ratio": t.mlp_ratio}
    if not model.tokenizer.is_openai():  # its own vocabulary: pool at its end token, not at the largest id
        text.update(hf_tokenizer_name=HF_TOKENIZER_NAME, pool_type="eos", eos_id=t.eot_token_id, pad_id=t.pad_token_id)
    model_cfg = {"embed_dim": c.embed_dim, "quick_gelu": v.activation == "quick_gelu", "vision_cfg": vision,
                 "text_cfg": text}
    if c.loss == "siglip":
        model_cfg["init_logit_bias"] = -10.0
    return {"model_cfg": model_cfg, "preprocess_cfg": {"size": v.image_size, "mean": list(v.mean), "std": list(v.std),
                                                      "interpolation": "bicubic", "resize_mode": "shortest"}}


def is_open_clip_folder(folder: Path) -> bool:
    return (Path(folder) / OPEN_CLIP_CONFIG).is_file()


def read_open_clip_folder(folder: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """The config (from the folder's own, not guessed) and the state dict of an open_clip folder."""
    folder = Path(folder)
    try:
        cfg = json.loads((folder / OPEN_CLIP_CONFIG).read_text(encoding="utf-8"))
        model_cfg = cfg["model_cfg"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise BadInput(f"{folder / OPEN_CLIP_CONFIG}: not an open_clip config ({e})") from None
    weights = next((folder / name for name in OPEN_CLIP_WEIGHTS if (folder / name).is_file()), None)
    if weights is None:
        raise NotFound(f"{folder}: no {' or '.join(OPEN_CLIP_WEIGHTS)} beside {OPEN_CLIP_CONFIG}")
    state = read_state(weights)
    if not is_openai_state(state):
        raise BadInput(f"{weights}: not a CLIP state dict in open_clip's naming (a timm or Hugging Face tower?)")
    config = infer_config(state, "quick_gelu" if model_cfg.get("quick_gelu") else "gelu")
    vision, text = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    head_width = vision.get("head_width", 64)
    config.vision.heads = config.vision.width * (32 if config.vision.kind == "resnet" else 1) // head_width
    config.text.heads = text.get("heads", config.text.heads)
    if "init_logit_bias" in model_cfg:
        config.loss = "siglip"
    pre = cfg.get("preprocess_cfg", {})
    config.vision.mean = tuple(pre.get("mean", config.vision.mean))
    config.vision.std = tuple(pre.get("std", config.vision.std))
    return config, state


def load_state_dict_file(path: Path, activation: str | None) -> CLIP:
    state = read_state(path)
    if not is_openai_state(state):
        raise BadInput(f"{path}: not an OpenAI or open_clip CLIP state dict (no visual.conv1.weight and "
                       "token_embedding.weight)")
    if activation not in ("gelu", "quick_gelu"):
        raise BadInput(f"{path} holds no config, and the activation cannot be read from weights: pass "
                       "activation='quick_gelu' (OpenAI's weights) or 'gelu' (most open_clip-trained ones)")
    config = infer_config(state, activation)
    tokenizer = openai_vocabulary(config, config.text.vocab_size - 1, f"{path} is a state dict, so")
    return _from_open_clip_state(config, tokenizer, state, path)


def load_open_clip_folder(folder: Path) -> CLIP:
    config, state = read_open_clip_folder(folder)
    return _from_open_clip_state(config, folder_tokenizer(folder, config, config.text.vocab_size - 1), state, folder)


def _from_open_clip_state(config: ModelConfig, tokenizer, state: dict, source: Path) -> CLIP:
    model = attach(CLIP(config), tokenizer)
    ours = openai_to_state(state)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(ours)), sorted(set(ours) - set(expected))
    wrong = [k for k in set(ours) & set(expected) if ours[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise BadInput(f"{source} does not fit the architecture read from it: missing {missing[:5]}, "
                       f"unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}")
    model.load_state_dict(ours)
    return model
