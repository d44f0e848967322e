"""Turning evaluation documents into stored books, so every configuration reads exactly the chunks and
indexes a user gets.

- Novels and LoCoMo transcripts go through ``Library.ingest`` on a temporary file written from the
  document (a LoCoMo conversation as its JSON object, so the chunk meta keeps the ``dia_id``s).
- A MuSiQue/HotpotQA question's paragraphs become a book with one chunk per paragraph ("title\\ntext",
  paragraphs separated by a blank line), stored through the same store and index stages.

Books live in their own library (``<home>/eval`` by default) so evaluation never crowds the user's.
Ingestion is idempotent: a re-run finds the books built and skips every finished stage.
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ...chunk import Chunk
from ...fileio import fingerprint, sha256_bytes, write_text
from ...library import Library, package_versions
from ...progress import Progress, no_progress
from ...settings import Settings
from ...store import MANIFEST, Book, timestamp, make_book_id, slugify
from .datasets.base import Document

PARAGRAPH_SEPARATOR = "\n\n"


def eval_settings(settings: Settings, books_home: Optional[Path] = None) -> Settings:
    """Settings whose library is the evaluation's own, with the model cache left where it is."""
    home = Path(books_home) if books_home is not None else Path(settings.home) / "eval"
    summaries = "extractive" if settings.summaries == "none" else settings.summaries
    return settings.replace(home=home, model_cache=str(settings.models_dir), summaries=summaries)


@dataclass
class PreparedBook:
    book: Book
    seconds: float
    stages_run: list[str]

    def info(self) -> dict[str, Any]:
        return {"book_id": self.book.id, "chunks": len(self.book.chunks), "seconds": round(self.seconds, 3),
                "stages_run": self.stages_run,
                "chunks_fingerprint": self.book.stage("chunks").get("fingerprint")}


class PresetChunkStage:
    """The "chunks" stage of a paragraph book: the chunks are given (one per paragraph), not cut."""

    name = "chunks"

    def __init__(self, chunks: list[Chunk]):
        self.chunks = chunks

    def fingerprint(self, book: Book, settings: Settings) -> str:
        return fingerprint("preset-paragraphs", book.manifest["content_sha256"],
                           [(c.start, c.end) for c in self.chunks], settings.reranker_model)

    def run(self, book: Book, settings: Settings, progress: Progress) -> dict[str, Any]:
        book.save_chunks(self.chunks)
        return {"chunks": len(self.chunks), "tokens": sum(c.tokens for c in self.chunks)}


class BookPreparer:
    """Ingests documents into the evaluation library with the stages the configurations need."""

    def __init__(self, settings: Settings, need_dense: bool = True, need_summaries: bool = False,
                 progress: Progress = no_progress):
        self.settings = settings
        self.library = Library(settings)
        self.need_dense = need_dense
        self.need_summaries = need_summaries
        self.progress = progress
        self._tokenizer = None

    def index_stages(self) -> list:
        from ...retrieve.stages import Bm25Stage, DenseStage

        stages: list = [Bm25Stage()]
        if self.need_dense:
            stages.append(DenseStage())
        if self.need_summaries:
            from ...summaries import SummaryStage

            stages.append(SummaryStage())
        return stages

    def prepare(self, doc: Document) -> PreparedBook:
        t0 = time.perf_counter()
        if doc.kind == "paragraphs":
            book, run = self._paragraph_book(doc)
        else:
            book, run = self._ingest(doc)
        return PreparedBook(book, time.perf_counter() - t0, run)

    # --- novels and transcripts ------------------------------------------------------------------
    def _ingest(self, doc: Document) -> tuple[Book, list[str]]:
        from ...stages import ChunkStage

        with tempfile.TemporaryDirectory(prefix="bookqa-eval-") as tmp:
            if doc.kind == "transcript":
                path = Path(tmp) / f"{slugify(doc.id)}.json"
                write_text(path, json.dumps(doc.transcript, ensure_ascii=False))
            else:
                path = Path(tmp) / f"{slugify(doc.title or doc.id)}.txt"
                write_text(path, doc.get_text())
            report = self.library.ingest(path, title=doc.title or doc.id, kind=doc.kind,
                                         stages=[ChunkStage()] + self.index_stages(), progress=self.progress)
        return report.book, report.stages_run

    # --- paragraph corpora -----------------------------------------------------------------------
    def tokenizer(self):
        if self._tokenizer is None:
            from ...weights import fast_tokenizer

            self._tokenizer = fast_tokenizer(self.settings.reranker_model, self.settings)
        return self._tokenizer

    def _paragraph_book(self, doc: Document) -> tuple[Book, list[str]]:
        passages = [p.passage for p in doc.paragraphs or []]
        text, chunks, pos = "", [], 0
        pieces = []
        for i, passage in enumerate(passages):
            if i:
                pieces.append(PARAGRAPH_SEPARATOR)
                pos += len(PARAGRAPH_SEPARATOR)
            pieces.append(passage)
            tokens = len(self.tokenizer().encode(passage, add_special_tokens=False).ids)
            chunks.append(Chunk(id=i, start=pos, end=pos + len(passage), tokens=tokens, text=passage,
                                chapter=(doc.paragraphs[i].title or None)))
            pos += len(passage)
        text = "".join(pieces)
        content_sha = sha256_bytes(text.encode("utf-8"))
        book_dir = self.library.root / make_book_id(doc.title or doc.id, content_sha)
        book = Book(book_dir)
        if not (book_dir / MANIFEST).exists():
            book_dir.mkdir(parents=True, exist_ok=True)
            write_text(book_dir / "text.txt", text)
            book._manifest = {
                "book_id": book.id, "title": doc.title or doc.id, "kind": "paragraphs",
                "source_name": f"{doc.id} (paragraphs)", "source_encoding": "utf-8", "content_sha256": content_sha,
                "body_span": [0, len(text)], "created": timestamp(), "versions": package_versions(), "settings": {}, "stages": {},
            }
            book.save_manifest()
        run, _ = self.library.build(book, stages=[PresetChunkStage(chunks)] + self.index_stages(),
                                    progress=self.progress)
        return book, run
