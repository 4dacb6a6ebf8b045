"""Data-parallel training on many processes and machines with PyTorch's own engine: `torchrun`
starts the processes (and restarts them, `--max-restarts`), torch.distributed connects them (gloo
on CPU, NCCL on GPU) and DistributedDataParallel averages the gradients. What contrastive
learning adds lives here: the negatives are the whole global batch, so every rank's features
are gathered (CLIP), or passed around the ring of ranks (SigLIP, as its paper does).

With W ranks, DDP averages the ranks' gradients, so each rank's loss is scaled to make that
average the global batch's gradient (docs/training.md: Train on many processes):

    (default)                        features gathered without gradient; each rank computes the
                                     whole global loss, but only its own features carry gradient,
                                     and the average divides that by W: scaled back by W here
                                     (the peers leave it at 1/W, which the temperature and
                                     gradient clipping feel)
    --gather-with-grad               the gathered features carry gradient back to their rank
    --gather-with-grad --local-loss  each rank's rows against every column: n x Wn logits a rank
    --local-loss alone               refused: a rank's captions are negatives in the other ranks'
                                     rows, and that part of their gradient would be lost
"""
from __future__ import annotations

import atexit
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator, TypeVar

import torch
import torch.distributed as dist

from .. import losses
from ..errors import BadInput
from ..losses import clip_loss, siglip_loss

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def here(cls) -> "World":
        """This process's place as torchrun's environment gives it, before or without joining."""
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                   int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def main(self) -> bool:
        """Rank 0 writes the run folder; the others only read it."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def first(self, make: Callable[[], T]) -> T:
        """`make()` on rank 0 while the others wait, its result sent to all (keep it small); an
        error there is raised on every rank, so none is left waiting for a partner that stopped."""
        if not self.distributed:
            return make()
        box: list = [None]
        if self.main:
            try:
                box = [(make(), None)]
            except (ValueError, FileNotFoundError, FileExistsError) as e:
                box = [(None, (type(e), str(e)))]
        dist.broadcast_object_list(box, src=0)
        result, error = box[0]
        if error is not None:
            raise error[0](error[1])
        return result

    def agree(self, problem: str | None) -> None:
        """Raises on every rank if any rank has a problem, naming the rank and its host."""
        if not self.distributed:
            if problem:
                raise BadInput(problem)
            return
        problems = self.gather_objects((problem, socket.gethostname()) if problem else None)
        for rank, found in enumerate(problems):
            if found:
                raise BadInput(f"rank {rank} (host {found[1]}): {found[0]}")

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over the ranks (float64)."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def gather_objects(self, value) -> list:
        if not self.distributed:
            return [value]
        values = [None] * self.size
        dist.all_gather_object(values, value)
        return values


def start(device: str) -> World:
    """Joins the process group torchrun describes in the environment (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR...); a plain process is a world of one."""
    world = World.here()
    if world.distributed and not dist.is_initialized():
        gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if gpu:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if gpu else "gloo", store=_attempt_store(world), rank=world.rank,
                                world_size=world.size)
        atexit.register(_leave)
    return world


def _leave() -> None:
    """Every rank leaves the group together: gloo aborts a process ("terminate called without an
    active exception") whose group is torn down, or left running at exit, while a peer still
    talks to it. A peer that is gone is waited for a minute at most."""
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=timedelta(seconds=60), wait_all_ranks=True)
        else:
            dist.barrier()
    except RuntimeError:
        pass  # a rank that died: nothing to wait for
    finally:
        dist.destroy_process_group()


def _attempt_store(world: World) -> dist.Store:
    """The rendezvous store torchrun's environment names, under a prefix of its own for each
    restart: torchrun keeps one store across restarts, and without the prefix a restarted rank
    can read the address a dead rank left there and fail to connect (torch 2.13)."""
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # torchrun's agent hosts it
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world.size,
                          is_master=world.main and not agent, multi_tenant=not agent)
    return dist.PrefixStore(f"grounding/attempt-{_restarts()}", store)


def _restarts() -> int:
    """How many times torchrun has restarted this group after a worker failed (--max-restarts)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def restarted() -> bool:
    return _restarts() > 0


def check_options(loss: str, gather_with_grad: bool, local_loss: bool) -> None:
    """A one-line error for a combination that would train on a wrong gradient."""
    if loss == "siglip" and (gather_with_grad or local_loss):
        raise BadInput("--loss siglip passes text features around the ring of ranks, with their gradient, "
                       "each rank taking its own rows (its paper's form): drop --gather-with-grad and --local-loss")
    if local_loss and not gather_with_grad:
        raise BadInput("--local-loss needs --gather-with-grad: each rank's captions are negatives in the other "
                       "ranks' rows, and without it that part of their gradient is lost")


def contrastive_loss(model, image: torch.Tensor, text: torch.Tensor, negatives: torch.Tensor | None,
                     world: World, gather_with_grad: bool = False, local_loss: bool = False) -> torch.Tensor:
    """This rank's loss over the global batch, scaled so that DDP's average of the ranks'
    gradients is the global batch's gradient. Ranks may hold different numbers of examples (bad
    ones are dropped where they are decoded)."""
    if not world.distributed:
        return losses.contrastive_loss(model, image, text, negatives)
    scale, bias = model.logit_scale, model.logit_bias
    sizes = _sizes(len(image))
    total, first = sum(sizes), sum(sizes[:world.rank])
    if model.config.loss == "siglip":
        chunk = text if negatives is None else torch.cat([text, negatives])
        chunk_sizes = sizes if negatives is None else [2 * s for s in sizes]
        others = _around_the_ring(chunk, chunk_sizes, world)
        return world.size * siglip_loss(image, text, scale, bias, negatives, others=others, total=total)
    gather = _gather_with_grad if gather_with_grad else _gather
    all_image, all_text = gather(image, sizes, world), gather(text, sizes, world)
    all_negatives = None if negatives is None else gather(negatives, sizes, world)
    if local_loss:
        return world.size * clip_loss(image, text, scale, all_negatives, columns=(all_image, all_text),
                                      first=first, total=total)
    if not gather_with_grad:  # only this rank's slice carries gradient: undo DDP's division by W there
        for features in (image, text, negatives):
            if features is not None and features.requires_grad:
                features.register_hook(lambda grad: grad * world.size)
    return clip_loss(all_image, all_text, scale, all_negatives)


def _sizes(n: int) -> list[int]:
    sizes = [torch.zeros(1, dtype=torch.long) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([n]))
    return [int(s) for s in sizes]


def _padded(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    return torch.cat([x, x.new_zeros(max(sizes) - len(x), *x.shape[1:])]) if len(x) < max(sizes) else x


def _gather(x: torch.Tensor, sizes: list[int], world: World) -> torch.Tensor:
    """Every rank's rows in rank order; only this rank's own rows carry gradient."""
    parts = [torch.empty_like(_padded(x, sizes)) for _ in sizes]
    dist.all_gather(parts, _padded(x.detach(), sizes))
    parts[world.rank] = x
    return torch.cat([p[:n] for p, n in zip(parts, sizes)])


def _gather_with_grad(x: torch.Tensor, sizes: list[int], world: World) -> torch.Tensor:
    """Every rank's rows; the gradient of each rank's rows is summed back to that rank."""
    parts = _AllGather.apply(_padded(x, sizes)).chunk(world.size)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)])


