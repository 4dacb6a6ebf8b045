"""One implementation's encoding speed, run in its own process (the peers in their own virtual
environment). Prints one JSON line and saves the features it computed, for the accuracy guard.
Used by encode.py."""
import json
import statistics
import sys
import time

import torch


def build(impl: str, name: str, mode: str):
    """The model and its image and text encoders, in the precision `mode` asks for."""
    if impl == "grounding":
        from grounding.config import preset
        from grounding.models import CLIP
        from grounding.runtime import Runtime

        model = CLIP(preset(name)).eval()
        if mode.startswith("bf16"):  # its bf16 is weights converted once (and, asked for, a compiled encoder)
            model = Runtime.resolve("cpu", "bf16", compile=mode == "bf16-compiled").prepare(model)
        return model.encode_image, model.encode_text
    if impl == "open_clip":
        import open_clip

        model = open_clip.create_model(name, pretrained=None).eval()
    else:
        from transformers import CLIPModel, CLIPConfig

        config = CLIPConfig(projection_dim=512, text_config=dict(eos_token_id=49407),
                            vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                               num_attention_heads=12, image_size=224, patch_size=32))
        model = CLIPModel(config).eval()
    dtype = torch.bfloat16 if mode == "bf16-weights" else torch.float32
    model = model.to(dtype)
    if impl == "open_clip":
        return (lambda x: model.encode_image(x.to(dtype))), model.encode_text
    return (lambda x: model.get_image_features(pixel_values=x.to(dtype))), (lambda ids: model.get_text_features(input_ids=ids))


def main() -> None:
    impl, name, kind, mode, batch, repeats, data, out = sys.argv[1:9]
    batch, repeats = int(batch), int(repeats)
    torch.manual_seed(0)
    encode_image, encode_text = build(impl, name, mode)
    saved = torch.load(data, weights_only=True)
    inputs = saved["pixels"][:batch] if kind == "image" else saved["ids"][:batch]
    encode = encode_image if kind == "image" else encode_text
    rates = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16-autocast"):
        for i in range(repeats + 2):  # two warm-up passes
            began = time.perf_counter()
            features = encode(inputs)
            features = features if isinstance(features, torch.Tensor) else features.pooler_output
            if i >= 2:
                rates.append(len(inputs) / (time.perf_counter() - began))
    torch.save(features.float(), out)
    print(json.dumps({"per_s": statistics.median(rates)}))


if __name__ == "__main__":
    main()
