"""DetectiveQA (Xu et al., 2024; Hugging Face ``Phospheneser/DetectiveQA``), in two layouts:

- the Hub folders: ``anno_data_{en,zh}/{AIsup_anno,human_anno}/<novel_id>.json`` (a list holding one
  sample, or the sample object) and ``novel_data_{en,zh}/<novel_id>-<title>-<author>.txt``;
- a ``datasets`` export as JSONL: one sample per line. The novel text comes from a text field
  (``novel_text``/``text``/``novel``/``content``/``context``) when the export carries one, else from
  ``novel_data_<lang>/<novel_id>-*.txt`` next to the JSONL (or its parent). The language comes from a
  ``lang``/``language`` field, else from ``_en``/``_zh`` in the file name, else English.

A sample is ``{"novel_id", "num_paragraphs", "questions": [{"question", "options": {"A".."D"}, "answer",
"distraction", "reasoning", "clue_position": [N, ...], "answer_position": N}]}``. Novels mark paragraphs
with a leading ``[N]``; gold evidence = the clue paragraphs and the answer paragraph. (The published
format is recorded in the LICENSE-or-SOURCE.md of the DetectiveQA folder in the data folder; it was not
verified against the real files, which are not available here.)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from ....errors import InputError
from .base import Document, EvalData, Evidence, Question, iter_jsonl, letters, malformed, need, read_json_file

LANGS = ("en", "zh")
ANNOTATIONS = ("AIsup_anno", "human_anno")
TEXT_FIELDS = ("novel_text", "text", "novel", "content", "context")


def load_detectiveqa(path: Path | str, langs: Sequence[str] = LANGS) -> EvalData:
    path = Path(path)
    if path.is_file():
        return _load_jsonl(path)
    if not path.is_dir():
        raise InputError(f"{path}: not found (expected the DetectiveQA folder or a JSONL export)")
    if not any((path / f"anno_data_{lang}").is_dir() for lang in LANGS):
        exports = sorted(path.glob("*.jsonl"))
        if len(exports) == 1:
            return _load_jsonl(exports[0])
        raise InputError(f"{path}: no anno_data_en/ or anno_data_zh/ folder (the Hub layout) "
                         "and no single JSONL export")
    return _load_hub(path, langs)


def _novel_file(root: Path, lang: str, novel_id: str) -> Optional[Path]:
    for base in (root, root.parent):
        d = base / f"novel_data_{lang}"
        if d.is_dir():
            found = sorted(d.glob(f"{novel_id}-*.txt")) or sorted(d.glob(f"{novel_id}.txt"))
            if found:
                return found[0]
    return None


def _title_from_file(path: Path, novel_id: str) -> str:
    parts = path.stem.split("-")
    return parts[1] if len(parts) >= 2 and parts[1] else f"DetectiveQA {novel_id}"


def _load_hub(root: Path, langs: Sequence[str]) -> EvalData:
    documents: dict[str, Document] = {}
    questions: list[Question] = []
    notes: list[str] = []
    for lang in langs:
        for anno in ANNOTATIONS:
            folder = root / f"anno_data_{lang}" / anno
            if not folder.is_dir():
                continue
            for file in sorted(folder.glob("*.json"), key=lambda p: (len(p.stem), p.stem)):
                data = read_json_file(file)
                samples = data if isinstance(data, list) else [data]
                for i, sample in enumerate(samples):
                    where = f"sample {i}"
                    novel_id = str(sample.get("novel_id", file.stem)) if isinstance(sample, dict) else file.stem
                    doc_id = f"{lang}:{novel_id}"
                    if doc_id not in documents:
                        novel = _novel_file(root, lang, novel_id)
                        if novel is None:
                            raise malformed(file, where,
                                            f"no novel text novel_data_{lang}/{novel_id}-*.txt under {root}")
                        documents[doc_id] = Document(id=doc_id, title=_title_from_file(novel, novel_id),
                                                     kind="novel", text_path=novel, lang=lang,
                                                     meta={"novel_id": novel_id})
                    questions += _questions(sample, file, where, doc_id, lang, anno)
    if not questions:
        raise InputError(f"{root}: no annotation files found under "
                         f"anno_data_{{{','.join(langs)}}}/{{{','.join(ANNOTATIONS)}}}")
    return EvalData("detectiveqa", str(root), list(documents.values()), questions, notes).check()


def _lang_of(row: dict[str, Any], path: Path) -> str:
    lang = str(row.get("lang") or row.get("language") or "").lower()
    if lang in LANGS:
        return lang
    if lang in ("english",):
        return "en"
    if lang in ("chinese",):
        return "zh"
    name = path.stem.lower()
    return "zh" if "_zh" in name or name.endswith("zh") else "en"


def _load_jsonl(path: Path) -> EvalData:
    documents: dict[str, Document] = {}
    questions: list[Question] = []
    for n, row in iter_jsonl(path):
        where = f"line {n}"
        novel_id = str(need(row, "novel_id", (str, int), path, where))
        lang = _lang_of(row, path)
        doc_id = f"{lang}:{novel_id}"
        if doc_id not in documents:
            text_field = next((f for f in TEXT_FIELDS if isinstance(row.get(f), str) and row[f].strip()), None)
            title = str(row.get("title") or f"DetectiveQA {novel_id}")
            if text_field is not None:
                documents[doc_id] = Document(id=doc_id, title=title, kind="novel", text=row[text_field], lang=lang,
                                             meta={"novel_id": novel_id})
            else:
                novel = _novel_file(path.parent, lang, novel_id)
                if novel is None:
                    raise malformed(path, where, f"no novel text: the record has none of the fields "
                                    f"{', '.join(TEXT_FIELDS)} and no novel_data_{lang}/{novel_id}-*.txt "
                                    "lies next to it")
                title = str(row.get("title") or _title_from_file(novel, novel_id))
                documents[doc_id] = Document(id=doc_id, title=title, kind="novel", text_path=novel, lang=lang,
                                             meta={"novel_id": novel_id})
        anno = str(row.get("anno_type") or row.get("source") or f"l{n}")
        questions += _questions(row, path, where, doc_id, lang, anno)
    return EvalData("detectiveqa", str(path), list(documents.values()), questions).check()


def _questions(sample: Any, path: Path, where: str, doc_id: str, lang: str, anno: str) -> list[Question]:
    out = []
    for j, q in enumerate(need(sample, "questions", list, path, where)):
        qwhere = f"{where}, question {j}"
        text = need(q, "question", str, path, qwhere)
        raw = need(q, "options", (dict, list), path, qwhere)
        options = ({str(k).strip().upper(): str(v) for k, v in raw.items()} if isinstance(raw, dict)
                   else dict(zip(letters(len(raw)), map(str, raw))))
        letter = str(need(q, "answer", str, path, qwhere)).strip().upper()[:1]
        if letter not in options:
            raise malformed(path, qwhere, f"answer {q['answer']!r} is not one of the options {', '.join(options)}")
        clues = need(q, "clue_position", list, path, qwhere)
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in clues):
            raise malformed(path, qwhere, "field 'clue_position' should be a list of paragraph numbers")
        markers = list(clues)
        answer_pos = q.get("answer_position")
        if answer_pos is not None:
            if not isinstance(answer_pos, int) or isinstance(answer_pos, bool):
                raise malformed(path, qwhere, "field 'answer_position' should be a paragraph number")
            markers.append(answer_pos)
        out.append(Question(
            id=f"{doc_id}:{anno}:{j}", doc_id=doc_id, question=text, answers=[options[letter]],
            evidence=Evidence("markers", sorted(set(markers)), {"clue_position": clues, "answer_position": answer_pos}),
            options=options, answer_letter=letter, subset=lang,
            meta={"reasoning": q.get("reasoning")} if q.get("reasoning") else {}))
    return out
