"""A bounded inference pool: a burst of requests queues up to a limit, then is turned away.

Inference runs in a few worker threads (ONNX Runtime and torch release the GIL while they
compute), so the event loop stays free to answer `/healthz` and to refuse the overflow at once.
A request holds its place from the moment it is admitted until its answer is ready, upload
included, so memory is bounded by `max_pending` requests of at most the upload limit each.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

T = TypeVar("T")


class Busy(Exception):
    """Every place is taken; `retry_after` (whole seconds) is when one should be free again."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the service is busy; retry in {retry_after} s")
        self.retry_after = retry_after


class InferencePool:
    """At most `workers` inferences at a time, and at most `max_pending` requests admitted
    (running or waiting); one more raises `Busy`."""

    def __init__(self, workers: int, max_pending: int) -> None:
        if workers < 1 or max_pending < workers:
            raise ValueError(f"expected 1 <= workers <= max_pending, got {workers}, {max_pending}")
        self.workers = workers
        self.max_pending = max_pending
        self.pending = 0
        self.mean_seconds = 0.1
        """A running mean of one inference's time, for the Retry-After estimate."""
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="sdc-inference")

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Hold one place for the body of the `async with`, or raise `Busy` if none is free."""
        with self._lock:
            if self.pending >= self.max_pending:
                waves = math.ceil(self.pending / self.workers)
                raise Busy(max(1, math.ceil(waves * self.mean_seconds)))
            self.pending += 1
        try:
            yield
        finally:
            with self._lock:
                self.pending -= 1

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` on a worker thread, waiting for a free one."""

        def timed() -> T:
            started = time.perf_counter()
            try:
                return fn(*args)
            finally:
                took = time.perf_counter() - started
                self.mean_seconds = 0.9 * self.mean_seconds + 0.1 * took

        return await asyncio.wrap_future(self._executor.submit(timed))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
