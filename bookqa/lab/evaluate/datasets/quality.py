"""QuALITY as distributed by L-Eval (``LEval-data/Closed-ended-tasks/quality.jsonl``): one story per line,
``{"input": story, "instructions": ["question\\n\\n (A) ...\\n (B) ...", ...], "outputs": ["(B) ...", ...],
"source", "evaluation"}``. Four-option multiple choice; no evidence annotation, so its questions count
for answer accuracy only.
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import Document, EvalData, Evidence, Question, iter_jsonl, malformed, need, str_list

_OPTION = re.compile(r"^[ \t]*\(([A-Z])\)[ \t]*", re.MULTILINE)
_GOLD = re.compile(r"^\s*\(?([A-Z])\)")


def parse_instruction(text: str) -> tuple[str, dict[str, str]]:
    """``(question, {letter: option})`` from "question\\n\\n (A) ...\\n (B) ..."."""
    marks = list(_OPTION.finditer(text))
    if not marks:
        return text.strip(), {}
    question = text[:marks[0].start()].strip()
    options = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        options[m.group(1)] = " ".join(text[m.end():end].split())
    return question, options


def _title(story: str) -> str:
    for line in story.splitlines():
        words = " ".join(line.split())
        if words:
            return words[:80]
    return "story"


def load_quality(path: Path | str) -> EvalData:
    path = Path(path)
    documents, questions = [], []
    for n, row in iter_jsonl(path):
        where = f"line {n}"
        story = need(row, "input", str, path, where)
        if not story.strip():
            raise malformed(path, where, "field 'input' (the story) is empty")
        instructions = str_list(need(row, "instructions", list, path, where), path, where, "instructions")
        outputs = str_list(need(row, "outputs", list, path, where), path, where, "outputs")
        if len(instructions) != len(outputs):
            raise malformed(path, where, f"{len(instructions)} instructions but {len(outputs)} outputs")
        doc_id = f"quality-{n}"
        documents.append(Document(id=doc_id, title=_title(story), kind="novel", text=story))
        for j, (inst, out) in enumerate(zip(instructions, outputs)):
            qwhere = f"{where}, question {j}"
            question, options = parse_instruction(inst)
            if len(options) < 2:
                raise malformed(path, qwhere, "no '(A) ... (B) ...' options in the instruction")
            m = _GOLD.match(out)
            if not m or m.group(1) not in options:
                raise malformed(path, qwhere, f"output {out[:40]!r} does not start with one of the options' letters")
            letter = m.group(1)
            questions.append(Question(id=f"{doc_id}:{j}", doc_id=doc_id, question=question,
                                      answers=[options[letter]], evidence=Evidence("none"), options=options,
                                      answer_letter=letter))
    return EvalData("quality", str(path), documents, questions).check()
