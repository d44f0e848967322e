"""Reciprocal-rank fusion (Cormack et al., 2009): a chunk's fused score is the weighted sum over
retrievers of ``weight / (k + rank)``, rank counted from 1 in that retriever's list; a retriever that did
not return the chunk adds nothing. Only ranks matter, so BM25 scores and cosines need no calibration."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from .candidate import Candidate


def reciprocal_rank_fusion(rankings: Mapping[str, Sequence[tuple[int, float]]],
                           weights: Optional[Mapping[str, float]] = None, k: int = 60,
                           top: Optional[int] = None) -> list[Candidate]:
    """Fuse ranked ``(chunk_id, score)`` lists (best first), keyed by retriever name.

    Ties in fused score go to the chunk with the better single-retriever rank, then the earlier chunk.
    """
    weights = weights or {}
    fused: dict[int, Candidate] = {}
    for name, ranking in rankings.items():
        weight = float(weights.get(name, 1.0))
        for rank, (chunk_id, score) in enumerate(ranking, start=1):
            cand = fused.get(chunk_id)
            if cand is None:
                cand = fused[chunk_id] = Candidate(chunk_id=chunk_id, score=0.0, rank=0)
            if name in cand.ranks:
                continue  # a retriever lists a chunk once; ignore repeats
            cand.ranks[name] = rank
            cand.scores[name] = float(score)
            cand.score += weight / (k + rank)
    ordered = sorted(fused.values(), key=lambda c: (-c.score, min(c.ranks.values()), c.chunk_id))
    if top is not None:
        ordered = ordered[:top]
    for rank, cand in enumerate(ordered, start=1):
        cand.rank = rank
    return ordered
