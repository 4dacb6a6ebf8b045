"""Dataclass configs for the two towers and the whole model, JSON round-trip, and named presets.

Nothing about a model is ever inferred from its name: the activation, the pooling and the
preprocessing are all fields here, and they travel with the weights.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .errors import BadInput

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


# Sizes that must be at least 1 (the others of ModelConfig.check's numbers may be 0).
POSITIVE = {"embed_dim", "image_size", "width", "layers", "heads", "patch_size", "context_length", "vocab_size",
            "head_ensemble"}


@dataclass
class VisionConfig:
    kind: Literal["vit", "resnet", "efficientnet_lite0", "efficientnet_lite2", "siglip_vit"] = "vit"
    image_size: int = 224
    width: int = 768
    layers: int | tuple[int, ...] = 12  # a tuple of four stage depths for the ResNet
    heads: int = 12
    patch_size: int = 32  # ViT only
    mlp_ratio: float = 4.0
    activation: Literal["gelu", "gelu_tanh", "quick_gelu"] = "gelu"
    norm_eps: float = 1e-5  # the towers' LayerNorm epsilon (SigLIP's is 1e-6)
    # How an image meets image_size: "shortest" (resize the shorter side, crop the centre: CLIP's)
    # or "squash" (straight to a square, as SigLIP's processor does).
    resize: Literal["shortest", "squash"] = "shortest"
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    head_width: int = 0  # pretrained towers: hidden width of the projection head (0: linear)
    # EfficientNet tower: this many heads, the embedding the mean of theirs (an ensemble of runs
    # trained apart and joined by build.join_heads: docs/builtin-model.md)
    head_ensemble: int = 1
    # EfficientNet tower: weight of the ImageNet route, the text embedding of the ImageNet
    # classifier's predicted labels, beside the head's embedding (models/pretrained.py)
    imagenet_route: float = 0.0


@dataclass
class TextConfig:
    kind: Literal["transformer", "lstm", "minilm", "siglip"] = "transformer"
    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    layers: int = 12
    heads: int = 8
    mlp_ratio: float = 4.0
    activation: Literal["gelu", "gelu_tanh", "quick_gelu"] = "gelu"
    norm_eps: float = 1e-5
    bidirectional: bool = False  # LSTM only
    eot_token_id: int = 49407
    pad_token_id: int = 0
    head_width: int = 0  # pretrained towers: hidden width of the projection head (0: linear)
    # The packaged MiniLM tower: false embeds texts in MiniLM's own sentence space, untouched
    # (LiT's locked text, whose semantics reach words training never showed); embed_dim is then
    # its width, 384.
    projection_head: bool = True


@dataclass
class ModelConfig:
    embed_dim: int = 512
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    init_logit_scale: float = 2.659260036932778  # ln(1 / 0.07)
    max_logit_scale: float = 4.605170185988092  # ln(100)
    loss: Literal["clip", "siglip"] = "clip"
    # Where the tokenizer comes from: "openai" (OpenAI's merges file), "train" (a BPE learned
    # from the training captions), "minilm" (the MiniLM package's WordPiece), or a
    # tokenizer.json inside a saved model's folder.
    tokenizer: str = "openai"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        vision = dict(d.pop("vision", {}))
        for key in ("mean", "std"):
            if key in vision:
                vision[key] = tuple(vision[key])
        if isinstance(vision.get("layers"), list):
            vision["layers"] = tuple(vision["layers"])
        text = dict(d.pop("text", {}))
        for part, values, kind in (("", d, cls), ("vision.", vision, VisionConfig), ("text.", text, TextConfig)):
            unknown = set(values) - {f.name for f in dataclasses.fields(kind)} - {"vision", "text"}
            if unknown:
                raise BadInput(f"unknown model config keys: {', '.join(part + k for k in sorted(unknown))}")
        config = cls(vision=VisionConfig(**vision), text=TextConfig(**text), **d)
        config.check()
        return config

    def check(self) -> None:
        """A ValueError naming the first field whose value cannot make a model."""
        for part, values in (("", self), ("vision.", self.vision), ("text.", self.text)):
            for f in dataclasses.fields(values):
                value, default = getattr(values, f.name), f.default
                if isinstance(default, bool) or not isinstance(default, (int, float)):
                    continue
                numbers = value if f.name == "layers" and isinstance(value, tuple) else (value,)
                if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers) or (
                        isinstance(default, int) and not all(isinstance(v, int) for v in numbers)):
                    raise BadInput(f"{part}{f.name} is {value!r}; it must be a{'n integer' if isinstance(default, int) else ' number'}")
                if f.name in POSITIVE and not all(v >= 1 for v in numbers):
                    raise BadInput(f"{part}{f.name} is {value!r}; it must be at least 1")
        if not self.text.projection_head and self.text.kind != "minilm":
            raise BadInput(f"text.projection_head false keeps a pretrained tower's own space: the {self.text.kind} "
                           "tower is trained here and needs its projection")
        for part, tower in (("vision", self.vision), ("text", self.text)):
            if tower.kind in ("vit", "transformer") and tower.width % tower.heads:
                raise BadInput(f"{part}.width {tower.width} is not a multiple of {part}.heads {tower.heads}")
        if min(self.vision.std) <= 0:
            raise BadInput(f"vision.std is {self.vision.std}; each must be above 0 (the pixels are divided by it)")
        for name, value, most in (("vision.image_size", self.vision.image_size, MAX_IMAGE_SIZE),
                                  ("text.context_length", self.text.context_length, MAX_CONTEXT)):
            if value > most:
                raise BadInput(f"{name} is {value:,}; at most {most:,}")
        count, memory = self.parameter_estimate(), _memory_bytes()
        if memory and 4 * count > memory:
            raise BadInput(f"this config makes a model of about {count / 1e9:.1f} billion parameters "
                           f"({4 * count / 2 ** 30:,.0f} GiB in fp32), more than this machine's "
                           f"{memory / 2 ** 30:,.0f} GiB of memory; check its widths and layers")

    def parameter_estimate(self) -> int:
        """About how many parameters the towers hold (blocks, embeddings), from the config alone,
        so that a size no machine can hold is refused before anything is allocated."""
        v, t = self.vision, self.text
        depth = sum(v.layers) * 4 if isinstance(v.layers, tuple) else v.layers  # a ResNet's blocks, roughly
        block = lambda width, ratio: (4 + 2 * ratio) * width * width  # noqa: E731 (attention, MLP)
        grid = (v.image_size // max(v.patch_size, 1)) ** 2
        vision = depth * block(v.width, v.mlp_ratio) + grid * v.width + 3 * v.patch_size ** 2 * v.width
        text = t.layers * block(t.width, t.mlp_ratio) + (t.vocab_size + t.context_length) * t.width
        return int(vision + text + (v.width + t.width) * self.embed_dim)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadInput(f"{path}: not valid JSON ({e}); restore the file or save the model again") from None
        if not isinstance(raw, dict):
            raise BadInput(f"{path}: a model config is a JSON object, not {type(raw).__name__}")
        try:
            return cls.from_dict(raw)
        except (TypeError, ValueError) as e:
            raise BadInput(f"{path}: {e}") from None


MAX_IMAGE_SIZE, MAX_CONTEXT = 4096, 16384  # beyond these no tower here can run


def _memory_bytes() -> int:
    """This machine's physical memory (0 where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


