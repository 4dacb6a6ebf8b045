"""Training throughput on real image files against the same training on pre-decoded tensors, in
one run: does decoding in DataLoader workers keep the model fed?

The `small` preset (64 px, batch 64) trains on JPEG files of 256 px (scenes of the built-in
world, drawn and saved with Pillow on first use) listed in a CSV, with 0, 1 and 2 data workers;
the peer is the same model, loop and optimizer fed tensors decoded and cropped beforehand. Each figure is
the throughput over the timed steps (pairs over summed step times, waiting for data included;
warm-up steps dropped), the best of --repeats runs, the inputs taken in turn. The target: with
workers, at least 0.9 of the pre-decoded throughput on 2 cores.

    python benchmarks/data_pipeline.py --images 2000 --steps 60 --repeats 2
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from grounding.build import create_model
from grounding.config import preset
from grounding.data.images import TrainTransform, load_image
from grounding.data.synthetic import World
from grounding.training.loop import fit
from grounding.training.options import TrainConfig
from grounding.training.trainer import ContrastiveStep, train
from grounding.vocabulary import build_tokenizer

CACHE = Path(__file__).parent / ".cache" / "jpegs"
WARMUP = 5


def make_images(n: int) -> Path:
    """n JPEG scenes of 256 px and a CSV of image,caption; made once."""
    listing = CACHE / f"pairs-{n}.csv"
    if listing.is_file():
        return listing
    CACHE.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, scene in enumerate(World().batch(5, 0, n)):
        name = f"{i:05d}.jpg"
        scene.render(256).save(CACHE / name, quality=90)
        rows.append((name, scene.caption()))
    with open(listing, "w", newline="") as f:
        csv.writer(f).writerows([("image", "caption"), *rows])
    return listing


def throughput(metrics: Path) -> float:
    rows = [json.loads(line) for line in metrics.read_text().splitlines()][WARMUP:]
    return len(rows) / sum(1 / r["pairs_per_s"] for r in rows)  # each rate is pairs / that step's time


def from_files(listing: Path, workers: int, steps: int, scratch: Path) -> float:
    out = scratch / f"workers-{workers}"
    options = TrainConfig(architecture="small", data=f"csv:{listing}", steps=steps, batch_size=64, workers=workers,
                          save_every=10 ** 6, log_every=10 ** 6, warmup=5)
    train(None, options, out, show_progress=False)
    return throughput(out / "metrics.jsonl")


def pre_decoded(listing: Path, steps: int, scratch: Path) -> float:
    """The same model, loop and optimizer, fed tensors made before the clock starts."""
    config = preset("small")
    torch.manual_seed(0)
    model = create_model(config, build_tokenizer(config))
    with open(listing, newline="") as f:
        rows = list(csv.DictReader(f))[:256]
    v = config.vision
    transform, rng = TrainTransform(v.image_size, v.mean, v.std), np.random.default_rng(0)
    pixels = torch.stack([transform(load_image(listing.parent / r["image"]), rng) for r in rows])
    ids = model.tokenizer([r["caption"] for r in rows])

    def backward_at(step: int) -> float:
        pick = torch.from_numpy(np.random.default_rng(step).choice(len(rows), 64, replace=False))
        return ContrastiveStep(model)(pixels[pick], ids[pick])

    options = TrainConfig(steps=steps, batch_size=64, save_every=10 ** 6, log_every=10 ** 6, warmup=5)
    fit(model, backward_at, options, scratch / "pre-decoded", unit="pairs", show_progress=False)
    return throughput(scratch / "pre-decoded" / "metrics.jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    console = Console()
    listing = make_images(args.images)
    scratch = Path(tempfile.mkdtemp(prefix="grounding-pipeline-"))
    try:
        console.print(f"small preset, batch 64, {args.steps} steps ({WARMUP} warm-up), {torch.get_num_threads()} "
                      f"training threads, {args.images} JPEGs of 256 px")
        best: dict[str, float] = {}
        for repeat in range(args.repeats):
            for name, run in [("pre-decoded", lambda out: pre_decoded(listing, args.steps, out)),
                              *[(f"{w} worker(s)", lambda out, w=w: from_files(listing, w, args.steps, out))
                                for w in args.workers]]:
                best[name] = max(best.get(name, 0.0), run(scratch / f"{repeat}"))
        peer = best.pop("pre-decoded")
        table = Table("input", "pairs/s", "x pre-decoded")
        table.add_row("pre-decoded tensors", f"{peer:.1f}", "1.00")
        for name, rate in best.items():
            table.add_row(f"JPEG files, {name}", f"{rate:.1f}", f"{rate / peer:.2f}")
        console.print(table)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
