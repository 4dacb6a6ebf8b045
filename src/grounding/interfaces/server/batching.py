"""Dynamic micro-batching: requests that arrive together share one forward pass. Each caller
awaits its own rows; a worker task takes whatever is queued (up to `max_batch` rows), waiting at
most `max_wait` seconds for more once the first has come, and runs the model in a thread, so
that the event loop never blocks on it: on `executor`, the server's one model thread (one thread
keeps the allocator from fragmenting over many, and the model's own threads from fighting)."""
from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Callable

import torch


class MicroBatcher:
    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor], executor: Executor, max_batch: int = 32,
                 max_wait: float = 0.01):
        self.run, self.executor, self.max_batch, self.max_wait = run, executor, max_batch, max_wait
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.batches = 0  # how many forward passes ran: the tests read it

    async def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        """The model's output for `rows` (one request's), computed with whatever else is waiting."""
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._work())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((rows, future))
        return await future

    async def _work(self) -> None:
        while True:
            waiting = [await self.queue.get()]
            deadline = asyncio.get_running_loop().time() + self.max_wait
            while sum(len(r) for r, _ in waiting) < self.max_batch:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    waiting.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            try:
                batch = torch.cat([r for r, _ in waiting])
                out = await asyncio.get_running_loop().run_in_executor(self.executor, self.run, batch)
                self.batches += 1
            except Exception as e:  # every caller of the batch hears of it
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(e)
                continue
            start = 0
            for rows, future in waiting:
                if not future.done():
                    future.set_result(out[start:start + len(rows)])
                start += len(rows)

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
