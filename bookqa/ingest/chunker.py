"""``chunk_source``: a decoded text to chunks, by kind.

Novels: sentences of the body, a new chunk at every chapter heading, ``chapter`` = the heading the
chunk's content falls under. Transcripts: whole utterances, a new chunk at every session, ``chapter``
= "Session n" and ``meta`` = the utterance ids, session number and session time.
"""
from __future__ import annotations

import bisect
from typing import Any, Optional, Sequence

from ..chunk import Chunk
from ..errors import InputError
from ..progress import Progress, no_progress
from ..text import strip_span
from .headings import find_headings
from .packing import Units, make_chunks, pack
from .sentences import is_speaker_line, sentence_spans
from .transcript import parse_transcript

KINDS = ("novel", "transcript")


def chunk_source(text: str, kind: str, tokenizer, budget: int, body_span: Sequence[int],
                 utterances: Optional[list[dict[str, Any]]] = None,
                 progress: Progress = no_progress) -> list[Chunk]:
    """Chunks of at most ``budget`` tokens (counted with ``tokenizer``) with offsets into ``text``."""
    if budget < 1:
        raise ValueError(f"budget must be positive, got {budget}")
    start, end = _clamp(body_span, len(text))
    if kind == "novel":
        return chunk_novel(text, tokenizer, budget, start, end, progress)
    if kind == "transcript":
        if utterances is None:
            utterances = parse_transcript(text)
        return chunk_transcript(text, tokenizer, budget, utterances, start, end, progress)
    raise InputError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")


def _clamp(span: Sequence[int], n: int) -> tuple[int, int]:
    start, end = (int(span[0]), int(span[1])) if span else (0, n)
    start = min(max(start, 0), n)
    return start, min(max(end, start), n)


def chunk_novel(text: str, tokenizer, budget: int, start: int, end: int,
                progress: Progress = no_progress) -> list[Chunk]:
    headings = find_headings(text, start, end)
    heading_starts = [h.start for h in headings]
    heading_set = set(heading_starts)
    spans = sentence_spans(text, start, end, heading_starts,
                           progress=lambda done, total: progress("chunking: sentences", done, total))

    units = Units()
    previous_heading = False
    for k, (s, e) in enumerate(spans):
        is_heading = s in heading_set
        # a speaker line stays in the chunk of the speech after it
        speaker = (not is_heading and k + 1 < len(spans) and is_speaker_line(text[s:e])
                   and _same_paragraph(text, e, spans[k + 1][0]))
        # a run of headings ("BOOK ONE" then "CHAPTER I") opens one chunk, at its first heading
        units.add(s, e, brk=is_heading and not previous_heading, tag=is_heading, sticky=speaker)
        previous_heading = is_heading
    packed = pack(text, units, tokenizer, budget, progress)
    labels = [h.label for h in headings]

    def describe(a: int, b: int) -> tuple[Optional[str], dict[str, Any]]:
        # the chapter of the chunk's first non-heading unit (so "BOOK ONE / CHAPTER I / text..." is
        # labelled "CHAPTER I"); a chunk of headings only takes the last heading at or before it
        first = next((k for k in range(a, b) if not units.tags[k]), a)
        i = bisect.bisect_right(heading_starts, units.starts[first]) - 1
        return (labels[i] if i >= 0 else None), {}

    return make_chunks(text, units, packed, describe)


def _same_paragraph(text: str, end: int, next_start: int) -> bool:
    return text.count("\n", end, next_start) < 2


def chunk_transcript(text: str, tokenizer, budget: int, utterances: list[dict[str, Any]],
                     start: int, end: int, progress: Progress = no_progress) -> list[Chunk]:
    rows = sorted((u for u in utterances if start <= u["start"] < end), key=lambda u: u["start"])
    units = Units()
    previous_end = start
    previous_session = object()
    for u in rows:
        u_start, u_end = int(u["start"]), min(int(u["end"]), end)
        new_session = u.get("session") != previous_session and len(units) > 0
        # Text between utterances (a session header line) opens the chunk of the utterance after it,
        # so the first chunk of a session shows the session's date and nothing falls between chunks.
        h_start, h_end = strip_span(text, previous_end, u_start)
        if h_start < h_end:
            header = {"id": None, "session": u.get("session"), "session_time": u.get("session_time")}
            units.add(h_start, h_end, brk=new_session, tag=header, sticky=True)
            new_session = False
        units.add(u_start, u_end, brk=new_session, tag=u)
        previous_end, previous_session = u_end, u.get("session")
    if len(units):
        t_start, t_end = strip_span(text, previous_end, end)
        if t_start < t_end:  # trailing text without a speaker goes with the last utterance
            units.ends[-1] = t_end
    packed = pack(text, units, tokenizer, budget, progress)

    def describe(a: int, b: int) -> tuple[Optional[str], dict[str, Any]]:
        ids: list[str] = []
        for k in range(a, b):
            uid = units.tags[k]["id"]
            if uid is not None and (not ids or ids[-1] != uid):  # pieces of one utterance share its id
                ids.append(uid)
        first = units.tags[a]
        session = first.get("session")
        meta = {"utterances": ids, "session": session, "session_time": first.get("session_time")}
        return (f"Session {session}" if session is not None else None), meta

    return make_chunks(text, units, packed, describe)
