"""One implementation's training throughput, run in its own process (and for the peers, their
own virtual environment). Prints one JSON line. Used by train_throughput.py."""
import json
import resource
import statistics
import sys
import time

import torch


def shapes(preset: str) -> dict:
    if preset == "small":
        return dict(embed=256, image=64, patch=16, vwidth=256, vlayers=6, vheads=4,
                    context=32, twidth=256, tlayers=4, theads=4)
    return dict(embed=512, image=224, patch=32, vwidth=768, vlayers=12, vheads=12,
                context=77, twidth=512, tlayers=12, theads=8)


def build(impl: str, preset: str, vocab: int, eot: int):
    s = shapes(preset)
    if impl == "grounding":
        from grounding.config import preset as grounding_preset
        from grounding.models import CLIP

        config = grounding_preset(preset)
        config.text.vocab_size, config.text.eot_token_id = vocab, eot
        model = CLIP(config)

        def step(pixels, ids):
            from grounding.losses import clip_loss
            img = model.encode_image(pixels, normalize=True)
            txt = model.encode_text(ids, normalize=True)
            return clip_loss(img, txt, model.logit_scale)
        return model, step
    if impl == "open_clip":
        import open_clip

        if preset == "ViT-B-32":
            model = open_clip.create_model("ViT-B-32", pretrained=None)
        else:
            model = open_clip.CLIP(
                embed_dim=s["embed"],
                vision_cfg=open_clip.CLIPVisionCfg(layers=s["vlayers"], width=s["vwidth"], head_width=64,
                                                   patch_size=s["patch"], image_size=s["image"]),
                text_cfg=open_clip.CLIPTextCfg(context_length=s["context"], vocab_size=vocab, width=s["twidth"],
                                               heads=s["theads"], layers=s["tlayers"]))
        loss_fn = open_clip.ClipLoss()

        def step(pixels, ids):
            img, txt, scale = model(pixels, ids)[:3]
            return loss_fn(img, txt, scale)
        return model, step
    if impl == "transformers":
        from transformers import CLIPConfig, CLIPModel

        config = CLIPConfig(
            projection_dim=s["embed"],
            text_config=dict(vocab_size=vocab, hidden_size=s["twidth"], intermediate_size=4 * s["twidth"],
                             num_hidden_layers=s["tlayers"], num_attention_heads=s["theads"],
                             max_position_embeddings=s["context"], eos_token_id=eot),
            vision_config=dict(hidden_size=s["vwidth"], intermediate_size=4 * s["vwidth"],
                               num_hidden_layers=s["vlayers"], num_attention_heads=s["vheads"],
                               image_size=s["image"], patch_size=s["patch"]))
        model = CLIPModel(config)

        def step(pixels, ids):
            return model(input_ids=ids, pixel_values=pixels, return_loss=True).loss
        return model, step
    raise ValueError(impl)


def optimizer_of(impl: str, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The AdamW each implementation's own trainer uses: grounding's (fused where PyTorch has a
    fused kernel), open_clip_train's (the loop over parameters, PyTorch's default off CUDA) and
    transformers' Trainer's (optim "adamw_torch_fused", its default since PyTorch 2.8)."""
    if impl == "grounding":
        from grounding.training.optim import make_optimizer
        return make_optimizer(model, 1e-5, 0.1)
    return torch.optim.AdamW(model.parameters(), lr=1e-5, fused=impl == "transformers")


def main() -> None:
    impl, preset, precision, text_mode, batch, repeats, data = sys.argv[1:8]
    batch, repeats = int(batch), int(repeats)
    torch.set_num_threads(int(torch.get_num_threads()))
    torch.manual_seed(0)
    saved = torch.load(data, weights_only=True)
    ids, vocab, eot = saved["ids"][:batch], int(saved["vocab"]), int(saved["eot"])
    model, step = build(impl, preset, vocab, eot)
    if impl == "grounding" and text_mode == "full":
        model.text.trim_padding = False
    model.train()
    optimizer = optimizer_of(impl, model)
    pixels = torch.randn(batch, 3, shapes(preset)["image"], shapes(preset)["image"])
    rates = []
    for i in range(repeats + 2):  # two warm-up steps
        began = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = step(pixels, ids)
        loss.backward()
        optimizer.step()
        if i >= 2:
            rates.append(batch / (time.perf_counter() - began))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # GiB (ru_maxrss is KiB)
    print(json.dumps({"pairs_per_s": statistics.median(rates), "peak_gib": peak, "loss": float(loss)}))


if __name__ == "__main__":
    main()
