"""The real model: the two pretrained towers against their reference implementations, the
shipped heads on real photos, saving without copying packaged weights, and the recipe end to end."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import grounding
from grounding.inference.encode import classify, text_classifier
from grounding.models import bert, efficientnet
from grounding.saved import save_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def lit(builtin):
    return builtin


@pytest.mark.parametrize("variant", ["lite0", "lite2"])
def test_efficientnet_lite_matches_the_reference_package(variant):
    reference_package = pytest.importorskip("efficientnet_lite_pytorch")
    reference = reference_package.EfficientNet.from_pretrained(
        f"efficientnet-{variant}", weights_path=str(efficientnet.packaged_weights(variant))).eval()
    ours = efficientnet.load_pretrained(variant).eval()  # its blocks read off the weights
    size = efficientnet.IMAGE_SIZE[variant]
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference.extract_features(pixels).mean(dim=(2, 3))
        logits = reference(pixels)
        features = ours(pixels)
    assert (features - expected).abs().max() < 1e-4
    assert (ours.classifier(features) - logits).abs().max() < 1e-4


def test_minilm_matches_sentence_transformers(lit):
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(bert.packaged_folder()), device="cpu")
    texts = ["a cup of coffee", "A photo of a cat sitting on the mat, looking at the camera.", "rocket"]
    expected = reference.encode(texts, convert_to_tensor=True)  # mean-pooled, then normalised
    with torch.no_grad():
        ours = F.normalize(lit.text.features(lit.tokenizer(texts)), dim=-1)
    assert (ours - expected).abs().max() < 1e-5


def test_a_text_tower_without_a_head_keeps_minilms_own_space():
    from grounding.build import create_model
    from grounding.config import ModelConfig, TextConfig, VisionConfig

    text = TextConfig(kind="minilm", context_length=64, vocab_size=30522, projection_head=False)
    config = ModelConfig(embed_dim=384, vision=VisionConfig(kind="efficientnet_lite0", image_size=224),
                         text=text, tokenizer="minilm")
    model = create_model(config).eval()
    ids = model.tokenizer(["a cup of coffee", "rocket"])
    with torch.no_grad():
        assert torch.equal(model.encode_text(ids, normalize=True), F.normalize(model.text.features(ids), dim=-1))
    assert not list(model.text.parameters(recurse=False)) and not list(model.text.head.parameters())
    with pytest.raises(ValueError, match="set embed_dim to 384"):
        create_model(dataclasses.replace(config, embed_dim=512))
    with pytest.raises(ValueError, match="needs its projection"):
        ModelConfig(text=TextConfig(projection_head=False)).check()


def test_joined_heads_embed_images_as_the_mean_of_their_members(tmp_path):
    from grounding.build import create_model, join_heads
    from grounding.config import ModelConfig, TextConfig, VisionConfig

    text = TextConfig(kind="minilm", context_length=64, vocab_size=30522, projection_head=False)
    config = ModelConfig(embed_dim=384, vision=VisionConfig(kind="efficientnet_lite0", image_size=224, head_width=16),
                         text=text, tokenizer="minilm")
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        members.append(create_model(config).eval())
    joined = join_heads(members).eval()
    features = torch.randn(3, efficientnet.FEATURES)
    with torch.no_grad():
        mean = torch.stack([F.normalize(m.visual.from_features(features), dim=-1) for m in members]).mean(dim=0)
        assert torch.allclose(joined.visual.from_features(features), F.normalize(mean, dim=-1), atol=1e-6)
    save_model(joined, tmp_path)
    again = grounding.load(tmp_path)
    assert again.config.vision.head_ensemble == 2
    pixels = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(again.encode_image(pixels), joined.encode_image(pixels))
    wider = create_model(dataclasses.replace(config, vision=dataclasses.replace(config.vision, head_width=8)))
    with pytest.raises(ValueError, match="one config"):
        join_heads([members[0], wider])


def test_shipped_model_names_the_demo_photos(lit):
    from grounding.data.datasets import open_dataset

    photos = open_dataset("photos:demo")  # scikit-image's coffee, cat, rocket and astronaut, among 12 labels
    pixels = torch.stack([lit.preprocess(photos.image(i)) for i in range(len(photos))])
    probs = classify(lit, text_classifier(lit, photos.classes), pixels)
    assert probs.argmax(dim=1).tolist() == [t[0] for t in photos.targets]


def test_saving_keeps_only_what_is_not_in_the_packages(lit, tmp_path):
    save_model(lit, tmp_path)
    size = (tmp_path / "model.safetensors").stat().st_size
    assert size < 25e6  # the heads, in float32 (no int8 asked); the towers' 27M weights stay in their packages
    again = grounding.load(tmp_path)
    pixels = torch.randn(1, 3, 224, 224)
    ids = lit.tokenizer(["a red apple"])
    with torch.no_grad():
        assert torch.equal(again.encode_image(pixels), lit.encode_image(pixels))
        assert torch.equal(again.encode_text(ids), lit.encode_text(ids))
    # a changed backbone is no longer the package's, so its weights are saved too
    with torch.no_grad():
        again.visual.backbone.stem.conv.weight.mul_(1.01)
    save_model(again, tmp_path / "tuned")
    assert (tmp_path / "tuned" / "model.safetensors").stat().st_size > size + 10e6


def _fake_openclipart(root, names):
    """The package's layout: png/CATEGORY/NAME.png beside svg/CATEGORY/NAME.svg with metadata."""
    rng = np.random.default_rng(0)
    for i, (title, keywords) in enumerate(names):
        (root / "png" / "things").mkdir(parents=True, exist_ok=True)
        (root / "svg" / "things").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 50, 4), dtype=np.uint8), "RGBA").save(
            root / "png" / "things" / f"thing_{i}.png")
        subjects = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
        (root / "svg" / "things" / f"thing_{i}.svg").write_text(
            '<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/" '
            'xmlns:cc="http://web.resource.org/cc/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            f"<metadata><rdf:RDF><cc:Work><dc:title>{title}</dc:title><dc:subject><rdf:Bag>{subjects}"
            "</rdf:Bag></dc:subject></cc:Work></rdf:RDF></metadata></svg>")


