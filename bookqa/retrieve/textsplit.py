"""The lexical tokenizer shared by the BM25 index and its queries.

Latin-script words are lower-cased, accent-folded words that may contain apostrophes ("don't"); a
possessive "'s" is dropped so "Dedlock's" matches "Dedlock". Chinese, Japanese and Korean are written
without spaces between words, so a run of such characters is split into overlapping character bigrams
("北京天安" -> 北京 京天 天安), which match words of any length without a dictionary. Documents also index
every CJK character on its own so that a one-character query still finds them; a query emits unigrams only
for a CJK character standing alone, so a multi-character query is scored by its bigrams.

Bump ``TOKENIZER_VERSION`` whenever the output for some text changes: it is part of the BM25 stage's
fingerprint, so stored indexes are rebuilt.
"""
from __future__ import annotations

import re
import unicodedata

from ..text import UNSPACED_SCRIPTS

TOKENIZER_VERSION = 1

_APOSTROPHES = "'\u2019\u02bc"  # ' ’ ʼ
# A CJK run, or a word: letters/digits (not CJK, not underscore) joined by single apostrophes.
_TOKEN_RE = re.compile(
    rf"(?P<cjk>[{UNSPACED_SCRIPTS}]+)"
    rf"|(?P<word>[^\W_{UNSPACED_SCRIPTS}]+(?:[{_APOSTROPHES}][^\W_{UNSPACED_SCRIPTS}]+)*)"
)

# A light list of the commonest English function words, used only when ``bm25_stopwords`` is on. Off by
# default: BM25's IDF already gives these words almost no weight, and keeping them lets a query made only
# of common words ("to be or not to be") still match.
ENGLISH_STOPWORDS = frozenset("""
a an and are as at be been but by for from had has have he her his i if in into is it its me my no not of
on or our she so than that the their them then there these they this those to was we were what when which
who will with you your
""".split())


def _fold(word: str) -> str:
    """Lower-case and strip accents (café -> cafe); NFKC first maps full-width forms to ASCII."""
    word = unicodedata.normalize("NFKC", word).lower()
    if word.isascii():
        return word
    decomposed = unicodedata.normalize("NFKD", word)
    return unicodedata.normalize("NFC", "".join(ch for ch in decomposed if not unicodedata.combining(ch)))


def _cjk_tokens(run: str, for_query: bool) -> list[str]:
    if len(run) == 1:
        return [run]
    bigrams = [run[i:i + 2] for i in range(len(run) - 1)]
    return bigrams if for_query else bigrams + list(run)


def tokenize(text: str, for_query: bool = False, stopwords: frozenset[str] = frozenset()) -> list[str]:
    """The BM25 tokens of ``text`` (documents: ``for_query=False``; queries: ``True``)."""
    text = unicodedata.normalize("NFKC", text)
    out: list[str] = []
    for match in _TOKEN_RE.finditer(text):
        cjk = match.group("cjk")
        if cjk is not None:
            out.extend(_cjk_tokens(cjk, for_query))
            continue
        word = _fold(match.group("word"))
        for apostrophe in _APOSTROPHES[1:]:
            word = word.replace(apostrophe, "'")
        if word.endswith("'s") and len(word) > 2:
            word = word[:-2]
        if word and word not in stopwords:
            out.append(word)
    return out


def stopword_set(enabled: bool) -> frozenset[str]:
    return ENGLISH_STOPWORDS if enabled else frozenset()
