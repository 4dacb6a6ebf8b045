"""One step of every supported loss option, as one rank of a torchrun group or as one process over
the whole global batch; tests/test_distributed.py runs both and compares the results.

    torchrun --nproc-per-node 2 tests/distributed/equivalence.py OUT.pt    (rank 0 writes OUT.pt)
    python tests/distributed/equivalence.py OUT.pt                         (one process)
"""
import sys

import numpy as np
import torch

from grounding.build import create_model
from grounding.config import preset
from grounding.data.synthetic import World
from grounding.training import distributed
from grounding.training.trainer import ContrastiveStep

GLOBAL_BATCH = 8
# name: (loss, --gather-with-grad, --local-loss, hard negatives, rows of rank 0 when they are uneven)
CASES = {
    "clip": ("clip", False, False, False, None),
    "clip gather-with-grad": ("clip", True, False, False, None),
    "clip gather-with-grad local-loss": ("clip", True, True, False, None),
    "clip gather-with-grad local-loss negatives": ("clip", True, True, True, None),
    "clip negatives": ("clip", False, False, True, None),
    "clip uneven": ("clip", False, False, False, 5),
    "clip gather-with-grad local-loss uneven": ("clip", True, True, False, 3),
    "siglip": ("siglip", False, False, False, None),
    "siglip negatives": ("siglip", False, False, True, None),
    "siglip uneven": ("siglip", False, False, False, 6),
}


def one_step(case: str, world: distributed.World) -> tuple[float, dict]:
    loss_name, with_grad, local, negatives, uneven = CASES[case]
    config = preset("tiny")
    config.loss = loss_name
    torch.manual_seed(0)
    model = create_model(config)
    data = torch.Generator().manual_seed(1)
    pixels = torch.randn(GLOBAL_BATCH, 3, config.vision.image_size, config.vision.image_size, generator=data)
    scenes = World().batch(0, 0, GLOBAL_BATCH)
    ids = model.tokenizer([scene.caption() for scene in scenes])
    near = model.tokenizer([scene.near_miss(np.random.default_rng(i)) for i, scene in enumerate(scenes)]) \
        if negatives else None
    if world.distributed:
        cut = uneven or GLOBAL_BATCH // world.size
        rows = slice(0, cut) if world.rank == 0 else slice(cut, GLOBAL_BATCH)
        pixels, ids, near = pixels[rows], ids[rows], None if near is None else near[rows]
    step = ContrastiveStep(model, world=world, gather_with_grad=with_grad, local_loss=local)
    loss = step(pixels, ids, near)
    loss = world.sum([loss])[0] / world.size  # what the training loop logs
    return loss, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def main(out: str) -> None:
    world = distributed.start("cpu")
    results = {case: one_step(case, world) for case in CASES}
    if world.main:
        torch.save(results, out)


if __name__ == "__main__":
    main(sys.argv[1])
