"""The one thread that runs model work (reranking, answering) for the HTTP API, behind a bounded queue.

The event loop never runs a model: a route hands a function to :meth:`ModelWorker.submit` and awaits
it. One thread, because the reranker and the generator each serialise on a lock anyway and a CPU box
has few cores; a bound, because a request that would wait behind more than ``limit`` others is better
refused at once (503 + ``Retry-After``) than left to time out in a client.
"""
from __future__ import annotations

import asyncio
import contextvars
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

# Retry-After when nothing has been timed yet, and its bounds (seconds).
DEFAULT_JOB_S = 1.0
MAX_RETRY_AFTER_S = 600


class QueueFull(Exception):
    """Raised by submit when ``limit`` jobs are already waiting or running."""

    def __init__(self, retry_after: int, limit: int):
        super().__init__(f"the server is busy ({limit} requests are waiting for the model); retry in "
                         f"{retry_after} s")
        self.retry_after = retry_after


class ModelWorker:
    """A single worker thread with at most ``limit`` jobs accepted (waiting + running) at a time."""

    def __init__(self, limit: int, name: str = "bookqa-model"):
        self.limit = max(1, int(limit))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._accepted = 0
        self._mean_s = DEFAULT_JOB_S  # exponential moving average of a job's run time
        self.completed = 0
        self.refused = 0

    @property
    def pending(self) -> int:
        with self._lock:
            return self._accepted

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the jobs ahead times the mean job time."""
        with self._lock:
            ahead, mean = self._accepted, self._mean_s
        return int(min(MAX_RETRY_AFTER_S, max(1, math.ceil(ahead * mean))))

    def submit(self, fn: Callable[[], Any]) -> "asyncio.Future[Any]":
        """Run ``fn`` on the worker thread (with the caller's context variables, e.g. the request id);
        the returned future resolves on the caller's event loop. QueueFull when the queue is full."""
        with self._lock:
            if self._accepted >= self.limit:
                self.refused += 1
                full = True
            else:
                self._accepted += 1
                full = False
        if full:
            raise QueueFull(self.retry_after(), self.limit)
        context = contextvars.copy_context()

        def run() -> Any:
            t0 = time.perf_counter()
            try:
                return context.run(fn)
            finally:
                seconds = time.perf_counter() - t0
                with self._lock:
                    self._accepted -= 1
                    self.completed += 1
                    self._mean_s = 0.8 * self._mean_s + 0.2 * seconds

        try:
            return asyncio.wrap_future(self._pool.submit(run))
        except RuntimeError:  # the pool was shut down
            with self._lock:
                self._accepted -= 1
            raise

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"pending": self._accepted, "limit": self.limit, "completed": self.completed,
                    "refused": self.refused, "mean_seconds": round(self._mean_s, 3)}

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
