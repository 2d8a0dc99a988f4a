"""Dynamic micro-batching: requests that arrive together share one forward pass.

Each request brings its inputs already preprocessed (tensors, batch first, one row per example). The
batcher waits for the first request, then for more until `max_batch_size` examples are gathered or
`max_wait_ms` has passed since the first, concatenates them as the codec says (texts padded to the
longest), runs the model once in a worker thread (so the event loop keeps accepting requests), and
hands every request its own rows of the outputs. A request
that does not fit in the current batch waits for the next one; a failed batch fails only its requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from ..artifacts import Predict


@dataclass
class Pending:
    inputs: tuple[torch.Tensor, ...]
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def size(self) -> int:
        return len(self.inputs[0])


class MicroBatcher:
    def __init__(
        self,
        predict: Predict,
        max_batch_size: int,
        max_wait_ms: float,
        concatenate: Callable[[list[tuple[torch.Tensor, ...]]], tuple[torch.Tensor, ...]],
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        """`concatenate` makes one batch of several requests' inputs (the codec's: texts are padded to the longest);
        `on_batch` is told the examples in each forward pass (the metrics' histogram)."""
        self.predict = predict
        self.concatenate = concatenate
        self.on_batch = on_batch
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._carry: Pending | None = None  # the request that did not fit in the last batch
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Start batching on the running event loop (the app's lifespan calls this, and `stop`)."""
        self.queue, self._carry = asyncio.Queue(), None  # a fresh queue on each start: it belongs to one event loop
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")  # one model call at a time
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.executor.shutdown(wait=True)

    @property
    def depth(self) -> int:
        """Requests waiting for a forward pass (not those in the one running)."""
        return self.queue.qsize() + (self._carry is not None)

    async def submit(self, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        """The model's outputs for these inputs (at most max_batch_size rows), computed with other requests'."""
        pending = Pending(inputs)
        await self.queue.put(pending)
        return await pending.future

    async def _next_batch(self) -> list[Pending]:
        first = self._carry or await self.queue.get()
        self._carry = None
        batch, size = [first], first.size
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while size < self.max_batch_size:
            timeout = deadline - asyncio.get_running_loop().time()
            if timeout <= 0:
                break
            try:
                pending = await asyncio.wait_for(self.queue.get(), timeout)
            except TimeoutError:
                break
            if size + pending.size > self.max_batch_size:
                self._carry = pending
                break
            batch.append(pending)
            size += pending.size
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            inputs = self.concatenate([pending.inputs for pending in batch])
            if self.on_batch is not None:
                self.on_batch(len(inputs[0]))
            try:
                outputs = await loop.run_in_executor(self.executor, self.predict, inputs)
            except Exception as err:  # noqa: BLE001 - handed to each waiting request, which answers 500
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(err)
                continue
            start = 0
            for pending in batch:
                if not pending.future.done():  # a client that went away leaves a cancelled future
                    pending.future.set_result({k: v[start : start + pending.size] for k, v in outputs.items()})
                start += pending.size
