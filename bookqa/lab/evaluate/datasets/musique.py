"""MuSiQue, official JSONL (github.com/StonyBrookNLP/musique): one question per line, ``{"id", "question",
"answer", "answer_aliases", "answerable", "paragraphs": [{"idx", "title", "paragraph_text",
"is_supporting"}], "question_decomposition": [...]}``.

Each question's own paragraphs are its corpus (one chunk per paragraph, "title\\ntext", as the QRRanker
paper does with the HippoRAG passages); gold = the ``is_supporting`` paragraphs. Questions marked
``"answerable": false`` (MuSiQue-Full) are skipped unless ``keep_unanswerable=True``, which keeps every
line so record numbers stay those of the file. ``require_answers=False`` accepts lines without an answer
(the head-detection seeds need only the paragraphs); their questions have no reference answers.
"""
from __future__ import annotations

from pathlib import Path

from .base import Document, EvalData, Evidence, Paragraph, Question, iter_jsonl, malformed, need, str_list


def load_musique(path: Path | str, keep_unanswerable: bool = False, require_answers: bool = True) -> EvalData:
    path = Path(path)
    documents, questions = [], []
    unanswerable = 0
    for n, row in iter_jsonl(path):
        where = f"line {n}"
        qid = str(need(row, "id", (str, int), path, where))
        question = need(row, "question", str, path, where)
        paras_raw = need(row, "paragraphs", list, path, where)
        if not paras_raw:
            raise malformed(path, where, "field 'paragraphs' is empty")
        if row.get("answerable") is False and not keep_unanswerable:
            unanswerable += 1
            continue
        paragraphs, gold = [], []
        for k, p in enumerate(paras_raw):
            pwhere = f"{where}, paragraph {k}"
            idx = need(p, "idx", int, path, pwhere) if "idx" in p else k
            title = need(p, "title", str, path, pwhere)
            text = need(p, "paragraph_text", str, path, pwhere)
            paragraphs.append(Paragraph(key=str(idx), title=title, text=text))
            if p.get("is_supporting"):
                gold.append(str(idx))
        answers: list[str] = []
        if require_answers or "answer" in row:
            answers = [str(need(row, "answer", (str, int, float), path, where))]
            answers += str_list(row.get("answer_aliases") or [], path, where, "answer_aliases")
        hops = qid.split("__", 1)[0] if "__" in qid else None
        documents.append(Document(id=qid, title=qid, kind="paragraphs", paragraphs=paragraphs))
        questions.append(Question(id=qid, doc_id=qid, question=question, answers=answers,
                                  evidence=Evidence("paragraphs", gold), category=hops))
    notes = [f"{unanswerable} unanswerable questions skipped"] if unanswerable else []
    return EvalData("musique", str(path), documents, questions, notes).check()
