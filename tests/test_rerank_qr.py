"""QRRanker scoring, calibration and results on tiny random Qwen2/Qwen3 models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bookqa.chunk import Chunk
from bookqa.rerank import QRRanker, RankedResults
from bookqa.rerank.qr import NULL_QUERY
from test_rerank_tiny import eager_attentions, tiny_model, tiny_tokenizer

CANDIDATES = ["the whale was in the sea at night.", "Silas Thorne was the captain of the ship.",
              "a garden by the river with a house.", "Mara Quill wrote a letter to her sister.",
              "the doctor rode to the village on the road."]
QUESTION = "who was the captain of the ship?"
HEADS = [(2, 1), (0, 3), (1, 0), (2, 2)]


def _ranker(kind="qwen3", settings=None, **kw):
    kw.setdefault("refine", 0)  # the plain path: raw attention sums (the CPU default also refines the top 5)
    return QRRanker(model=(tiny_model(kind), tiny_tokenizer()), heads=HEADS, settings=settings, **kw)


def _reference(ranker, question, span, aggregate="sum", prefix=None):
    """Per-head scores from eager attention: mean over question rows of the sum (or max) over each
    candidate's tokens."""
    prompt = ranker.prompt(question, CANDIDATES, prefix)
    att = eager_attentions(ranker.model, torch.tensor([prompt.input_ids]))
    rows = list(range(*prompt.spans[span]))
    out = np.zeros((len(HEADS), len(CANDIDATES)))
    for k, (layer, head) in enumerate(HEADS):
        a = att[layer][0, head, rows].double()  # (R, N)
        for c, (s, e) in enumerate(prompt.candidates):
            seg = a[:, s:e]
            out[k, c] = (seg.sum(-1) if aggregate == "sum" else seg.amax(-1)).mean().item()
    return out


@pytest.mark.parametrize("kind", ["qwen3", "qwen2"])
@pytest.mark.parametrize("span", ["question", "query"])
def test_scores_equal_hand_computation(kind, span, settings):
    ranker = _ranker(kind, settings, question_span=span)
    ref = _reference(ranker, QUESTION, span)
    got, info = ranker.head_scores(QUESTION, CANDIDATES)
    assert got.shape == (len(HEADS), len(CANDIDATES))
    np.testing.assert_allclose(got, ref, atol=1e-5)
    res = ranker.rank(QUESTION, CANDIDATES, per_head=True)
    by_index = {r.index: r for r in res}
    for c in range(len(CANDIDATES)):
        assert by_index[c].score == pytest.approx(ref[:, c].sum(), abs=1e-5)
        assert sum(by_index[c].per_head.values()) == pytest.approx(by_index[c].score, abs=1e-9)
        assert set(by_index[c].per_head) == {"2-1", "0-3", "1-0", "2-2"}
    both, _ = ranker.head_scores(QUESTION, CANDIDATES, spans=("question", "query"))
    np.testing.assert_allclose(both[("question", "query").index(span)], ref, atol=1e-5)


def test_max_aggregation_equals_hand_computation(settings):
    ranker = _ranker("qwen3", settings, aggregate="max")
    got, _ = ranker.head_scores(QUESTION, CANDIDATES)
    np.testing.assert_allclose(got, _reference(ranker, QUESTION, "question", "max"), atol=1e-6)


def test_prefix_changes_prompt_not_scoring(settings):
    ranker = _ranker("qwen2", settings)
    prefix = "Silas sails the ship. Mara writes letters."
    got, info = ranker.head_scores(QUESTION, CANDIDATES, prefix=prefix)
    np.testing.assert_allclose(got, _reference(ranker, QUESTION, "question", prefix=prefix), atol=1e-5)
    assert info["prompt_tokens"] > ranker.head_scores(QUESTION, CANDIDATES)[1]["prompt_tokens"]


