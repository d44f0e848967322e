"""Extractive summaries without a language model: TextRank over sentences.

Sentences are split with simple rules (Latin and CJK terminators, common English abbreviations),
filtered (boilerplate, headings, fragments, mostly non-letters), ranked by TextRank on a word-overlap
similarity (Mihalcea & Tarau 2004: shared words / (log|s1| + log|s2|)), and the best ones are taken
until the target length is reached, then printed in their original order. A 2,000-block book is
summarised in seconds; a later LLM run can replace these nodes.
"""
from __future__ import annotations

import math
import re
from typing import Optional, Sequence

import numpy as np

from .language import is_han

_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "st", "sr", "jr", "prof", "rev", "capt", "col", "gen", "lt", "sgt", "messrs",
    "mme", "mlle", "esq", "no", "vol", "ch", "chap", "fig", "vs", "etc", "ie", "eg", "hon", "gov", "mt",
}
# A sentence ends at . ! ? … (followed by closing quotes/brackets and whitespace or the end) or at a
# CJK terminator (no space needed).
_SENTENCE = re.compile(
    r"\S.*?(?:[.!?…]+[\"'”’)\]»]*(?=\s|$)|[。！？]+[”’」』）]*|；(?=\s)|$)", re.S)
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*", re.UNICODE)
# Sentences containing these (lower-cased) are licence text, credits or navigation, not story.
_BOILERPLATE = ("project gutenberg", "gutenberg.org", "ebook", "e-book", "copyright", "all rights reserved",
                "www.", "http", "table of contents", "transcriber", "produced by", "古登堡", "版权")
_QUOTES = "\"'“‘「『«"
DIALOGUE_WEIGHT = 0.6
_LETTER = re.compile(r"[^\W\d_]")
_UPPER = re.compile(r"[A-ZÀ-Þ]")
_STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most my
myself no nor not now of off on once only or other our ours ourselves out over own said same she should
so some such than that the their theirs them themselves then there these they this those through to too
under until up upon very was we were what when where which while who whom why will with would you your
yours yourself yourselves one could would shall may might must
""".split())


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: paragraphs split on blank lines, hard line wraps joined, then split
    at terminators; an abbreviation ("Mr.") or an initial ("J.") does not end a sentence."""
    return [sentence for sentence, _ in _sentences(text)]


def _sentences(text: str) -> list[tuple[str, bool]]:
    """``(sentence, in a dialogue paragraph)``: a paragraph that opens with a quotation mark is speech."""
    out: list[tuple[str, bool]] = []
    for para in re.split(r"\n\s*\n", text):
        para = re.sub(r"\s*\n\s*", " ", para).strip()
        if not para:
            continue
        dialogue = para[:1] in _QUOTES
        pending = ""
        for m in _SENTENCE.finditer(para):
            piece = m.group(0).strip()
            if not piece:
                continue
            pending = f"{pending} {piece}" if pending else piece
            if pending.endswith(".") and m.end() < len(para):
                last = pending[pending.rfind(" ") + 1:-1].lstrip("\"'“‘(")
                if last.isalpha() and (last.lower() in _ABBREVIATIONS or len(last) == 1):
                    continue  # "Mr." or an initial: the sentence goes on
            out.append((pending, dialogue))
            pending = ""
        if pending:
            out.append((pending, dialogue))
    return out


def _words(sentence: str, language: str) -> list[str]:
    if language == "zh":
        han = [c for c in sentence if is_han(c)]
        return ["".join(han[i:i + 2]) for i in range(len(han) - 1)] or han
    return [w.lower() for w in _WORD.findall(sentence)]


def _length(sentence: str, language: str) -> int:
    if language == "zh":
        return sum(1 for c in sentence if c.isalpha())
    return len(_WORD.findall(sentence))


def _usable(sentence: str, language: str) -> bool:
    visible = len(sentence) - sum(sentence.count(ws) for ws in " \t\n\r\u3000")
    if visible <= 0:
        return False
    letters = len(_LETTER.findall(sentence))
    low = sentence.lower()
    if letters / visible < 0.6 or any(k in low for k in _BOILERPLATE):
        return False
    if language == "zh":
        return letters >= 6
    if len(_WORD.findall(sentence)) < 4:
        return False
    return len(_UPPER.findall(sentence)) < 0.6 * letters  # headings and shouted title lines are not summary material


