"""The common in-memory form every dataset loader produces, and the strict readers they share.

A loader turns a dataset's official files into an :class:`EvalData`: documents (what gets ingested)
and questions (what gets asked), with gold evidence kept in the dataset's own terms; ``evaluate.gold``
maps that evidence to chunk ids once the document has been ingested.

Every reader here fails with an ``InputError`` that names the file, the record (line number for JSONL
and CSV, index for JSON arrays) and what is wrong, so a malformed download is fixed in one look.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from ....errors import InputError

# Kinds of documents: "novel" and "transcript" are ingested through bookqa's own ingestion;
# "paragraphs" (MuSiQue, HotpotQA) is a per-question corpus stored as one chunk per paragraph.
DOC_KINDS = ("novel", "transcript", "paragraphs")

# Kinds of gold evidence, in the dataset's own terms (``Evidence.items``):
#   dia_ids     LoCoMo dialogue-turn ids ("D1:3")
#   paragraphs  keys of ``Document.paragraphs`` (MuSiQue idx, HotpotQA title/position)
#   markers     DetectiveQA paragraph numbers N of the ``[N]`` markers in the novel text
#   spans       [start, end) character spans into ``Document.text``
#   silver      none annotated: NarrativeQA's silver rule is applied to the chunks (evaluate.gold)
#   none        no evidence (QuALITY): the question counts for answers only
EVIDENCE_KINDS = ("dia_ids", "paragraphs", "markers", "spans", "silver", "none")


@dataclass
class Paragraph:
    key: str  # the dataset's id for it (MuSiQue idx, HotpotQA title) as a string
    title: str
    text: str

    @property
    def passage(self) -> str:
        """What is indexed and shown to the reranker: "title\\ntext" (as HippoRAG's passages)."""
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass
class Document:
    """One thing to ingest. Exactly one of ``text`` / ``text_path`` (novels), ``transcript`` (LoCoMo
    sample object) or ``paragraphs`` is set."""

    id: str
    title: str
    kind: str  # one of DOC_KINDS
    text: Optional[str] = None
    text_path: Optional[Path] = None  # read lazily: a few hundred novels would not fit in memory
    transcript: Optional[dict[str, Any]] = None
    paragraphs: Optional[list[Paragraph]] = None
    lang: str = "en"
    meta: dict[str, Any] = field(default_factory=dict)

    def get_text(self) -> str:
        if self.text is not None:
            return self.text
        if self.text_path is None:
            raise InputError(f"document {self.id} has no text")
        try:
            return self.text_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise InputError(f"cannot read the text of document {self.id} ({self.text_path}): {exc}") from None


@dataclass
class Evidence:
    kind: str  # one of EVIDENCE_KINDS
    items: list[Any] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)  # extra dataset terms (HotpotQA sentence ids, ...)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"kind": self.kind, "items": self.items}
        if self.detail:
            row["detail"] = self.detail
        return row


@dataclass
class Question:
    id: str
    doc_id: str
    question: str
    answers: list[str]  # reference answers (free form); for multiple choice the gold option's text
    evidence: Evidence
    options: Optional[dict[str, str]] = None  # multiple choice: letter -> option text
    answer_letter: Optional[str] = None  # multiple choice: the gold letter
    category: Optional[Any] = None  # LoCoMo category number, MuSiQue hop count, ...
    subset: Optional[str] = None  # reported separately when a dataset has several (DetectiveQA en/zh, LoCoMo category)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_multiple_choice(self) -> bool:
        return bool(self.options)


@dataclass
class EvalData:
    name: str  # dataset name
    source: str  # the path it was read from
    documents: list[Document]
    questions: list[Question]
    notes: list[str] = field(default_factory=list)  # what was skipped and why, for the report
    # document id -> number of its questions left out because the document's text file is absent (the
    # document is named and said to be available, so a builder that counts documents still counts it)
    missing_text: dict[str, int] = field(default_factory=dict)

    def document(self, doc_id: str) -> Document:
        for d in self.documents:
            if d.id == doc_id:
                return d
        raise InputError(f"{self.name}: no document {doc_id!r}")

    def questions_of(self, doc_id: str) -> list[Question]:
        return [q for q in self.questions if q.doc_id == doc_id]

    def check(self) -> "EvalData":
        """Every question names a loaded document; ids are unique."""
        doc_ids = {d.id for d in self.documents}
        if len(doc_ids) != len(self.documents):
            raise InputError(f"{self.source}: document ids repeat")
        seen: set[str] = set()
        for q in self.questions:
            if q.doc_id not in doc_ids:
                raise InputError(f"{self.source}: question {q.id} refers to unknown document {q.doc_id!r}")
            if q.id in seen:
                raise InputError(f"{self.source}: question id {q.id!r} repeats")
            seen.add(q.id)
        return self


# ---------------------------------------------------------------------------------------------
# strict readers
# ---------------------------------------------------------------------------------------------

def malformed(path: Path | str, where: str, what: str) -> InputError:
    return InputError(f"{path}, {where}: {what}")


def _open_check(path: Path | str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    return path


def iter_jsonl(path: Path | str) -> Iterator[tuple[int, Any]]:
    """``(line number, object)`` for each non-blank line; a line that is not JSON is named."""
    path = _open_check(path)
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                raise malformed(path, f"line {n}", f"not valid JSON ({exc.msg}, column {exc.colno})") from None


def read_json_file(path: Path | str) -> Any:
    path = _open_check(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 ({exc.reason})") from None


def iter_csv(path: Path | str, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of a CSV with a header holding at least ``required`` columns."""
    path = _open_check(path)
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise malformed(path, "header", f"missing column(s) {', '.join(missing)}")
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                raise malformed(path, f"line {reader.line_num}", "wrong number of fields")
            yield reader.line_num, row


def need(record: Any, key: str, kind: type | tuple[type, ...], path: Path | str, where: str) -> Any:
    """``record[key]``, checked to be of ``kind``; else an error naming file, record and field."""
    if not isinstance(record, dict):
        raise malformed(path, where, f"expected an object, found {type(record).__name__}")
    if key not in record:
        raise malformed(path, where, f"missing field {key!r}")
    value = record[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise malformed(path, where, f"field {key!r} should be {names}, found {type(value).__name__}")
    return value


def str_list(value: Any, path: Path | str, where: str, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise malformed(path, where, f"field {key!r} should be a list of strings")
    return [str(v) for v in value]


def letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]
