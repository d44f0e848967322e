"""Cleaning model output and recognising garbage.

Small models sometimes answer with nothing, with symbols, with one phrase repeated until the token
limit, or in the wrong language. ``problem`` names what is wrong (None when the text is usable), so the
caller can retry once and then fall back to an extractive summary.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Optional

from .language import han_ratio

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*", re.UNICODE)
# A first line that only announces the answer: "Here is the summary:", "**Detailed Narrative Summary**",
# "Summary:", "摘要：" — dropped, as is markdown emphasis around the whole answer.
_HEADER_LINE = re.compile(
    r"^\s*(?:#+\s*)?(?:\*\*|__)?\s*(?:here\s+is|here's|below\s+is|sure|certainly|"
    r"(?:detailed\s+)?(?:narrative\s+)?summary|part\s+\d+\s*/\s*\d+|摘要|叙事摘要|以下是)[^\n]{0,80}?"
    r"(?:[:：]\s*(?:\*\*|__)?\s*$|(?:\*\*|__)\s*$)", re.IGNORECASE)
_INLINE_LABEL = re.compile(
    r"^\s*(?:\*\*|__)?\s*(?:detailed\s+narrative\s+summary|summary|摘要)\s*[:：]\s*(?:\*\*|__)?\s*", re.IGNORECASE)
# Instructions echoed back as an opening ("In the third person, past tense, ...").
_ECHOED_INSTRUCTION = re.compile(
    r"^(?:(?:written\s+|told\s+)?in\s+(?:the\s+)?(?:third\s+person|past\s+tense)"
    r"(?:\s*(?:,|and)\s*(?:in\s+)?(?:the\s+)?(?:third\s+person|past\s+tense))?)\s*[,:]\s*", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?。！？…][\"'”’」』)）\]]*")


def clean_summary(text: str) -> str:
    """Strip announcement lines, labels, markdown emphasis and quotes; join lines; drop a final
    sentence cut off by the token limit (when an earlier sentence ended properly)."""
    lines = [ln for ln in text.strip().splitlines()]
    while lines and (not lines[0].strip() or _HEADER_LINE.match(lines[0])):
        lines.pop(0)
    out = " ".join(ln.strip() for ln in lines if ln.strip())
    out = _INLINE_LABEL.sub("", out)
    out = re.sub(r"(\*\*|__)", "", out)
    out = re.sub(r"\s+", " ", out).strip()
    stripped = _ECHOED_INSTRUCTION.sub("", out)
    if stripped != out and stripped:
        out = stripped[0].upper() + stripped[1:]
    if len(out) >= 2 and out[0] in "\"“'" and out[-1] in "\"”'" and out.count(out[0]) <= 2:
        out = out[1:-1].strip()
    ends = list(_SENTENCE_END.finditer(out))
    if ends and ends[-1].end() < len(out) and ends[-1].end() > len(out) // 3:
        out = out[:ends[-1].end()]
    return out


def trim_to(text: str, max_units: int, language: str) -> str:
    """``text`` cut after the last sentence that ends within ``max_units`` words (Chinese: characters);
    unchanged when it is short enough or no sentence ends in time (then nothing sensible can be cut)."""
    if length(text, language) <= max_units:
        return text
    best = None
    for m in _SENTENCE_END.finditer(text):
        if length(text[:m.end()], language) > max_units:
            break
        best = m.end()
    return text[:best].strip() if best else text


def units(text: str, language: str) -> list[str]:
    """Words (or, for Chinese, characters) — the unit that lengths and repetition are measured in."""
    if language == "zh":
        return [c for c in text if c.isalpha()]
    return [w.lower() for w in _WORD.findall(text)]


def length(text: str, language: str) -> int:
    return len(units(text, language))


def problem(text: str, language: str, min_units: Optional[int] = None) -> Optional[str]:
    """Why ``text`` is not a usable summary in ``language``, or None when it is."""
    stripped = text.strip()
    if not stripped:
        return "empty output"
    visible = [c for c in stripped if not c.isspace()]
    letters = sum(c.isalpha() for c in visible)
    if letters / len(visible) < 0.6:
        return "mostly non-letters"
    han = han_ratio(stripped)
    if language == "zh" and han < 0.5:
        return "not in Chinese"
    if language != "zh" and han > 0.2:
        return "not in the language of the text"
    toks = units(stripped, language)
    need = min_units if min_units is not None else (12 if language == "zh" else 6)
    if len(toks) < need:
        return f"too short ({len(toks)} {'characters' if language == 'zh' else 'words'})"
    n = 4 if language == "zh" else 3
    grams = [tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)]
    if len(grams) >= 12:
        distinct = len(set(grams)) / len(grams)
        top = Counter(grams).most_common(1)[0][1]
        if distinct < 0.5 or top >= max(5, len(grams) // 5):
            return "repeats itself"
    return None
