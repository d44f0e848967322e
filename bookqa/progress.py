"""Progress reporting for long work, decoupled from how it is shown.

Long operations take a ``progress`` callable ``progress(stage, done, total)`` and call it as work
advances (``total`` may be None when unknown). The CLI passes a :class:`TqdmProgress` (a bar with ETA
per stage), the UI adapts it to Gradio's progress, tests pass nothing.
"""
from __future__ import annotations

import sys
from typing import Callable, Optional, Protocol


class Progress(Protocol):
    def __call__(self, stage: str, done: int, total: Optional[int]) -> None: ...


def no_progress(stage: str, done: int, total: Optional[int]) -> None:
    """The default reporter: says nothing."""


class TqdmProgress:
    """One tqdm bar per stage, with rate and ETA; a new stage closes the previous bar."""

    def __init__(self, quiet: bool = False, file=None):
        self.quiet = quiet
        self.file = file or sys.stderr
        self._bar = None
        self._stage: Optional[str] = None

    def __call__(self, stage: str, done: int, total: Optional[int]) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        if stage != self._stage:
            self.close()
            self._stage = stage
            big = total is not None and total > 10_000_000  # byte counts: show MB/s, not it/s
            self._bar = tqdm(total=total, desc=stage, unit="B" if big else "it", unit_scale=big,
                             file=self.file, dynamic_ncols=True, initial=done)
            return
        bar = self._bar
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)
        if total is not None and done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._stage = None


def scaled(progress: Progress, stage: str) -> Callable[[int, Optional[int]], None]:
    """Bind a stage name: ``step = scaled(progress, 'embedding'); step(3, 10)``."""
    return lambda done, total: progress(stage, done, total)
