"""End-to-end zero-shot evaluation speed (decode, preprocess, encode, score) on the Fashion-MNIST
test set with the ViT-B-32 shapes and random weights (or `--model`, e.g. the built-in model),
against the same model's pure encoding speed on pre-made tensors, in the same run and the same
`--precision`. The target: end-to-end at least 90% of pure encoding, i.e. decoding hidden behind
compute.

    python benchmarks/zeroshot_eval.py --images 640 --workers 2
    python benchmarks/zeroshot_eval.py --model lit-minilm-effnet --images 2000
"""
from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

import grounding
from grounding.build import create_model
from grounding.config import preset
from grounding.data.datasets import open_dataset
from grounding.evaluation.predict import predict
from grounding.inference.encode import text_classifier
from grounding.runtime import Runtime
from grounding.tokenizer import find_openai_vocab
from grounding.vocabulary import build_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="ViT-B-32", help="ViT-B-32 (random weights) or any model grounding loads")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    args = parser.parse_args()

    if args.model == "ViT-B-32":
        config = preset("ViT-B-32")
        try:
            find_openai_vocab()
        except FileNotFoundError:
            config.tokenizer = "train"  # the vocabulary does not change the speed being measured
        torch.manual_seed(0)
        model = create_model(config, build_tokenizer(config)).eval()
    else:
        model = grounding.load(args.model)
    model = Runtime.resolve("cpu", args.precision).prepare(model)
    dataset = open_dataset("fashion-mnist")
    dataset = dataset.subset(list(range(args.images)))
    classifier = text_classifier(model, dataset.classes, ("a photo of a {}.",))

    pixels = torch.stack([model.preprocess(dataset.image(i)) for i in range(args.images)])
    with torch.no_grad():
        model.encode_image(pixels[:args.batch_size])  # warm-up
        began = time.perf_counter()
        for i in range(0, args.images, args.batch_size):
            model.encode_image(pixels[i:i + args.batch_size], normalize=True) @ classifier
        pure = args.images / (time.perf_counter() - began)

    began = time.perf_counter()
    result = predict(model, dataset, classifier, args.batch_size, args.workers, show_progress=False)
    end_to_end = len(result.indices) / (time.perf_counter() - began)

    table = Table("measurement", "images/s", "share of pure encoding",
                  title=f"Zero-shot on Fashion-MNIST, {args.model} in {args.precision}, {args.images} images, "
                        f"{torch.get_num_threads()} threads, {args.workers} decoding workers")
    table.add_row("pure encoding (pre-made tensors)", f"{pure:.1f}", "100%")
    table.add_row("end to end (decode, preprocess, encode, score)", f"{end_to_end:.1f}", f"{end_to_end / pure:.0%}")
    Console().print(table)


if __name__ == "__main__":
    main()
