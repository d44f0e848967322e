"""First-stage retrieval: BM25 and dense retrievers over a book's chunks, fused by reciprocal rank.

``search(book, query, k, method)`` is what ``Book.search`` calls; the ingest stages that build the
indexes are in ``bookqa.retrieve.stages``.
"""
from .base import (METHODS, Bm25Retriever, Candidate, DenseRetriever, HybridRetriever, Retriever, clear_cache,
                   retriever_for, search)
from .fusion import reciprocal_rank_fusion

__all__ = ["METHODS", "Candidate", "Retriever", "Bm25Retriever", "DenseRetriever", "HybridRetriever",
           "retriever_for", "search", "clear_cache", "reciprocal_rank_fusion"]
