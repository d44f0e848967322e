"""Cached-chunk QR configurations of an evaluation run (bookqa/rerank/cached.py).

``qr_cached``            the question pass over stored chunk keys/values, with the ranker ``qr`` uses
``qr_cascade``           ``qr_cached``, then the full prompt of ``qr`` over its top ``qr_cascade_top``
``qr_trained_cached``    the same two over the trained checkpoint (``--trained DIR``)
``qr_trained_cascade``
``qr_cached_adapted``    ``qr_cached`` with the cached pass's own question-side adapter (``qr_cached_adapter``):
                         the same chunk keys/values as ``qr_cached``, the question through the adapted weights
``qr_trained_cascade_adapted``  ``qr_cached_adapted``'s order, then the trained checkpoint's full prompt over
                         its top ``qr_cascade_top``: the cascade ``bookqa ask`` runs with the shipped adapters

Each evaluation book keeps its chunk cache in its own directory, filled lazily for the candidates the
questions draw (``qr_cache_dtype`` rows), exactly as ``bookqa ask`` fills it. A question's ``seconds`` are
what a user with a built cache waits: the question pass (plus the cascade's full prompt); encoding the
chunks the question drew for the first time is recorded apart (``timings["rerank.encode"]``), since at
ingest (``bookqa ingest --qr-cache``) it is paid once per book.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from ...rerank.stage import open_book_cache
from .configs import Config, ConfigResult, QuestionContext

# name -> (the QR ranker it wraps: "qr" or "qr_trained", cascade, with the question-side adapter)
CACHED_CONFIGS: dict[str, tuple[str, bool, bool]] = {
    "qr_cached": ("qr", False, False), "qr_cascade": ("qr", True, False),
    "qr_trained_cached": ("qr_trained", False, False), "qr_trained_cascade": ("qr_trained", True, False),
    "qr_cached_adapted": ("qr", False, True), "qr_trained_cascade_adapted": ("qr_trained", True, True),
}


class CachedConfig(Config):
    needs_candidates = True
    order_sensitive = False  # every candidate sits at one position range (the cascade's top follows the full prompt)

    def __init__(self, name: str, make_cached: Callable[[], Any], cascade_top: int = 0):
        self.name = name
        self.make_cached = make_cached
        self.cascade_top = cascade_top
        self.order_sensitive = bool(cascade_top)
        self._cached = None
        self._stores: dict[str, Any] = {}

    @property
    def cached(self):
        if self._cached is None:
            self._cached = self.make_cached()
        return self._cached

    def setup(self) -> None:
        _ = self.cached

    def run(self, ctx: QuestionContext) -> ConfigResult:
        book = ctx.book
        store = self._stores.get(book.id)
        if store is None:
            store = self._stores[book.id] = open_book_cache(book, self.cached, ctx.settings, create=True)
        chunks = book.chunks
        t0 = time.perf_counter()
        results = self.cached.rank(ctx.question, [chunks[i] for i in ctx.prompt_ids], store=store,
                                   book_chunks=chunks, cascade_top=self.cascade_top)
        wall = time.perf_counter() - t0
        timings = {f"rerank.{k}": float(v) for k, v in results.timings.items()}
        encode = float(results.timings.get("encode", 0.0))
        timings["rerank"] = wall - encode
        info = {k: results.info[k] for k in ("prompt_tokens", "cached_tokens", "tokens_run", "encoded", "kv_dtype",
                                              "cascade_top", "dtype", "model", "heads") if k in results.info}
        return ConfigResult(results.chunk_ids, [r.score for r in results.results], wall - encode, timings, info)
