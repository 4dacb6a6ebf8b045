"""Where a training step's time goes, op by op: grounding beside transformers' CLIPModel (or
open_clip), the same shapes, captions and random pixels as train_throughput.py, each in a fresh
process on the peers' PyTorch, profiled by torch.profiler over a few steps after two warm-up
steps. Prints each implementation's top ops by their own CPU time (forward and backward and the
optimizer step together).

    python benchmarks/profile_train.py --preset small --precision bf16
    python benchmarks/profile_train.py --impl grounding open_clip --rows 25
"""
from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def profile(impl: str, preset: str, precision: str, batch: int, steps: int, rows: int, data: str) -> None:
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    from train_worker import build, optimizer_of, shapes

    torch.manual_seed(0)
    saved = torch.load(data, weights_only=True)
    ids = saved["ids"][:batch]
    model, step = build(impl, preset, int(saved["vocab"]), int(saved["eot"]))
    model.train()
    optimizer = optimizer_of(impl, model)
    size = shapes(preset)["image"]
    pixels = torch.randn(batch, 3, size, size)

    def once() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = step(pixels, ids)
        loss.backward()
        optimizer.step()

    once(), once()
    with profiler(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            once()
    print(f"== {impl}, {preset}, {precision}, batch {batch}, {steps} steps, torch {torch.__version__}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=48))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=["small", "ViT-B-32"], default="small")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--impl", nargs="*", default=["grounding", "transformers"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--worker", nargs=1, help=argparse.SUPPRESS)  # run one implementation here
    args = parser.parse_args()
    from train_throughput import BATCH, ENV, captions, peers_python

    if args.worker:
        profile(args.worker[0], args.preset, args.precision, BATCH[args.preset], args.steps, args.rows,
                str(captions(args.preset, None)))
        return
    peers = peers_python()
    captions(args.preset, peers)  # the token ids, written once for the workers to read
    env = {**os.environ, **ENV, "PYTHONPATH": str(HERE.parent / "src")}
    for impl in args.impl:
        subprocess.run([str(peers), str(Path(__file__)), "--preset", args.preset, "--precision", args.precision,
                        "--steps", str(args.steps), "--rows", str(args.rows), "--worker", impl], env=env,
                       cwd=HERE, check=True)


if __name__ == "__main__":
    main()
