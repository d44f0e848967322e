"""Ingest jobs of the HTTP API: an uploaded file is ingested on a thread of its own while clients poll
``GET /v1/jobs/{id}`` for the stage, the fraction done and an ETA.

Ingesting runs beside the model worker, not on it: a long book takes minutes, and reranking or answering
should not wait behind it (the embedder and the chunker's tokenizer are the ingest's models; the UI
separates the two the same way). One ingest runs at a time, at most ``limit`` wait; finished jobs are
remembered (the newest ``KEEP``) so a client that polls late still reads the outcome.
"""
from __future__ import annotations

import contextvars
import logging
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..errors import BookQAError
from ..library import Library
from ..settings import Settings
from ..stages import default_stages
from ..store import Stage
from .worker import QueueFull

KEEP = 200  # finished jobs kept for polling
log = logging.getLogger("bookqa.serve")


class JobProgress:
    """The ``progress(stage, done, total)`` reporter of one ingest (bookqa.progress.Progress), made
    readable from other threads: the running stage of the book's stage list, its current step and that
    step's rate. ``clock`` is injectable for tests."""

    def __init__(self, stage_names: Sequence[str], clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self.stage_names = list(stage_names)
        self.started = clock()
        self.stage_index = -1  # index into stage_names of the stage that reported last
        self.step: Optional[str] = None  # what that stage reported ("embedding chunks", ...)
        self.done, self.total = 0, None
        self._step_started = self.started
        self._updated = self.started

    def reporter(self, index: int) -> Callable[[str, int, Optional[int]], None]:
        """The progress callable handed to stage ``index``."""

        def report(step: str, done: int, total: Optional[int]) -> None:
            now = self._clock()
            with self._lock:
                if index != self.stage_index or step != self.step:
                    self.stage_index, self.step, self._step_started = index, step, now
                self.done, self.total, self._updated = int(done), total, now

        return report

    def snapshot(self, finished: bool = False) -> dict[str, Any]:
        now = self._clock()
        with self._lock:
            n = max(1, len(self.stage_names))
            if finished:
                return {"stage": None, "step": None, "fraction": 1.0, "eta_s": 0.0,
                        "elapsed_s": round(now - self.started, 3)}
            step_fraction = min(1.0, self.done / self.total) if self.total else 0.0
            index = max(0, self.stage_index)
            eta = None
            if self.total and self.done > 0 and self.done < self.total:
                rate = self.done / max(self._updated - self._step_started, 1e-6)
                eta = round(max(0.0, (self.total - self.done) / rate - (now - self._updated)), 1)
            return {"stage": self.stage_names[index] if self.stage_index >= 0 else None, "step": self.step,
                    "fraction": round((index + step_fraction) / n, 4) if self.stage_index >= 0 else 0.0,
                    "eta_s": eta, "elapsed_s": round(now - self.started, 3)}


class _ReportingStage:
    """A stage that hands its own reporter to the wrapped stage (so each report knows its stage)."""

    def __init__(self, stage: Stage, report: Callable[[str, int, Optional[int]], None]):
        self._stage, self._report = stage, report
        self.name = stage.name

    def fingerprint(self, book, settings):
        return self._stage.fingerprint(book, settings)

    def run(self, book, settings, progress):
        self._report(self.name, 0, None)
        return self._stage.run(book, settings, self._report)

    def outputs(self, book):
        # the files the wrapped stage writes, so the library records their checksums as for any ingest
        outputs = getattr(self._stage, "outputs", None)
        return outputs(book) if outputs is not None else []


@dataclass
class IngestJob:
    id: str
    filename: str
    state: str = "queued"  # queued | running | done | failed
    progress: Optional[JobProgress] = None
    book_id: Optional[str] = None
    stages_run: list[str] = field(default_factory=list)
    error: Optional[str] = None
    created: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"id": self.id, "state": self.state, "filename": self.filename,
                               "book_id": self.book_id, "error": self.error}
        if self.progress is None:
            row.update({"stage": None, "step": None, "fraction": 0.0, "eta_s": None, "elapsed_s": 0.0})
        else:
            row.update(self.progress.snapshot(finished=self.state == "done"))
        if self.state == "done":
            row["stages_run"] = self.stages_run
        return row


class IngestJobs:
    """Every ingest job of this server process, run one at a time on a thread of their own."""

    def __init__(self, settings: Settings, limit: int, on_done: Callable[[str], None] = lambda book_id: None):
        self.settings = settings
        self.limit = max(1, int(limit))
        self.on_done = on_done
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bookqa-ingest")
        self._lock = threading.Lock()
        self._jobs: "OrderedDict[str, IngestJob]" = OrderedDict()

    def get(self, job_id: str) -> Optional[IngestJob]:
        with self._lock:
            return self._jobs.get(job_id)

    def _waiting(self) -> int:
        return sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))

    def new_upload_dir(self) -> tuple[str, Path]:
        """A job id and a fresh directory for its upload (under the home, so it shares the books' disk)."""
        job_id = uuid.uuid4().hex[:16]
        directory = Path(self.settings.home) / "uploads" / job_id
        directory.mkdir(parents=True, exist_ok=True)
        return job_id, directory

    def submit(self, job_id: str, path: Path, title: Optional[str], kind: Optional[str],
               retry_after: int = 30) -> IngestJob:
        """Queue the ingest of ``path`` (its directory is removed when the job ends); QueueFull when
        ``limit`` jobs are already waiting or running."""
        job = IngestJob(id=job_id, filename=path.name)
        with self._lock:
            if self._waiting() >= self.limit:
                shutil.rmtree(path.parent, ignore_errors=True)
                raise QueueFull(retry_after, self.limit)
            self._jobs[job_id] = job
            finished = [k for k, j in self._jobs.items() if j.state in ("done", "failed")]
            for k in finished[:max(0, len(self._jobs) - KEEP)]:
                del self._jobs[k]
        # the job's log lines carry the id of the request that started it
        self._pool.submit(contextvars.copy_context().run, self._run, job, path, title, kind)
        return job

    def _run(self, job: IngestJob, path: Path, title: Optional[str], kind: Optional[str]) -> None:
        library = Library(self.settings)
        stages = default_stages(self.settings)
        job.progress = JobProgress([s.name for s in stages])
        wrapped = [_ReportingStage(s, job.progress.reporter(i)) for i, s in enumerate(stages)]
        job.state = "running"
        try:
            report = library.ingest(path, title=title, kind=kind, stages=wrapped)
            job.book_id, job.stages_run = report.book.id, report.stages_run
            job.state = "done"
            log.info("ingest job %s done: book %s (%s) in %.1f s", job.id, report.book.id,
                     ", ".join(report.stages_run) or "nothing to rebuild", report.seconds)
            self.on_done(report.book.id)
        except BookQAError as exc:
            # the server's upload directory is nobody else's business; the file name is enough
            job.error, job.state = str(exc).replace(f"{path.parent}/", "").replace(str(path.parent), ""), "failed"
            log.info("ingest job %s failed: %s", job.id, job.error)
        except Exception as exc:  # a bug, but the job must end and say so
            job.error, job.state = f"internal error ({type(exc).__name__}); see the server log", "failed"
            log.exception("ingest job %s failed", job.id)
        finally:
            shutil.rmtree(path.parent, ignore_errors=True)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