def textrank(sentences: Sequence[str], language: str = "en", damping: float = 0.85,
             iterations: int = 40) -> np.ndarray:
    """TextRank scores (sum 1) for ``sentences`` with the word-overlap similarity."""
    n = len(sentences)
    if n == 0:
        return np.zeros(0)
    if n == 1:
        return np.ones(1)
    bags = [{w for w in _words(s, language) if w not in _STOPWORDS} for s in sentences]
    # only words shared by two sentences can add to an overlap: a small matrix instead of the vocabulary
    freq: dict[str, int] = {}
    for bag in bags:
        for w in bag:
            freq[w] = freq.get(w, 0) + 1
    vocab = {w: i for i, w in enumerate(w for w, f in freq.items() if f > 1)}
    incidence = np.zeros((n, max(1, len(vocab))), dtype=np.float32)
    for i, bag in enumerate(bags):
        cols = [vocab[w] for w in bag if w in vocab]
        incidence[i, cols] = 1.0
    overlap = incidence @ incidence.T
    np.fill_diagonal(overlap, 0.0)
    logs = np.array([math.log(len(bag) + 1.0) for bag in bags], dtype=np.float32)
    norm = logs[:, None] + logs[None, :]
    sim = np.divide(overlap, norm, out=np.zeros_like(overlap), where=norm > 0)
    out_weight = sim.sum(axis=1)
    transition = np.divide(sim, out_weight[:, None], out=np.full_like(sim, 1.0 / n), where=out_weight[:, None] > 0)
    scores = np.full(n, 1.0 / n, dtype=np.float32)
    for _ in range(iterations):
        new = (1 - damping) / n + damping * (transition.T @ scores)
        if np.abs(new - scores).sum() < 1e-6:
            scores = new
            break
        scores = new
    return scores / scores.sum()


def _truncate(sentence: str, limit: int, language: str) -> str:
    if language == "zh":
        kept, count = [], 0
        for c in sentence:
            if c.isalpha():
                count += 1
                if count > limit:
                    break
            kept.append(c)
        return "".join(kept).rstrip("，、；：,;: ") + "……"
    words = sentence.split()
    return " ".join(words[:limit]).rstrip(",;:") + " …"


def extractive_summary(texts: Sequence[str] | str, language: str = "en",
                       min_len: Optional[int] = None, max_len: Optional[int] = None) -> str:
    """About ``min_len``–``max_len`` words (Chinese: characters) of the most central sentences of
    ``texts``, in their original order. Defaults: 60–100 words, or 100–200 Chinese characters."""
    min_len = min_len if min_len is not None else (100 if language == "zh" else 60)
    max_len = max_len if max_len is not None else (200 if language == "zh" else 100)
    joined = texts if isinstance(texts, str) else "\n\n".join(texts)
    flagged = [(s, d) for s, d in _sentences(joined) if _usable(s, language)]
    sentences = [s for s, _ in flagged]
    if not sentences:
        # nothing sentence-like (a list, a table of contents): fall back to the first words
        raw = [s for s in split_sentences(joined) if any(c.isalpha() for c in s)]
        return _truncate(" ".join(raw), max_len, language) if raw else ""
    scores = textrank(sentences, language)
    # narration summarises better than a line of dialogue: prefer it unless the dialogue is far more central
    scores = scores * np.array([DIALOGUE_WEIGHT if d or s[:1] in _QUOTES else 1.0 for s, d in flagged])
    lengths = [_length(s, language) for s in sentences]
    chosen: list[int] = []
    seen: set[str] = set()
    total = 0
    for i in sorted(range(len(sentences)), key=lambda k: (-scores[k], k)):
        if total >= min_len:
            break
        key = " ".join(_words(sentences[i], language))
        if total + lengths[i] > max_len or key in seen:  # repeated lines (refrains, headers) once only
            continue
        seen.add(key)
        chosen.append(i)
        total += lengths[i]
    if not chosen:  # every sentence is longer than max_len: cut the most central one
        best = int(np.argmax(scores))
        return _truncate(sentences[best], max_len, language)
    sep = "" if language == "zh" else " "
    return sep.join(sentences[i] for i in sorted(chosen))
