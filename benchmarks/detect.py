"""Detection throughput against transformers' OWL-ViT, with the same shapes and the same random
weights (ours written as an OWL-ViT folder and read by transformers), in one run, 2 threads:
images/s for a batch of images each asked the same queries, and the one-image latency that
`grounding detect` pays warm. transformers' API takes the queries per image (its input_ids are
images x queries), so it encodes them once per image; ours encodes them once per batch. The
outputs are checked equal to 1e-4 before anything is timed.

    python benchmarks/detect.py                          # OWL-ViT B/32's shapes at 768 px
    python benchmarks/detect.py --image-size 224 --batch 4

Target (issue #30): at least 1.3x transformers' images/s, and one 224-px image in under 1 s warm.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from timing import best_of

from grounding.build import attach
from grounding.config import ModelConfig, TextConfig, VisionConfig
from grounding.formats.owlvit import load_owlvit_folder, write_owlvit_folder
from grounding.models.detector import Detector, DetectorConfig
from grounding.vocabulary import build_tokenizer

QUERIES = ["a photo of a cat", "a photo of a dog", "a spoon", "a red circle", "a bicycle", "a tree", "a car", "a cup"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=768)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    import transformers

    towers = ModelConfig(embed_dim=512, vision=VisionConfig(image_size=args.image_size, width=768, layers=12, heads=12,
                                                            patch_size=32, activation="quick_gelu"),
                         text=TextConfig(context_length=16, vocab_size=49408, width=512, layers=12, heads=8,
                                         activation="quick_gelu"),
                         tokenizer="train")  # a vocabulary learned here: the hub's is not needed for timing
    torch.manual_seed(0)
    ours = attach(Detector(DetectorConfig(towers)), build_tokenizer(towers)).eval()
    with tempfile.TemporaryDirectory() as folder:
        write_owlvit_folder(ours, Path(folder))
        theirs = transformers.OwlViTForObjectDetection.from_pretrained(folder).eval()
        their_ids = load_owlvit_folder(folder).tokenizer(QUERIES)  # the written vocabulary: its end token last
    pixels = torch.randn(args.batch, 3, args.image_size, args.image_size)
    ids = ours.tokenizer(QUERIES)
    per_image = their_ids.repeat(args.batch, 1)

    @torch.no_grad()
    def run_ours(images: torch.Tensor):
        return ours(images, ours.queries(ids))

    @torch.no_grad()
    def run_theirs(images: torch.Tensor, queries: torch.Tensor):
        out = theirs(input_ids=queries, pixel_values=images, attention_mask=torch.ones_like(queries))
        return out.logits, out.pred_boxes

    (logits, boxes), (their_logits, their_boxes) = run_ours(pixels), run_theirs(pixels, per_image)
    assert (logits - their_logits).abs().max() < 1e-4 and (boxes - their_boxes).abs().max() < 1e-4
    batch = {"grounding": best_of(lambda: run_ours(pixels), args.repeats),
             "transformers": best_of(lambda: run_theirs(pixels, per_image), args.repeats)}
    one = {"grounding": best_of(lambda: run_ours(pixels[:1]), args.repeats),
           "transformers": best_of(lambda: run_theirs(pixels[:1], their_ids), args.repeats)}
    table = Table("engine", f"images/s (batch {args.batch})", "one image, s", "ratio",
                  title=f"OWL-ViT B/32 shapes at {args.image_size} px, {len(QUERIES)} queries, "
                        f"{torch.get_num_threads()} threads, random weights (outputs equal to 1e-4)")
    for name in batch:
        table.add_row(name, f"{args.batch / batch[name]:.2f}", f"{one[name]:.3f}",
                      f"{batch['transformers'] / batch[name]:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
