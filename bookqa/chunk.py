"""The unit everything is indexed, ranked and cited by."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional


@dataclass
class Chunk:
    """A run of whole sentences (or whole utterances) of a book.

    ``start``/``end`` are character offsets into the book's stored text (``Book.text``), so
    ``book.text[chunk.start:chunk.end] == chunk.text`` always holds; citations resolve to these spans.
    """

    id: int  # position in the book, 0-based; stable for the same content and chunk settings
    start: int
    end: int
    tokens: int  # counted with the reranker's tokenizer
    text: str
    chapter: Optional[str] = None  # nearest heading at or before the chunk ("CHAPTER III", "Session 2")
    meta: dict[str, Any] = field(default_factory=dict)  # transcripts: {"utterances": [...], "session": ...}

    def to_json(self) -> dict[str, Any]:
        row = asdict(self)
        if not row["meta"]:
            row.pop("meta")
        return row

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "Chunk":
        return cls(id=row["id"], start=row["start"], end=row["end"], tokens=row["tokens"],
                   text=row["text"], chapter=row.get("chapter"), meta=row.get("meta") or {})

    @property
    def location(self) -> str:
        """Human-readable place in the book, for listings and citations."""
        where = f"chunk {self.id}"
        return f"{self.chapter} · {where}" if self.chapter else where
