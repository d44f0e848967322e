"""The contract every reranker implements (QR attention now; pointwise / LLM baselines later).

A reranker takes one query and the candidate chunks (in first-stage order) and returns them re-ordered
by a score where higher means more relevant. Scores are only comparable within one call: listwise
rerankers such as QR score all candidates in one prompt.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

from ..chunk import Chunk
from ..errors import InputError

# What a reranker ranks: a stored chunk (its id is kept) or any text (its id is its input position).
Passage = Union[Chunk, str]


@dataclass
class RankedResult:
    chunk_id: int  # Chunk.id, or the input position when candidates were plain strings
    index: int  # position in the input list
    score: float
    rank: int  # 1-based, after sorting by score (descending)
    per_head: Optional[dict[str, float]] = None  # "layer-head" -> that head's score, when requested

    def to_json(self) -> dict[str, Any]:
        row = {"chunk_id": self.chunk_id, "index": self.index, "score": self.score, "rank": self.rank}
        if self.per_head is not None:
            row["per_head"] = self.per_head
        return row


@dataclass
class RankedResults:
    query: str
    results: list[RankedResult]  # sorted by score, best first
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase
    info: dict[str, Any] = field(default_factory=dict)  # prompt tokens, heads, layers run, ...

    def top_k(self, k: int) -> list[RankedResult]:
        return self.results[:max(0, k)]

    @property
    def chunk_ids(self) -> list[int]:
        return [r.chunk_id for r in self.results]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self):
        return iter(self.results)

    def to_json(self) -> dict[str, Any]:
        return {"query": self.query, "results": [r.to_json() for r in self.results],
                "timings": self.timings, "info": self.info}


def candidate_texts_and_ids(chunks: Sequence[Passage]) -> tuple[list[str], list[int]]:
    """Texts and ids of the candidates; plain strings get ids 0..n-1 (their input position)."""
    texts, ids = [], []
    for i, c in enumerate(chunks):
        if isinstance(c, Chunk):
            texts.append(c.text)
            ids.append(c.id)
        elif isinstance(c, str):
            texts.append(c)
            ids.append(i)
        else:
            raise TypeError(f"candidate {i} is {type(c).__name__}, expected Chunk or str")
    return texts, ids


def rank_inputs(query: str, chunks: Sequence[Passage]) -> tuple[list[str], list[int]]:
    """Texts and ids of the candidates a ``rank`` call scores; an empty query is refused when there is
    anything to rank (every reranker returns an empty result for no candidates)."""
    texts, ids = candidate_texts_and_ids(chunks)
    if texts and not query.strip():
        raise InputError("the query is empty")
    return texts, ids


def make_results(query: str, scores: Sequence[float], ids: Sequence[int],
                 per_head: Optional[Sequence[dict[str, float]]] = None,
                 timings: Optional[dict[str, float]] = None,
                 info: Optional[dict[str, Any]] = None) -> RankedResults:
    """Sort by score (descending; ties keep input order) and number the ranks from 1."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    results = [RankedResult(chunk_id=int(ids[i]), index=i, score=float(scores[i]), rank=r + 1,
                            per_head=None if per_head is None else per_head[i])
               for r, i in enumerate(order)]
    return RankedResults(query=query, results=results, timings=dict(timings or {}), info=dict(info or {}))


class Reranker(ABC):
    """Re-orders first-stage candidates for one query."""

    name: str = "reranker"

    @abstractmethod
    def rank(self, query: str, chunks: Sequence[Passage], prefix: Optional[str] = None) -> RankedResults:
        """Score every candidate for ``query``; ``prefix`` is optional context (e.g. summaries) that
        rerankers may show the model before the candidates."""
