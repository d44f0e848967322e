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

The manifest also records the size and sha256 of every file written (``files``: text.txt and
utterances.json; ``stages.<name>.files``: a stage's outputs), so a damaged file is found by checking
(``Book.problems``) rather than by a crash when it is read. Books made before checksums were recorded
have no ``files`` entries: they are "unverified" and checked by reading their files back. A book that
cannot be used is described by a ``BrokenBook`` (what is wrong and the command that repairs it).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Protocol, Sequence

from .chunk import Chunk
from .errors import BrokenBookError, NotFoundError
from .fileio import read_json, read_jsonl, sha256_file, write_json, write_jsonl
from .progress import Progress
from .settings import Settings

MANIFEST = "manifest.json"
TEXT = "text.txt"
CHUNKS = "chunks.jsonl"
UTTERANCES = "utterances.json"


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
    into ``book.dir`` atomically and may resume from partial files it left earlier. A stage may also
    have ``outputs(book) -> list[str]``: the files (relative to ``book.dir``) it wrote, whose sizes and
    checksums the library records and verifies; a stage without it is trusted by its fingerprint alone.
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
        """The parsed manifest; ``BrokenBookError`` when it is missing or unreadable."""
        if self._manifest is None:
            self._manifest = self._read_manifest()
        return self._manifest

    def _read_manifest(self) -> dict[str, Any]:
        try:
            data = read_json(self.dir / MANIFEST)
        except FileNotFoundError:
            raise self._damaged(f"{MANIFEST} is missing") from None
        except json.JSONDecodeError as exc:
            raise self._damaged(f"{MANIFEST} is not valid JSON ({_short(exc)})") from None
        except UnicodeDecodeError:
            raise self._damaged(f"{MANIFEST} is not UTF-8 text") from None
        except OSError as exc:
            raise self._damaged(f"{MANIFEST} cannot be read ({exc.strerror or exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("stages", {}), dict):
            raise self._damaged(f"{MANIFEST} does not hold a book's manifest")
        return data

    def manifest_readable(self) -> bool:
        try:
            self.manifest
        except BrokenBookError:
            return False
        return True

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
            try:
                # bytes, not read_text: universal newlines would turn a stray \r into \n and move spans
                self._text = (self.dir / TEXT).read_bytes().decode("utf-8")
            except FileNotFoundError:
                raise self._damaged(f"{TEXT} is missing") from None
            except UnicodeDecodeError:
                raise self._damaged(f"{TEXT} is not UTF-8 text") from None
        return self._text

    @property
    def chunks(self) -> list[Chunk]:
        if self._chunks is None:
            path = self.dir / CHUNKS
            if not path.exists():
                if self.stage("chunks").get("status") == "done":
                    raise self._damaged(f"{CHUNKS} is missing")
                raise NotFoundError(f"book {self.id} has no chunks yet (ingest it again)")
            try:
                self._chunks = [Chunk.from_json(r) for r in read_jsonl(path)]
            except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError too
                raise self._damaged(f"{CHUNKS} cannot be read ({_short(exc)})") from None
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

    # --- checks --------------------------------------------------------------
    def record_files(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``{name: {"size", "sha256"}}`` of files in the book directory, as they are now (names that do
        not exist are left out)."""
        out = {}
        for name in names:
            path = self.dir / name
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            out[name] = {"size": st.st_size, "sha256": _sha256_cached(path, st)}
        return out

    def file_records(self) -> dict[str, dict[str, Any]]:
        """Every recorded file: the book's own (``files``) and those of each finished stage."""
        records = dict(self.manifest.get("files") or {})
        for st in self.manifest.get("stages", {}).values():
            if isinstance(st, dict) and st.get("status") == "done":
                records.update(st.get("files") or {})
        return records

    def problems(self, deep: bool = False, unrecorded: Sequence[str] = ()) -> list[str]:
        """What is wrong with the book's files, one line each; empty when it is intact.

        Always (what a listing checks): the manifest parses and every recorded file exists with its
        recorded size, so a truncated file is found by a ``stat``. ``deep`` also compares sha256 checksums
        (cached per file version in this process) and reads back the files that have no checksum (books
        made before checksums were recorded): text.txt against the content checksum, chunks.jsonl and
        ``unrecorded`` (a caller's list of stage outputs) by parsing them."""
        try:
            manifest = self.manifest
        except BrokenBookError as exc:
            return [exc.broken.reason]
        records = self.file_records()
        out = [p for name, rec in records.items() for p in self._check_record(name, rec, deep)]
        if not deep:
            return out
        if TEXT not in records:
            path = self.dir / TEXT
            if not path.is_file():
                out.append(f"{TEXT} is missing")
            elif _sha256_cached(path, path.stat()) != manifest.get("content_sha256"):
                out.append(f"{TEXT} does not match the book's content checksum (changed since it was written)")
        wanted = list(unrecorded)
        if self.stage("chunks").get("status") == "done":
            wanted.append(CHUNKS)
        for name in dict.fromkeys(wanted):
            problem = None if name in records else readable_problem(self.dir / name)
            if problem is None and name == CHUNKS and name not in records:
                problem = self._chunk_count_problem()
            if problem:
                out.append(problem)
        return out

    def _chunk_count_problem(self) -> Optional[str]:
        """Without a checksum, a chunks.jsonl cut at a line end still parses: count its rows."""
        expected = self.stage("chunks").get("chunks")
        if not isinstance(expected, int):
            return None
        with open(self.dir / CHUNKS, "rb") as fh:
            rows = sum(1 for line in fh if line.strip())
        if rows != expected:
            return f"{CHUNKS} holds {rows:,} chunks, not the {expected:,} it was written with"
        return None

    def file_problem(self, name: str) -> Optional[str]:
        """What is wrong with one of the book's own files (text.txt, utterances.json): its checksum when
        recorded; else text.txt against the content checksum, other files read back."""
        record = (self.manifest.get("files") or {}).get(name)
        if record:
            return next(iter(self._check_record(name, record, deep=True)), None)
        path = self.dir / name
        if name == TEXT:
            if not path.is_file():
                return f"{TEXT} is missing"
            if _sha256_cached(path, path.stat()) != self.manifest.get("content_sha256"):
                return f"{TEXT} does not match the book's content checksum (changed since it was written)"
            return None
        return readable_problem(path)

    def stage_problems(self, name: str, outputs: Sequence[str]) -> list[str]:
        """What is wrong with a finished stage's files (checksums when recorded, else read back)."""
        recorded = self.stage(name).get("files") or {}
        out = [p for rel, rec in recorded.items() for p in self._check_record(rel, rec, deep=True)]
        for rel in outputs:
            if rel not in recorded:
                problem = readable_problem(self.dir / rel)
                if problem is None and rel == CHUNKS:
                    problem = self._chunk_count_problem()
                if problem:
                    out.append(problem)
        return out

    def require_intact(self) -> None:
        """``BrokenBookError`` (what is wrong, and the command that repairs it) unless every recorded file
        matches its checksum. Cheap after the first call per file version in a process."""
        problems = self.problems(deep=True)
        if problems:
            raise self._damaged("; ".join(problems[:2]) + (f" (and {len(problems) - 2} more)" if len(problems) > 2 else ""))

    def _check_record(self, name: str, record: dict[str, Any], deep: bool) -> list[str]:
        path = self.dir / name
        try:
            st = path.stat()
        except FileNotFoundError:
            return [f"{name} is missing"]
        except OSError as exc:
            return [f"{name} cannot be read ({exc.strerror or exc})"]
        size = record.get("size")
        if size is not None and st.st_size != size:
            return [f"{name} is {st.st_size:,} bytes, not the {size:,} it had when written (truncated or changed)"]
        if deep and record.get("sha256") and _sha256_cached(path, st) != record["sha256"]:
            return [f"{name} does not match its checksum (changed since it was written)"]
        return []

    def broken(self, reason: str) -> "BrokenBook":
        """This book as a listing shows it when it cannot be used."""
        manifest = self._manifest if isinstance(self._manifest, dict) else {}
        return BrokenBook(id=self.id, dir=self.dir, title=str(manifest.get("title") or self.id), reason=reason,
                          repair=repair_command(manifest.get("source_name")))

    def _damaged(self, reason: str) -> BrokenBookError:
        broken = self.broken(reason)
        return BrokenBookError(broken.message, broken)

    def __repr__(self) -> str:
        return f"Book({self.id!r})"


@dataclass(frozen=True)
class BrokenBook:
    """A book directory whose files cannot be used, as ``Library.broken()`` lists it.

    ``reason`` says what is wrong in one line; ``repair`` is the one command that repairs it: ingesting
    the file the book was made from again rebuilds whatever is damaged (and only that). ``title`` is the
    recorded title, or the id when the manifest itself is unreadable."""

    id: str
    dir: Path
    title: str
    reason: str
    repair: str

    @property
    def message(self) -> str:
        return f"book {self.id} is damaged: {self.reason}; repair it with: {self.repair}"


def repair_command(source_name: Optional[str]) -> str:
    """``bookqa ingest <the file the book was made from>`` (a placeholder when its name is unknown)."""
    name = Path(str(source_name)).name if source_name else ""
    return f"bookqa ingest {shlex.quote(name)}" if name else "bookqa ingest FILE (the file the book was made from)"


def readable_problem(path: Path) -> Optional[str]:
    """None when the file (of a book without checksums) reads back as its format; else what is wrong."""
    name = path.name
    try:
        if path.is_dir():
            return None
        if not path.exists():
            return f"{name} is missing"
        if path.suffix == ".json":
            read_json(path)
        elif path.suffix == ".jsonl":
            read_jsonl(path)
        elif path.suffix == ".npy":
            import numpy as np

            np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            with open(path, "rb"):
                pass
    except (OSError, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError, a truncated .npy
        return f"{name} cannot be read ({_short(exc)})"
    return None


def _short(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg.rstrip(': ')}: line {exc.lineno} column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    text = " ".join(str(exc).split())
    return (text[:117] + "...") if len(text) > 120 else (text or type(exc).__name__)


# sha256 per file version (path, inode, size, mtime): checking a book before each question costs a stat
# per file once its checksums were computed in this process.
_SHA_CACHE: dict[tuple, str] = {}
_SHA_LOCK = threading.Lock()


def _sha256_cached(path: Path, st: os.stat_result) -> str:
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    with _SHA_LOCK:
        hit = _SHA_CACHE.get(key)
    if hit is not None:
        return hit
    digest = sha256_file(path)
    with _SHA_LOCK:
        if len(_SHA_CACHE) > 4096:
            _SHA_CACHE.clear()
        _SHA_CACHE[key] = digest
    return digest


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
