"""NarrativeQA: the official ``documents.csv`` + ``qaps.csv`` + a stories directory, or the JSONL form
found in the NarrativeQA folder of the data folder (``qaps_dev.jsonl`` whose rows name their ``story_file``).

Official files (github.com/google-deepmind/narrativeqa): ``documents.csv`` has ``document_id, set,
kind, ..., wiki_title``; ``qaps.csv`` has ``document_id, set, question, answer1, answer2, ...``; the
download script writes each story to ``tmp/<document_id>.content``. Stories are looked for in
``stories/`` and ``tmp/`` next to the CSVs (or ``stories_dir``) as ``<id>.content`` or ``<id>.txt``.
Question ids are ``<document_id>:<n>``, n counting that document's questions in file order (the same
convention as ``qaps_dev.jsonl``). NarrativeQA has no evidence annotation: gold is silver
(``evaluate.gold.silver_evidence``). A question whose references lost a "nan" (see ``_load_jsonl``) keeps
the list as written in ``meta["answers_as_written"]``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ....errors import InputError
from .base import Document, EvalData, Evidence, Question, iter_csv, iter_jsonl, malformed, need, str_list


def load_narrativeqa(path: Path | str, split: str = "test", stories_dir: Optional[Path | str] = None) -> EvalData:
    path = Path(path)
    if path.is_file() and path.suffix == ".jsonl":
        return _load_jsonl(path, stories_dir)
    root = path.parent if path.is_file() else path
    if not (root / "qaps.csv").is_file() and (root / "qaps_dev.jsonl").is_file():
        return _load_jsonl(root / "qaps_dev.jsonl", stories_dir)
    return _load_csv(root, split, stories_dir)


def _titles(root: Path) -> dict[str, str]:
    """wiki_title per document id from documents.csv when it lies next to the questions."""
    csv_path = root / "documents.csv"
    if not csv_path.is_file():
        return {}
    return {row["document_id"]: row.get("wiki_title") or row["document_id"]
            for _, row in iter_csv(csv_path, ("document_id",))}


def _story_path(doc_id: str, dirs: list[Path]) -> Optional[Path]:
    for d in dirs:
        for name in (f"{doc_id}.content", f"{doc_id}.txt"):
            if (d / name).is_file():
                return d / name
    return None


def _load_jsonl(path: Path, stories_dir: Optional[Path | str]) -> EvalData:
    titles = _titles(path.parent)
    docs: dict[str, Document] = {}
    questions: list[Question] = []
    skipped: dict[str, int] = {}
    missing: dict[str, int] = {}
    dropped_nan = 0
    for n, row in iter_jsonl(path):
        where = f"line {n}"
        qid = str(need(row, "qid", (str, int), path, where))
        doc_id = need(row, "document_id", str, path, where)
        question = need(row, "question", str, path, where)
        answers = str_list(need(row, "answers", list, path, where), path, where, "answers")
        if not answers:
            raise malformed(path, where, "field 'answers' is empty")
        # The JSONL copy went through pandas, which reads an answer "None" as a missing value and writes
        # it back as "nan"; such a reference is dropped when the question has another one.
        real = [a for a in answers if a.strip().lower() != "nan"]
        meta = {}
        if real and len(real) < len(answers):
            meta["answers_as_written"] = answers
            answers, dropped_nan = real, dropped_nan + 1
        if doc_id not in docs:
            story = None
            if row.get("story_available", True):
                if stories_dir is not None:
                    story = _story_path(doc_id, [Path(stories_dir)])
                elif row.get("story_file"):
                    candidate = path.parent / str(row["story_file"])
                    story = candidate if candidate.is_file() else None
                else:
                    story = _story_path(doc_id, [path.parent / "stories", path.parent / "tmp"])
            if story is None:
                skipped[doc_id] = skipped.get(doc_id, 0) + 1
                if row.get("story_available", True):
                    missing[doc_id] = missing.get(doc_id, 0) + 1
                continue
            docs[doc_id] = Document(id=doc_id, title=titles.get(doc_id, doc_id), kind="novel", text_path=story)
        elif doc_id in skipped:
            skipped[doc_id] += 1
            continue
        questions.append(Question(id=qid, doc_id=doc_id, question=question, answers=answers,
                                  evidence=Evidence("silver"), meta=meta))
    notes = [f"{sum(skipped.values())} questions on {len(skipped)} documents skipped: no story text"] if skipped else []
    if dropped_nan:
        notes.append(f"{dropped_nan} reference answers 'nan' (a pandas artifact of the source copy) dropped")
    return EvalData("narrativeqa", str(path), list(docs.values()), questions, notes, missing).check()


def _load_csv(root: Path, split: str, stories_dir: Optional[Path | str]) -> EvalData:
    docs_csv, qaps_csv = root / "documents.csv", root / "qaps.csv"
    for p in (docs_csv, qaps_csv):
        if not p.is_file():
            raise InputError(f"{p}: file not found (NarrativeQA needs documents.csv and qaps.csv, or qaps_dev.jsonl)")
    dirs = [Path(stories_dir)] if stories_dir is not None else [root / "stories", root / "tmp"]
    docs: dict[str, Document] = {}
    missing: set[str] = set()
    for _, row in iter_csv(docs_csv, ("document_id", "set")):
        if split and row["set"] != split:
            continue
        story = _story_path(row["document_id"], dirs)
        if story is None:
            missing.add(row["document_id"])
            continue
        docs[row["document_id"]] = Document(id=row["document_id"], title=row.get("wiki_title") or row["document_id"],
                                            kind="novel", text_path=story, meta={"kind": row.get("kind", "")})
    questions: list[Question] = []
    counter: dict[str, int] = {}
    skipped = 0
    missing_text: dict[str, int] = {}
    for line, row in iter_csv(qaps_csv, ("document_id", "set", "question", "answer1", "answer2")):
        if split and row["set"] != split:
            continue
        doc_id = row["document_id"]
        n = counter.get(doc_id, 0)
        counter[doc_id] = n + 1
        if doc_id not in docs:
            skipped += 1
            if doc_id in missing:
                missing_text[doc_id] = missing_text.get(doc_id, 0) + 1
            continue
        if not row["question"].strip():
            raise malformed(qaps_csv, f"line {line}", "empty question")
        answers = [a for a in (row["answer1"], row["answer2"]) if a.strip()]
        if not answers:
            raise malformed(qaps_csv, f"line {line}", "no reference answer")
        questions.append(Question(id=f"{doc_id}:{n}", doc_id=doc_id, question=row["question"], answers=answers,
                                  evidence=Evidence("silver")))
    notes = []
    if missing:
        notes.append(f"{len(missing)} {split} documents have no story file in {', '.join(map(str, dirs))}")
    if skipped:
        notes.append(f"{skipped} questions skipped: their document has no story text")
    used = {q.doc_id for q in questions}
    return EvalData("narrativeqa", str(root), [d for d in docs.values() if d.id in used], questions, notes,
                    missing_text).check()
