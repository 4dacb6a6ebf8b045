import copy

import pytest
import torch

from grounding.build import create_model
from grounding.config import ModelConfig, preset, resolve_config
from grounding.models.layers import Layer
from grounding.models.text import end_of_text_positions


def tiny(image: str, text: str, bidirectional: bool = False):
    config = preset("tiny")
    config.vision.kind = image
    if image == "resnet":
        config.vision.width, config.vision.layers, config.vision.heads = 8, (1, 1, 1, 1), 4
    config.text.kind = text
    config.text.bidirectional = bidirectional
    torch.manual_seed(0)
    return create_model(config).eval()


@pytest.mark.parametrize("image", ["vit", "resnet"])
@pytest.mark.parametrize("text,bidirectional", [("transformer", False), ("lstm", False), ("lstm", True)])
def test_every_tower_pairing_has_the_right_shapes(image, text, bidirectional):
    model = tiny(image, text, bidirectional)
    size = model.config.vision.image_size
    pixels = torch.randn(3, 3, size, size)
    ids = model.tokenizer(["a red circle", "a small blue square left of a green star", "a"])
    assert model.encode_image(pixels).shape == (3, model.config.embed_dim)
    assert model.encode_text(ids).shape == (3, model.config.embed_dim)
    per_image, per_text = model(pixels, ids)
    assert per_image.shape == (3, 3) and torch.equal(per_image, per_text.t())
    assert torch.allclose(model.encode_image(pixels, normalize=True).norm(dim=-1), torch.ones(3))