class TaskConfig:
    """JSON round-trip for a task model's config dataclass, whose `towers` is a ModelConfig."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**{**d, "towers": ModelConfig.from_dict(d["towers"])})


def _tiny() -> ModelConfig:
    return ModelConfig(
        embed_dim=32,
        vision=VisionConfig(image_size=32, width=32, layers=2, heads=2, patch_size=8),
        text=TextConfig(context_length=32, vocab_size=1024, width=32, layers=2, heads=2),
        tokenizer="train",
    )


def _small() -> ModelConfig:
    return ModelConfig(
        embed_dim=256,
        vision=VisionConfig(image_size=64, width=256, layers=6, heads=4, patch_size=16),
        text=TextConfig(context_length=32, vocab_size=8192, width=256, layers=4, heads=4),
        tokenizer="train",
    )


PRESETS = {
    "tiny": _tiny,
    "small": _small,
    "ViT-B-32": lambda: ModelConfig(
        embed_dim=512, vision=VisionConfig(width=768, layers=12, heads=12, patch_size=32)),
    "ViT-B-16": lambda: ModelConfig(
        embed_dim=512, vision=VisionConfig(width=768, layers=12, heads=12, patch_size=16)),
    "RN50": lambda: ModelConfig(
        embed_dim=1024,
        vision=VisionConfig(kind="resnet", width=64, layers=(3, 4, 6, 3), heads=32)),
}


def preset(name: str) -> ModelConfig:
    """A fresh copy of a named preset."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


def resolve_config(spec: str | dict, image_tower: str | None = None, text_tower: str | None = None,
                   option: str = "--architecture") -> ModelConfig:
    """A preset name, a JSON config file or a config's dict, with the towers optionally swapped;
    `option` names where the spec came from, in the error."""
    if isinstance(spec, dict):
        config = ModelConfig.from_dict(spec)
    elif spec in PRESETS:
        config = preset(spec)
    elif Path(spec).is_file():
        config = ModelConfig.from_json(spec)
    else:
        raise BadInput(f"{spec!r} is neither a preset ({', '.join(PRESETS)}) nor a JSON config file", option)
    if image_tower:
        config.vision.kind = image_tower
        if image_tower == "resnet" and isinstance(config.vision.layers, int):
            # a ResNet of about the ViT's depth and cost: four stages, stem width / 8
            config.vision.layers = (max(1, config.vision.layers // 4),) * 4
            config.vision.width = max(8, config.vision.width // 8)
            config.vision.heads = max(1, config.vision.width * 32 // 64)
            config.vision.image_size = max(32, config.vision.image_size // 32 * 32)
    if text_tower:
        config.text.kind = text_tower
    return config
