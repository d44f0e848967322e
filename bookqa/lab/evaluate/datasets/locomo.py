"""LoCoMo (``locomo10.json``, github.com/snap-research/locomo ``data/locomo10.json``): a JSON list of
conversations ``{"sample_id", "conversation": {"speaker_a", "speaker_b", "session_N_date_time",
"session_N": [{"speaker", "dia_id", "text", ...}]}, "qa": [{"question", "answer", "evidence": [dia_id,
...], "category"}], ...}``. Category 5 (adversarial) questions carry ``adversarial_answer`` instead of
``answer``.

Each conversation is ingested as a transcript (bookqa's LoCoMo JSON path keeps every ``dia_id`` in the
chunk meta); gold evidence is the annotated ``dia_id``s. Evidence strings are sometimes irregular
("D8:6; D9:17", "D:11:26"); every ``D<session>:<turn>`` inside them is taken.
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import Document, EvalData, Evidence, Question, malformed, need, read_json_file

# The category numbers of the official data, named as the official evaluation treats them
# (snap-research/locomo, task_eval/evaluation.py ``eval_question_answering`` at commit 92286325: category 1
# is scored by the comma-split multi-hop F1, 2/3/4 by plain F1 with category 3's answer cut at ';', 5 by
# the "not mentioned" rule; task_eval/evaluation_stats.py ``analyze_aggr_acc`` lists them in the order
# [4, 1, 2, 3, 5], the order of the LoCoMo paper's table: single-hop, multi-hop, temporal, open-domain,
# adversarial).
CATEGORY_NAMES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
ADVERSARIAL = 5
_DIA_ID = re.compile(r"D:?(\d+):(\d+)")


def dia_ids(evidence: list, as_written: bool = False) -> list[str]:
    """Normalised dialogue ids ("D1:3") found in a question's evidence strings, in order, once each.

    ``as_written``: keep the numbers' digits as the annotation has them ("D30:05" stays "D30:05" and so
    matches no turn id); the head-detection seed builder matches evidence this way.
    """
    out: list[str] = []
    for e in evidence:
        for a, b in _DIA_ID.findall(str(e)):
            d = f"D{a}:{b}" if as_written else f"D{int(a)}:{int(b)}"
            if d not in out:
                out.append(d)
    return out


def load_locomo(path: Path | str) -> EvalData:
    path = Path(path)
    data = read_json_file(path)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise malformed(path, "top level", f"expected a list of conversations, found {type(data).__name__}")
    documents, questions = [], []
    for i, sample in enumerate(data):
        where = f"conversation {i}"
        sample_id = str(need(sample, "sample_id", (str, int), path, where))
        where = f"conversation {i} ({sample_id})"
        conversation = need(sample, "conversation", dict, path, where)
        if not any(re.fullmatch(r"session_\d+", str(k)) for k in conversation):
            raise malformed(path, where, "the conversation has no 'session_N' turn lists")
        qa = need(sample, "qa", list, path, where)
        documents.append(Document(id=sample_id, title=sample_id, kind="transcript",
                                  transcript={"sample_id": sample_id, "conversation": conversation}))
        for j, item in enumerate(qa):
            qwhere = f"{where}, qa {j}"
            question = need(item, "question", str, path, qwhere)
            category = need(item, "category", int, path, qwhere)
            if category not in CATEGORY_NAMES:
                raise malformed(path, qwhere, f"unknown category {category} (expected 1-5)")
            if category == ADVERSARIAL:
                answer = item.get("answer", item.get("adversarial_answer", ""))
            else:
                answer = need(item, "answer", (str, int, float), path, qwhere)
            evidence = item.get("evidence", [])
            if not isinstance(evidence, list):
                raise malformed(path, qwhere, "field 'evidence' should be a list of dialogue ids")
            questions.append(Question(
                id=f"{sample_id}:{j}", doc_id=sample_id, question=question, answers=[str(answer)],
                evidence=Evidence("dia_ids", dia_ids(evidence), {"raw": [str(e) for e in evidence]}),
                category=category, subset=CATEGORY_NAMES[category],
                meta={"adversarial_answer": item["adversarial_answer"]} if "adversarial_answer" in item else {}))
    return EvalData("locomo", str(path), documents, questions).check()
