"""The evidence prompt and citation handling.

Citations are structural: the generator only sees numbered passages whose chunk ids and character
spans are known before generation; after generation every ``[n]`` is parsed, checked against the
passages actually provided, and resolved to a chunk id, its span, and the sentence inside it that best
supports the claim. Numbers that were not provided are dropped and reported; sentences without a
citation are flagged. A small local model cannot break a citation into a wrong span this way.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

from .chunk import Chunk

# [1]  [1, 3]  [1,2,3]  [1-3]  【1】  【1，3】  ［2］  — a bracket holding only numbers, commas, dashes.
_CITE = re.compile(r"[\[【［]\s*(\d+(?:\s*(?:[,，、;；]|[-–~～])\s*\d+)*)\s*[\]】］]")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])[\"'”’」』)]*\s+|(?<=[。！？])")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"\w+", re.UNICODE)


def is_chinese(text: str) -> bool:
    """True when CJK ideographs make up a good share of the letters (the answer should be Chinese)."""
    cjk = len(_CJK.findall(text))
    letters = sum(ch.isalpha() for ch in text)
    return cjk > 0 and cjk >= 0.3 * max(letters, 1)


@dataclass
class Evidence:
    """A passage handed to the generator as ``[number]``."""

    number: int
    chunk: Chunk
    score: float  # reranker score (or first-stage score when not reranked)
    rank: int  # rank after reranking, 1 = best


@dataclass
class Citation:
    number: int
    chunk_id: int
    start: int  # the cited chunk's span in the book text
    end: int
    quote_start: int  # the sentence of that chunk that best supports the claim
    quote_end: int
    quote: str
    location: str
    claim: str  # the answer sentence carrying the citation


@dataclass
class ParsedAnswer:
    text: str
    citations: list[Citation] = field(default_factory=list)
    invalid_numbers: list[int] = field(default_factory=list)  # cited but never provided
    uncited_sentences: list[str] = field(default_factory=list)


def evidence_in_document_order(ranked: Sequence[Evidence]) -> list[Evidence]:
    """Renumber the chosen passages 1..n in the order they appear in the book (DOS-RAG: document
    order helps small generators follow the story)."""
    ordered = sorted(ranked, key=lambda e: e.chunk.start)
    return [Evidence(number=i, chunk=e.chunk, score=e.score, rank=e.rank) for i, e in enumerate(ordered, 1)]


def build_messages(question: str, evidence: Sequence[Evidence], title: str = "",
                   prefix: str = "") -> list[dict[str, str]]:
    """Chat messages asking for a short answer with ``[n]`` after every claim, in the question's language."""
    chinese = is_chinese(question)
    blocks = []
    for e in evidence:
        where = e.chunk.chapter or f"chunk {e.chunk.id}"
        blocks.append(f"[{e.number}] ({where})\n{e.chunk.text.strip()}")
    passages = "\n\n".join(blocks)
    if chinese:
        system = ("你是一个严谨的阅读助手。只根据给出的编号段落回答问题。每个论断后面用方括号标注所依据的段落编号，"
                  "例如 [1] 或 [1][3]。如果段落中没有答案，请直接说明。请用中文简洁回答。")
        user = (f"书名：{title}\n" if title else "") + (f"背景摘要：\n{prefix}\n\n" if prefix else "") + \
            f"段落：\n{passages}\n\n问题：{question}\n回答（每句后标注 [编号]）："
    else:
        system = ("You are a careful reading assistant. Answer the question using only the numbered passages. "
                  "Put the passage number in square brackets after every claim, like [1] or [1][3]. "
                  "If the passages do not contain the answer, say so. Answer concisely, in the language of "
                  "the question.")
        user = (f"Book: {title}\n" if title else "") + (f"Background summary:\n{prefix}\n\n" if prefix else "") + \
            f"Passages:\n{passages}\n\nQuestion: {question}\nAnswer (cite [n] after each sentence):"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_numbers(inner: str) -> list[int]:
    """'1, 3' -> [1, 3]; '2-4' -> [2, 3, 4]; '1，2' -> [1, 2]. Ranges are capped to stay sane."""
    out: list[int] = []
    for part in re.split(r"\s*[,，、;；]\s*", inner.strip()):
        m = re.fullmatch(r"(\d+)\s*[-–~～]\s*(\d+)", part)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if a <= b and b - a <= 20:
                out.extend(range(a, b + 1))
            else:
                out.extend([a, b])
        elif part.isdigit():
            out.append(int(part))
    return out


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans of an answer (light rules; answers are short). Citations that follow the full
    stop (``... Paris. [1]``) belong to the sentence before them."""
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        end = m.start()
        # keep trailing citation brackets with this sentence
        tail = re.match(r"(\s*[\[【［][\d\s,，、;；\-–~～]+[\]】］])+", text[m.start():])
        if tail:
            end = m.start() + tail.end()
        if text[start:end].strip():
            spans.append((start, end))
        start = end
    if text[start:].strip():
        spans.append((start, len(text)))
    merged: list[tuple[int, int]] = []
    for s, e in spans:  # a piece that is only citations joins the previous sentence
        if merged and not _CITE.sub("", text[s:e]).strip():
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def _best_sentence(chunk: Chunk, claim: str) -> tuple[int, int]:
    """The span (book offsets) of the chunk sentence sharing most words with the claim."""
    claim_words = {w.lower() for w in _WORD.findall(_CITE.sub(" ", claim)) if len(w) > 2 or _CJK.match(w)}
    if is_chinese(claim):
        claim_words |= set(_CJK.findall(claim))
    best, best_score = (chunk.start, chunk.end), 0.0
    for s, e in split_sentences(chunk.text):
        piece = chunk.text[s:e]
        words = {w.lower() for w in _WORD.findall(piece)} | set(_CJK.findall(piece))
        score = len(words & claim_words) / (1 + len(words) ** 0.5)
        if score > best_score:
            lead = len(piece) - len(piece.lstrip())
            trail = len(piece) - len(piece.rstrip())
            best, best_score = (chunk.start + s + lead, chunk.start + e - trail), score
    return best


def parse_citations(answer: str, evidence: Sequence[Evidence]) -> ParsedAnswer:
    """Resolve every ``[n]`` in ``answer`` against the passages that were provided."""
    by_number = {e.number: e for e in evidence}
    result = ParsedAnswer(text=answer)
    seen: set[tuple[int, str]] = set()
    for s, e in split_sentences(answer):
        sentence = answer[s:e]
        numbers = [n for m in _CITE.finditer(sentence) for n in parse_numbers(m.group(1))]
        claim = re.sub(r"\s+([.!?,;:。！？，；])", r"\1", _CITE.sub("", sentence)).strip()
        if not numbers:
            if claim and len(_WORD.findall(claim)) >= 3:
                result.uncited_sentences.append(claim)
            continue
        for n in numbers:
            ev = by_number.get(n)
            if ev is None:
                if n not in result.invalid_numbers:
                    result.invalid_numbers.append(n)
                continue
            if (n, claim) in seen:
                continue
            seen.add((n, claim))
            qs, qe = _best_sentence(ev.chunk, claim)
            quote = ev.chunk.text[qs - ev.chunk.start:qe - ev.chunk.start]
            result.citations.append(Citation(
                number=n, chunk_id=ev.chunk.id, start=ev.chunk.start, end=ev.chunk.end,
                quote_start=qs, quote_end=qe, quote=quote, location=ev.chunk.location, claim=claim))
    return result