def test_vit_tokens_cover_the_patch_grid(tiny_model):
    v = tiny_model.config.vision
    tokens = tiny_model.visual.forward_tokens(torch.randn(2, 3, v.image_size, v.image_size))
    assert tokens.shape == (2, 1 + (v.image_size // v.patch_size) ** 2, v.width)


@pytest.mark.parametrize("text", ["transformer", "lstm"])
def test_padding_after_end_of_text_changes_nothing(text):
    model = tiny("vit", text)
    short = model.tokenizer(["a red circle", "a big green triangle above a red square"], context_length=20)
    long = model.tokenizer(["a red circle", "a big green triangle above a red square"], context_length=32)
    with torch.no_grad():
        # each row alone (no trimming to a longer neighbour) and padded differently
        alone = torch.cat([model.encode_text(long[i:i + 1]) for i in range(2)])
        assert torch.allclose(model.encode_text(short), alone, atol=1e-6)
        garbage = long.clone()
        eot = end_of_text_positions(long, model.config.text.eot_token_id)
        garbage[0, eot[0] + 1:] = 7  # anything after the end token must be ignored
        assert torch.allclose(model.encode_text(garbage), model.encode_text(long), atol=1e-6)


def test_the_pooled_path_gives_every_token_paths_embeddings_and_gradients():
    """encode_* asks only the pooled token in the last block (class token, end of text); the
    result must be the full pass's pooled token, values and gradients."""
    model = tiny("vit", "transformer").train()
    size = model.config.vision.image_size
    pixels = torch.randn(3, 3, size, size)
    ids = model.tokenizer(["a red circle", "a big green triangle above a red square", "a"])

    def full() -> torch.Tensor:
        tokens, eot = model.text.forward_tokens(ids)
        texts = tokens[torch.arange(len(ids)), eot] @ model.text.text_projection
        return torch.cat([model.visual.forward_tokens(pixels)[:, 0] @ model.visual.proj, texts])

    results = []
    for forward in (full, lambda: torch.cat([model.visual(pixels), model.text(ids)])):
        model.zero_grad()
        out = forward()
        out.square().sum().backward()
        results.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (want, want_grads), (got, got_grads) = results
    assert torch.allclose(got, want, atol=1e-5)
    assert got_grads.keys() == want_grads.keys()
    for name, grad in want_grads.items():
        assert torch.allclose(got_grads[name], grad, rtol=1e-4, atol=1e-5), name


def test_pooling_uses_the_end_token_not_the_largest_id(tiny_model):
    ids = tiny_model.tokenizer(["a red circle"])
    eot = int(end_of_text_positions(ids, tiny_model.config.text.eot_token_id))
    added = ids.clone()
    added[0, eot + 1] = tiny_model.config.text.vocab_size - 1  # an added token, above the end id
    with torch.no_grad():
        assert torch.allclose(tiny_model.encode_text(added), tiny_model.encode_text(ids), atol=1e-6)


def test_text_without_end_token_is_refused(tiny_model):
    ids = torch.full((1, 8), 5)
    with pytest.raises(ValueError, match="no end-of-text token"):
        tiny_model.encode_text(ids)


def test_config_json_round_trip(tmp_path):
    for name in ("tiny", "small", "ViT-B-32", "ViT-B-16", "RN50"):
        config = preset(name)
        config.to_json(tmp_path / "c.json")
        assert ModelConfig.from_json(tmp_path / "c.json") == config
        assert resolve_config(str(tmp_path / "c.json")) == config


def test_presets_have_the_published_shapes():
    b32 = preset("ViT-B-32")
    assert (b32.vision.width, b32.vision.layers, b32.vision.patch_size, b32.embed_dim) == (768, 12, 32, 512)
    assert (b32.text.width, b32.text.layers, b32.text.heads, b32.text.context_length) == (512, 12, 8, 77)
    rn50 = preset("RN50")
    assert rn50.vision.layers == (3, 4, 6, 3) and rn50.embed_dim == 1024
    small = preset("small")
    assert (small.vision.width, small.vision.layers, small.vision.heads, small.vision.patch_size,
            small.vision.image_size) == (256, 6, 4, 16, 64)
    assert (small.text.width, small.text.layers, small.text.context_length, small.embed_dim) == (256, 4, 32, 256)


def test_published_parameter_counts():
    # counts from the CLIP paper's architectures (OpenAI weights, vocabulary of 49,408)
    from grounding.models import CLIP

    with torch.device("meta"):  # shapes only: nothing allocated, nothing initialised
        counts = {name: sum(p.numel() for p in CLIP(preset(name)).parameters()) for name in ("ViT-B-32", "RN50")}
    assert counts["ViT-B-32"] == 151_277_313
    assert counts["RN50"] == 102_007_137


def test_tower_overrides():
    config = resolve_config("small", image_tower="resnet", text_tower="lstm")
    assert config.vision.kind == "resnet" and len(config.vision.layers) == 4 and config.text.kind == "lstm"
    with pytest.raises(ValueError, match="neither a preset"):
        resolve_config("no-such-model")


def _one_step_gradients(model, checkpointed: bool, examples: int = 6):
    from grounding.data.synthetic import World
    from grounding.training.trainer import ContrastiveStep

    model = copy.deepcopy(model).train()
    model.set_grad_checkpointing(checkpointed)
    calls = []
    layer = next(m for m in model.modules() if isinstance(m, Layer))
    layer.register_forward_pre_hook(lambda *_: calls.append(1))  # (recomputation stops once it has what it needs)
    scenes = World().batch(0, 0, examples)
    size = model.config.vision.image_size
    pixels = torch.stack([model.preprocess(s.render(size)) for s in scenes])
    ContrastiveStep(model)(pixels, model.tokenizer([s.caption() for s in scenes]))
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return grads, dict(model.named_buffers()), len(calls)


@pytest.mark.parametrize("image", ["vit", "resnet"])
def test_grad_checkpointing_gives_the_same_gradients_and_batchnorm_statistics(image):
    torch.manual_seed(0)
    model = create_model(resolve_config("tiny", image, None))
    plain, plain_buffers, plain_calls = _one_step_gradients(model, False)
    saved, saved_buffers, saved_calls = _one_step_gradients(model, True)
    assert (plain_calls, saved_calls) == (1, 2)  # the layer really ran again in the backward pass
    assert plain.keys() == saved.keys()
    for name in plain:
        assert torch.allclose(plain[name], saved[name], rtol=0, atol=1e-6), name
    for name in plain_buffers:  # running statistics moved once, not twice
        assert torch.equal(plain_buffers[name], saved_buffers[name]), name


def test_grad_checkpointing_reaches_the_packaged_towers():
    import grounding

    model = grounding.load("lit-minilm-effnet")  # EfficientNet-Lite0's blocks and MiniLM's layers, all unlocked
    plain, plain_buffers, _ = _one_step_gradients(model, False, examples=3)
    saved, saved_buffers, calls = _one_step_gradients(model, True, examples=3)
    assert calls == 2 and plain.keys() == saved.keys()
    assert any(name.startswith("text.backbone") for name in plain)
    for name in plain:
        assert torch.allclose(plain[name], saved[name], rtol=1e-4, atol=1e-6), name
    for name in plain_buffers:
        assert torch.equal(plain_buffers[name], saved_buffers[name]), name


@pytest.mark.parametrize("causal", [False, True])
def test_bf16_training_attention_takes_the_plain_kernel_with_the_same_values_and_gradients(causal):
    """attention() swaps the fused kernel for the plain one only where a gradient flows in bf16 on
    a CPU; both compute the same thing."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from grounding.models.transformer import attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(4, 2, 9, 16, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    out = attention(q, k, v, causal=causal)
    out.float().square().sum().backward()
    ours = [out.detach(), *(t.grad.clone() for t in (q, k, v))]
    for t in (q, k, v):
        t.grad = None
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        fused = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    fused.float().square().sum().backward()
    for mine, theirs in zip(ours, [fused.detach(), *(t.grad for t in (q, k, v))]):
        assert torch.allclose(mine.float(), theirs.float(), atol=0.05, rtol=0.05)
    with torch.no_grad():  # no gradient: the fused kernel, as before
        assert torch.equal(attention(q, k, v, causal=causal),
                           torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal))
