"""The book store: one directory per book under ``<home>/books/<book_id>``.

```
manifest.json   source name, content sha256, kind, title, settings, versions, stage status
text.txt        the decoded text (newlines normalised) that every character span refers to
chunks.jsonl    one Chunk per line
<stage files>   each later stage writes its own files (bm25/, embeddings.npy, summaries.json, ...)
```

Every write is atomic. A stage records a fingerprint of what it depends on (content, settings, model);
re-running with an unchanged fingerprint does nothing, a changed one rebuilds that stage and the stages
after it.
"""
from __future__ import annotations

import re
import shutil
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

from . import __version__
from .chunk import Chunk
from .errors import AmbiguousNameError, InputError, NotFoundError
from .fileio import read_json, read_jsonl, sha256_bytes, write_json, write_jsonl, write_text
from .progress import Progress, no_progress
from .settings import Settings

MANIFEST = "manifest.json"


def slugify(title: str, max_len: int = 40) -> str:
    """A file-name-safe slug: ASCII letters, digits and dashes only (no dots, no slashes), so no
    title can name a path outside the store. Non-Latin titles fall back to 'book'."""
    norm = unicodedata.normalize("NFKD", title)
    ascii_only = norm.encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_only).strip("-")[:max_len].strip("-")
    return slug or "book"


def make_book_id(title: str, content_sha256: str) -> str:
    return f"{slugify(title)}-{content_sha256[:12]}"


class Stage(Protocol):
    """One step of building a book (chunks, bm25, dense, summaries, ...).

    ``fingerprint`` names everything the stage's output depends on; ``run`` writes the stage's files
    into ``book.dir`` atomically and may resume from partial files it left earlier.
    """

    name: str

    def fingerprint(self, book: "Book", settings: Settings) -> str: ...

    def run(self, book: "Book", settings: Settings, progress: Progress) -> dict[str, Any]: ...


class Book:
    """A stored book. Cheap to construct; text and chunks load lazily."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self._manifest: Optional[dict[str, Any]] = None
        self._text: Optional[str] = None
        self._chunks: Optional[list[Chunk]] = None

    # --- identity ------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            self._manifest = read_json(self.dir / MANIFEST)
        return self._manifest

    @property
    def title(self) -> str:
        return self.manifest.get("title") or self.id

    @property
    def kind(self) -> str:
        return self.manifest.get("kind", "novel")

    # --- content -------------------------------------------------------------
    @property
    def text(self) -> str:
        if self._text is None:
            self._text = (self.dir / "text.txt").read_text(encoding="utf-8")
        return self._text

    @property
    def chunks(self) -> list[Chunk]:
        if self._chunks is None:
            path = self.dir / "chunks.jsonl"
            if not path.exists():
                raise NotFoundError(f"book {self.id} has no chunks yet (ingest it again)")
            self._chunks = [Chunk.from_json(r) for r in read_jsonl(path)]
        return self._chunks

    def chunk(self, chunk_id: int) -> Chunk:
        chunks = self.chunks
        if not 0 <= chunk_id < len(chunks):
            raise NotFoundError(f"book {self.id} has chunks 0..{len(chunks) - 1}, not {chunk_id}")
        return chunks[chunk_id]

    def save_chunks(self, chunks: Sequence[Chunk]) -> None:
        write_jsonl(self.dir / "chunks.jsonl", (c.to_json() for c in chunks))
        self._chunks = list(chunks)

    # --- stages --------------------------------------------------------------
    def stage(self, name: str) -> dict[str, Any]:
        return self.manifest.get("stages", {}).get(name, {})

    def stage_done(self, name: str, fp: str) -> bool:
        st = self.stage(name)
        return st.get("status") == "done" and st.get("fingerprint") == fp

    def mark_stage(self, name: str, fp: str, status: str = "done", **info: Any) -> None:
        stages = self.manifest.setdefault("stages", {})
        stages[name] = {"status": status, "fingerprint": fp, "finished": _now(), **info}
        self.save_manifest()

    def save_manifest(self) -> None:
        write_json(self.dir / MANIFEST, self.manifest)

    # --- retrieval -----------------------------------------------------------
    def search(self, query: str, k: Optional[int] = None, method: str = "hybrid",
               settings: Optional[Settings] = None) -> list:
        """The top ``k`` (default ``settings.top_k``, 50) first-stage candidates for ``query``, best first:
        a list of ``bookqa.retrieve.Candidate``. ``method`` is "hybrid" (BM25 + dense, fused), "bm25" or
        "dense". Loaded indexes stay cached in the process, so repeated queries are fast."""
        from .retrieve import search

        return search(self, query, k=k, method=method, settings=settings)

    def __repr__(self) -> str:
        return f"Book({self.id!r})"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


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
        from .ingest import prepare_source

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
                "created": _now(),
                "versions": _versions(),
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
        from .stages import default_stages

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
            book.manifest["settings"] = self.settings.as_dict()
            book.manifest["versions"] = _versions()
            book.save_manifest()
        return run, skipped


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"bookqa": __version__}
    for pkg in ("tokenizers", "transformers", "nltk", "bm25s", "sentence-transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
