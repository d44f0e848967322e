"""Dataset loaders on tiny fixtures in the official formats, and their errors on malformed files."""
from __future__ import annotations

import json
import shutil

import pytest

from bookqa.errors import ConfigError, InputError
from bookqa.lab.evaluate.datasets import load_dataset
from bookqa.lab.evaluate.datasets.locomo import dia_ids
from bookqa.lab.evaluate.datasets.quality import parse_instruction

from conftest import FIXTURES

EVAL = FIXTURES / "eval"
DOC = "09333c7d604bd412e6aef5d3e56b046ed301c5e5"


def test_narrativeqa_official_csv_layout():
    data = load_dataset("narrativeqa", EVAL / "narrativeqa_csv")
    assert [d.id for d in data.documents] == [DOC]  # the movie has no text; the train book is another split
    doc = data.documents[0]
    assert doc.title == "The Adventure of the Dying Detective" and doc.kind == "novel"
    assert doc.text_path.name == f"{DOC}.content" and "Mrs. Hudson" in doc.get_text()
    assert [q.id for q in data.questions] == [f"{DOC}:0", f"{DOC}:1", f"{DOC}:2"]
    assert data.questions[1].answers == ["Rotherhithe", "In an alley near the river at Rotherhithe"]
    assert all(q.evidence.kind == "silver" for q in data.questions)
    assert any("no story" in n for n in data.notes)
    train = load_dataset("narrativeqa", EVAL / "narrativeqa_csv", split="train")
    assert train.documents == [] and train.questions == []


def test_narrativeqa_jsonl_layout_matches_csv():
    data = load_dataset("narrativeqa", EVAL / "narrativeqa_jsonl" / "qaps_dev.jsonl")
    csv_data = load_dataset("narrativeqa", EVAL / "narrativeqa_csv")
    assert [(q.id, q.question, q.answers) for q in data.questions] == \
        [(q.id, q.question, q.answers) for q in csv_data.questions]
    assert data.documents[0].title == "The Adventure of the Dying Detective"  # from documents.csv next to it
    assert data.documents[0].get_text() == csv_data.documents[0].get_text()
    assert any("1 questions on 1 documents skipped" in n for n in data.notes)
    # the folder form finds qaps_dev.jsonl too
    assert len(load_dataset("narrativeqa", EVAL / "narrativeqa_jsonl").questions) == 3


def test_narrativeqa_jsonl_drops_pandas_nan_reference(tmp_path):
    src = EVAL / "narrativeqa_jsonl"
    shutil.copytree(src, tmp_path / "nq")
    path = tmp_path / "nq" / "qaps_dev.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows[0]["answers"] = ["nan", "None."]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_dataset("narrativeqa", path)
    assert data.questions[0].answers == ["None."]
    assert any("'nan'" in n for n in data.notes)


def test_detectiveqa_hub_layout():
    data = load_dataset("detectiveqa", EVAL / "detectiveqa_hub")
    assert sorted(d.id for d in data.documents) == ["en:901", "zh:902"]
    en = data.document("en:901")
    assert en.title == "垂死的侦探" and en.lang == "en" and en.get_text().startswith("[1] Mrs. Hudson")
    qs = data.questions_of("en:901")
    assert len(qs) == 3  # AIsup_anno (1) and human_anno (2)
    roth = next(q for q in qs if "Rotherhithe" in q.options["A"])
    assert roth.answer_letter == "A" and roth.answers == ["At Rotherhithe, near the river"]
    assert roth.evidence.kind == "markers" and roth.evidence.items == [5]
    watson = next(q for q in qs if q.question.startswith("Who told"))
    assert watson.evidence.items == [1, 3] and watson.subset == "en"
    listed = next(q for q in qs if q.question.startswith("What did Holmes refuse"))
    assert listed.options == {"A": "Fetch a doctor", "B": "Open the window", "C": "Cook dinner", "D": "Call the police"}
    zh = data.questions_of("zh:902")[0]
    assert zh.answer_letter == "B" and zh.evidence.items == [3, 4] and zh.subset == "zh"
    only_en = load_dataset("detectiveqa", EVAL / "detectiveqa_hub", langs=("en",))
    assert {q.subset for q in only_en.questions} == {"en"}


