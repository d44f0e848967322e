"""The pointwise yes/no baseline on a tiny random model: batched scores equal single-pair scores and
the full-vocabulary logits; the Reranker contract holds."""
from __future__ import annotations

import pytest
import torch

from bookqa.chunk import Chunk
from bookqa.lab.baselines.pointwise import INSTRUCTION, PointwiseReranker

from test_rerank_tiny import tiny_model, tiny_tokenizer

PASSAGES = [
    "Silas Thorne keeps a whale in the garden.",
    "The captain of the ship wrote a letter to his sister about the river and the village road at night.",
    "Mara Quill.",
    "The doctor and her mother walked by the sea, and the house by the window was dark, and the night was long.",
    "Ada Brook found the letter.",
]


@pytest.fixture(params=["qwen2", "qwen3"])
def ranker(request, settings):
    return PointwiseReranker(model=(tiny_model(request.param), tiny_tokenizer()), settings=settings, batch_size=3)


def _reference(ranker, query, passage):
    """The yes−no logit difference from a plain unbatched forward over the whole vocabulary."""
    ids = torch.tensor([ranker._encode(query, passage)])
    with torch.no_grad():
        logits = ranker.model(input_ids=ids).logits[0, -1]
    return float(logits[ranker.yes_id] - logits[ranker.no_id])


def test_batched_scores_equal_single_pair_forward(ranker):
    query = "Who keeps a whale?"
    scores, info = ranker.scores(query, PASSAGES)
    expected = [_reference(ranker, query, p) for p in PASSAGES]
    assert scores.tolist() == pytest.approx(expected, abs=1e-4)
    assert info["pairs"] == 5 and info["batches"] == 2  # batch size 3, sorted by length, left-padded


def test_prompt_carries_instruction_question_and_passage(ranker):
    text = ranker.prompt("Who keeps a whale?", "Silas Thorne keeps a whale.")
    assert INSTRUCTION in text and "Question: Who keeps a whale?" in text and "Passage: Silas Thorne keeps a whale." in text
    assert text.rstrip().endswith("assistant")  # scored at the start of the reply (chat template)


def test_rank_contract(ranker):
    chunks = [Chunk(id=10 + i, start=0, end=len(p), tokens=5, text=p) for i, p in enumerate(PASSAGES)]
    res = ranker.rank("Who keeps a whale?", chunks, prefix="ignored summary")
    assert sorted(res.chunk_ids) == [10, 11, 12, 13, 14]
    assert [r.rank for r in res.results] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in zip(res.results, res.results[1:]))
    assert res.info["reranker"] == "pointwise" and res.info["prefix_used"] is False
    assert res.timings["forward"] > 0 and res.timings["total"] >= res.timings["forward"]
    by_id = {r.chunk_id: r.score for r in res.results}
    alone = ranker.rank("Who keeps a whale?", chunks[2:3])
    assert alone.results[0].score == pytest.approx(by_id[12], abs=1e-4)  # pointwise: no other candidate matters
    assert len(ranker.rank("q", [])) == 0
