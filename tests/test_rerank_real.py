"""The embedded Qwen2.5-Coder-0.5B with its shipped QR heads on the synthetic name-anchored check:
~20 passages about distinct made-up people, the question names one of them (models.md §2d)."""
from __future__ import annotations

import pytest

from bookqa.lab.detection.synthetic import name_anchored_items

pytestmark = pytest.mark.real_model

N_ITEMS = 40
ADAPTER = "qwen2.5-coder-0.5b-qr-lora"


@pytest.fixture(scope="module")
def ranker():
    from bookqa.rerank import QRRanker
    from bookqa.settings import Settings

    return QRRanker("qwen2.5-coder-0.5b", settings=Settings.from_env().replace(reranker_adapter="none"))


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


def test_the_shipped_adapter_loads_merges_and_ranks_the_named_passage_first(ranker):
    """The trained LoRA adapter shipped in the package (bookqa/adapters/), merged into the same model:
    it changes the scores, keeps its own 16 trained heads and passes the same check."""
    import numpy as np

    from bookqa.rerank import QRRanker
    from bookqa.settings import Settings

    trained = QRRanker("qwen2.5-coder-0.5b", settings=Settings.from_env().replace(reranker_adapter=ADAPTER))
    assert trained.describe()["adapter"] == ADAPTER and trained.heads.source.endswith(f"{ADAPTER}/qr_heads.json")
    assert trained.heads.heads == ranker.heads.heads  # trained from the shipped list
    items = name_anchored_items(N_ITEMS)
    first = items[0]
    assert not np.allclose(trained.head_scores(first.question, first.passages)[0],
                           ranker.head_scores(first.question, first.passages)[0], atol=1e-4)
    hits = sum(trained.rank(item.question, item.passages).results[0].index == item.answer for item in items)
    assert hits >= 0.95 * N_ITEMS, f"named passage first in {hits}/{N_ITEMS}"


def test_the_shipped_cached_adapter_asks_over_the_plain_cache_and_ranks_the_named_passage_first(ranker):
    """The question-side adapter shipped for the cached pass: chosen by default for the embedded model,
    it reads the store the plain cached pass writes and passes the same check over cached chunks."""
    from bookqa.rerank.adapter import chosen_adapter
    from bookqa.rerank.cached import CachedQRRanker
    from bookqa.settings import Settings

    adapter = chosen_adapter("qwen2.5-coder-0.5b", Settings().qr_cached_adapter, applies_to="question")
    assert adapter is not None and adapter.applies_to == "question"
    assert chosen_adapter("qwen2.5-coder-0.5b", "auto").path.name == ADAPTER  # the full prompt's stays its own
    plain = CachedQRRanker(ranker)
    cached = CachedQRRanker(ranker, question_adapter=adapter)
    assert cached.identity("c") == plain.identity("c") and cached.encoder is ranker.model
    items = name_anchored_items(N_ITEMS)
    hits = sum(cached.rank(item.question, item.passages).results[0].index == item.answer for item in items)
    assert hits >= 0.9 * N_ITEMS, f"named passage first in {hits}/{N_ITEMS}"
