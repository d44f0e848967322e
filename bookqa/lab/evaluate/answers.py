"""Answers for the evaluation: the generator reads the top evidence of one configuration and writes an
answer, which is then scored.

Free-form questions use bookqa's own answer prompt (bookqa/answer.py: numbered passages in document
order, cite with [n]); the citations are parsed as in ``bookqa ask`` and stripped before scoring.
Multiple-choice questions (DetectiveQA, QuALITY) use a prompt that lists the options and asks for one
letter; the letter is parsed with ``metrics.parse_choice``.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

from ...answer import Evidence, is_chinese
from ...chunk import Chunk
from ...pipeline import answer_from
from .datasets.base import Question
from .metrics import answer_scores, locomo_score, parse_choice

MC_MAX_TOKENS = 24

_MC_SYSTEM_EN = ("You answer multiple-choice questions about a book using the numbered passages you are given. "
                 "Reply with the letter of the correct option only.")
_MC_SYSTEM_ZH = "你根据给出的编号段落回答关于一本书的选择题。只回答正确选项的字母。"


def mc_messages(question: str, options: dict[str, str], evidence: Sequence[Evidence], title: str = "") -> list[dict]:
    """Chat messages for one multiple-choice question: passages, question, options, "one letter"."""
    chinese = is_chinese(question)
    passages = "\n\n".join(f"[{e.number}] ({e.chunk.chapter or f'chunk {e.chunk.id}'})\n{e.text.strip()}"
                           for e in evidence)
    listed = "\n".join(f"{letter}. {text}" for letter, text in options.items())
    choices = ", ".join(options)
    if chinese:
        user = (f"《{title or '本书'}》中的段落：\n\n{passages}\n\n问题：{question}\n\n选项：\n{listed}\n\n"
                f"只回答一个字母（{choices}）。")
        system = _MC_SYSTEM_ZH
    else:
        user = (f"Passages from \"{title or 'the book'}\":\n\n{passages}\n\nQuestion: {question}\n\nOptions:\n{listed}\n\n"
                f"Answer with a single letter ({choices}).")
        system = _MC_SYSTEM_EN
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def generate_answer(generator, question: Question, chunks: Sequence[Chunk], ranked_ids: Sequence[int],
                    title: str, top_n: int, max_tokens: int, config: str, style: str = "short") -> dict[str, Any]:
    """Generate and parse one answer in ``style`` from the top ``top_n`` chunks of ``ranked_ids``."""
    mc = question.is_multiple_choice
    drafted = answer_from(generator, question.question, chunks, [(cid, 0.0) for cid in ranked_ids], title=title,
                          top_n=top_n, max_tokens=MC_MAX_TOKENS if mc else max_tokens, parse=not mc,
                          messages=(lambda ev: mc_messages(question.question, question.options or {}, ev, title))
                          if mc else None, style=style)
    text, parsed = drafted.text, drafted.parsed
    row: dict[str, Any] = {"config": config, "style": style, "evidence": [int(c) for c in ranked_ids[:top_n]],
                           "text": text,
                           "seconds": round(drafted.seconds, 4), "prompt_tokens": drafted.prompt_tokens,
                           "completion_tokens": drafted.completion_tokens,
                           "generator": getattr(generator, "model_id", type(generator).__name__)}
    if mc:
        row["letter"] = parse_choice(text, list(question.options or {}))
    else:
        row["citations"] = [{k: v for k, v in asdict(c).items() if k != "quote"} for c in parsed.citations]
        row["invalid_citations"] = parsed.invalid_numbers
    return row


def score_answer(dataset: str, question: dict[str, Any], answer: dict[str, Any]) -> dict[str, float]:
    """Scores of a stored answer against a stored question row (so reports can re-score old runs)."""
    if question.get("options"):
        return {"accuracy": float(answer.get("letter") is not None and answer.get("letter") == question.get("answer_letter"))}
    scores = answer_scores(answer.get("text", ""), question.get("references") or [])
    if dataset == "locomo" and question.get("category") is not None:
        scores["locomo_f1"] = locomo_score(int(question["category"]), answer.get("text", ""),
                                           (question.get("references") or [""])[0])
    return scores
