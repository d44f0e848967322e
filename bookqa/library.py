"""The library: every stored book under ``<home>/books``, found by id or title, and the ingest that
reads a file and runs the stages (stages.py) that build a book's files (store.py).

One damaged book never breaks the others: ``books()`` lists the usable ones and ``broken()`` the damaged
ones (``store.BrokenBook``: the reason and the repair command), and ingesting the same file again
repairs whatever is damaged (a file whose size or checksum no longer matches its record, or that no
longer reads back) without redoing intact stages. Ingesting or removing a book holds a lock per book
content (``<home>/books/.locks``), so two ingests of one file never build it twice at once.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Union

from . import __version__
from .errors import AmbiguousNameError, BrokenBookError, NotFoundError, StorageError
from .fileio import sha256_bytes, write_json, write_text
from .ingest import prepare_source
from .progress import Progress, no_progress
from .settings import Settings
from .stages import default_stages
from .store import MANIFEST, TEXT, UTTERANCES, Book, BrokenBook, Stage, make_book_id, timestamp

LOCKS_DIR = ".locks"
# What an unwritable, read-only or full home raises; reported in one line, not as a traceback.
_STORAGE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


@dataclass
class IngestReport:
    book: Book
    created: bool  # a new book directory was made
    stages_run: list[str]
    stages_skipped: list[str]
    seconds: float
    repaired: list[str] = field(default_factory=list)  # damaged files or stages rebuilt: "what (why)" each
    notes: list[str] = field(default_factory=list)  # what reading the file changed (e.g. dropped NUL bytes)


@dataclass
class BookCheck:
    """``Library.check``'s verdict on one book directory."""

    id: str
    title: str
    problems: list[str]  # one line each; empty when the book is intact
    verified: int  # files whose recorded size and sha256 matched
    unverified: int  # files without a recorded checksum (books made before checksums) that read back fine
    repair: str  # the command that repairs the book

    @property
    def ok(self) -> bool:
        return not self.problems


