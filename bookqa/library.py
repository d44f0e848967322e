"""The library: every stored book under ``<home>/books``, found by id or title, and the ingest that
reads a file and runs the stages (stages.py) that build a book's files (store.py)."""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from . import __version__
from .errors import AmbiguousNameError, NotFoundError
from .fileio import sha256_bytes, write_json, write_text
from .ingest import prepare_source
from .progress import Progress, no_progress
from .settings import Settings
from .stages import default_stages
from .store import MANIFEST, Book, Stage, make_book_id, timestamp


@dataclass
class IngestReport:
    book: Book
    created: bool  # a new book directory was made
    stages_run: list[str]
    stages_skipped: list[str]
    seconds: float


class Library:
    """All stored books under ``settings.books_dir``."""

    def __init__(self, settings: Optional[Settings] = None):
        self.settings = settings or Settings.from_env()
        self.root = self.settings.books_dir

    def books(self) -> list[Book]:
        if not self.root.is_dir():
            return []
        found = [Book(d) for d in sorted(self.root.iterdir()) if (d / MANIFEST).is_file()]
        return sorted(found, key=lambda b: b.title.lower())

    def resolve(self, name: str) -> Book:
        """A book by id, title (case-insensitive), unique id prefix, or unique part of a title."""
        books = self.books()
        if not books:
            raise NotFoundError("the library is empty; add a book with: bookqa ingest PATH")
        exact = [b for b in books if b.id == name]
        if exact:
            return exact[0]
        low = name.strip().lower()
        by_title = [b for b in books if b.title.lower() == low]
        by_prefix = [b for b in books if b.id.startswith(name)] if name else []
        # last resort: a unique part of a title ("bleak" for "Bleak House")
        by_part = [b for b in books if low and low in b.title.lower()]
        matches = by_title or by_prefix or by_part
        if len(matches) == 1:
            return matches[0]
        if not matches:
            listing = ", ".join(f"{b.id} ({b.title})" for b in books[:20])
            raise NotFoundError(f"no book matches {name!r}; books: {listing}")
        listing = ", ".join(f"{b.id} ({b.title})" for b in matches[:20])
        raise AmbiguousNameError(f"{name!r} matches {len(matches)} books: {listing}")

    def remove(self, name: str) -> Book:
        book = self.resolve(name)
        shutil.rmtree(book.dir)
        return book

    # --- ingestion -----------------------------------------------------------
    def ingest(self, path: Path | str, title: Optional[str] = None, kind: Optional[str] = None,
               stages: Optional[Sequence[Stage]] = None,
               progress: Progress = no_progress) -> IngestReport:
        """Read, chunk and index a file. Everything that can fail on bad input fails before anything
        is written; re-ingesting the same content with the same settings does nothing."""
        t0 = time.perf_counter()
        source = prepare_source(Path(path), kind=kind, max_bytes=self.settings.max_upload_bytes)
        title = (title or source.title or Path(path).stem).strip() or "book"
        content_sha = sha256_bytes(source.text.encode("utf-8"))
        book_dir = self.root / make_book_id(title, content_sha)
        created = not (book_dir / MANIFEST).exists()
        book = Book(book_dir)
        if created:
            book_dir.mkdir(parents=True, exist_ok=True)
            write_text(book_dir / "text.txt", source.text)
            book._text = source.text
            book._manifest = {
                "book_id": book.id,
                "title": title,
                "kind": source.kind,
                "source_name": Path(path).name,
                "source_encoding": source.encoding,
                "content_sha256": content_sha,
                "body_span": list(source.body_span),
                "created": timestamp(),
                "versions": package_versions(),
                "settings": {},
                "stages": {},
            }
            if source.utterances is not None:
                write_json(book_dir / "utterances.json", source.utterances)
            book.save_manifest()
        run, skipped = self.build(book, stages=stages, progress=progress)
        return IngestReport(book, created, run, skipped, time.perf_counter() - t0)

    def build(self, book: Book, stages: Optional[Sequence[Stage]] = None,
              progress: Progress = no_progress) -> tuple[list[str], list[str]]:
        """Run every stage whose fingerprint changed. A stage's fingerprint includes the fingerprints
        of the stages it reads (e.g. the chunks'), so a change rebuilds exactly what depends on it."""
        stages = list(stages) if stages is not None else default_stages(self.settings)
        run, skipped = [], []
        for stage in stages:
            fp = stage.fingerprint(book, self.settings)
            if book.stage_done(stage.name, fp):
                skipped.append(stage.name)
                continue
            book.mark_stage(stage.name, fp, status="running")
            info = stage.run(book, self.settings, progress) or {}
            book.mark_stage(stage.name, fp, status="done", **info)
            run.append(stage.name)
        if run:
            book.manifest["settings"] = self.settings.ingest_dict()
            book.manifest["versions"] = package_versions()
            book.save_manifest()
        return run, skipped


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"bookqa": __version__}
    for pkg in ("tokenizers", "transformers", "nltk", "bm25s", "sentence-transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
