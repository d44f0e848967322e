"""Trimming the generator's passages to the sentences the QR heads attend to.

A passage of ~200 tokens usually holds the answer in one or two sentences; a small generator reads the rest
as noise. The reranker's heads already say where the question looks: ``QRRanker.token_attention`` gives
each character of each passage its share of their attention. Here every passage is cut into units
(sentences; a transcript's utterances whole), each unit is scored by the attention it draws
(a sum, as a chunk's score is), and the best units are kept, in the passage's own order, until ``keep`` of
its characters are; the rest become an ellipsis. Session headers of transcripts are always kept: they
carry the date that temporal questions ask about.

Only what the generator reads changes: the passage keeps its chunk id and span, and citations resolve and
are checked against the whole chunk.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Callable, Optional, Sequence

import numpy as np

from .answer import Evidence, split_sentences
from .errors import ConfigError

GAP = "…"
_LINE = re.compile(r"[^\n]+")


def check_keep(keep: float) -> float:
    keep = float(keep)
    if not 0.0 < keep <= 1.0:
        raise ConfigError(f"evidence_keep must be above 0 and at most 1 (the share of each passage kept), got {keep}")
    return keep


def passage_units(text: str) -> list[tuple[int, int]]:
    """Character spans of the units a passage is trimmed by: its lines, each cut into sentences unless it
    is a speaker's utterance or a session header (kept whole, so what is said keeps who said it), with the
    surrounding blanks left out."""
    return [(s, e) for s, e, _ in _units(text)]


def _units(text: str) -> list[tuple[int, int, bool]]:
    """:func:`passage_units` with, for each unit, whether it is a session header line."""
    from .ingest.transcript import speaker_line

    units = []
    for line in _LINE.finditer(text):
        header = _is_header(line.group())
        pieces = [(0, len(line.group()))] if header or speaker_line(line.group()) else split_sentences(line.group())
        for s, e in pieces:
            piece = line.group()[s:e]
            lead = len(piece) - len(piece.lstrip())
            trail = len(piece) - len(piece.rstrip())
            if e - s - lead - trail > 0:
                units.append((line.start() + s + lead, line.start() + e - trail, header))
    return units


def _is_header(piece: str) -> bool:
    """A transcript's session header ("Session 2 — 7:00 pm on 9 May, 2023"); a line of prose that happens to
    begin with "Session 4" ends as a sentence does."""
    from .ingest.transcript import session_header

    piece = piece.strip()
    return len(piece) <= 120 and not piece.endswith((".", "!", "?")) and session_header(piece) is not None


def focus_text(text: str, weights: np.ndarray, keep: float) -> str:
    """``text`` cut to the units that draw the most attention (``weights``: one float per character), best
    first, until at least ``keep`` of its characters are kept (the unit that crosses the share is kept
    whole); dropped runs become one ``…``. ``keep`` 1 returns the text."""
    keep = check_keep(keep)
    flagged = _units(text)
    if keep >= 1.0 or len(flagged) <= 1:
        return text
    if len(weights) != len(text):
        raise ValueError(f"{len(weights)} weights for a text of {len(text)} characters")
    units = [(s, e) for s, e, _ in flagged]
    mass = [float(weights[s:e].sum()) for s, e in units]
    headers = {i for i, (_, _, header) in enumerate(flagged) if header}
    budget = keep * sum(e - s for i, (s, e) in enumerate(units) if i not in headers)  # headers come free
    chosen = set(headers)
    kept = 0
    for i in sorted(range(len(units)), key=lambda i: (-mass[i], i)):
        if i in chosen:
            continue
        if kept >= budget and len(chosen) > len(headers):  # at least one unit besides the headers
            break
        chosen.add(i)
        kept += units[i][1] - units[i][0]
    pieces: list[str] = []
    previous = None
    for i in sorted(chosen):
        s, e = units[i]
        if previous is None:
            if i > 0:
                pieces.append(f"{GAP}\n" if "\n" in text[units[i - 1][1]:s] else f"{GAP} ")
        elif i == previous + 1:
            pieces.append(text[units[previous][1]:s])  # the original blank between neighbours
        else:
            between = text[units[previous][1]:s]
            pieces.append(f"\n{GAP}\n" if "\n" in between else f" {GAP} ")
        pieces.append(text[s:e])
        previous = i
    if previous is not None and previous < len(units) - 1:
        pieces.append(f"\n{GAP}" if "\n" in text[units[previous][1]:units[previous + 1][0]] else f" {GAP}")
    return "".join(pieces)


def attention_trimmer(ranker, question: str, keep: float) -> Optional[Callable[[Sequence[Evidence]], list[Evidence]]]:
    """The answer step's trim (``pipeline.answer_from(trim=...)``): one focus read-out of ``ranker`` (a
    QRRanker) over the chosen passages, then each cut with :func:`focus_text`. None when ``keep`` is 1."""
    if check_keep(keep) >= 1.0:
        return None

    def trim(evidence: Sequence[Evidence]) -> list[Evidence]:
        if not evidence:
            return list(evidence)
        weights = ranker.token_attention(question, [e.chunk.text for e in evidence])
        return [replace(e, shown=focus_text(e.chunk.text, w, keep)) for e, w in zip(evidence, weights)]

    return trim
