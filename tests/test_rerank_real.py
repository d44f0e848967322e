"""The embedded Qwen2.5-Coder-0.5B with its shipped QR heads on the synthetic name-anchored check:
~20 passages about distinct made-up people, the question names one of them (models.md §2d)."""
from __future__ import annotations

import pytest

from bookqa.rerank.synthetic import name_anchored_items

pytestmark = pytest.mark.real_model

N_ITEMS = 40


@pytest.fixture(scope="module")
def ranker():
    from bookqa.rerank import QRRanker
    from bookqa.settings import Settings

    return QRRanker("qwen2.5-coder-0.5b", settings=Settings.from_env())


def test_shipped_heads_rank_the_named_passage_first(ranker):
    assert ranker.heads.source.endswith("qwen2.5-coder-0.5b.json") and len(ranker.heads.heads) == 16
    items = name_anchored_items(N_ITEMS)
    hits = 0
    for item in items:
        res = ranker.rank(item.question, item.passages)
        assert 450 < res.info["prompt_tokens"] < 650  # ~540-token prompts
        assert res.info["layers_run"] == ranker.heads.deepest_layer + 1
        hits += res.results[0].index == item.answer
    assert hits >= 0.95 * N_ITEMS, f"named passage first in {hits}/{N_ITEMS}"
