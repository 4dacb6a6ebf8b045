"""One measurement for benchmarks/scaling.py, in a process of its own (or one rank of a torchrun
group): training steps of a preset on fixed batches, with the time spent gathering features.

    python benchmarks/scaling_worker.py OUT.json --preset small --batch 64 --steps 12
    torchrun --nproc-per-node 2 benchmarks/scaling_worker.py OUT.json ...   (rank 0 writes OUT.json)
    python benchmarks/scaling_worker.py OUT.json --memory [--grad-checkpointing]
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import torch
import torch.distributed as dist

from grounding.build import create_model
from grounding.config import preset
from grounding.data.synthetic import World
from grounding.training import distributed
from grounding.training.optim import make_optimizer
from grounding.training.trainer import ContrastiveStep

GATHER_SECONDS = [0.0]


def _timed(gather):
    def timed(*args):
        began = time.perf_counter()
        out = gather(*args)
        GATHER_SECONDS[0] += time.perf_counter() - began
        return out
    return timed


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2 ** 20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=64, help="examples per process")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--gather-with-grad", action="store_true")
    parser.add_argument("--local-loss", action="store_true")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--memory", action="store_true", help="peak memory of one step instead of throughput")
    args = parser.parse_args()
    world = distributed.start("cpu")
    distributed._gather = _timed(distributed._gather)
    distributed._gather_with_grad = _timed(distributed._gather_with_grad)
    torch.manual_seed(0)
    model = create_model(preset(args.preset)).train()
    model.set_grad_checkpointing(args.grad_checkpointing)
    size = model.config.vision.image_size
    scenes = World().batch(world.rank, 0, args.batch)
    pixels = torch.stack([model.preprocess(s.render(size)) for s in scenes])
    ids = model.tokenizer([s.caption() for s in scenes])
    step = ContrastiveStep(model, world=world, gather_with_grad=args.gather_with_grad, local_loss=args.local_loss)
    optimizer = make_optimizer(model, 1e-4, 0.1)
    if args.memory:
        before = _rss_mib()
        step(pixels, ids)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result = {"peak_mib": peak, "step_mib": peak - before}
    else:
        def train(steps: int) -> float:  # seconds for `steps` optimizer steps, every rank done
            began = time.perf_counter()
            for _ in range(steps):
                optimizer.zero_grad(set_to_none=True)
                step(pixels, ids)
                optimizer.step()
            if world.distributed:
                dist.barrier()
            return time.perf_counter() - began

        train(args.warmup)
        GATHER_SECONDS[0] = 0.0
        seconds = train(args.steps)
        result = {"pairs_per_s": args.batch * world.size * args.steps / seconds, "step_s": seconds / args.steps,
                  "gather_share": GATHER_SECONDS[0] / seconds, "processes": world.size}
    if world.main:
        with open(args.out, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