@pytest.mark.slow
def test_lit_real_recipe_trains_heads_on_cached_features_reproducibly(tmp_path, monkeypatch, builtin):
    from grounding.data.clipart import clipart_pairs
    from grounding.training import feed
    from grounding.training.recipes import run_recipe

    art = tmp_path / "openclipart"
    _fake_openclipart(art, [("Red apple", ["fruit", "unsorted"]), ("Blue car", ["vehicle"]), ("Old house", []),
                            ("Green tree", ["plant", "nature"])])
    pairs = clipart_pairs(art)
    assert [p.captions for p in pairs][0] == ["Red apple", "Red apple: fruit"]  # noise keywords dropped
    changes = {"data": f"openclipart:{art}", "epochs": 2, "batch_size": 4, "warmup": 1, "workers": 0}
    first = run_recipe("lit-real", tmp_path / "a", changes, show_progress=False)
    cached = sorted((tmp_path / "cache" / "features").rglob("*.safetensors"))
    assert len(cached) == 2  # images, captions
    computed = feed.cached_features
    monkeypatch.setattr(feed, "cached_features", lambda folder, keys, compute, chunk=512: computed(
        folder, keys, lambda *_: pytest.fail("computed again"), chunk))
    second = run_recipe("lit-real", tmp_path / "b", changes, show_progress=False)  # from the cache
    heads = first.visual.head.members  # three runs, from seeds 0, 1, 2, joined
    assert [json.loads((tmp_path / "a" / "members" / str(k) / "train.json").read_text())["seed"]
            for k in range(3)] == [0, 1, 2]
    assert len(heads) == 3 and not torch.equal(heads[0][0].weight, heads[1][0].weight)
    assert all(torch.equal(a[0].weight, b[0].weight) for a, b in zip(heads, second.visual.head.members))
    model = grounding.load(tmp_path / "a")
    assert torch.equal(model.visual.label_head.weight, torch.eye(384))  # the route's copy of the text head: none
    assert torch.equal(model.visual.head.members[2][0].weight, heads[2][0].weight)
    shipped = builtin.visual.head.members[0][0].weight
    assert not torch.equal(model.visual.head.members[0][0].weight, shipped)
    probs = classify(model, text_classifier(model, ["apple", "car"]), torch.randn(1, 3, 224, 224))
    assert probs.shape == (1, 2) and torch.allclose(probs.sum(), torch.tensor(1.0))


