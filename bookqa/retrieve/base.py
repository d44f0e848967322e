"""First-stage retrievers: a small interface, the BM25 / dense / hybrid implementations, and
``retriever_for`` which loads a book's stored indexes once per process."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Mapping, Optional, Protocol

from ..errors import ConfigError, InputError, NotFoundError
from ..settings import Settings
from .candidate import Candidate
from .fusion import reciprocal_rank_fusion

if TYPE_CHECKING:
    from ..store import Book
    from .bm25 import Bm25Index
    from .dense import DenseIndex

METHODS = ("hybrid", "bm25", "dense")


class Retriever(Protocol):
    name: str

    def search(self, query: str, k: int) -> list[Candidate]: ...


def _ranked(name: str, hits: list[tuple[int, float]]) -> list[Candidate]:
    return [Candidate(chunk_id=cid, score=score, rank=r, ranks={name: r}, scores={name: score})
            for r, (cid, score) in enumerate(hits, start=1)]


class Bm25Retriever:
    """Lexical: chunks sharing terms with the query, by BM25 score (may return fewer than k)."""

    name = "bm25"

    def __init__(self, index: "Bm25Index"):
        self.index = index

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        return self.index.top(query, k)

    def search(self, query: str, k: int) -> list[Candidate]:
        return _ranked(self.name, self.top(query, k))


class DenseRetriever:
    """Semantic: chunks by cosine similarity of their embedding to the query's."""

    name = "dense"

    def __init__(self, index: "DenseIndex"):
        self.index = index

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        return self.index.top(query, k)

    def search(self, query: str, k: int) -> list[Candidate]:
        return _ranked(self.name, self.top(query, k))


class HybridRetriever:
    """Reciprocal-rank fusion of several retrievers' top ``depth`` lists."""

    name = "hybrid"

    def __init__(self, retrievers: Mapping[str, Bm25Retriever | DenseRetriever],
                 weights: Optional[Mapping[str, float]] = None, rrf_k: int = 60, depth: int = 100):
        self.retrievers = dict(retrievers)
        self.weights = dict(weights or {})
        self.rrf_k = rrf_k
        self.depth = depth

    def search(self, query: str, k: int) -> list[Candidate]:
        depth = max(k, self.depth)
        rankings = {name: r.top(query, depth) for name, r in self.retrievers.items()
                    if self.weights.get(name, 1.0) > 0}
        return reciprocal_rank_fusion(rankings, self.weights, k=self.rrf_k, top=k)


# --- loading a book's indexes ------------------------------------------------

_CACHE: "OrderedDict[tuple, object]" = OrderedDict()
_CACHE_SIZE = 8  # books whose loaded indexes stay in memory (they are memory-mapped, so this is cheap)
_CACHE_LOCK = threading.Lock()


def _cached(key: tuple, make):
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    value = make()
    with _CACHE_LOCK:
        _CACHE[key] = value
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return value


def _done_stage(book: "Book", name: str) -> dict:
    st = book.stage(name)
    if st.get("status") != "done":
        raise NotFoundError(f"book {book.id} has no {name} index yet; ingest it again to build it")
    return st


def _bm25(book: "Book") -> Bm25Retriever:
    from .bm25 import BM25_DIR, Bm25Index

    st = _done_stage(book, "bm25")
    key = ("bm25", str(book.dir.resolve()), st.get("fingerprint"))
    return _cached(key, lambda: Bm25Retriever(Bm25Index(book.dir / BM25_DIR)))


def _dense(book: "Book", settings: Settings) -> DenseRetriever:
    from ..weights import resolve_device
    from .dense import EMBEDDINGS_FILE, DenseIndex, load_embedder

    st = _done_stage(book, "dense")
    # Queries must be embedded by the model that embedded the chunks, whatever the current setting says.
    model = st.get("model") or settings.embed_model
    overlap = int(st.get("window_overlap", settings.embed_window_overlap))
    device = resolve_device(settings.device)
    key = ("dense", str(book.dir.resolve()), st.get("fingerprint"), model, device, settings.embed_query_prefix,
           settings.query_threads, settings.threads)

    def make() -> DenseRetriever:
        embedder = load_embedder(model, device, settings.threads, overlap)
        return DenseRetriever(DenseIndex(book.dir / EMBEDDINGS_FILE, embedder, settings.embed_query_prefix,
                                         settings.query_threads))

    return _cached(key, make)


def retriever_for(book: "Book", method: str = "hybrid", settings: Optional[Settings] = None) -> Retriever:
    """The retriever for ``method`` over ``book``'s stored indexes (loaded once per process)."""
    settings = settings or Settings.from_env()
    if method == "bm25":
        return _bm25(book)
    if method == "dense":
        return _dense(book, settings)
    if method == "hybrid":
        weights = {"bm25": settings.bm25_weight, "dense": settings.dense_weight}
        parts = {}
        if weights["bm25"] > 0:
            parts["bm25"] = _bm25(book)
        if weights["dense"] > 0:
            parts["dense"] = _dense(book, settings)
        return HybridRetriever(parts, weights, rrf_k=settings.rrf_k, depth=settings.fusion_depth)
    raise ConfigError(f"unknown retrieval method {method!r}; use one of {', '.join(METHODS)}")


def search(book: "Book", query: str, k: Optional[int] = None, method: str = "hybrid",
           settings: Optional[Settings] = None) -> list[Candidate]:
    """The top ``k`` (default ``settings.top_k``) chunks of ``book`` for ``query``, best first."""
    settings = settings or Settings.from_env()
    if not query or not query.strip():
        raise InputError("the query is empty")
    k = settings.top_k if k is None else int(k)
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    return retriever_for(book, method, settings).search(query, k)


def clear_cache() -> None:
    """Forget loaded indexes (the embedders stay loaded)."""
    with _CACHE_LOCK:
        _CACHE.clear()
