"""Dialogue transcripts: plain ``Speaker: text`` files and LoCoMo JSON conversations.

Both end up as one text plus a list of utterances, each a dict::

    {"id": "D1:3", "speaker": "Caroline", "session": 1, "session_time": "1:56 pm on 8 May, 2023",
     "start": 120, "end": 187}        # char span of the utterance line(s) in the text

Plain text accepts session headers ("Session 2", "=== Session 3 (7:00 pm on 9 May 2023) ===",
"[Session 1 — 1:56 pm on 8 May, 2023]"), optional timestamps ("[10:32] Alice: hi", "10:32 Alice: hi")
and an optional id in brackets ("[D1:3] Alice: hi"); lines without a speaker continue the utterance
before them. LoCoMo JSON is rendered to the same layout, so a rendered conversation reads like a text
transcript and keeps its ``dia_id``s.
"""
from __future__ import annotations

import json
import re
from typing import Any, Optional

from ..errors import InputError

_TIME = r"\d{1,2}:\d{2}(?::\d{2})?(?:[ \t]?[apAP]\.?[mM]\.?)?"
_SPEAKER_LINE = re.compile(
    rf"^[ \t]*(?:\[{_TIME}\][ \t]*|\({_TIME}\)[ \t]*|{_TIME}[ \t]+(?:[-–—][ \t]+)?)?"
    r"(?:[\[(](?P<id>[A-Za-z]{1,8}\d*:\d+)[\])][ \t]*)?"
    r"(?P<speaker>[^\W\d_][^:：\n\[\]()]{0,39}?)[ \t]*(?::(?:[ \t]+|$)|：[ \t]*)(?P<text>.*)$")
_SESSION = re.compile(
    r"^[ \t]*[=#*\-\[(<]*[ \t]*session[ \t]*(?P<n>\d+)\b(?P<rest>.*?)[ \t=#*\-\])>]*$", re.IGNORECASE)
_MAX_SPEAKER_WORDS = 4
_DETECT_LINES = 400


def _speaker(match: re.Match) -> Optional[str]:
    name = match.group("speaker").strip()
    if not name or len(name.split()) > _MAX_SPEAKER_WORDS:
        return None
    return name


def session_header(line: str) -> Optional[tuple[int, Optional[str]]]:
    """``(session number, session time or None)`` when ``line`` is a session header."""
    m = _SESSION.match(line)
    if m is None:
        return None
    rest = m.group("rest").strip(" \t()[]<>—–-:,=#*")
    return int(m.group("n")), (rest or None)


def speaker_line(line: str) -> Optional[re.Match]:
    m = _SPEAKER_LINE.match(line)
    if m is None or _speaker(m) is None:
        return None
    return m


def looks_like_transcript(text: str) -> bool:
    """True when most non-blank lines (of the first few hundred) are ``Speaker: text`` lines."""
    speakers = other = 0
    for line in text.split("\n", _DETECT_LINES * 4)[: _DETECT_LINES * 4]:
        if not line.strip():
            continue
        if session_header(line):
            continue
        if speaker_line(line):
            speakers += 1
        else:
            other += 1
        if speakers + other >= _DETECT_LINES:
            break
    return speakers >= 2 and speakers >= 0.6 * (speakers + other)


def parse_transcript(text: str) -> list[dict[str, Any]]:
    """Utterances of a plain-text transcript (possibly empty when no line has a speaker)."""
    utterances: list[dict[str, Any]] = []
    session, session_time = 1, None
    numbers: dict[int, int] = {}
    current: Optional[dict[str, Any]] = None
    pos = 0
    for line in text.split("\n"):
        line_start, pos = pos, pos + len(line) + 1
        content = line.strip()
        if not content:
            continue
        lead = len(line) - len(line.lstrip())
        start, end = line_start + lead, line_start + lead + len(content)
        header = session_header(line)
        if header is not None:
            session, session_time = header
            current = None
            continue
        m = speaker_line(line)
        if m is None and current is not None:
            current["end"] = end  # a continuation line
            continue
        numbers[session] = numbers.get(session, 0) + 1
        current = {
            "id": (m.group("id") if m is not None else None) or f"S{session}:{numbers[session]}",
            "speaker": _speaker(m) if m is not None else None,
            "session": session,
            "session_time": session_time,
            "start": start,
            "end": end,
        }
        utterances.append(current)
    if not any(u["speaker"] for u in utterances):
        return []
    return utterances


