"""Training throughput on real image files against the same training on pre-decoded tensors, in
one run: does decoding in DataLoader workers keep the model fed?

The `small` preset (64 px, batch 64) trains on JPEG files of 256 px (scenes of the built-in
world, drawn and saved with Pillow on first use) listed in a CSV, with 0, 1 and 2 data workers;
the peer is the same model, loop and optimizer fed tensors decoded and cropped beforehand. Each
figure is the median pairs/s over the timed steps (warm-up steps dropped). The target: with
workers, at least 0.9 of the pre-decoded throughput on 2 cores.

    python benchmarks/data_pipeline.py --images 2000 --steps 40
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from grounding.config import preset
from grounding.data.images import TrainTransform, load_image
from grounding.data.synthetic import World
from grounding.factory import build_tokenizer, create_model
from grounding.training.loop import fit
from grounding.training.options import TrainConfig
from grounding.training.trainer import train, train_step

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


def median_rate(metrics: Path) -> float:
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    return statistics.median(r["pairs_per_s"] for r in rows[WARMUP:])


def from_files(listing: Path, workers: int, steps: int, scratch: Path) -> float:
    out = scratch / f"workers-{workers}"
    options = TrainConfig(model="small", data=f"csv:{listing}", steps=steps, batch_size=64, workers=workers,
                          save_every=10 ** 6, log_every=10 ** 6, warmup=5)
    train(None, options, out, show_progress=False)
    return median_rate(out / "metrics.jsonl")


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
        return train_step(model, pixels[pick], ids[pick], 1, "fp32")

    options = TrainConfig(steps=steps, batch_size=64, save_every=10 ** 6, log_every=10 ** 6, warmup=5)
    fit(model, backward_at, options, scratch / "pre-decoded", unit="pairs", show_progress=False)
    return median_rate(scratch / "pre-decoded" / "metrics.jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    console = Console()
    listing = make_images(args.images)
    scratch = Path(tempfile.mkdtemp(prefix="grounding-pipeline-"))
    try:
        console.print(f"small preset, batch 64, {args.steps} steps ({WARMUP} warm-up), {torch.get_num_threads()} "
                      f"training threads, {args.images} JPEGs of 256 px")
        peer = pre_decoded(listing, args.steps, scratch)
        table = Table("input", "pairs/s (median)", "x pre-decoded")
        table.add_row("pre-decoded tensors", f"{peer:.1f}", "1.00")
        for workers in args.workers:
            rate = from_files(listing, workers, args.steps, scratch)
            table.add_row(f"JPEG files, {workers} worker(s)", f"{rate:.1f}", f"{rate / peer:.2f}")
        console.print(table)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
