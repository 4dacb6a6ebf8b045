"""Hugging Face OWL-ViT detectors (`OwlViTForObjectDetection` folders, `model_type: owlvit`) read
into this project's detector, and written back. The CLIP inside is transformers' CLIP layout
under `owlvit.` (read and written by huggingface.py); the heads map one to one: OWL-ViT's
`layer_norm`, `class_head.dense0/logit_shift/logit_scale` and `box_head.dense0/1/2`."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..build import attach
from ..errors import BadInput
from ..files import atomic_path, write_json_atomic
from ..models.detector import Detector, DetectorConfig
from ..vocabulary import folder_tokenizer
from .huggingface import (config_to_hf, end_token_last, hf_to_config, hf_to_state, read_hf_eos, read_hf_weights,
                          read_preprocessing, state_to_hf)

PREFIX = "owlvit."
# The one CLIP key OWL-ViT spells otherwise (CLIP's own keeps its old typo).
RENAMED = ("vision_model.pre_layernorm.", "vision_model.pre_layrnorm.")


def _clip_key(owl_key: str) -> str:
    return owl_key.removeprefix(PREFIX).replace(*RENAMED)


def _owl_key(clip_key: str) -> str:
    return PREFIX + clip_key.replace(RENAMED[1], RENAMED[0])
HEADS = [(f"{hf}.{p}", f"{ours}.{p}") for p in ("weight", "bias") for hf, ours in (
    ("layer_norm", "ln"), ("class_head.dense0", "class_head"), ("class_head.logit_shift", "logit_shift"),
    ("class_head.logit_scale", "logit_scale"), ("box_head.dense0", "box_head.0"), ("box_head.dense1", "box_head.2"),
    ("box_head.dense2", "box_head.4"))]


def is_owlvit_folder(folder: str | Path) -> bool:
    config = Path(folder) / "config.json"
    try:
        return config.is_file() and json.loads(config.read_text()).get("model_type") == "owlvit"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def load_owlvit_folder(folder: str | Path) -> Detector:
    """The folder's detector, with its tokenizer files (else OpenAI's vocabulary) and OWL-ViT's
    preprocessing: the image squashed to the square, CLIP's mean and std unless the folder says."""
    folder = Path(folder)
    config = hf_to_config(json.loads((folder / "config.json").read_text()))
    if config.embed_dim != config.text.width:
        raise BadInput(f"{folder}: an OWL-ViT whose projection ({config.embed_dim}) differs from its text width "
                       f"({config.text.width}) is not one this reader knows")
    config.vision.resize = "squash"
    read_preprocessing(folder, config)
    weights = read_hf_weights(folder)
    clip = hf_to_state({_clip_key(k): v for k, v in weights.items() if k.startswith(PREFIX)}, config, str(folder))
    missing = [hf for hf, _ in HEADS if hf not in weights]
    if missing:
        raise BadInput(f"{folder} is not a complete OWL-ViT detector; missing {', '.join(missing[:4])}")
    tokenizer = folder_tokenizer(folder, config, read_hf_eos(folder, config.text.vocab_size - 1))
    model = attach(Detector(DetectorConfig(config)), tokenizer)
    state = {k: v for k, v in clip.items() if k.startswith(("visual.", "text."))}
    state.update({ours: weights[hf].float() for hf, ours in HEADS})
    model.load_state_dict(state)
    return model.eval()


def write_owlvit_folder(model: Detector, folder: str | Path) -> None:
    """config.json, model.safetensors, the preprocessing and the tokenizer's files, as
    transformers' OwlViTForObjectDetection and OwlViTProcessor read them. OWL-ViT pools a text at
    its largest token id, so the end token's id becomes the last one (its embedding row too)."""
    towers = model.config.towers
    if towers.embed_dim != towers.text.width:
        raise BadInput(f"OWL-ViT scores patches against the text width: this detector's embeddings have "
                       f"{towers.embed_dim} dimensions and its text tower {towers.text.width}")
    hf_config = config_to_hf(towers)
    hf_config.update(model_type="owlvit", architectures=["OwlViTForObjectDetection"])
    tokenizer, state = end_token_last(model.tokenizer, dict(model.state_dict()))
    hf_config["text_config"].update(eos_token_id=tokenizer.eot_token_id, pad_token_id=tokenizer.pad_token_id,
                                    bos_token_id=tokenizer.sot_token_id)
    clip = state_to_hf({**state, "logit_scale": torch.tensor(towers.init_logit_scale)}, towers)
    weights = {_owl_key(k): v for k, v in clip.items()}
    weights.update({hf: state[ours].detach().contiguous().clone() for hf, ours in HEADS})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "config.json", hf_config)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(weights, str(tmp), metadata={"format": "pt"})
    v = towers.vision
    write_json_atomic(folder / "preprocessor_config.json", {
        "image_processor_type": "OwlViTImageProcessor", "image_mean": list(v.mean), "image_std": list(v.std),
        "size": {"height": v.image_size, "width": v.image_size}, "crop_size": {"height": v.image_size,
                                                                              "width": v.image_size},
        "do_resize": True, "do_center_crop": False, "do_normalize": True, "resample": 3})
    tokenizer.save_hf_files(folder)
