"""Character classes and span helpers shared by ingestion, retrieval and citation handling.

The classes are regex character-class bodies (ranges without the brackets), so a caller can combine them
in its own pattern. They differ on purpose, each fitting its use:

- ``HAN_IDEOGRAPHS``: Chinese characters only. Deciding whether a text is Chinese counts these, so a
  Japanese text (kana) or a Korean one (Hangul) does not count as Chinese.
- ``UNSPACED_SCRIPTS``: every script written without spaces between words, Han plus kana, Bopomofo and
  Hangul; the BM25 tokenizer splits a run of these into character bigrams.
- ``EAST_ASIAN_WIDE``: the whole span of CJK blocks from the radicals to the unified ideographs (CJK
  punctuation and kana included), compatibility ideographs and half-/full-width forms; an ellipsis after
  one of these ends a sentence, after a Latin letter it does not.
"""
from __future__ import annotations

import re

HAN_IDEOGRAPHS = (
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # CJK compatibility ideographs
)

# Scripts written without spaces between words (plus Hangul, which Lucene's CJK analyzer also bigrams).
UNSPACED_SCRIPTS = (
    "\u1100-\u11ff"  # Hangul Jamo
    "\u2e80-\u2fdf"  # CJK radicals, Kangxi radicals
    "\u3005-\u3007"  # 々 〆 〇
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3100-\u312f"  # Bopomofo
    "\u3130-\u318f"  # Hangul compatibility Jamo
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    + HAN_IDEOGRAPHS
    + "\ua960-\ua97f"  # Hangul Jamo extended A
    "\uac00-\ud7af"  # Hangul syllables
    "\uff66-\uff9f"  # half-width Katakana
    "\U00020000-\U0002fa1f"  # CJK extensions B-F, compatibility supplement
)

EAST_ASIAN_WIDE = (
    "\u2e80-\u9fff"  # CJK radicals through unified ideographs (CJK punctuation, kana, extension A inside)
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff00-\uffef"  # half-width and full-width forms
)

HAN_IDEOGRAPH = re.compile(f"[{HAN_IDEOGRAPHS}]")


def strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """``(start, end)`` narrowed past the whitespace at both ends of ``text[start:end]`` (an empty span
    when it holds only whitespace)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
