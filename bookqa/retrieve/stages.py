"""Ingest stages that build a book's first-stage indexes from its chunks (see ``store.Stage``).

Both fingerprints start with the chunks stage's fingerprint, so re-chunking rebuilds them, and add only
what changes their own output: an unchanged book is never re-indexed, and a changed embedder re-embeds
without re-building BM25.
"""
from __future__ import annotations

from typing import Any

from ..fileio import fingerprint
from ..progress import Progress
from ..settings import Settings
from ..store import Book


def _chunks_fingerprint(book: Book) -> str:
    return book.stage("chunks").get("fingerprint", "")


class Bm25Stage:
    """A BM25 index over the chunk texts, in ``bm25/``."""

    name = "bm25"

    def fingerprint(self, book: Book, settings: Settings) -> str:
        from .textsplit import TOKENIZER_VERSION

        return fingerprint("bm25", _chunks_fingerprint(book), TOKENIZER_VERSION, settings.bm25_stopwords)

    def run(self, book: Book, settings: Settings, progress: Progress) -> dict[str, Any]:
        from .bm25 import BM25_DIR, build_index

        progress("bm25 index", 0, 1)
        info = build_index([c.text for c in book.chunks], book.dir / BM25_DIR, stopwords=settings.bm25_stopwords,
                           meta={"chunks_fingerprint": _chunks_fingerprint(book)})
        progress("bm25 index", 1, 1)
        return {"vocabulary": info["vocabulary"], "postings": info["postings"]}

    def outputs(self, book: Book) -> list[str]:
        from .bm25 import BM25_DIR, META_FILE

        # whatever files bm25s saved (its layout is its own), and always the meta file
        found = [p.relative_to(book.dir).as_posix() for p in sorted((book.dir / BM25_DIR).glob("*")) if p.is_file()]
        return sorted(set(found) | {f"{BM25_DIR}/{META_FILE}"})


class DenseStage:
    """Embeddings of the chunk texts, in ``embeddings.npy``; resumes an interrupted run."""

    name = "dense"

    def fingerprint(self, book: Book, settings: Settings) -> str:
        from .dense import DENSE_VERSION

        return fingerprint("dense", _chunks_fingerprint(book), settings.embed_model, DENSE_VERSION,
                           settings.embed_window_overlap)

    def run(self, book: Book, settings: Settings, progress: Progress) -> dict[str, Any]:
        from ..weights import resolve_device
        from .dense import embed_chunks, load_embedder

        embedder = load_embedder(settings.embed_model, resolve_device(settings.device), settings.threads,
                                 settings.embed_window_overlap)
        info = embed_chunks([c.text for c in book.chunks], embedder, book.dir,
                            fingerprint=self.fingerprint(book, settings), batch_size=settings.embed_batch_size,
                            save_every=settings.embed_save_every, progress=progress)
        # The model is recorded so queries are embedded by the same model whatever the settings say later.
        return {"model": settings.embed_model, "dim": info["dim"], "window_overlap": settings.embed_window_overlap,
                "windowed_chunks": info["windowed_chunks"], "resumed_from": info["resumed_from"]}

    def outputs(self, book: Book) -> list[str]:
        from .dense import EMBEDDINGS_FILE

        return [EMBEDDINGS_FILE]
