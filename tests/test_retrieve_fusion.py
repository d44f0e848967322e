"""Reciprocal-rank fusion on constructed rankings, checked against hand-computed scores."""
from __future__ import annotations

import pytest

from bookqa.retrieve import HybridRetriever, reciprocal_rank_fusion


def test_rrf_order_and_scores_hand_computed():
    bm25 = [(7, 12.0), (3, 9.5), (5, 4.0)]
    dense = [(3, 0.81), (9, 0.77), (7, 0.60), (1, 0.55)]
    fused = reciprocal_rank_fusion({"bm25": bm25, "dense": dense}, k=60)
    # chunk 3: 1/62 + 1/61 = 0.032522...   chunk 7: 1/61 + 1/63 = 0.032266...
    # chunk 9: 1/62 = 0.016129   chunk 5: 1/63 = 0.015873   chunk 1: 1/64 = 0.015625
    assert [c.chunk_id for c in fused] == [3, 7, 9, 5, 1]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    assert fused[1].score == pytest.approx(1 / 61 + 1 / 63)
    assert fused[2].score == pytest.approx(1 / 62)
    assert [c.rank for c in fused] == [1, 2, 3, 4, 5]
    assert fused[0].ranks == {"bm25": 2, "dense": 1}
    assert fused[0].scores == {"bm25": 9.5, "dense": 0.81}
    assert fused[2].ranks == {"dense": 2}  # not returned by BM25: no bm25 rank
    assert [c.chunk_id for c in reciprocal_rank_fusion({"bm25": bm25, "dense": dense}, k=60, top=2)] == [3, 7]


def test_rrf_weights_change_the_order():
    bm25 = [(1, 3.0), (2, 2.0)]
    dense = [(2, 0.9), (1, 0.8)]
    # equal weights: 1/61 + 1/62 each -> tie, broken by best single rank (both 1), then chunk id
    tied = reciprocal_rank_fusion({"bm25": bm25, "dense": dense}, k=60)
    assert [c.chunk_id for c in tied] == [1, 2]
    assert tied[0].score == pytest.approx(tied[1].score)
    heavy_dense = reciprocal_rank_fusion({"bm25": bm25, "dense": dense}, {"bm25": 1.0, "dense": 2.0}, k=60)
    # chunk 2: 1/62 + 2/61; chunk 1: 1/61 + 2/62
    assert [c.chunk_id for c in heavy_dense] == [2, 1]
    assert heavy_dense[0].score == pytest.approx(1 / 62 + 2 / 61)


def test_rrf_small_k_rewards_top_ranks_more():
    a = [(1, 0), (2, 0), (3, 0)]
    b = [(3, 0), (4, 0), (2, 0)]
    # k=0: chunk 3: 1/3 + 1/1 = 1.333; chunk 1: 1; chunk 2: 1/2 + 1/3 = 0.833; chunk 4: 0.5
    assert [c.chunk_id for c in reciprocal_rank_fusion({"a": a, "b": b}, k=0)] == [3, 1, 2, 4]


class _FixedRanking:
    """A retriever whose ranking is given (the hybrid only needs ``top``)."""

    def __init__(self, hits):
        self.hits = hits
        self.asked = []

    def top(self, query, k):
        self.asked.append(k)
        return self.hits[:k]


def test_hybrid_retriever_fuses_to_depth_and_cuts_to_k():
    a = _FixedRanking([(i, 10.0 - i) for i in range(10)])
    b = _FixedRanking([(9 - i, 1.0 - i / 10) for i in range(10)])
    hybrid = HybridRetriever({"bm25": a, "dense": b}, rrf_k=60, depth=6)
    out = hybrid.search("q", k=3)
    assert a.asked == [6] and b.asked == [6]
    assert len(out) == 3
    expected = reciprocal_rank_fusion({"bm25": a.hits[:6], "dense": b.hits[:6]}, k=60, top=3)
    assert [(c.chunk_id, c.score) for c in out] == [(c.chunk_id, c.score) for c in expected]
    # depth never falls below k
    hybrid.search("q", k=8)
    assert a.asked[-1] == 8
    # a retriever with weight 0 is not consulted
    only_a = HybridRetriever({"bm25": a, "dense": b}, {"bm25": 1.0, "dense": 0.0}, depth=6)
    calls = len(b.asked)
    assert [c.chunk_id for c in only_a.search("q", k=3)] == [0, 1, 2]
    assert len(b.asked) == calls
