"""The book store: one directory per book under ``<home>/books/<book_id>``.

```
manifest.json   source name, content sha256, kind, title, settings, versions, stage status
text.txt        the decoded text (newlines normalised) that every character span refers to
chunks.jsonl    one Chunk per line
<stage files>   each later stage writes its own files (bm25/, embeddings.npy, summaries.json, ...)
```

Every write is atomic. A stage records a fingerprint of what it depends on (content, settings, model);
re-running with an unchanged fingerprint does nothing, a changed one rebuilds that stage and the stages
after it. The library of books and the ingest that runs the stages stand above this module (library.py).
"""
from __future__ import annotations

import re
import time
import unicodedata
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

from .chunk import Chunk
from .errors import NotFoundError
from .fileio import read_json, read_jsonl, write_json, write_jsonl
from .progress import Progress
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
        stages[name] = {"status": status, "fingerprint": fp, "finished": timestamp(), **info}
        self.save_manifest()

    def save_manifest(self) -> None:
        write_json(self.dir / MANIFEST, self.manifest)

    def __repr__(self) -> str:
        return f"Book({self.id!r})"


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
