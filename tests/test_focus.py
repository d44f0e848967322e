"""Passages trimmed to the sentences the QR heads attend to: the per-character attention against eager
attention on tiny random models, the trimming rule, and the answer step that uses it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bookqa.answer import Evidence, build_messages
from bookqa.chunk import Chunk
from bookqa.errors import ConfigError
from bookqa.focus import GAP, attention_trimmer, focus_text, passage_units
from bookqa.pipeline import answer_from
from bookqa.rerank import QRRanker
from bookqa.rerank.qr import NULL_QUERY
from bookqa.settings import Settings
from test_rerank_qr import CANDIDATES, HEADS, QUESTION
from test_rerank_tiny import eager_attentions, tiny_model, tiny_tokenizer


def _ranker(kind="qwen3", settings=None, **kw):
    return QRRanker(model=(tiny_model(kind), tiny_tokenizer()), heads=HEADS, settings=settings, refine=0, **kw)


def _eager_token_weights(ranker, question, texts):
    """Each token's attention from the question rows, summed over the heads' layers, mean over heads."""
    prompt = ranker.prompt(question, texts)
    att = eager_attentions(ranker.model, torch.tensor([prompt.input_ids]))
    rows = list(range(*prompt.spans["question"]))
    w = sum(att[layer][0, head, rows].double().mean(0) for layer, head in HEADS) / len(HEADS)
    return prompt, w.numpy()


@pytest.mark.parametrize("kind", ["qwen3", "qwen2", "llama"])
def test_token_attention_equals_eager_attention(kind, settings):
    ranker = _ranker(kind, settings)
    got = ranker.token_attention(QUESTION, CANDIDATES)
    prompt, w = _eager_token_weights(ranker, QUESTION, CANDIDATES)
    assert [len(g) for g in got] == [len(t) for t in CANDIDATES]
    for g, (a, b) in zip(got, prompt.candidates):
        # Each token's weight is spread over its characters: a passage's sum is its tokens' sum, which is
        # the chunk score of the plain ranker (per head, then averaged).
        assert g.sum() == pytest.approx(w[a:b].sum(), abs=1e-6)
    scores, _ = ranker.head_scores(QUESTION, CANDIDATES)
    np.testing.assert_allclose([g.sum() for g in got], scores.mean(axis=0), atol=1e-6)
    # Token by token, on the characters of the first candidate's first token.
    s, e = (int(x) for x in prompt.offsets[prompt.candidates[0][0]])
    ca = prompt.candidate_chars[0][0]
    first = got[0][max(s, ca) - ca:e - ca]
    assert first.sum() == pytest.approx(w[prompt.candidates[0][0]], abs=1e-6)


def test_token_attention_calibrated_subtracts_the_null_question(settings):
    ranker = _ranker("qwen2", settings, calibrate=True)
    got = ranker.token_attention(QUESTION, CANDIDATES)
    _, w = _eager_token_weights(ranker, QUESTION, CANDIDATES)
    prompt0, w0 = _eager_token_weights(ranker, NULL_QUERY, CANDIDATES)
    for g, (a, b) in zip(got, prompt0.candidates):
        assert g.sum() == pytest.approx(w[a:b].sum() - w0[a:b].sum(), abs=1e-6)
    assert ranker.token_attention(QUESTION, []) == []


def test_passage_units_follow_lines_and_sentences():
    text = "Session 2 — 7:00 pm on 9 May, 2023\nAda: I rode to the village. It rained.\nFelix: Good!"
    units = [text[s:e] for s, e in passage_units(text)]
    assert units == ["Session 2 — 7:00 pm on 9 May, 2023", "Ada: I rode to the village. It rained.", "Felix: Good!"]
    dotted = "=== Session 3 (7:00 p.m. on 9 May 2023) ===\nAda: Hi."
    assert [dotted[s:e] for s, e in passage_units(dotted)] == ["=== Session 3 (7:00 p.m. on 9 May 2023) ===", "Ada: Hi."]
    prose = "  The whale rose. Silas Thorne was the captain.  \n\nMara wrote a letter. "
    assert [prose[s:e] for s, e in passage_units(prose)] == ["The whale rose.", "Silas Thorne was the captain.",
                                                            "Mara wrote a letter."]


def _weights_on(text, piece, mass=1.0):
    w = np.zeros(len(text))
    i = text.index(piece)
    w[i:i + len(piece)] = mass / len(piece)
    return w


def test_focus_text_keeps_the_most_attended_sentences_in_order():
    text = "The whale rose. Silas Thorne was the captain of the ship. Mara wrote a letter. The doctor rode home."
    w = _weights_on(text, "Silas Thorne was the captain of the ship.") + _weights_on(text, "The doctor rode home.", 0.5)
    assert focus_text(text, w, 0.3) == f"{GAP} Silas Thorne was the captain of the ship. {GAP}"
    assert focus_text(text, w, 0.6) == f"{GAP} Silas Thorne was the captain of the ship. {GAP} The doctor rode home."
    assert focus_text(text, w, 1.0) == text
    # At least one sentence is kept however small the share.
    assert "Silas" in focus_text(text, w, 0.01)
    with pytest.raises(ConfigError):
        focus_text(text, w, 0.0)
    with pytest.raises(ValueError):
        focus_text(text, w[:-1], 0.5)


def test_focus_text_keeps_session_headers_and_neighbours_blanks():
    text = "Session 2 — 7:00 pm on 9 May, 2023\nAda: I rode to the village.\nFelix: Good!\nAda: It rained all day."
    w = _weights_on(text, "Ada: I rode to the village.") + _weights_on(text, "Felix: Good!", 0.9)
    out = focus_text(text, w, 0.6)  # the header is kept free; 0.6 of the utterances: the two most attended
    assert out == "Session 2 — 7:00 pm on 9 May, 2023\nAda: I rode to the village.\nFelix: Good!\n" + GAP
    # A sentence that merely begins like a header is no header; a gap across lines is marked on its own line.
    story = "Ada rode home.\nSession 4 was long. The whale rose."
    assert focus_text(story, _weights_on(story, "The whale rose."), 0.3) == f"{GAP} The whale rose."
    lines = "Ada rode home. It rained.\nThe whale rose."
    assert focus_text(lines, _weights_on(lines, "The whale rose."), 0.3) == f"{GAP}\nThe whale rose."


def test_trimmed_evidence_is_what_the_generator_reads(settings):
    ranker = _ranker("qwen3", settings)
    long_texts = [" ".join(CANDIDATES[i:] + CANDIDATES[:i]) for i in range(3)]
    chunks, pos = [], 0
    for i, t in enumerate(long_texts):
        chunks.append(Chunk(id=i, start=pos, end=pos + len(t), tokens=40, text=t))
        pos += len(t) + 1
    trim = attention_trimmer(ranker, QUESTION, 0.4)
    assert attention_trimmer(ranker, QUESTION, 1.0) is None

    class Echo:  # a generator that writes back the first passage it read, cited
        model_id = "echo"

        def __init__(self):
            self.prompts = []

        def stream(self, messages, max_tokens, temperature):
            self.prompts.append(messages[-1]["content"])
            yield "the captain [1]"

    gen = Echo()
    drafted = answer_from(gen, QUESTION, chunks, [(0, 1.0), (1, 0.5), (2, 0.2)], title="T", top_n=3,
                          max_tokens=32, stream=True, style="short", trim=trim)
    assert drafted.focus_seconds is not None and drafted.focus_seconds >= 0
    for e in drafted.evidence:
        assert e.shown is not None and len(e.shown) < len(e.chunk.text) and GAP in e.shown
        assert e.text == e.shown and e.shown in gen.prompts[0]
        assert e.chunk.text not in gen.prompts[0]  # the whole passage is not shown
    # Citations still resolve to the whole chunk.
    c = drafted.parsed.citations[0]
    assert (c.start, c.end) == (drafted.evidence[0].chunk.start, drafted.evidence[0].chunk.end)
    untrimmed = build_messages(QUESTION, [Evidence(1, chunks[0], 1.0, 1)])[-1]["content"]
    assert chunks[0].text in untrimmed


def test_evidence_keep_setting_is_checked():
    assert Settings(evidence_keep=0.5).evidence_keep == 0.5
    with pytest.raises(ConfigError):
        Settings.from_env({"BOOKQA_EVIDENCE_KEEP": "1.5"})
    with pytest.raises(ConfigError):
        Settings.from_env({"BOOKQA_EVIDENCE_KEEP": "0"})
