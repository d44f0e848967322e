"""Sentence spans: paragraphs, then NLTK Punkt (English parameters shipped in bookqa/data), then CJK rules.

Order matters: paragraphs are split on blank lines first and a heading line or a play's speaker line
("HAMLET", "BERNARDO.") is kept on its own, so neither glues onto the sentence after it; Punkt then
splits each block; finally unspaced Chinese/Japanese is split after 。！？… runs plus any closing
quotes/brackets, which Punkt (trained on English periods) never does. Every span is an offset into the
full text and excludes surrounding whitespace.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from ..text import EAST_ASIAN_WIDE, strip_span

PUNKT_DIR = Path(__file__).resolve().parent.parent / "data" / "punkt_tab" / "english"

_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n")
# 。！？ always end a sentence; … only after a CJK character (English "Wait… what" stays whole).
# Then any run of further terminators/、 and closing quotes or brackets belongs to the same sentence.
_CJK_END = re.compile(
    rf"(?:[。！？]|(?<=[{EAST_ASIAN_WIDE}])…)[。！？…、!?]*[”’」』）》〕】\)]*")
_CJK_TRIGGER = re.compile(r"[。！？…]")
_INDENT = ("\u3000", "  ", "\t")
_PROGRESS_EVERY = 500


class _Directory:
    """The tiny path interface ``nltk.tokenize.punkt.load_punkt_params`` reads through (``join`` then
    ``open``). Passing our own directory this way loads the vendored files directly: nltk's
    ``FileSystemPathPointer`` refuses paths outside ``nltk.data.path`` and nltk must never try to
    download here."""

    def __init__(self, path: Path):
        self.path = path

    def join(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)


@lru_cache(maxsize=1)
def punkt_tokenizer():
    from nltk.tokenize.punkt import PunktSentenceTokenizer, load_punkt_params

    return PunktSentenceTokenizer(load_punkt_params(_Directory(PUNKT_DIR)))


def is_speaker_line(line: str) -> bool:
    """A play's speaker line ("HAMLET", "FIRST CLOWN.", "LADY MACBETH") or another short all-capitals
    line: it names who speaks, so it must not join the speech that follows."""
    if not line or len(line) > 40 or len(line.split()) > 5:
        return False
    letters = [c for c in line if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def _blocks(text: str, start: int, end: int, standalone: set[int]) -> Iterable[tuple[int, int, bool]]:
    """Split one paragraph ``text[start:end]`` into runs of lines ``(start, end, whole)``; a standalone
    line (heading or speaker) is a block of its own, and an indented line starts a new block. ``whole``
    marks a heading line, which is one sentence however many periods it has ("CHAPTER 1. Loomings.")."""
    if "\n" not in text[start:end]:
        s, e = strip_span(text, start, end)
        yield s, e, s in standalone
        return
    block_start = start
    pos = start
    prev_indented = True
    while pos < end:
        nl = text.find("\n", pos, end)
        line_end = end if nl < 0 else nl
        line = text[pos:line_end]
        content = line.strip()
        heading = (pos + len(line) - len(line.lstrip())) in standalone
        own = heading or (line_end < end and is_speaker_line(content))
        indented = line.startswith(_INDENT)
        # An indented line after an unindented one (or a CJK full-width indent) opens a paragraph in
        # texts without blank lines; evenly indented verse or quotations stay one block.
        new_paragraph = content and (line.startswith("\u3000") or (indented and not prev_indented))
        prev_indented = indented
        if own or (pos > block_start and new_paragraph):
            if pos > block_start:
                yield block_start, pos, False
            block_start = pos
            if own:
                yield pos, line_end, heading
                block_start = line_end
        pos = line_end + 1
    if block_start < end:
        yield block_start, end, False


def _cjk_split(text: str, start: int, end: int) -> Iterable[tuple[int, int]]:
    if _CJK_TRIGGER.search(text, start, end) is None:
        yield start, end
        return
    piece = start
    for m in _CJK_END.finditer(text, start, end):
        if m.end() < end and text[m.end():end].strip():
            yield piece, m.end()
            piece = m.end()
    yield piece, end


def paragraph_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans = []
    pos = start
    for m in _PARAGRAPH_BREAK.finditer(text, start, end):
        if m.start() > pos:
            spans.append((pos, m.start()))
        pos = m.end()
    if pos < end:
        spans.append((pos, end))
    return spans


def sentence_spans(text: str, start: int = 0, end: int | None = None,
                   standalone_starts: Sequence[int] = (),
                   progress: Optional[Callable[[int, int], None]] = None) -> list[tuple[int, int]]:
    """Sentence ``(start, end)`` offsets into ``text`` covering ``text[start:end]`` in order.

    ``standalone_starts``: offsets of lines that are sentences of their own (heading lines).
    ``progress(done, total)`` is called every few hundred paragraphs.
    """
    end = len(text) if end is None else end
    punkt = punkt_tokenizer()
    standalone = set(standalone_starts)
    out: list[tuple[int, int]] = []
    paragraphs = paragraph_spans(text, start, end)
    for i, (p_start, p_end) in enumerate(paragraphs):
        if progress is not None and i % _PROGRESS_EVERY == 0:
            progress(i, len(paragraphs))
        for b_start, b_end, whole in _blocks(text, p_start, p_end, standalone):
            b_start, b_end = strip_span(text, b_start, b_end)
            if b_start >= b_end:
                continue
            if whole:
                out.append((b_start, b_end))
                continue
            block = text[b_start:b_end]
            for s, e in punkt.span_tokenize(block):
                for cs, ce in _cjk_split(text, b_start + s, b_start + e):
                    cs, ce = strip_span(text, cs, ce)
                    if cs < ce:
                        out.append((cs, ce))
    if progress is not None:
        progress(len(paragraphs), len(paragraphs))
    return out
