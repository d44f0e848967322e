"""Prompt layout and exact token spans (from the offsets of the whole prompt)."""
from __future__ import annotations

import pytest

from bookqa.errors import ConfigError
from bookqa.rerank.prompt import PromptLayout, build_prompt
from test_rerank_tiny import tiny_tokenizer

CANDIDATES = ["the whale was in the sea.", "Silas Thorne was the captain.\n\nHe sailed at night.",
              " a garden by the river ", "Mara Quill's letter (to her sister) arrived!"]
QUESTION = "who was the captain of the ship?"


@pytest.mark.parametrize("chat", ["auto", "chatml", "none"])
@pytest.mark.parametrize("prefix", [None, "Here is a summary: Silas sails."])
def test_spans_are_exact(chat, prefix):
    tok = tiny_tokenizer()
    layout = PromptLayout(chat=chat)
    p = build_prompt(tok, QUESTION, CANDIDATES, prefix=prefix, layout=layout)
    assert p.input_ids == tok(p.text, add_special_tokens=chat == "none")["input_ids"]
    ends = []
    for text, (a, b), (ca, cb) in zip(CANDIDATES, p.candidates, p.candidate_chars):
        assert p.text[ca:cb] == text
        assert b > a
        assert text in tok.decode(p.input_ids[a:b])
        ends.append((a, b))
    # Candidates are disjoint, in order, and the question comes after all of them.
    assert all(ends[i][1] <= ends[i + 1][0] for i in range(len(ends) - 1))
    qa, qb = p.spans["question"]
    assert QUESTION in tok.decode(p.input_ids[qa:qb])
    assert qa >= p.candidates[-1][1]
    query_a, query_b = p.spans["query"]
    assert query_b == p.n_tokens and query_a <= qa and qb <= query_b
    assert "Use the retrieved chunks" in tok.decode(p.input_ids[query_a:query_b])
    if prefix:
        pa, pb = p.prefix
        assert prefix in tok.decode(p.input_ids[pa:pb]) and pb <= p.candidates[0][0]
    else:
        assert p.prefix is None
    seg = p.segment_map()
    assert (seg[p.candidates[1][0]:p.candidates[1][1]] == 1).all() and (seg[qa:qb] == -1).all()


def test_layout_order_and_chat_wrapping():
    tok = tiny_tokenizer()
    p = build_prompt(tok, QUESTION, CANDIDATES, prefix="Summary text.")
    t = p.text
    assert t.startswith("<|im_start|>user\n") and t.endswith("<|im_end|>\n<|im_start|>assistant\n")
    order = [t.index(s) for s in ("Find the retrieved chunks", "Here are some summaries", "Summary text.",
                                  "Here are some retrieved chunks:", "[1] the whale", "[4] Mara",
                                  "Use the retrieved chunks", "Query: " + QUESTION)]
    assert order == sorted(order)
    plain = build_prompt(tok, QUESTION, CANDIDATES, layout=PromptLayout(chat="none"))
    assert "<|im_start|>" not in plain.text and plain.text.endswith(QUESTION)
    assert build_prompt(tiny_tokenizer(chat=False), QUESTION, CANDIDATES).text == plain.text  # auto, no template
    with pytest.raises(ConfigError):
        build_prompt(tiny_tokenizer(chat=False), QUESTION, CANDIDATES, layout=PromptLayout(chat="template"))


def test_question_span_option():
    tok = tiny_tokenizer()
    q = build_prompt(tok, QUESTION, CANDIDATES, layout=PromptLayout(question_span="question"))
    qh = build_prompt(tok, QUESTION, CANDIDATES, layout=PromptLayout(question_span="query"))
    assert q.question == q.spans["question"] and qh.question == qh.spans["query"]
    assert qh.question[1] - qh.question[0] > q.question[1] - q.question[0]
    with pytest.raises(ConfigError):
        PromptLayout(question_span="everything")


def test_real_tokenizer_spans(qwen_tokenizer):
    """The embedded Qwen tokenizer (byte-level BPE with merges across piece boundaries)."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=qwen_tokenizer)
    tok.chat_template = None
    layout = PromptLayout(chat="chatml")
    p = build_prompt(tok, QUESTION, CANDIDATES, prefix="  Summaries:\nSilas sails.", layout=layout)
    for text, (a, b) in zip(CANDIDATES, p.candidates):
        assert text.strip() in tok.decode(p.input_ids[a:b])
    assert QUESTION in tok.decode(p.input_ids[slice(*p.question)])
