"""Event-centric summaries of conversation sessions (transcripts; the QRRanker paper's event-centric summaries).

A session (or, for very long sessions, a window of it) is shown to the model as numbered utterance
lines; it answers with ``{"events": [{"summary", "class", "related_line_indices"}]}``. The answer is
validated strictly; line numbers are mapped back to utterance ids and to the chunks holding those
utterances, so an event summary expands to its evidence.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

EVENT_CLASSES = ("ANCHOR", "EPHEMERAL")
MAX_EVENTS = 3
MAX_LINES_PER_EVENT = 6  # the prompt asks for 2–4; a few more is tolerated, a wall of lines is not


@dataclass
class Utterance:
    id: str  # "D1:3"
    text: str  # the line as it appears in the text, usually "Speaker: words"
    session: Any = None  # session number (or label); utterances of one session are consecutive
    session_time: Optional[str] = None
    chunk_ids: list[int] = field(default_factory=list)  # chunks holding (a piece of) this utterance


class EventError(ValueError):
    """The model's answer is not valid event JSON (the message says why, for the retry prompt)."""


def _json_object(raw: str) -> Any:
    text = raw.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fence:
        text = fence.group(1).strip()
    start = text.find("{")
    if start < 0:
        raise EventError("no JSON object found")
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        raise EventError(f"invalid JSON: {exc.msg} at character {exc.pos}") from None
    return obj


def parse_events(raw: str, n_lines: int) -> list[dict[str, Any]]:
    """Validated events ``[{"summary", "class", "line_indices"}]`` from a model answer, or EventError.

    Checked: one JSON object with an "events" list of at least one event; each event an object with a
    non-empty string "summary", a "class" of ANCHOR or EPHEMERAL (any case), and "related_line_indices"
    a non-empty list of integers between 1 and ``n_lines``. More than three events keep the first three.
    """
    obj = _json_object(raw)
    if not isinstance(obj, dict) or not isinstance(obj.get("events"), list):
        raise EventError('expected an object with an "events" list')
    events = obj["events"]
    if not events:
        raise EventError('"events" is empty; give at least one event')
    out = []
    for i, ev in enumerate(events[:MAX_EVENTS], 1):
        if not isinstance(ev, dict):
            raise EventError(f"event {i} is not an object")
        summary = ev.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            raise EventError(f'event {i} has no "summary" text')
        cls = ev.get("class")
        if not isinstance(cls, str) or cls.strip().upper() not in EVENT_CLASSES:
            raise EventError(f'event {i} has "class" {cls!r}; use "ANCHOR" or "EPHEMERAL"')
        lines = ev.get("related_line_indices")
        if not isinstance(lines, list) or not lines:
            raise EventError(f'event {i} needs a non-empty "related_line_indices" list')
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in lines):
            raise EventError(f'event {i}: "related_line_indices" must be integers')
        bad = [x for x in lines if not 1 <= x <= n_lines]
        if bad:
            raise EventError(f"event {i}: line numbers {bad} are outside 1..{n_lines}")
        unique = sorted(set(lines))
        if len(unique) > MAX_LINES_PER_EVENT:
            raise EventError(f"event {i} lists {len(unique)} lines; give 2 to 4")
        out.append({"summary": re.sub(r"\s+", " ", summary).strip(), "class": cls.strip().upper(),
                    "line_indices": unique})
    return out


def attach_sources(events: list[dict[str, Any]], utterances: Sequence[Utterance]) -> list[dict[str, Any]]:
    """Add ``utterance_ids`` and ``chunk_ids`` (sorted, unique) to each event from its line numbers."""
    for ev in events:
        chosen = [utterances[i - 1] for i in ev["line_indices"]]
        ev["utterance_ids"] = [u.id for u in chosen]
        ev["chunk_ids"] = sorted({c for u in chosen for c in u.chunk_ids})
    return events


def session_windows(n_chunks: int, utterances: Sequence[Utterance], block: int) -> list[tuple[int, int, Any]]:
    """Level-0 ranges for a transcript: runs of consecutive chunks of one session, at most ``block``
    chunks each, as ``(start, end, session)``; together they tile ``0..n_chunks``.

    A chunk's session is that of the first utterance it holds; a chunk without utterances joins the
    session before it.
    """
    chunk_session: dict[int, Any] = {}
    for u in utterances:
        for c in u.chunk_ids:
            chunk_session.setdefault(c, u.session)
    windows: list[tuple[int, int, Any]] = []
    current: Any = None
    for c in range(n_chunks):
        session = chunk_session.get(c, current if c else None)
        if not windows or session != windows[-1][2] or c - windows[-1][0] >= block:
            windows.append((c, c + 1, session))
        else:
            s, _, sess = windows[-1]
            windows[-1] = (s, c + 1, sess)
        current = session
    return windows


def window_utterances(utterances: Sequence[Utterance], start: int, end: int) -> list[Utterance]:
    """Utterances whose first chunk lies in ``[start, end)`` (a split utterance belongs to one window)."""
    return [u for u in utterances if u.chunk_ids and start <= min(u.chunk_ids) < end]