class _AllGather(torch.autograd.Function):
    """all_gather with a backward: every rank's gradient of the gathered rows, summed, and this
    rank's part of it returned."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad.chunk(dist.get_world_size())[dist.get_rank()]


def _around_the_ring(x: torch.Tensor, sizes: list[int], world: World) -> Iterator[torch.Tensor]:
    """The other ranks' `x`, one at a time: each step every rank passes the chunk it holds to its
    right-hand neighbour, so a rank never holds more than two chunks of the global batch."""
    held, owner = x, world.rank
    for _ in range(world.size - 1):
        owner = (owner - 1) % world.size
        held = _PassRight.apply(held, sizes[owner])
        yield held


class _PassRight(torch.autograd.Function):
    """Sends a tensor to the next rank and receives the previous rank's; the gradient goes back
    the other way, to the rank the tensor came from."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, incoming: int) -> torch.Tensor:
        ctx.outgoing = len(tensor)
        return _exchange(tensor, incoming, +1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _exchange(grad.contiguous(), ctx.outgoing, -1), None


def _exchange(tensor: torch.Tensor, incoming: int, direction: int) -> torch.Tensor:
    rank, size = dist.get_rank(), dist.get_world_size()
    received = tensor.new_empty(incoming, *tensor.shape[1:])
    ops = [dist.P2POp(dist.isend, tensor.contiguous(), (rank + direction) % size),
           dist.P2POp(dist.irecv, received, (rank - direction) % size)]
    for request in dist.batch_isend_irecv(ops):
        request.wait()
    return received
