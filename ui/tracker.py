"""Adapts bookqa's ``progress(stage, done, total)`` callable to something a web page can poll.

The ingestion runs in a worker thread and calls the tracker; the Gradio generator reads
:meth:`IngestTracker.rows` a few times a second and renders them (``views.ingest_progress``), and may
mirror the current stage onto a ``gr.Progress``.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional


@dataclass
class _Stage:
    name: str
    started: float
    updated: float
    done: int = 0
    total: Optional[int] = None
    finished_at: Optional[float] = None


class IngestTracker:
    """Thread-safe record of every stage reported so far, in order, with rate-based ETAs.

    A stage counts as finished when it reports ``done >= total`` or when a later stage starts (some
    stages report only a start). ``clock`` is injectable for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._stages: list[_Stage] = []
        self._by_name: dict[str, _Stage] = {}
        self.started = clock()

    def __call__(self, stage: str, done: int, total: Optional[int]) -> None:
        now = self._clock()
        with self._lock:
            st = self._by_name.get(stage)
            if st is None:
                for prev in self._stages:
                    if prev.finished_at is None:
                        prev.finished_at = now
                st = _Stage(name=stage, started=now, updated=now)
                self._stages.append(st)
                self._by_name[stage] = st
            st.done, st.total, st.updated = int(done), total, now
            if total is not None and done >= total:
                st.finished_at = now
            elif st.finished_at is not None:  # a stage that reports again after finishing is running
                st.finished_at = None

    def current(self) -> Optional[dict[str, Any]]:
        rows = self.rows()
        running = [r for r in rows if not r["finished"]]
        return running[-1] if running else (rows[-1] if rows else None)

    def rows(self) -> list[dict[str, Any]]:
        now = self._clock()
        with self._lock:
            out = []
            for st in self._stages:
                finished = st.finished_at is not None
                eta = None
                if not finished and st.total and st.done > 0:
                    rate = st.done / max(st.updated - st.started, 1e-6)
                    eta = max(0.0, (st.total - st.done) / rate - (now - st.updated))
                end = st.finished_at if finished else now
                out.append({"stage": st.name, "done": st.done, "total": st.total, "eta": eta,
                            "seconds": end - st.started, "finished": finished})
            return out

    def elapsed(self) -> float:
        return self._clock() - self.started
