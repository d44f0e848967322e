"""Which language a text is in, as far as the summarizer cares: CJK-dominant ("zh") or not ("en").

Chinese text gets Chinese prompts and Chinese summaries; everything else gets English prompts (the
model is asked to keep names as written). Only the Han script decides, so a Chinese book with an
English Project Gutenberg header is still Chinese.
"""
from __future__ import annotations

from typing import Iterable

# CJK Unified Ideographs, Extension A, Compatibility Ideographs.
_HAN_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF))
ZH_THRESHOLD = 0.3  # share of Han characters among letters above which a text counts as Chinese


def is_han(ch: str) -> bool:
    o = ord(ch)
    return any(lo <= o <= hi for lo, hi in _HAN_RANGES)


def han_ratio(text: str) -> float:
    """Share of Han characters among the letters of ``text`` (0.0 when there are no letters)."""
    letters = han = 0
    for ch in text:
        if ch.isalpha():
            letters += 1
            if is_han(ch):
                han += 1
    return han / letters if letters else 0.0


def detect_language(texts: Iterable[str] | str, sample_chars: int = 200_000) -> str:
    """"zh" when the text is CJK-dominant, else "en".

    Long inputs are sampled (20 evenly spaced windows of ``sample_chars`` in all) to stay cheap.
    """
    text = texts if isinstance(texts, str) else "\n".join(texts)
    if len(text) > sample_chars:
        window = sample_chars // 20
        stride = len(text) // 20
        text = "".join(text[i * stride:i * stride + window] for i in range(20))
    return "zh" if han_ratio(text) > ZH_THRESHOLD else "en"