@pytest.mark.parametrize("kind", ["qwen3", "qwen2"])
@pytest.mark.parametrize("aggregate", ["sum", "max"])
def test_calibration_reuses_prefix_cache_and_matches_two_passes(kind, aggregate, settings):
    ranker = _ranker(kind, settings, calibrate=True, aggregate=aggregate)
    got, info = ranker.head_scores(QUESTION, CANDIDATES)
    # Reference: two independent full eager passes, real question minus the "N/A" question.
    ref = _reference(ranker, QUESTION, "question", aggregate) - _reference(ranker, NULL_QUERY, "question", aggregate)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    prompt = ranker.prompt(QUESTION, CANDIDATES)
    null = ranker.prompt(NULL_QUERY, CANDIDATES)
    keep = info["null_reused_tokens"]
    assert prompt.input_ids[:keep] == null.input_ids[:keep]
    assert keep >= prompt.candidates[-1][1]  # every candidate token is reused, not recomputed
    assert info["tokens_run"] == [prompt.n_tokens, null.n_tokens - keep]
    assert info["tokens_run"][1] < 20 < prompt.n_tokens


def test_ranked_results_structure(settings):
    ranker = _ranker("qwen3", settings)
    chunks = [Chunk(id=100 + i, start=0, end=len(t), tokens=5, text=t) for i, t in enumerate(CANDIDATES)]
    res = ranker.rank(QUESTION, chunks)
    assert isinstance(res, RankedResults) and res.query == QUESTION
    scores = [r.score for r in res]
    assert scores == sorted(scores, reverse=True)
    assert [r.rank for r in res] == list(range(1, len(CANDIDATES) + 1))
    assert sorted(r.chunk_id for r in res) == [100 + i for i in range(len(CANDIDATES))]
    assert all(r.chunk_id == 100 + r.index for r in res)
    assert all(r.per_head is None for r in res)
    assert [r.chunk_id for r in res.top_k(2)] == res.chunk_ids[:2]
    assert res.info["heads"] == len(HEADS) and res.info["prompt_tokens"] > 0
    assert res.timings["total"] >= res.timings["forward"] > 0
    # Plain strings get ids 0..n-1, in input order; the same text scores the same either way.
    res2 = ranker.rank(QUESTION, CANDIDATES)
    assert sorted(r.chunk_id for r in res2) == list(range(len(CANDIDATES)))
    assert [r.index for r in res2] == [r.index for r in res]
    assert res2.to_json()["results"][0]["rank"] == 1


def test_empty_and_invalid_input(settings):
    from bookqa.errors import ConfigError, InputError

    ranker = _ranker("qwen3", settings)
    assert len(ranker.rank(QUESTION, [])) == 0
    with pytest.raises(InputError):
        ranker.rank("   ", CANDIDATES)
    with pytest.raises(TypeError):
        ranker.rank(QUESTION, [3.5])
    with pytest.raises(ConfigError):
        _ranker("qwen3", settings, aggregate="mean")
    from bookqa.errors import ModelError

    with pytest.raises(ModelError):  # a head set for a bigger model
        QRRanker(model=(tiny_model("qwen3"), tiny_tokenizer()), heads=[(20, 15)], settings=settings)


def test_layout_and_span_follow_the_heads_file(tmp_path, monkeypatch):
    from bookqa.rerank.heads import HeadSet
    from bookqa.settings import Settings

    recorded = HeadSet(heads=HEADS, detection={"prompt_layout": {"instruction": "Custom task.",
                                                                 "question_span": "query", "unknown": 1}})
    pair = (tiny_model("qwen3"), tiny_tokenizer())
    auto = Settings.from_env(env={})
    assert auto.rerank_question_span == "auto"
    r = QRRanker(model=pair, heads=recorded, settings=auto)
    assert r.layout.instruction == "Custom task." and r.layout.question_span == "query"
    assert QRRanker(model=pair, heads=recorded, settings=auto, question_span="question").layout.question_span \
        == "question"
    forced = Settings.from_env(env={"BOOKQA_RERANK_QUESTION_SPAN": "question"})
    assert QRRanker(model=pair, heads=recorded, settings=forced).layout.question_span == "question"
    assert QRRanker(model=pair, heads=HEADS, settings=auto).layout.question_span == "question"
