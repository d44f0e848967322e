"""``bookqa ingest DIR --ray``: the books of a folder ingested by Ray workers. Each worker is an actor
with its own ``Library`` over the same home, so the models the stages load (the tokenizer, the embedder,
a summary generator) are loaded once per worker and reused for every book it is given. A book is one
call: ``Library.ingest`` writes the same files as a local ingest (its per-content lock keeps two files
with the same text from building one book at once), and a retried call (after its worker died) skips
the stages that finished and resumes the embeddings from their checkpoint."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..errors import BookQAError, InputError
from ..library import IngestReport, Library
from ..progress import Progress, no_progress
from ..settings import Settings
from ..store import Book
from .cluster import RayOptions, actor_class, connected, task_error, worker_count


@dataclass
class IngestOutcome:
    """What became of one file: its report, or the one-line error that refused it."""

    path: Path
    report: Optional[IngestReport] = None
    error: Optional[str] = None
    messages: tuple[str, ...] = ()  # what the ingest said while it ran (e.g. that it waited for another)


def folder_files(folder: Path) -> list[Path]:
    """The files a folder's ingest takes: every regular, non-hidden file directly in it, by name."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InputError(f"{folder}: no files to ingest")
    return files


class IngestWorker:
    """One Ray worker (see ``ingest_on_ray``)."""

    def __init__(self, settings: Settings, kind: Optional[str] = None, title: Optional[str] = None):
        self.library = Library(settings)
        self.kind = kind
        self.title = title

    def ingest(self, path: str) -> dict:
        messages: list[str] = []
        try:
            report = self.library.ingest(path, title=self.title, kind=self.kind, notify=messages.append)
        except BookQAError as exc:
            return {"path": path, "error": str(exc), "messages": messages}
        return {"path": path, "book_dir": str(report.book.dir), "created": report.created,
                "stages_run": report.stages_run, "stages_skipped": report.stages_skipped,
                "seconds": report.seconds, "repaired": report.repaired, "notes": report.notes,
                "messages": messages}


def ingest_on_ray(paths: Sequence[Path], settings: Settings, options: RayOptions, kind: Optional[str] = None,
                  title: Optional[str] = None, progress: Progress = no_progress) -> list[IngestOutcome]:
    """Ingest ``paths`` on the cluster, one book per call; outcomes in the order of ``paths`` (``title``:
    for a single file). The books' home must be storage every worker reaches (docs/scale-out.md)."""
    from ray.util import ActorPool

    stage = f"ingest {len(paths)} books"
    outcomes: dict[str, IngestOutcome] = {}
    with connected(options) as ray:
        worker = actor_class(ray, IngestWorker, options)
        actors = [worker.remote(settings, kind, title) for _ in range(worker_count(ray, options, len(paths)))]
        pool = ActorPool(actors)
        for path in paths:
            pool.submit(lambda actor, file: actor.ingest.remote(file), str(path))
        progress(stage, 0, len(paths))
        try:
            while pool.has_next():
                item = pool.get_next_unordered()
                path, messages = Path(item["path"]), tuple(item["messages"])
                if "error" in item:
                    outcomes[item["path"]] = IngestOutcome(path, error=item["error"], messages=messages)
                else:
                    report = IngestReport(Book(Path(item["book_dir"])), item["created"], item["stages_run"],
                                          item["stages_skipped"], item["seconds"], repaired=item["repaired"],
                                          notes=item["notes"])
                    outcomes[item["path"]] = IngestOutcome(path, report=report, messages=messages)
                progress(stage, len(outcomes), len(paths))
        except Exception as exc:
            raise task_error(ray, exc) from None
        finally:
            for actor in actors:
                ray.kill(actor, no_restart=True)
    return [outcomes[str(p)] for p in paths]

