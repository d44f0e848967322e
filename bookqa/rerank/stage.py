"""A book's chunk key/value cache for cached-chunk QR, as an ingest stage and as the store a question
opens (kept apart from the stage list so a book is cached only when asked: ``qr_cache=book`` or
``bookqa ingest --qr-cache``)."""
from __future__ import annotations

from typing import Any, Optional

from ..fileio import fingerprint
from ..progress import Progress, no_progress
from ..settings import Settings
from ..store import Book
from .blocks import BLOCK_FORMAT


def open_book_cache(book: Book, cached, settings: Settings, create: Optional[bool] = None):
    """The book's store for ``cached`` (a CachedQRRanker); made when missing unless ``qr_cache=off``
    (``create`` overrides). None when there is none to use."""
    create = settings.qr_cache != "off" if create is None else create
    return cached.open_store(book.dir, book.chunks, create=create)


class QRCacheStage:
    """Every chunk's keys and values for the configured reranker (see rerank/cached.py)."""

    name = "qr_cache"

    def fingerprint(self, book: Book, settings: Settings) -> str:
        # The store checks its own identity (weights, template, chunks) whenever it is opened; this only
        # decides whether ingest looks at it again.
        return fingerprint(book.stage("chunks").get("fingerprint"), settings.reranker_model,
                           settings.reranker_adapter, settings.reranker_heads, settings.device, settings.dtype,
                           settings.qr_cache_dtype, BLOCK_FORMAT)

    def run(self, book: Book, settings: Settings, progress: Progress = no_progress) -> dict[str, Any]:
        from .shared import get_cached_reranker

        cached = get_cached_reranker(settings, progress)
        store = open_book_cache(book, cached, settings, create=True)
        done = cached.fill(store, book.chunks, progress=progress)
        return {"chunks": store.n_chunks, "encoded": done["encoded"], "kv_dtype": store.kv_dtype,
                "bytes": store.disk_bytes(), "key": store.dir.name}
