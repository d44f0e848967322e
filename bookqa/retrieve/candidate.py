"""A first-stage candidate: one retrieved chunk with its fused rank and each retriever's own."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Candidate:
    """One retrieved chunk. ``rank`` counts from 1; ``ranks``/``scores`` hold each retriever's own rank
    and score for the chunk (absent where that retriever did not return it), e.g. {"bm25": 3, "dense": 10}."""

    chunk_id: int
    score: float
    rank: int
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