# ---------------------------------------------------------------------------------------------
# LoCoMo
# ---------------------------------------------------------------------------------------------

_LOCOMO_SHAPE = ("a LoCoMo sample: an object with 'conversation' holding 'speaker_a', 'speaker_b' and "
                 "'session_N' lists of {'speaker', 'dia_id', 'text'} turns (or a list with one such sample)")


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(list(map(str, value))[:6])
        return f"an object with keys {keys}" if keys else "an empty object"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    kind = type(value).__name__
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _session_keys(conversation: dict[str, Any]) -> list[tuple[int, str]]:
    keys = []
    for key in conversation:
        m = re.fullmatch(r"session_(\d+)", str(key))
        if m:
            keys.append((int(m.group(1)), key))
    return sorted(keys)


def _looks_like_sample(value: Any) -> bool:
    return isinstance(value, dict) and (isinstance(value.get("conversation"), dict) or bool(_session_keys(value)))


def _one_line(value: str) -> str:
    return re.sub(r"\s*\n\s*", " ", value.replace("\r", "\n")).strip()


def render_locomo(data: Any, name: str) -> tuple[str, list[dict[str, Any]], Optional[str]]:
    """``(text, utterances, title)`` for one LoCoMo conversation; ``InputError`` for another shape."""
    if isinstance(data, list):
        if not data:
            raise InputError(f"{name} is an empty list; expected {_LOCOMO_SHAPE}")
        other = next((item for item in data if not _looks_like_sample(item)), None)
        if other is not None:  # [1, 2, 3] is a list of numbers, not of conversations
            raise InputError(f"{name}: expected {_LOCOMO_SHAPE}; found a list of {len(data)} items, one of them "
                             f"{_describe(other)}")
        if len(data) != 1:
            raise InputError(f"{name} holds {len(data)} conversations; one conversation per book is "
                             "expected (split the file into one sample per file)")
        data = data[0]
    if not isinstance(data, dict):
        raise InputError(f"{name}: expected {_LOCOMO_SHAPE}; found {_describe(data)}")
    sample_id = data.get("sample_id")
    conversation = data.get("conversation", data if _session_keys(data) else None)
    if not isinstance(conversation, dict) or not _session_keys(conversation):
        found = _describe(conversation) if "conversation" in data else _describe(data)
        raise InputError(f"{name}: expected {_LOCOMO_SHAPE}; found {found}")

    parts: list[str] = []
    utterances: list[dict[str, Any]] = []
    length = 0

    def emit(piece: str) -> int:
        nonlocal length
        parts.append(piece)
        length += len(piece)
        return length - len(piece)

    for number, key in _session_keys(conversation):
        turns = conversation[key]
        if not isinstance(turns, list):
            raise InputError(f"{name}: '{key}' should be a list of turns; found {_describe(turns)}")
        when = conversation.get(f"{key}_date_time")
        when = _one_line(when) if isinstance(when, str) and when.strip() else None
        if length:
            emit("\n")
        emit(f"Session {number} — {when}\n" if when else f"Session {number}\n")
        for i, turn in enumerate(turns, 1):
            if not (isinstance(turn, dict) and isinstance(turn.get("speaker"), str)
                    and isinstance(turn.get("text"), str)):
                raise InputError(f"{name}: turn {i} of '{key}' should be an object with string 'speaker' "
                                 f"and 'text'; found {_describe(turn)}")
            speaker = _one_line(turn["speaker"]) or "?"
            line = f"{speaker}: {_one_line(turn['text'])}"
            caption = turn.get("blip_caption")
            if isinstance(caption, str) and caption.strip():
                line += f" [shares a photo: {_one_line(caption)}]"
            start = emit(line)
            emit("\n")
            dia_id = turn.get("dia_id")
            utterances.append({
                "id": str(dia_id) if dia_id not in (None, "") else f"D{number}:{i}",
                "speaker": speaker,
                "session": number,
                "session_time": when,
                "start": start,
                "end": start + len(line),
            })
    if not utterances:
        raise InputError(f"{name}: the conversation has no turns")
    title = str(sample_id) if sample_id not in (None, "") else None
    return "".join(parts), utterances, title


def load_locomo(text: str, name: str) -> tuple[str, list[dict[str, Any]], Optional[str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    return render_locomo(data, name)
