"""Gold evidence, from the dataset's own terms to the chunk ids of the ingested book.

- LoCoMo ``dia_ids``: the chunks whose meta lists one of the evidence utterances.
- MuSiQue / HotpotQA ``paragraphs``: one chunk per paragraph, so the supporting paragraphs' chunks.
- DetectiveQA ``markers``: paragraph N runs from its ``[N]`` marker to the next marker; the chunks
  overlapping the clue and answer paragraphs.
- ``spans``: the chunks overlapping the annotated character spans.
- NarrativeQA ``silver``: the rule of the head-detection seed builder (bookqa/lab/detection/seeds.py), applied to
  the book's own chunks: a chunk qualifies when its normalised text contains a normalised reference
  answer as a whole-word phrase (answers shorter than 2 characters, or made only of stop words, are
  ignored); among qualifying chunks the ones sharing the most distinct question content words win,
  at most 3, in book order; no qualifying chunk, or a best overlap of 0, means no gold.

A question with no gold chunk is counted and left out of recall (``Gold.chunk_ids`` empty).
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ...chunk import Chunk
from ..detection.seeds import STOP, _normalise, words
from .datasets.base import Document, Question

MAX_SILVER = 3
_MARKER = re.compile(r"(?m)^[ \t\u3000]*\[(\d+)\]")


@dataclass
class Gold:
    chunk_ids: list[int]
    kind: str  # "annotated" | "silver" | "none"
    missing: list[Any] = field(default_factory=list)  # evidence items that matched no chunk

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"chunk_ids": self.chunk_ids, "kind": self.kind}
        if self.missing:
            row["missing"] = self.missing
        return row


def gold_chunks(question: Question, chunks: Sequence[Chunk], book_text: str,
                document: Optional[Document] = None) -> Gold:
    ev = question.evidence
    if ev.kind == "none":
        return Gold([], "none")
    if ev.kind == "silver":
        return Gold(silver_evidence(question.question, question.answers, [c.text for c in chunks]), "silver")
    if ev.kind == "dia_ids":
        return _by_dia_ids(ev.items, chunks)
    if ev.kind == "paragraphs":
        return _by_paragraphs(ev.items, chunks, document)
    if ev.kind == "markers":
        spans = marker_spans(book_text)
        found = [spans[n] for n in ev.items if n in spans]
        missing = [n for n in ev.items if n not in spans]
        return Gold(chunks_overlapping(chunks, found), "annotated", missing)
    if ev.kind == "spans":
        offset = 0
        if document is not None and document.text and book_text != document.text:
            offset = max(book_text.find(document.text), 0)
        return Gold(chunks_overlapping(chunks, [(a + offset, b + offset) for a, b in ev.items]), "annotated")
    raise ValueError(f"unknown evidence kind {ev.kind!r}")


def _by_dia_ids(ids: Sequence[str], chunks: Sequence[Chunk]) -> Gold:
    where: dict[str, list[int]] = {}
    for c in chunks:
        for uid in c.meta.get("utterances") or []:
            where.setdefault(str(uid), []).append(c.id)
    out: list[int] = []
    missing = []
    for d in ids:
        if d not in where:
            missing.append(d)
        for cid in where.get(d, []):
            if cid not in out:
                out.append(cid)
    return Gold(sorted(out), "annotated", missing)


def _by_paragraphs(keys: Sequence[str], chunks: Sequence[Chunk], document: Optional[Document]) -> Gold:
    if document is None or document.paragraphs is None:
        raise ValueError("paragraph evidence needs the document's paragraphs")
    position = {p.key: i for i, p in enumerate(document.paragraphs)}
    if len(chunks) != len(document.paragraphs):
        raise ValueError(f"document {document.id} has {len(document.paragraphs)} paragraphs but {len(chunks)} chunks")
    ids = sorted({position[k] for k in keys if k in position})
    return Gold(ids, "annotated", [k for k in keys if k not in position])


def marker_spans(text: str) -> dict[int, tuple[int, int]]:
    """Paragraph number -> [start, end) of the text from its ``[N]`` line marker to the next marker
    (trailing whitespace excluded). A number marked twice keeps its first paragraph."""
    marks = [(m.start(), int(m.group(1))) for m in _MARKER.finditer(text)]
    spans: dict[int, tuple[int, int]] = {}
    for i, (start, n) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else len(text)
        while end > start and text[end - 1].isspace():
            end -= 1
        spans.setdefault(n, (start, end))
    return spans


def chunks_overlapping(chunks: Sequence[Chunk], spans: Sequence[tuple[int, int]]) -> list[int]:
    """Ids of the chunks that share at least one character with any span (chunks in text order)."""
    starts = [c.start for c in chunks]
    out: set[int] = set()
    for a, b in spans:
        if b <= a:
            continue
        i = max(bisect.bisect_right(starts, a) - 1, 0)
        while i < len(chunks) and chunks[i].start < b:
            if chunks[i].end > a:
                out.add(chunks[i].id)
            i += 1
    return sorted(out)


def silver_evidence(question: str, answers: Sequence[str], chunk_texts: Sequence[str],
                    max_chunks: int = MAX_SILVER) -> list[int]:
    """Indices of the silver evidence chunks for a free-form question (rule in the module docstring)."""
    normalised = {_normalise(a) for a in answers}
    normalised = {a for a in normalised if len(a) >= 2 and not all(w in STOP for w in a.split())}
    if not normalised:
        return []
    padded = [f" {_normalise(t)} " for t in chunk_texts]
    hits = [i for i, c in enumerate(padded) if any(f" {a} " in c for a in normalised)]
    if not hits:
        return []
    qwords = {w for w in words(question) if w not in STOP}
    overlap = {i: len(qwords & set(padded[i].split())) for i in hits}
    best = max(overlap.values())
    if best == 0:
        return []
    return [i for i in hits if overlap[i] == best][:max_chunks]