class Library:
    """All stored books under ``settings.books_dir``."""

    def __init__(self, settings: Optional[Settings] = None):
        self.settings = settings or Settings.from_env()
        self.root = self.settings.books_dir

    # --- listing -------------------------------------------------------------
    def _dirs(self) -> list[Path]:
        """Book directories that have a manifest (one without is being made, or its ingest died first)."""
        try:
            if not self.root.is_dir():
                return []
            return [d for d in sorted(self.root.iterdir())
                    if not d.name.startswith(".") and d.is_dir() and (d / MANIFEST).exists()]
        except OSError as exc:
            raise StorageError(f"cannot read the library at {self.root} ({exc.strerror or exc})") from None

    def _scan(self) -> tuple[list[Book], list[BrokenBook]]:
        healthy, broken = [], []
        for d in self._dirs():
            book = Book(d)
            problems = book.problems()
            if problems:
                broken.append(book.broken(problems[0]))
            else:
                healthy.append(book)
        return healthy, broken

    def books(self) -> list[Book]:
        """The usable books, by title. A damaged book (unreadable manifest, a missing or truncated file) is
        left out and listed by ``broken()``, so it never hides the others."""
        return sorted(self._scan()[0], key=lambda b: b.title.lower())

    def broken(self) -> list[BrokenBook]:
        """The damaged books, by id: each with the reason and the one command that repairs it."""
        return sorted(self._scan()[1], key=lambda b: b.id)

    def check(self, progress: Progress = no_progress) -> list[BookCheck]:
        """Every book's files verified against their recorded checksums (files of books made before
        checksums were recorded are read back instead): what ``bookqa doctor`` reports."""
        stages = default_stages(self.settings)
        dirs = self._dirs()
        out = []
        for i, d in enumerate(dirs):
            progress("checking books", i, len(dirs))
            book = Book(d)
            records: dict = {}
            unrecorded: list[str] = []
            if book.manifest_readable():
                records = book.file_records()
                for stage in stages:
                    outputs_of = getattr(stage, "outputs", None)
                    if outputs_of is not None and book.stage(stage.name).get("status") == "done":
                        unrecorded += [n for n in outputs_of(book) if n not in records]
                if TEXT not in records:
                    unrecorded.append(TEXT)
            problems = book.problems(deep=True, unrecorded=[n for n in unrecorded if n != TEXT])
            broken = book.broken(problems[0] if problems else "")
            out.append(BookCheck(book.id, broken.title, problems, len(records), len(set(unrecorded)),
                                 broken.repair))
        progress("checking books", len(dirs), len(dirs))
        return out

    # --- finding and removing ------------------------------------------------
    def resolve(self, name: str) -> Book:
        """A book by id, title (case-insensitive), unique id prefix, or unique part of a title.
        ``BrokenBookError`` (with the repair command) when the book named is damaged."""
        found = self._match(name)
        if isinstance(found, BrokenBook):
            raise BrokenBookError(found.message, found)
        return found

    def _match(self, name: str) -> Union[Book, BrokenBook]:
        books, broken = self._scan()
        if not books and not broken:
            raise NotFoundError("the library is empty; add a book with: bookqa ingest PATH")
        every: list[Union[Book, BrokenBook]] = [*books, *broken]
        exact = [b for b in every if b.id == name]
        if exact:
            return exact[0]
        low = name.strip().lower()
        by_title = [b for b in every if b.title.lower() == low]
        by_prefix = [b for b in every if b.id.startswith(name)] if name else []
        # last resort: a unique part of a title ("bleak" for "Bleak House")
        by_part = [b for b in every if low and low in b.title.lower()]
        matches = by_title or by_prefix or by_part
        if len(matches) == 1:
            return matches[0]
        if not matches:
            # never the library's titles: on a shared server they are other people's books
            raise NotFoundError(f"no book matches {name!r}; list the books with: bookqa books")
        listing = ", ".join(f"{b.id} ({b.title})" for b in matches[:20])
        raise AmbiguousNameError(f"{name!r} matches {len(matches)} books: {listing}")

    def remove(self, name: str) -> Union[Book, BrokenBook]:
        """Delete a book (a damaged one too) and everything built for it. The directory is first renamed
        out of the listing, so a failure part-way never leaves a half-deleted book that looks whole."""
        book = self._match(name)
        with self._storage("remove a book from"), self._lock(_content_key(book.id), wait=False):
            with tempfile.TemporaryFile(dir=book.dir):  # can its files be deleted? (fails before any change)
                pass
            trash = book.dir.with_name(f".removing-{book.id}-{os.getpid()}")
            os.rename(book.dir, trash)
            try:
                shutil.rmtree(trash)
            except OSError:
                if trash.exists():
                    os.rename(trash, book.dir)  # what is left shows as a damaged book, with its repair
                raise
        return book

    # --- ingestion -----------------------------------------------------------
    def ingest(self, path: Path | str, title: Optional[str] = None, kind: Optional[str] = None,
               stages: Optional[Sequence[Stage]] = None, progress: Progress = no_progress, *,
               wait: bool = True, notify: Optional[Callable[[str], None]] = None) -> IngestReport:
        """Read, chunk and index a file. Everything that can fail on bad input fails before anything
        is written; re-ingesting the same content with the same settings does nothing but verify the
        stored files, and repairs those that are damaged.

        While another process (or thread) ingests the same content, ``wait`` waits for it (telling
        ``notify`` once) and then finds the work done; ``wait=False`` raises ``StorageError`` instead.
        """
        t0 = time.perf_counter()
        source = prepare_source(Path(path), kind=kind, max_bytes=self.settings.max_upload_bytes)
        title = (title or source.title or Path(path).stem).strip() or "book"
        content_sha = sha256_bytes(source.text.encode("utf-8"))
        with self._storage("add a book to"):
            self._check_writable()
            with self._lock(content_sha[:12], wait=wait, notify=notify):
                book = Book(self._target(make_book_id(title, content_sha), content_sha))
                created, repaired = self._store_source(book, source, title, Path(path).name, content_sha)
                run, skipped, rebuilt = self._build(book, stages, progress)
        return IngestReport(book, created, run, skipped, time.perf_counter() - t0, repaired + rebuilt,
                            list(source.notes))

    def _target(self, book_id: str, content_sha: str) -> Path:
        """The book directory for this content: ``book_id``, unless that is not a readable book and a
        damaged book with the same content exists (its manifest unreadable, or it was ingested under
        another title): that one is repaired rather than a second book added."""
        target = self.root / book_id
        if (target / MANIFEST).exists() and Book(target).manifest_readable():
            return target
        for d in sorted(self.root.glob(f"*-{content_sha[:12]}")):
            if d != target and d.is_dir() and (d / MANIFEST).exists() and Book(d).problems():
                return d
        return target

    def _store_source(self, book: Book, source, title: str, source_name: str,
                      content_sha: str) -> tuple[bool, list[str]]:
        """Write (or repair) the book's own files: text.txt, utterances.json and the manifest."""
        created = not (book.dir / MANIFEST).exists()
        repaired = []
        if not created and not book.manifest_readable():
            repaired.append(f"{MANIFEST} (unreadable; its stages are rebuilt)")
            book._manifest = None
        if created or repaired:
            book.dir.mkdir(parents=True, exist_ok=True)
            write_text(book.dir / TEXT, source.text)
            book._text = source.text
            if source.utterances is not None:
                write_json(book.dir / UTTERANCES, source.utterances)
            book._manifest = {
                "book_id": book.id,
                "title": title,
                "kind": source.kind,
                "source_name": source_name,
                "source_encoding": source.encoding,
                "source_notes": list(source.notes),
                "content_sha256": content_sha,
                "body_span": list(source.body_span),
                "created": timestamp(),
                "versions": package_versions(),
                "settings": {},
                "files": book.record_files([TEXT, UTTERANCES]),
                "stages": {},
            }
            book.save_manifest()
            return created, repaired
        # An existing book: its own files must still be what they were made from.
        own = {TEXT: lambda: write_text(book.dir / TEXT, source.text)}
        if source.utterances is not None:
            own[UTTERANCES] = lambda: write_json(book.dir / UTTERANCES, source.utterances)
        files = book.manifest.get("files") or {}
        changed = False
        for name, rewrite in own.items():
            problem = book.file_problem(name)
            if problem:
                rewrite()
                repaired.append(f"{name} ({problem})")
            if problem or name not in files:  # rewritten, or a book from before checksums: record them now
                files.update(book.record_files([name]))
                changed = True
        if changed:
            book._text = None
            book.manifest["files"] = files
            book.save_manifest()
        return created, repaired

    def build(self, book: Book, stages: Optional[Sequence[Stage]] = None,
              progress: Progress = no_progress) -> tuple[list[str], list[str]]:
        """Run every stage whose fingerprint changed or whose files are damaged. A stage's fingerprint
        includes the fingerprints of the stages it reads (e.g. the chunks'), so a change rebuilds exactly
        what depends on it; a damaged stage rebuilt from the same inputs leaves the later stages intact."""
        run, skipped, _ = self._build(book, stages, progress)
        return run, skipped

    def _build(self, book: Book, stages: Optional[Sequence[Stage]],
               progress: Progress) -> tuple[list[str], list[str], list[str]]:
        stages = list(stages) if stages is not None else default_stages(self.settings)
        run, skipped, repaired = [], [], []
        recorded = False
        for stage in stages:
            fp = stage.fingerprint(book, self.settings)
            outputs_of = getattr(stage, "outputs", None)
            if book.stage_done(stage.name, fp):
                outputs = list(outputs_of(book)) if outputs_of is not None else []
                problems = book.stage_problems(stage.name, outputs)
                if not problems:
                    if outputs and not book.stage(stage.name).get("files"):
                        # a book from before checksums whose files read back: record them from now on
                        book.stage(stage.name)["files"] = book.record_files(outputs)
                        recorded = True
                    skipped.append(stage.name)
                    continue
                repaired.append(f"{stage.name} ({problems[0]})")
            book.mark_stage(stage.name, fp, status="running")
            info = stage.run(book, self.settings, progress) or {}
            if outputs_of is not None:
                info = {**info, "files": book.record_files(outputs_of(book))}
            book.mark_stage(stage.name, fp, status="done", **info)
            run.append(stage.name)
        if run:
            book.manifest["settings"] = self.settings.ingest_dict()
            book.manifest["versions"] = package_versions()
        if run or recorded:
            book.save_manifest()
        return run, skipped, repaired

    # --- locks and storage errors -----------------------------------------------
    def _check_writable(self) -> None:
        """Fail before any work (reading models, chunking) when the books directory cannot be written."""
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.root):
            pass

    @contextmanager
    def _lock(self, key: str, wait: bool, notify: Optional[Callable[[str], None]] = None) -> Iterator[None]:
        """Hold the lock of one book's content: a second ingest waits (or, with ``wait=False``, stops)."""
        from filelock import FileLock, Timeout

        locks = self.root / LOCKS_DIR
        locks.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(locks / f"{key}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if not wait:
                raise StorageError("this book is being ingested by another process right now; "
                                   "try again when that finishes") from None
            if notify is not None:
                notify("another ingest of this book is running; waiting for it to finish (its work is reused)")
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def _storage(self, action: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            if exc.errno not in _STORAGE_ERRNOS:
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            raise StorageError(f"cannot {action} the library: {exc.strerror or exc}{where}; make "
                               f"{self.settings.home} writable, or choose another home with --home or "
                               "BOOKQA_HOME") from None


def _content_key(book_id: str) -> str:
    """The lock key of a book: the content checksum prefix its id ends with (see ``make_book_id``)."""
    return book_id.rsplit("-", 1)[-1]


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"bookqa": __version__}
    for pkg in ("tokenizers", "transformers", "nltk", "bm25s", "sentence-transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
