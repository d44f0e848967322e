"""First-stage retrieval: BM25 and dense retrievers over a book's chunks, fused by reciprocal rank.

``search(book, query, k, method)`` returns a book's top candidates; the ingest stages that build the
indexes are in ``bookqa.retrieve.stages``.
"""
from .base import METHODS, Bm25Retriever, DenseRetriever, HybridRetriever, Retriever, clear_cache, retriever_for, search
from .candidate import Candidate
from .fusion import reciprocal_rank_fusion

__all__ = ["METHODS", "Candidate", "Retriever", "Bm25Retriever", "DenseRetriever", "HybridRetriever",
           "retriever_for", "search", "clear_cache", "reciprocal_rank_fusion"]
