"""What the API's routes share in one server process: the settings, the model worker and its queue, the
ingest jobs, and the books and models already loaded."""
from __future__ import annotations

import threading
import time
from typing import Any

from ..errors import BrokenBookError, NotFoundError
from ..library import Library
from ..pipeline import get_reranker
from ..settings import Settings
from ..store import MANIFEST, Book
from .jobs import IngestJobs
from .worker import ModelWorker


class ServeState:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.started = time.time()
        self.worker = ModelWorker(settings.serve_queue)
        self.jobs = IngestJobs(settings, limit=settings.serve_queue, on_done=self.forget_book)
        self._lock = threading.Lock()
        self._books: dict[str, Book] = {}
        self._generator: Any = None
        self.reranker_loaded = False

    # --- models (called on the worker thread) -------------------------------------------------
    def reranker(self):
        """The QRRanker the settings describe, from the process cache (pipeline.get_reranker)."""
        ranker = get_reranker(self.settings)
        self.reranker_loaded = True
        return ranker

    def generator(self):
        """The generator the settings name, made once (a local GGUF loads on its first answer)."""
        with self._lock:
            if self._generator is None:
                from ..generate import get_generator

                self._generator = get_generator(self.settings)
            return self._generator

    # --- books -----------------------------------------------------------------------------------
    def library(self) -> Library:
        return Library(self.settings)

    def book_dir(self, book_id: str):
        """The directory of the stored book with exactly this id (the API names books by id, never by a
        guess at a title); NotFoundError when there is none."""
        directory = self.settings.books_dir / book_id
        if not _is_plain_id(book_id) or not (directory / MANIFEST).exists():
            raise NotFoundError(f"no book with id {book_id!r} (GET /v1/books lists them)")
        return directory

    def book(self, book_id: str) -> Book:
        """The usable stored book with exactly this id; BrokenBookError (with its repair) for a damaged one."""
        with self._lock:
            cached = self._books.get(book_id)
            if cached is not None and (cached.dir / MANIFEST).is_file():
                return cached
        book = Book(self.book_dir(book_id))
        problems = book.problems()
        if problems:
            broken = book.broken(problems[0])
            raise BrokenBookError(broken.message, broken)
        with self._lock:
            self._books[book_id] = book
        return book

    def forget_book(self, book_id: str) -> None:
        """Drop a book's loaded copy (after it was deleted or ingested again)."""
        from ..retrieve import clear_cache

        with self._lock:
            self._books.pop(book_id, None)
        clear_cache()

    def close(self) -> None:
        self.worker.shutdown()
        self.jobs.shutdown()


def _is_plain_id(book_id: str) -> bool:
    """Book ids are slugs (store.make_book_id): no dots or slashes, so none names a path outside the store."""
    return bool(book_id) and all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in book_id)


def book_info(book: Book) -> dict[str, Any]:
    stages = {name: str(st.get("status")) for name, st in (book.manifest.get("stages") or {}).items()}
    chunks = (book.manifest.get("stages") or {}).get("chunks", {}).get("chunks")
    return {"id": book.id, "title": book.title, "kind": book.kind, "created": book.manifest.get("created"),
            "chunks": chunks, "stages": stages,
            "ready": bool(stages) and all(v == "done" for v in stages.values()) and "chunks" in stages}