def test_detectiveqa_export_jsonl_matches_hub():
    exported = load_dataset("detectiveqa", EVAL / "detectiveqa_export" / "detectiveqa_en.jsonl")
    hub = load_dataset("detectiveqa", EVAL / "detectiveqa_hub", langs=("en",))
    assert exported.documents[0].get_text() == hub.documents[0].get_text()
    key = lambda q: (q.question, q.answer_letter, tuple(q.evidence.items))  # noqa: E731
    assert sorted(map(key, exported.questions)) == sorted(map(key, hub.questions))


def test_detectiveqa_export_without_text_reads_novel_folder(tmp_path):
    rows = [json.loads(line) for line in (EVAL / "detectiveqa_export" / "detectiveqa_en.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("novel_text")
    (tmp_path / "train_en.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(InputError, match=r"train_en\.jsonl, line 1: no novel text"):
        load_dataset("detectiveqa", tmp_path / "train_en.jsonl")
    shutil.copytree(EVAL / "detectiveqa_hub" / "novel_data_en", tmp_path / "novel_data_en")
    data = load_dataset("detectiveqa", tmp_path / "train_en.jsonl")
    assert data.documents[0].text_path.parent.name == "novel_data_en" and len(data.questions) == 3


def test_locomo_loader():
    data = load_dataset("locomo", EVAL / "locomo" / "locomo_mini.json")
    assert [d.id for d in data.documents] == ["conv-t1"] and data.documents[0].kind == "transcript"
    assert data.documents[0].transcript["conversation"]["session_2"][1]["dia_id"] == "D2:2"
    by_cat = {q.category: q for q in data.questions}
    assert by_cat[2].evidence.items == ["D1:3"] and by_cat[2].subset == "temporal"
    assert by_cat[1].subset == "multi-hop" and by_cat[4].subset == "single-hop" and by_cat[3].subset == "open-domain"
    adversarial = by_cat[5]
    assert adversarial.answers == ["Oscar"] and adversarial.subset == "adversarial"
    irregular = [q for q in data.questions if q.question.startswith(("What did the kids", "What does Caroline do"))]
    assert [q.evidence.items for q in irregular] == [["D2:3", "D2:5"], ["D2:4"]]


def test_dia_id_normalisation():
    assert dia_ids(["D8:6; D9:17", "D:11:26", "D8:6", "D1:3 "]) == ["D8:6", "D9:17", "D11:26", "D1:3"]


def test_musique_loader():
    data = load_dataset("musique", EVAL / "musique" / "musique_mini.jsonl")
    assert [q.id for q in data.questions] == ["2hop__1_2", "3hop1__3_4_5"]
    q = data.questions[0]
    assert q.answers == ["Marlshire", "Marlshire County"] and q.category == "2hop"
    assert q.evidence.kind == "paragraphs" and q.evidence.items == ["1", "3"]
    doc = data.document(q.doc_id)
    assert doc.kind == "paragraphs" and len(doc.paragraphs) == 6
    assert doc.paragraphs[1].passage == "Silent Harbour\nSilent Harbour is an oil painting by Ada Brook, finished in 1902."


def test_hotpotqa_official_and_ircot_agree():
    official = load_dataset("hotpotqa", EVAL / "hotpotqa" / "hotpot_dev_distractor_mini.json")
    ircot = load_dataset("hotpotqa", EVAL / "hotpotqa" / "hotpotqa_ircot_mini.jsonl")
    for a, b in zip(official.questions, ircot.questions):
        assert (a.id, a.question, a.answers, a.evidence.items) == (b.id, b.question, b.answers, b.evidence.items)
        pa, pb = official.document(a.doc_id).paragraphs, ircot.document(b.doc_id).paragraphs
        assert [p.passage for p in pa] == [p.passage for p in pb]
    q = official.questions[0]
    assert q.evidence.items == ["1", "3"] and q.evidence.detail["supporting_facts"] == {"Silas Thorne": [0], "Mara Quill": [0, 1]}
    assert official.document(q.doc_id).paragraphs[3].text == "Mara Quill is a Welsh novelist. She was born in Swansea in 1961."


def test_quality_loader_and_instruction_parsing():
    data = load_dataset("quality", EVAL / "quality" / "quality_mini.jsonl")
    assert len(data.documents) == 1 and data.documents[0].title == "THE ADVENTURE OF THE DYING DETECTIVE"
    q = data.questions[0]
    assert q.question == "Where had Holmes been working on a case?" and q.answer_letter == "B"
    assert q.options["B"] == "At Rotherhithe, in an alley near the river" and q.answers == [q.options["B"]]
    assert q.evidence.kind == "none"
    question, options = parse_instruction("Why?\n\n (A) one \n (B) two,\n  continued \n (C) three")
    assert question == "Why?" and options == {"A": "one", "B": "two, continued", "C": "three"}


def test_unknown_dataset_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("squad", EVAL)


# --- malformed files: the error names the file, the record and what is wrong --------------------------

def _write(tmp_path, name, text):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_malformed_jsonl_line_is_named(tmp_path):
    good = (EVAL / "musique" / "musique_mini.jsonl").read_text().splitlines()[0]
    path = _write(tmp_path, "m.jsonl", good + "\n{not json\n")
    with pytest.raises(InputError, match=r"m\.jsonl, line 2: not valid JSON"):
        load_dataset("musique", path)


def test_missing_field_is_named(tmp_path):
    rows = [json.loads(x) for x in (EVAL / "musique" / "musique_mini.jsonl").read_text().splitlines()]
    del rows[1]["paragraphs"][2]["paragraph_text"]
    path = _write(tmp_path, "m.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match=r"m\.jsonl, line 2, paragraph 2: missing field 'paragraph_text'"):
        load_dataset("musique", path)


def test_wrong_type_in_locomo_is_named(tmp_path):
    data = json.loads((EVAL / "locomo" / "locomo_mini.json").read_text())
    data[0]["qa"][3]["category"] = "three"
    path = _write(tmp_path, "locomo.json", json.dumps(data))
    with pytest.raises(InputError, match=r"locomo\.json, conversation 0 \(conv-t1\), qa 3: field 'category' should be int"):
        load_dataset("locomo", path)


def test_locomo_not_json(tmp_path):
    path = _write(tmp_path, "locomo.json", "[{\"sample_id\": ")
    with pytest.raises(InputError, match=r"locomo\.json: not valid JSON"):
        load_dataset("locomo", path)


def test_hotpotqa_bad_context_record(tmp_path):
    data = json.loads((EVAL / "hotpotqa" / "hotpot_dev_distractor_mini.json").read_text())
    data[1]["context"][1] = "Glass Harmonica"
    path = _write(tmp_path, "hotpot.json", json.dumps(data))
    with pytest.raises(InputError, match=r"hotpot\.json, record 1, context 1: expected \[title, \[sentence"):
        load_dataset("hotpotqa", path)


def test_quality_gold_letter_not_an_option(tmp_path):
    row = json.loads((EVAL / "quality" / "quality_mini.jsonl").read_text())
    row["outputs"][1] = "(F) nothing"
    path = _write(tmp_path, "q.jsonl", json.dumps(row) + "\n")
    with pytest.raises(InputError, match=r"q\.jsonl, line 1, question 1: output '\(F\) nothing'"):
        load_dataset("quality", path)


def test_detectiveqa_answer_not_an_option(tmp_path):
    shutil.copytree(EVAL / "detectiveqa_hub", tmp_path / "dq")
    path = tmp_path / "dq" / "anno_data_en" / "human_anno" / "901.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data[0]["questions"][1]["answer"] = "E"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InputError, match=r"901\.json, sample 0, question 1: answer 'E' is not one of the options"):
        load_dataset("detectiveqa", tmp_path / "dq")


def test_narrativeqa_csv_missing_column(tmp_path):
    shutil.copytree(EVAL / "narrativeqa_csv", tmp_path / "nq")
    qaps = tmp_path / "nq" / "qaps.csv"
    qaps.write_text(qaps.read_text().replace("answer2,", "answer_two,", 1))
    with pytest.raises(InputError, match=r"qaps\.csv, header: missing column\(s\) answer2"):
        load_dataset("narrativeqa", tmp_path / "nq")


def test_narrativeqa_csv_short_row(tmp_path):
    shutil.copytree(EVAL / "narrativeqa_csv", tmp_path / "nq")
    qaps = tmp_path / "nq" / "qaps.csv"
    qaps.write_text(qaps.read_text() + f"{DOC},test,Who?\n")
    with pytest.raises(InputError, match=r"qaps\.csv, line 7: wrong number of fields"):
        load_dataset("narrativeqa", tmp_path / "nq")
