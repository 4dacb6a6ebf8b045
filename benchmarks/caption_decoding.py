"""Cached against uncached caption decoding: greedy generation of 20 tokens for a batch of
images with the Transformer decoder, with the key/value cache and recomputing the whole prefix
at every step, in the same run. The cached cost should be close to 20 one-token forward passes
over the batch; the uncached one grows with the square of the length.

    python benchmarks/caption_decoding.py --batch 32 --tokens 20 --width 512 --layers 6
"""
from __future__ import annotations

import argparse

import torch
from rich.console import Console
from rich.table import Table
from timing import best_of

from grounding.tasks.captioning.decode import generate
from grounding.tasks.captioning.train import new_model
from grounding.tasks.options import CaptionOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = new_model(CaptionOptions(towers="small", width=args.width, layers=args.layers, heads=8)).eval()
    model.config.towers.text.eot_token_id = -1  # no token ends a caption: every one runs to full length
    pixels = torch.randn(args.batch, 3, 64, 64)
    length = args.tokens + 1
    with torch.no_grad():
        image = model.encode(pixels)
        one = torch.full((args.batch, 1), model.tokenizer.sot_token_id)

        def one_token_steps():
            state = model.decoder.start(image)
            for _ in range(args.tokens):
                model.decoder.step(one, state)

        reference = best_of(one_token_steps, args.repeats)
        cached = best_of(lambda: generate(model, pixels, max_length=length), args.repeats)
        uncached = best_of(lambda: generate(model, pixels, max_length=length, cache=False), args.repeats)
    table = Table("method", "seconds", "vs one-token passes", "uncached / this",
                  title=f"{args.tokens}-token greedy captions, batch {args.batch}, decoder width {args.width} x "
                        f"{args.layers} layers, {torch.get_num_threads()} threads")
    table.add_row(f"{args.tokens} one-token forward passes", f"{reference:.3f}", "1.00x", f"{uncached / reference:.2f}x")
    table.add_row("cached (key/value cache)", f"{cached:.3f}", f"{cached / reference:.2f}x", f"{uncached / cached:.2f}x")
    table.add_row("uncached (whole prefix each step)", f"{uncached:.3f}", f"{uncached / reference:.2f}x", "1.00x")
    Console().print(table)


if __name__ == "__main__":
    main()
