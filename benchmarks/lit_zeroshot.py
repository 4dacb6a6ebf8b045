"""Zero-shot accuracy of the built-in model `lit-minilm-effnet` (README: "A real model out of the
box"), each beside a trivial baseline: chance and the most frequent class.

    python benchmarks/lit_zeroshot.py --emoji PATH/emoji-datasource-twitter-VERSION.tgz [--model runs/lit]

Fashion-MNIST test (Debian dataset-fashion-mnist), flags (iso-flags-png-320x240) and Twitter-
style emoji of the categories the heads never saw in training (Google-style images of the
other categories were training data). Reports go to runs/lit-zeroshot/NAME/report.html.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

import grounding
from grounding.data.clipart import HELD_OUT_EMOJI, clipart_pairs
from grounding.data.datasets import open_dataset
from grounding.data.sources import MissingPackageError
from grounding.evaluation.run import evaluate_zero_shot
from grounding.evaluation.templates import TEMPLATE_SETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emoji", default="", help="emoji-datasource-twitter: an npm pack .tgz or folder")
    parser.add_argument("--model", default="lit-minilm-effnet", help="the built-in model, or one made with "
                        "`grounding train --recipe lit-real`")
    parser.add_argument("--out", type=Path, default=Path("runs/lit-zeroshot"))
    args = parser.parse_args()
    console = Console()
    model = grounding.load(args.model)
    specs = {"fashion-mnist": "fashion-mnist", "flags": "flags", "emoji": f"emoji:twitter:{args.emoji}".rstrip(":")}
    table = Table("dataset", "examples", "labels", "top-1", "top-5", "chance", "most frequent class")
    for name, spec in specs.items():
        try:
            data = open_dataset(spec)
        except MissingPackageError as e:
            console.print(f"skipped {name}: {e}")
            continue
        if name == "emoji":
            data = data.only_categories(HELD_OUT_EMOJI)
        summary = evaluate_zero_shot(model, data, TEMPLATE_SETS[data.templates], args.out / name, show_progress=False)
        majority = Counter(t[0] for t in data.targets).most_common(1)[0][1] / len(data)
        table.add_row(data.name, str(summary["examples"]), str(summary["labels"]), f"{summary['top1']:.1%}",
                      f"{summary['top5']:.1%}", f"{summary['chance_top1']:.1%}", f"{majority:.1%}")
    console.print(table)
    flags = [p for p in clipart_pairs() if any("flag" in c.lower() for c in p.captions)]
    console.print(f"Declared: {len(flags)} of the openclipart training images mention a flag in their title or "
                  f"keywords, e.g. {', '.join(repr(p.captions[0]) for p in flags[:5])}.")


if __name__ == "__main__":
    main()
