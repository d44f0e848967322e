"""HotpotQA, distractor setting, in two formats:

- official JSON (``hotpot_dev_distractor_v1.json``): a list of ``{"_id", "question", "answer",
  "supporting_facts": [[title, sentence_id]], "context": [[title, [sentence, ...]]], "type", "level"}``;
  a paragraph is its sentences joined, gold = paragraphs whose title has a supporting fact (the
  sentence ids are kept in the evidence detail);
- IRCoT JSONL (StonyBrookNLP/ircot ``processed_data``): ``{"question_id", "question_text",
  "answers_objects": [{"spans": [...]}], "contexts": [{"id", "title", "paragraph_text", "is_supporting"}]}``.

Each question's paragraphs are its corpus, one chunk per paragraph ("title\\ntext"). ``require_answers=False``
accepts records without an answer (the head-detection seeds need only the paragraphs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import (Document, EvalData, Evidence, Paragraph, Question, iter_jsonl, malformed, need,
                   read_json_file, str_list)


def load_hotpotqa(path: Path | str, require_answers: bool = True) -> EvalData:
    path = Path(path)
    if path.suffix == ".jsonl":
        records = list(iter_jsonl(path))
        where_of = lambda n: f"line {n}"  # noqa: E731
    else:
        data = read_json_file(path)
        if not isinstance(data, list):
            raise malformed(path, "top level", f"expected a list of questions, found {type(data).__name__}")
        records = list(enumerate(data))
        where_of = lambda n: f"record {n}"  # noqa: E731
    documents, questions = [], []
    for n, row in records:
        where = where_of(n)
        if isinstance(row, dict) and "contexts" in row:
            doc, q = _ircot(row, path, where, require_answers)
        else:
            doc, q = _official(row, path, where, require_answers)
        documents.append(doc)
        questions.append(q)
    return EvalData("hotpotqa", str(path), documents, questions).check()


def _official(row: Any, path: Path, where: str, require_answers: bool) -> tuple[Document, Question]:
    qid = str(need(row, "_id", (str, int), path, where))
    question = need(row, "question", str, path, where)
    answers: list[str] = []
    if require_answers or "answer" in row:
        answers = [str(need(row, "answer", (str, int, float), path, where))]
    context = need(row, "context", list, path, where)
    facts = need(row, "supporting_facts", list, path, where)
    paragraphs = []
    for k, item in enumerate(context):
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], list)):
            raise malformed(path, f"{where}, context {k}", "expected [title, [sentence, ...]]")
        title, sentences = item
        paragraphs.append(Paragraph(key=str(k), title=title, text="".join(str(s) for s in sentences).strip()))
    support: dict[str, list[int]] = {}
    for k, fact in enumerate(facts):
        if not (isinstance(fact, list) and len(fact) == 2 and isinstance(fact[0], str)):
            raise malformed(path, f"{where}, supporting_facts {k}", "expected [title, sentence_id]")
        support.setdefault(fact[0], []).append(int(fact[1]))
    gold = [p.key for p in paragraphs if p.title in support]
    missing = [t for t in support if t not in {p.title for p in paragraphs}]
    if missing:
        raise malformed(path, where, f"supporting fact title(s) not in the context: {', '.join(missing)}")
    doc = Document(id=qid, title=qid, kind="paragraphs", paragraphs=paragraphs)
    q = Question(id=qid, doc_id=qid, question=question, answers=answers,
                 evidence=Evidence("paragraphs", gold, {"supporting_facts": support}),
                 category=row.get("type"), meta={"level": row.get("level")} if row.get("level") else {})
    return doc, q


def _ircot(row: Any, path: Path, where: str, require_answers: bool) -> tuple[Document, Question]:
    qid = str(need(row, "question_id", (str, int), path, where))
    question = need(row, "question_text", str, path, where)
    answers: list[str] = []
    objects = []
    if require_answers or "answers_objects" in row:
        objects = need(row, "answers_objects", list, path, where)
    for k, obj in enumerate(objects):
        answers += str_list(need(obj, "spans", list, path, f"{where}, answers_objects {k}"), path, where, "spans")
    if not answers and require_answers:
        raise malformed(path, where, "no answer span in 'answers_objects'")
    paragraphs, gold = [], []
    for k, c in enumerate(need(row, "contexts", list, path, where)):
        cwhere = f"{where}, contexts {k}"
        key = str(c.get("id", k)) if isinstance(c, dict) else str(k)
        paragraphs.append(Paragraph(key=key, title=need(c, "title", str, path, cwhere),
                                    text=need(c, "paragraph_text", str, path, cwhere)))
        if c.get("is_supporting"):
            gold.append(key)
    if len({p.key for p in paragraphs}) != len(paragraphs):
        raise malformed(path, where, "context ids repeat")
    doc = Document(id=qid, title=qid, kind="paragraphs", paragraphs=paragraphs)
    return doc, Question(id=qid, doc_id=qid, question=question, answers=answers, evidence=Evidence("paragraphs", gold))
