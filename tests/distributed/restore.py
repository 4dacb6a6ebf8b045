"""Two ranks resuming one run, where rank 1 sees a different copy of OUT (a machine without the
shared filesystem): tests/test_distributed.py checks that both stop with one message naming it.

    torchrun --nproc-per-node 2 tests/distributed/restore.py OUT OUT_AS_RANK_1_SEES_IT
"""
import sys
from pathlib import Path

from grounding.build import create_model
from grounding.saved import read_config
from grounding.training import distributed
from grounding.training.checkpoint import RunFolder
from grounding.training.loop import _restore
from grounding.training.optim import make_optimizer


def main(out: str, elsewhere: str) -> None:
    world = distributed.start("cpu")
    model = create_model(*read_config(Path(out)))
    run = RunFolder(out if world.main else elsewhere)
    try:
        _restore(run, model, make_optimizer(model, 1e-3, 0.0), world)
    except ValueError as e:
        print(f"rank {world.rank} stopped: {e}", flush=True)
        raise SystemExit(3)


if __name__ == "__main__":
    main(*sys.argv[1:])