def test_the_built_in_model_fine_tunes_on_cached_features(tmp_path, builtin):
    """The README's `grounding train --init lit-minilm-effnet --lock-image --lock-text --cache-features`:
    the heads of the ensemble learn together (their mean is the tower's output), nothing else."""
    from grounding.training.options import TrainConfig
    from grounding.training.trainer import train

    art = tmp_path / "openclipart"
    _fake_openclipart(art, [(f"thing number {i}", []) for i in range(6)])
    options = TrainConfig(init="lit-minilm-effnet", data=f"openclipart:{art}", lock_image=True, lock_text=True,
                          cache_features=True, epochs=2, batch_size=4, warmup=1, workers=0)
    tuned = train(None, options, tmp_path / "run", show_progress=False)
    shipped = builtin
    heads = zip(tuned.visual.head.members, shipped.visual.head.members)
    assert all(not torch.equal(a[0].weight, b[0].weight) for a, b in heads)
    assert torch.equal(tuned.visual.backbone.stem.conv.weight, shipped.visual.backbone.stem.conv.weight)
    again = grounding.load(tmp_path / "run")
    assert again.config.vision.head_ensemble == shipped.config.vision.head_ensemble
    assert torch.equal(again.visual.head.members[1][2].weight, tuned.visual.head.members[1][2].weight)


def test_cached_features_are_the_towers_features_of_the_examples_a_step_draws(tmp_path):
    from grounding.build import create_model
    from grounding.data.pairs import open_pairs
    from grounding.runtime import Runtime
    from grounding.training.checkpoint import RunFolder
    from grounding.training.feed import CachedFeed
    from grounding.training.lock import lock_tower
    from grounding.training.recipes import lit_real

    art = tmp_path / "openclipart"
    _fake_openclipart(art, [(f"thing number {i}", []) for i in range(6)])
    config, options = lit_real()
    options = dataclasses.replace(options, data=f"openclipart:{art}", batch_size=4, steps=5, workers=0)
    model = create_model(config)  # in training mode, as the trainer hands it over
    lock_tower(model.visual)
    lock_tower(model.text)
    mixture = open_pairs(options.data)
    feed = CachedFeed(mixture, model, options, RunFolder(tmp_path / "run"), Runtime.resolve("cpu"))
    batch = feed.batch(3)
    chosen = feed.chooser.choose(3)[0]
    assert model.visual.backbone_is_packaged()  # BatchNorm statistics untouched by the feature pass
    model.eval()
    with torch.no_grad():
        pixels = torch.stack([model.preprocess(sample.ref.path) for sample, *_ in chosen])
        assert torch.allclose(batch.image_features, model.visual.features(pixels), atol=1e-5)
        ids = model.tokenizer([caption for _, caption, *_ in chosen])
        assert torch.allclose(batch.text_features, model.text.features(ids), atol=1e-5)
    with pytest.raises(ValueError, match="--cache-features needs data that lists its images"):
        CachedFeed(open_pairs("synthetic"), model, options, RunFolder(tmp_path / "s"), Runtime.resolve("cpu"))
    for redrawn in ({"grey": 0.25}, {"drop_colour_words": 0.25}):  # images or captions that change with each draw
        with pytest.raises(ValueError, match="--cache-features encodes each once"):
            CachedFeed(mixture, model, dataclasses.replace(options, **redrawn), RunFolder(tmp_path / "g"),
                       Runtime.resolve("cpu"))


def test_recipe_says_what_to_install_when_openclipart_is_missing(tmp_path):
    from grounding.data.clipart import clipart_pairs
    from grounding.data.sources import MissingPackageError

    with pytest.raises(MissingPackageError, match="apt-get install openclipart-png openclipart-svg"):
        clipart_pairs(tmp_path / "nowhere")
