"""OWL-ViT in Hugging Face's `OwlViTForObjectDetection` format: transformers' own detector and
ours give the same logits and boxes, both ways (its folder read here, ours read by it)."""
from __future__ import annotations

import pytest
import torch

from grounding.build import attach, create_model
from grounding.config import ModelConfig, TextConfig, VisionConfig
from grounding.formats.owlvit import load_owlvit_folder, write_owlvit_folder
from grounding.models.detector import Detector, DetectorConfig
from grounding.tasks.saved import load_task_model

transformers = pytest.importorskip("transformers", reason="install the test extra: pip install -e '.[test]'")


def _ours(model: Detector, pixels: torch.Tensor, ids: torch.Tensor):
    with torch.no_grad():
        return model(pixels, model.queries(ids))


def _tiny_owlvit(folder, seed: int):
    """transformers' OWL-ViT at a tiny random configuration, written to `folder` and read back
    here: (theirs, ours)."""
    config = transformers.OwlViTConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=16),
        vision_config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                           image_size=64, patch_size=16), projection_dim=32)
    torch.manual_seed(seed)
    theirs = transformers.OwlViTForObjectDetection(config).eval()
    theirs.save_pretrained(folder)
    return theirs, load_task_model(folder, "detect")


def test_transformers_owlvit_folders_detect_here_with_its_logits_and_boxes(tmp_path):
    theirs, ours = _tiny_owlvit(tmp_path / "hf", seed=0)
    assert ours.config.towers.vision.resize == "squash"
    pixels = torch.randn(2, 3, 64, 64)
    ids = torch.randint(1, 49000, (3, 16))
    ids[:, 9] = 49407  # the end token: the largest id, where OWL-ViT pools
    ids[:, 10:] = 0
    with torch.no_grad():
        expected = theirs(input_ids=ids.repeat(len(pixels), 1), pixel_values=pixels,  # the queries of each image
                          attention_mask=(ids != 0).long().repeat(len(pixels), 1))
    logits, boxes = _ours(ours, pixels, ids)
    assert (logits - expected.logits).abs().max() < 1e-4 and (boxes - expected.pred_boxes).abs().max() < 1e-4


def test_example_images_query_as_transformers_image_guided_detection_does(tmp_path):
    theirs, ours = _tiny_owlvit(tmp_path / "hf", seed=2)
    pixels, examples = torch.randn(3, 3, 64, 64), torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = theirs.image_guided_detection(pixel_values=pixels, query_pixel_values=examples)
        logits, boxes = ours(pixels, ours.example_queries(examples)[:, None])  # each image its own example
    assert (logits - expected.logits).abs().max() < 1e-4 and (boxes - expected.target_pred_boxes).abs().max() < 1e-4


def test_transformers_reads_our_detectors_with_our_logits_and_boxes(tmp_path):
    """OWL-ViT pools a text at its largest id: the written vocabulary has the end token last, so
    the same texts give transformers the ids it pools right, and reading the folder back gives
    those ids and the same answers here too."""
    towers = ModelConfig(embed_dim=32, vision=VisionConfig(image_size=32, width=32, layers=2, heads=2, patch_size=8),
                         text=TextConfig(context_length=16, vocab_size=1024, width=32, layers=2, heads=2),
                         tokenizer="train")
    torch.manual_seed(1)
    ours = attach(Detector(DetectorConfig(towers)), create_model(towers).tokenizer).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.05 * torch.randn_like(p))
    pixels, texts = torch.randn(2, 3, 32, 32), ["a red circle", "blue square"]
    logits, boxes = _ours(ours, pixels, ours.tokenizer(texts))
    write_owlvit_folder(ours, tmp_path / "out")
    reread = load_owlvit_folder(tmp_path / "out")
    ids = reread.tokenizer(texts)
    assert (ids.max(dim=1).values == len(reread.tokenizer) - 1).all()  # the end token is the largest id
    theirs = transformers.OwlViTForObjectDetection.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        expected = theirs(input_ids=ids.repeat(len(pixels), 1), pixel_values=pixels,
                          attention_mask=torch.ones_like(ids).repeat(len(pixels), 1))
    assert (expected.logits - logits).abs().max() < 1e-4 and (expected.pred_boxes - boxes).abs().max() < 1e-4
    again_logits, again_boxes = _ours(reread, pixels, ids)
    assert (again_logits - logits).abs().max() < 1e-4 and (again_boxes - boxes).abs().max() < 1e-4
