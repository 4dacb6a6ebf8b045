"""Hugging Face CLIP and SigLIP folders (`config.json` with `text_config` and `vision_config`,
`model_type` clip or siglip, and `model.safetensors` or `pytorch_model.bin`): read into this
project's model, and written back.

HF keeps separate q, k and v projections and stores projections as Linear weights (out x in);
this project fuses q, k, v into one in_proj and keeps projections as (in x out) matrices."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..build import attach
from ..config import ModelConfig, TextConfig, VisionConfig
from ..errors import BadInput, NotFound
from ..files import atomic_path, write_json_atomic
from ..models import CLIP
from ..tokenizer import MissingVocabulary, Tokenizer
from .sentencepiece import SPIECE_FILE, write_spiece
from ..vocabulary import folder_tokenizer, tie_tokenizer

_BLOCK = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
          "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
_ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh"}
_HF_ACTIVATIONS = {ours: hf for hf, ours in _ACTIVATIONS.items()}
HF_CONFIG, HF_WEIGHTS = "config.json", ("model.safetensors", "pytorch_model.bin")  # weights: safe first


def is_hf_folder(folder: Path) -> bool:
    config = Path(folder) / "config.json"
    try:
        return config.is_file() and "vision_config" in json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False  # not Hugging Face's: the loader of our own configs says what is wrong with it


def is_siglip(config: ModelConfig) -> bool:
    return config.vision.kind == "siglip_vit"


def hf_to_config(hf: dict) -> ModelConfig:
    t, v = hf.get("text_config", {}), hf.get("vision_config", {})
    for part, name in ((t, "text"), (v, "vision")):
        if part.get("hidden_act", "quick_gelu") not in _ACTIVATIONS:
            raise BadInput(f"unsupported {name} activation {part['hidden_act']!r}")
    if hf.get("model_type") == "siglip":
        return _siglip_config(t, v)
    text = TextConfig(context_length=t.get("max_position_embeddings", 77), vocab_size=t.get("vocab_size", 49408),
                      width=t.get("hidden_size", 512), layers=t.get("num_hidden_layers", 12),
                      heads=t.get("num_attention_heads", 8),
                      mlp_ratio=t.get("intermediate_size", 2048) / t.get("hidden_size", 512),
                      activation=_ACTIVATIONS[t.get("hidden_act", "quick_gelu")])
    vision = VisionConfig(image_size=v.get("image_size", 224), width=v.get("hidden_size", 768),
                          layers=v.get("num_hidden_layers", 12), heads=v.get("num_attention_heads", 12),
                          patch_size=v.get("patch_size", 32),
                          mlp_ratio=v.get("intermediate_size", 3072) / v.get("hidden_size", 768),
                          activation=_ACTIVATIONS[v.get("hidden_act", "quick_gelu")])
    return ModelConfig(embed_dim=hf.get("projection_dim", 512), vision=vision, text=text, tokenizer="openai")


def _siglip_config(t: dict, v: dict) -> ModelConfig:
    """SiglipConfig's defaults where a key is absent (siglip-base-patch16-224's shapes)."""
    width, text_width = v.get("hidden_size", 768), t.get("hidden_size", 768)
    eps = v.get("layer_norm_eps", 1e-6)
    text = TextConfig(kind="siglip", context_length=t.get("max_position_embeddings", 64),
                      vocab_size=t.get("vocab_size", 32000), width=text_width, layers=t.get("num_hidden_layers", 12),
                      heads=t.get("num_attention_heads", 12), mlp_ratio=t.get("intermediate_size", 3072) / text_width,
                      activation=_ACTIVATIONS[t.get("hidden_act", "gelu_pytorch_tanh")],
                      norm_eps=t.get("layer_norm_eps", 1e-6), eot_token_id=t.get("eos_token_id", 1),
                      pad_token_id=t.get("pad_token_id", 1))
    vision = VisionConfig(kind="siglip_vit", image_size=v.get("image_size", 224), width=width,
                          layers=v.get("num_hidden_layers", 12), heads=v.get("num_attention_heads", 12),
                          patch_size=v.get("patch_size", 16), mlp_ratio=v.get("intermediate_size", 3072) / width,
                          activation=_ACTIVATIONS[v.get("hidden_act", "gelu_pytorch_tanh")], norm_eps=eps,
                          resize="squash", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    if t.get("projection_size", width) != width:
        raise BadInput(f"a SigLIP whose text head gives {t['projection_size']} dimensions and whose image tower "
                       f"{width} is not one this reader knows")
    return ModelConfig(embed_dim=width, vision=vision, text=text, loss="siglip", tokenizer="folder")


def config_to_hf(config: ModelConfig) -> dict:
    if is_siglip(config):
        return _siglip_to_hf(config)
    if config.vision.kind != "vit" or config.text.kind != "transformer":
        raise BadInput(f"Hugging Face's CLIPModel holds a ViT image tower and a Transformer text tower only, and "
                       f"this model has a {config.vision.kind} image tower and a {config.text.kind} text tower: "
                       "convert it --to open_clip (which holds ResNets too) or --to grounding")
    t, v = config.text, config.vision
    return {
        "model_type": "clip", "architectures": ["CLIPModel"], "projection_dim": config.embed_dim,
        "logit_scale_init_value": config.init_logit_scale,
        "text_config": {"vocab_size": t.vocab_size, "hidden_size": t.width, "intermediate_size": int(t.width * t.mlp_ratio),
                        "num_hidden_layers": t.layers, "num_attention_heads": t.heads,
                        "max_position_embeddings": t.context_length, "hidden_act": t.activation,
                        "projection_dim": config.embed_dim},
        "vision_config": {"hidden_size": v.width, "intermediate_size": int(v.width * v.mlp_ratio),
                          "num_hidden_layers": v.layers, "num_attention_heads": v.heads, "image_size": v.image_size,
                          "patch_size": v.patch_size, "hidden_act": v.activation, "projection_dim": config.embed_dim},
    }


def _siglip_to_hf(config: ModelConfig) -> dict:
    if config.text.kind != "siglip":
        raise BadInput("Hugging Face's SiglipModel holds SigLIP's two towers only")
    t, v = config.text, config.vision
    return {
        "model_type": "siglip", "architectures": ["SiglipModel"],
        "text_config": {"vocab_size": t.vocab_size, "hidden_size": t.width, "intermediate_size": int(t.width * t.mlp_ratio),
                        "num_hidden_layers": t.layers, "num_attention_heads": t.heads,
                        "max_position_embeddings": t.context_length, "hidden_act": _HF_ACTIVATIONS[t.activation],
                        "layer_norm_eps": t.norm_eps, "pad_token_id": t.pad_token_id, "eos_token_id": t.eot_token_id,
                        "projection_size": config.embed_dim},
        "vision_config": {"hidden_size": v.width, "intermediate_size": int(v.width * v.mlp_ratio),
                          "num_hidden_layers": v.layers, "num_attention_heads": v.heads, "image_size": v.image_size,
                          "patch_size": v.patch_size, "hidden_act": _HF_ACTIVATIONS[v.activation],
                          "layer_norm_eps": v.norm_eps},
    }


def _tower_pairs(prefix_hf: str, prefix_ours: str, layers: int) -> list[tuple[str, str]]:
    pairs = []
    for i in range(layers):
        for hf_name, our_name in _BLOCK.items():
            for p in ("weight", "bias"):
                pairs.append((f"{prefix_hf}.encoder.layers.{i}.{hf_name}.{p}",
                              f"{prefix_ours}.transformer.resblocks.{i}.{our_name}.{p}"))
    return pairs


def _siglip_pairs(config: ModelConfig) -> list[tuple[str, str]]:
    pairs = [("text_model.embeddings.token_embedding.weight", "text.token_embedding.weight"),
             ("text_model.embeddings.position_embedding.weight", "text.positional_embedding"),
             ("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"),
             ("vision_model.head.probe", "visual.probe"),
             ("vision_model.head.attention.in_proj_weight", "visual.pool.in_proj_weight"),
             ("vision_model.head.attention.in_proj_bias", "visual.pool.in_proj_bias"),
             ("logit_scale", "logit_scale"), ("logit_bias", "logit_bias")]
    for p in ("weight", "bias"):
        pairs += [(f"vision_model.embeddings.patch_embedding.{p}", f"visual.conv1.{p}"),
                  (f"vision_model.post_layernorm.{p}", f"visual.ln_post.{p}"),
                  (f"vision_model.head.attention.out_proj.{p}", f"visual.pool.out_proj.{p}"),
                  (f"vision_model.head.layernorm.{p}", f"visual.ln_pool.{p}"),
                  (f"vision_model.head.mlp.fc1.{p}", f"visual.mlp_pool.c_fc.{p}"),
                  (f"vision_model.head.mlp.fc2.{p}", f"visual.mlp_pool.c_proj.{p}"),
                  (f"text_model.final_layer_norm.{p}", f"text.ln_final.{p}"),
                  (f"text_model.head.{p}", f"text.head.{p}")]
    return pairs + _tower_pairs("text_model", "text", config.text.layers) + \
        _tower_pairs("vision_model", "visual", config.vision.layers)


def _plain_pairs(config: ModelConfig) -> list[tuple[str, str]]:
    """Keys that map one to one (projections and q/k/v are handled apart)."""
    if is_siglip(config):
        return _siglip_pairs(config)
    pairs = [("text_model.embeddings.token_embedding.weight", "text.token_embedding.weight"),
             ("text_model.embeddings.position_embedding.weight", "text.positional_embedding"),
             ("vision_model.embeddings.class_embedding", "visual.class_embedding"),
             ("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"),
             ("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"),
             ("logit_scale", "logit_scale")]
    for p in ("weight", "bias"):
        pairs += [(f"text_model.final_layer_norm.{p}", f"text.ln_final.{p}"),
                  (f"vision_model.pre_layrnorm.{p}", f"visual.ln_pre.{p}"),
                  (f"vision_model.post_layernorm.{p}", f"visual.ln_post.{p}")]
    pairs += _tower_pairs("text_model", "text", config.text.layers)
    pairs += _tower_pairs("vision_model", "visual", config.vision.layers)
    return pairs


def _attention_prefixes(config: ModelConfig):
    for hf_tower, ours, layers in (("text_model", "text", config.text.layers),
                                   ("vision_model", "visual", config.vision.layers)):
        for i in range(layers):
            yield f"{hf_tower}.encoder.layers.{i}.self_attn", f"{ours}.transformer.resblocks.{i}.attn.in_proj"


def hf_to_state(hf_state: dict[str, torch.Tensor], config: ModelConfig, source: str) -> dict[str, torch.Tensor]:
    state, missing = {}, []

    def take(key):
        if key not in hf_state:
            missing.append(key)
            return None
        return hf_state[key].float()

    for hf_key, ours in _plain_pairs(config):
        state[ours] = take(hf_key)
    for hf_prefix, ours in _attention_prefixes(config):
        for p in ("weight", "bias"):
            parts = [take(f"{hf_prefix}.{x}_proj.{p}") for x in "qkv"]
            state[f"{ours}.{p}"] = None if None in parts else torch.cat(parts)
    projections = None if is_siglip(config) else (take("text_projection.weight"), take("visual_projection.weight"))
    if missing:
        raise BadInput(f"{source} is not a complete {'SigLIP' if is_siglip(config) else 'CLIP'} checkpoint; "
                       f"missing {', '.join(missing[:6])}" + (f" and {len(missing) - 6} more" if len(missing) > 6 else ""))
    if projections:
        state["text.text_projection"], state["visual.proj"] = (p.t().contiguous() for p in projections)
    for scalar in ("logit_scale", "logit_bias"):  # kept as (1,) by transformers
        if scalar in state and state[scalar].dim() == 1:
            state[scalar] = state[scalar][0]
    return state


def state_to_hf(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    hf = {hf_key: state[ours] for hf_key, ours in _plain_pairs(config)}
    for hf_prefix, ours in _attention_prefixes(config):
        for p in ("weight", "bias"):
            for name, chunk in zip("qkv", state[f"{ours}.{p}"].chunk(3)):
                hf[f"{hf_prefix}.{name}_proj.{p}"] = chunk
    if not is_siglip(config):
        hf["text_projection.weight"] = state["text.text_projection"].t()
        hf["visual_projection.weight"] = state["visual.proj"].t()
    else:
        hf["logit_scale"], hf["logit_bias"] = hf["logit_scale"].reshape(1), hf["logit_bias"].reshape(1)
    return {k: v.detach().contiguous().clone() for k, v in hf.items()}


def read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    from .openai import read_state  # tensors only, and a one-line error naming a bad file

    for name in HF_WEIGHTS:
        if (folder / name).is_file():
            return read_state(folder / name)
    raise NotFound(f"{folder}: no model.safetensors or pytorch_model.bin")


def read_preprocessing(folder: Path, config: ModelConfig) -> None:
    path = folder / "preprocessor_config.json"
    if path.is_file():
        pre = json.loads(path.read_text())
        config.vision.mean = tuple(pre.get("image_mean", config.vision.mean))
        config.vision.std = tuple(pre.get("image_std", config.vision.std))


# transformers' CLIPTextTransformer reads an eos_token_id of 2 as a config from before its fix and
# then pools at the largest token id, not at the end token; ours can have its end token at id 2.
LEGACY_EOS_ID = 2


def write_hf_folder(model, folder: Path) -> None:
    """config.json, model.safetensors, preprocessor_config.json and the tokenizer's files. A
    vocabulary whose end token has transformers' legacy id gets that id exchanged with its last
    one (the embedding rows too), so that transformers pools at the end token."""
    hf_config = config_to_hf(model.config)  # a ResNet or LSTM model is refused before anything is written
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if is_siglip(model.config):
        return _write_siglip_folder(model, hf_config, folder)
    tokenizer, state = model.tokenizer, dict(model.state_dict())
    if tokenizer.eot_token_id == LEGACY_EOS_ID:
        tokenizer, state = end_token_last(tokenizer, state)
    hf_config["text_config"].update(eos_token_id=tokenizer.eot_token_id, bos_token_id=tokenizer.sot_token_id,
                                    pad_token_id=tokenizer.pad_token_id)
    write_json_atomic(folder / "config.json", hf_config)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(state_to_hf(state, model.config), str(tmp), metadata={"format": "pt"})
    v = model.config.vision
    write_json_atomic(folder / "preprocessor_config.json", {
        "image_processor_type": "CLIPImageProcessor", "image_mean": list(v.mean), "image_std": list(v.std),
        "size": {"shortest_edge": v.image_size}, "crop_size": {"height": v.image_size, "width": v.image_size},
        "do_resize": True, "do_center_crop": True, "do_normalize": True, "resample": 3})
    tokenizer.save_hf_files(folder)


def end_token_last(tokenizer: Tokenizer, state: dict[str, torch.Tensor]) -> tuple[Tokenizer, dict]:
    """The vocabulary with its end token's id exchanged with the last id, and the embedding rows
    with them: for readers that pool at the largest id in a row rather than at the end token."""
    end, last = tokenizer.eot_token_id, len(tokenizer) - 1
    if end == last:
        return tokenizer, state
    rows = state["text.token_embedding.weight"].clone()
    rows[[end, last]] = rows[[last, end]]
    return tokenizer.swapped(end, last), {**state, "text.token_embedding.weight": rows}


def _write_siglip_folder(model, hf_config: dict, folder: Path) -> None:
    write_json_atomic(folder / "config.json", hf_config)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(state_to_hf(dict(model.state_dict()), model.config), str(tmp), metadata={"format": "pt"})
    v = model.config.vision
    write_json_atomic(folder / "preprocessor_config.json", {
        "image_processor_type": "SiglipImageProcessor", "image_mean": list(v.mean), "image_std": list(v.std),
        "size": {"height": v.image_size, "width": v.image_size}, "do_resize": True, "do_normalize": True,
        "do_rescale": True, "resample": 3})
    with atomic_path(folder / "tokenizer.json") as tmp:
        model.tokenizer.save(tmp)
    if write_spiece(model.tokenizer.bpe, folder / SPIECE_FILE):  # what transformers' SiglipTokenizer reads
        write_json_atomic(folder / "tokenizer_config.json", {
            "tokenizer_class": "SiglipTokenizer", "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>",
            "model_max_length": model.config.text.context_length, "do_lower_case": True})


def load_hf_folder(folder: Path) -> CLIP:
    """A Hugging Face CLIP or SigLIP folder; its tokenizer files if present, else (CLIP) OpenAI's
    vocabulary."""
    hf_state = read_hf_weights(folder)
    config = hf_to_config(json.loads((folder / "config.json").read_text()))
    read_preprocessing(folder, config)
    if is_siglip(config):
        tokenizer = _siglip_tokenizer(folder, config)
    else:
        tokenizer = folder_tokenizer(folder, config, read_hf_eos(folder, config.text.vocab_size - 1))
    model = attach(CLIP(config), tokenizer)
    state = hf_to_state(hf_state, config, str(folder))
    model.load_state_dict(state)
    return model


def _siglip_tokenizer(folder: Path, config: ModelConfig):
    """The folder's SentencePiece vocabulary: its tokenizer.json where it has one (ours), else
    the spiece.model that Google's repos ship."""
    config.tokenizer = "tokenizer.json"
    length = config.text.context_length
    if (folder / "tokenizer.json").is_file():
        return tie_tokenizer(config, Tokenizer.from_file(folder / "tokenizer.json", length))
    if (folder / SPIECE_FILE).is_file():
        return tie_tokenizer(config, Tokenizer.from_sentencepiece(folder / SPIECE_FILE, length))
    return MissingVocabulary(f"{folder} has neither tokenizer.json nor {SPIECE_FILE}, so its text side cannot "
                             "encode: download the folder's spiece.model beside its config.json",
                             config.text.vocab_size, length)


def read_hf_eos(folder: Path, default: int) -> int:
    eos = json.loads((folder / "config.json").read_text()).get("text_config", {}).get("eos_token_id", default)
    return default if eos == LEGACY_EOS_ID else eos  # transformers' legacy value: OpenAI's end token is the last id
