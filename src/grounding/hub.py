"""Published models by name: a Hugging Face repo id (`openai/clip-vit-base-patch32`, or
`hf-hub:ORG/NAME` as open_clip writes it), or a published name from the table below (OpenAI's
`ViT-B/32`, open_clip's `MODEL:PRETRAINED` such as `ViT-B-32:laion2b_s34b_b79k`). The files are
downloaded with huggingface_hub into its own cache, so HF_HOME, HF_ENDPOINT, HF_HUB_OFFLINE,
tokens and resumed downloads behave as its users know them; the folder is then read by the
Hugging Face or open_clip folder reader (formats/). Only safetensors weights are fetched: a
repo that holds nothing but pickles is refused."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import BadInput, NotFound
from .formats.huggingface import HF_CONFIG, HF_WEIGHTS, is_hf_folder
from .formats.openai import OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS
from .formats.sentencepiece import SPIECE_FILE

# Each layout's config, and its (safetensors, pickle) weights.
LAYOUTS = {OPEN_CLIP_CONFIG: OPEN_CLIP_WEIGHTS[:2], HF_CONFIG: HF_WEIGHTS}
# Read where present: the preprocessing (HF layout) and the tokenizer (either layout).
OPTIONAL = ("preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
            "vocab.json", "merges.txt", SPIECE_FILE)


@dataclass(frozen=True)
class Published:
    """A widely used published model: the repo that holds it, and what its files say it is
    (recorded so that `grounding models` can show them without a download)."""

    repo: str
    activation: str
    image_size: int
    trained_on: str
    task: str = "clip"  # or "detect": an OWL-ViT, for detect, locate, detect-eval and serve --detect-model


PUBLISHED = {
    "ViT-B-32:openai": Published("openai/clip-vit-base-patch32", "quick_gelu", 224, "OpenAI's WIT-400M"),
    "ViT-B-16:openai": Published("openai/clip-vit-base-patch16", "quick_gelu", 224, "OpenAI's WIT-400M"),
    "ViT-L-14:openai": Published("openai/clip-vit-large-patch14", "quick_gelu", 224, "OpenAI's WIT-400M"),
    "ViT-L-14-336:openai": Published("openai/clip-vit-large-patch14-336", "quick_gelu", 336, "OpenAI's WIT-400M"),
    "RN50:openai": Published("timm/resnet50_clip.openai", "quick_gelu", 224, "OpenAI's WIT-400M"),
    "RN101:openai": Published("timm/resnet101_clip.openai", "quick_gelu", 224, "OpenAI's WIT-400M"),
    "ViT-B-32:laion2b_s34b_b79k": Published("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "gelu", 224, "LAION-2B"),
    "ViT-B-16:laion2b_s34b_b88k": Published("laion/CLIP-ViT-B-16-laion2B-s34B-b88K", "gelu", 224, "LAION-2B"),
    "ViT-L-14:laion2b_s32b_b82k": Published("laion/CLIP-ViT-L-14-laion2B-s32B-b82K", "gelu", 224, "LAION-2B"),
    "ViT-H-14:laion2b_s32b_b79k": Published("laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "gelu", 224, "LAION-2B"),
    # SigLIP under open_clip's names, read from Google's own Hugging Face repos (the same weights)
    "ViT-B-16-SigLIP:webli": Published("google/siglip-base-patch16-224", "gelu_tanh", 224, "WebLI"),
    "ViT-B-16-SigLIP-256:webli": Published("google/siglip-base-patch16-256", "gelu_tanh", 256, "WebLI"),
    "ViT-B-16-SigLIP-384:webli": Published("google/siglip-base-patch16-384", "gelu_tanh", 384, "WebLI"),
    "ViT-B-16-SigLIP-512:webli": Published("google/siglip-base-patch16-512", "gelu_tanh", 512, "WebLI"),
    "ViT-L-16-SigLIP-256:webli": Published("google/siglip-large-patch16-256", "gelu_tanh", 256, "WebLI"),
    "ViT-L-16-SigLIP-384:webli": Published("google/siglip-large-patch16-384", "gelu_tanh", 384, "WebLI"),
    "ViT-SO400M-14-SigLIP:webli": Published("google/siglip-so400m-patch14-224", "gelu_tanh", 224, "WebLI"),
    "ViT-SO400M-14-SigLIP-384:webli": Published("google/siglip-so400m-patch14-384", "gelu_tanh", 384, "WebLI"),
    # OWL-ViT: CLIP's towers fine-tuned to detect (Minderer et al., 2022), Google's Hugging Face repos
    "OWL-ViT-B-32:google": Published("google/owlvit-base-patch32", "quick_gelu", 768, "WIT-400M, then O365+VG",
                                     "detect"),
    "OWL-ViT-B-16:google": Published("google/owlvit-base-patch16", "quick_gelu", 768, "WIT-400M, then O365+VG",
                                     "detect"),
    "OWL-ViT-L-14:google": Published("google/owlvit-large-patch14", "quick_gelu", 840, "WIT-400M, then O365+VG",
                                     "detect"),
}
OPENAI_NAMES = {"ViT-B/32": "ViT-B-32:openai", "ViT-B/16": "ViT-B-16:openai", "ViT-L/14": "ViT-L-14:openai",
                "ViT-L/14@336px": "ViT-L-14-336:openai"}  # as clip.load() names them


def repo_of(name: str, task: str = "clip") -> str | None:
    """The hub repo a model name means, or None when it names no published model: a published
    name (of a model for `task`), `hf-hub:ORG/NAME`, or `ORG/NAME` (the caller has found no such
    local path first)."""
    name = OPENAI_NAMES.get(name, name)
    if name in PUBLISHED:
        if PUBLISHED[name].task != task:
            raise BadInput(f"{name} is a {'detector' if PUBLISHED[name].task == 'detect' else 'CLIP model'}, not "
                           f"a {'detector' if task == 'detect' else 'CLIP model'}: `grounding models` lists which is "
                           "which")
        return PUBLISHED[name].repo
    repo = name.removeprefix("hf-hub:")
    parts = repo.split("/")
    if len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~")):
        return repo
    return None


def fetch(repo: str) -> Path:
    """The repo's model folder in huggingface_hub's cache, downloaded first where it is not there."""
    import huggingface_hub
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    def get(filename: str) -> Path | None:
        try:
            return Path(huggingface_hub.hf_hub_download(repo, filename))
        except LocalEntryNotFoundError:  # (an EntryNotFoundError too): no network and no cached copy,
            known = huggingface_hub.try_to_load_from_cache(repo, filename)
            if known is None or isinstance(known, str):
                raise
            return None  # unless the cache remembers that the repo has no such file
        except EntryNotFoundError:
            return None

    try:
        layout = next((name for name in LAYOUTS if get(name)), None)
        if layout is None:
            raise BadInput(f"{repo}: neither {OPEN_CLIP_CONFIG} nor {HF_CONFIG} in it, so it is not a CLIP model")
        if layout == HF_CONFIG and not is_hf_folder(get(HF_CONFIG).parent):
            raise BadInput(f"{repo}: its {HF_CONFIG} has no vision_config, so it is not a CLIP model")
        safe, pickle = LAYOUTS[layout]
        weights = get(safe)
        if weights is None:
            pickled = huggingface_hub.file_exists(repo, pickle)
            raise BadInput(f"{repo}: no {safe}" + (
                f", only pickled weights ({pickle}), which grounding does not download: convert them to "
                "safetensors where they are trusted and pass the folder" if pickled else ""))
        for name in OPTIONAL:
            get(name)
    except GatedRepoError:
        raise NotFound(f"{repo} is gated: accept its terms on the hub, then log in (`hf auth login`) or set "
                       "HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise NotFound(f"{repo}: no such model on the hub (a private one needs `hf auth login` or HF_TOKEN); "
                       "`grounding models` lists the published names") from None
    except RevisionNotFoundError as e:
        raise NotFound(f"{repo}: {e}") from None
    except LocalEntryNotFoundError:
        raise NotFound(f"{repo} is not in the local cache and the hub cannot be reached (offline, or "
                       "HF_HUB_OFFLINE=1): download the folder where there is a network (`hf download "
                       f"{repo}`) and pass its path") from None
    return weights.parent


def cached(repo: str) -> bool:
    """Whether the repo's weights are already in huggingface_hub's cache (nothing is downloaded)."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo, safe), str) for safe, _ in LAYOUTS.values())
