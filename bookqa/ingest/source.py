"""``prepare_source``: a file on disk to a checked, decoded ``Source``, before anything is stored."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import InputError
from ..text import strip_span
from .chunker import KINDS
from .gutenberg import find_body, find_title
from .reader import read_text
from .transcript import load_locomo, looks_like_transcript, parse_transcript


@dataclass
class Source:
    text: str  # decoded text, newlines normalised to "\n"; every span refers to it
    kind: str  # "novel" | "transcript"
    encoding: str  # detected: "utf-8", "utf-8-sig", "utf-16", "cp1252", "gb18030", "cp932", ...
    body_span: tuple[int, int]  # [start, end) of the text without Project Gutenberg header/footer
    title: Optional[str]  # a guess (Gutenberg "Title:" line, LoCoMo sample id) or None
    utterances: Optional[list[dict[str, Any]]]  # transcripts only; see bookqa.ingest.transcript
    notes: list[str] = field(default_factory=list)  # what reading changed (e.g. dropped NUL bytes), one line each


def _check_kind(kind: Optional[str]) -> Optional[str]:
    if kind is None:
        return None
    clean = str(kind).strip().lower()
    if clean in ("", "auto"):
        return None
    if clean not in KINDS:
        raise InputError(f"unknown kind {kind!r}: expected {' or '.join(KINDS)} (or leave it unset to detect it)")
    return clean


def prepare_source(path: Path | str, kind: Optional[str] = None, max_bytes: int = 50 * 1024 * 1024) -> Source:
    """Read, decode and inspect ``path``; ``InputError`` with a one-line message for unusable input.

    ``kind`` None detects it: a ``.json`` file is a LoCoMo transcript, a text whose non-blank lines are
    mostly ``Speaker: text`` is a transcript, anything else a novel.
    """
    path = Path(path)
    kind = _check_kind(kind)
    decoded = read_text(path, max_bytes)
    text, encoding, notes = decoded.text, decoded.encoding, decoded.notes
    is_json = path.suffix.lower() == ".json"
    if kind is None:
        kind = "transcript" if is_json or looks_like_transcript(text) else "novel"
    if kind == "transcript":
        if is_json or text.lstrip().startswith(("{", "[")):
            try:
                rendered, utterances, title = load_locomo(text, str(path))
            except InputError:
                if is_json:
                    raise
            else:
                return Source(rendered, kind, encoding, (0, len(rendered)), title, utterances, notes)
        utterances = parse_transcript(text)
        if not utterances:
            raise InputError(f"{path}: no 'Speaker: text' lines found; a transcript needs lines like "
                             "'Alice: hello' (or use kind novel)")
        return Source(text, kind, encoding, strip_span(text, 0, len(text)), None, utterances, notes)
    body = find_body(text)
    return Source(text, kind, encoding, body, find_title(text, body[0]), None, notes)
