"""Project Gutenberg boilerplate: where the book itself starts and ends inside a PG file.

Only offsets are computed; the text is never cut, so every span stays an offset into the full text.
Markers vary across 30 years of PG files, e.g.::

    *** START OF THIS PROJECT GUTENBERG EBOOK MOBY DICK ***
    ***START OF THE PROJECT GUTENBERG EBOOK A SENTIMENTAL JOURNEY THROUGH
    FRANCE AND ITALY***                                   (marker wrapped over two lines)
    *END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*   (1990s files)
    End of the Project Gutenberg EBook of Middlemarch, by George Eliot
    End of Project Gutenberg’s Moby Dick; or The Whale, by Herman Melville
    *** END OF THIS PROJECT GUTENBERG EBOOK MIDDLEMARCH ***
"""
from __future__ import annotations

import re
from typing import Optional

from ..text import strip_span

_START = re.compile(
    r"^[ \t]*\*{2,}[ \t]*START[ \t]+OF[ \t]+(?:THE|THIS)[ \t]+PROJECT[ \t]+GUTENBERG.*$"
    r"|^[ \t]*\*END\*[ \t]*THE SMALL PRINT.*$"
    r"|^[ \t]*START[ \t]+OF[ \t]+(?:THE|THIS)[ \t]+PROJECT[ \t]+GUTENBERG[ \t]+E-?(?:BOOK|TEXT).*$",
    re.IGNORECASE | re.MULTILINE)
_END = re.compile(
    r"^[ \t]*\*{2,}[ \t]*END[ \t]+OF[ \t]+(?:THE[ \t]+|THIS[ \t]+)?PROJECT[ \t]+GUTENBERG"
    r"|^[ \t]*END[ \t]+OF[ \t]+(?:THE[ \t]+|THIS[ \t]+)?PROJECT[ \t]+GUTENBERG"
    r"|^[ \t]*\*END[ \t]+OF[ \t]+(?:THE[ \t]+|THIS[ \t]+)?PROJECT[ \t]+GUTENBERG",
    re.IGNORECASE | re.MULTILINE)
# Credits paragraph PG puts right after the START line.
_CREDITS = re.compile(
    r"(?:Produced[ \t]+by|E-?text[ \t]+(?:was[ \t]+)?(?:prepared|produced)[ \t]+by|"
    r"This[ \t]+e-?(?:text|book)[ \t]+was[ \t]+(?:prepared|produced)|Transcribed[ \t]+(?:from|by)|"
    r"Prepared[ \t]+by|Scanned[ \t]+by)\b",
    re.IGNORECASE)
_TITLE = re.compile(r"^Title:[ \t]*(\S.*)$", re.MULTILINE)
_BLANK_RUN = re.compile(r"\n[ \t]*\n")
# A START marker whose closing asterisks are missing on its line continues on the next lines.
_MARKER_CONTINUATION_LINES = 3


def _start_marker_end(text: str, match: re.Match) -> int:
    """End of the START marker: its line, or the line holding the closing ``***`` when it wrapped."""
    end = match.end()
    line = match.group(0).rstrip()
    if not line.lstrip().startswith("*") or line.endswith("*"):
        return end
    pos = end
    for _ in range(_MARKER_CONTINUATION_LINES):
        if pos >= len(text):
            break
        nxt = text.find("\n", pos + 1)
        nxt = len(text) if nxt < 0 else nxt
        following = text[pos + 1:nxt].strip()
        if not following:
            break
        pos = nxt
        if following.endswith("*"):
            return pos
    return end


def _skip_credits(text: str, pos: int, limit: int) -> int:
    """Past the credits paragraph that follows ``pos``, else ``pos``: one starting "Produced by ...",
    or a short one that PG repeats in the footer (e.g. a bare "An Anonymous Volunteer, and David
    Widger")."""
    i = pos
    while i < limit and text[i].isspace():
        i += 1
    gap = _BLANK_RUN.search(text, i, limit)
    if i >= limit or gap is None:
        return pos
    if _CREDITS.match(text, i):
        return gap.end()
    paragraph = text[i:gap.start()].strip()
    if len(paragraph) <= 300 and paragraph.count("\n") < 3 and f"\n{paragraph}\n" in text[limit - 1:]:
        return gap.end()
    return pos


def find_body(text: str) -> tuple[int, int]:
    """``[start, end)`` of the book without PG header, credits and footer; the whole text (trimmed
    of surrounding whitespace) when no marker is found."""
    start, end = 0, len(text)
    head = _START.search(text)
    if head is not None:
        start = _start_marker_end(text, head)
    tail = _END.search(text, start)
    if tail is not None:
        end = tail.start()
    if head is not None:
        start = _skip_credits(text, start, end)
    body = strip_span(text, start, end)
    if body[0] >= body[1]:  # markers but no book between them: keep everything rather than nothing
        return strip_span(text, 0, len(text))
    return body


def find_title(text: str, body_start: Optional[int] = None) -> Optional[str]:
    """The ``Title:`` line of a PG header (joined with an indented continuation line), or None."""
    limit = body_start if body_start else min(len(text), 20_000)
    match = _TITLE.search(text, 0, limit)
    if match is None:
        return None
    title = match.group(1).strip()
    nxt_start = match.end() + 1
    nxt_end = text.find("\n", nxt_start)
    nxt = text[nxt_start:nxt_end if nxt_end >= 0 else len(text)]
    if nxt[:1] in (" ", "\t") and nxt.strip() and ":" not in nxt:
        title = f"{title} {nxt.strip()}"
    title = re.sub(r"\s+", " ", title)
    return title[:200] or None
