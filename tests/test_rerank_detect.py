"""Seed builders, head ranking/evaluation maths, and an end-to-end detection on a tiny model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bookqa.lab.detection import detect as det
from bookqa.lab.detection.seeds import (SeedItem, TokenBudget, build_seeds, locomo_chunks, read_seeds, story_chunks,
                                 write_seeds)
from test_rerank_tiny import tiny_model, tiny_tokenizer


def _tok():
    return tiny_tokenizer().backend_tokenizer


# ---------------------------------------------------------------------------------------------
# seed builders on tiny files in each dataset's format
# ---------------------------------------------------------------------------------------------

def _musique(tmp_path, reverse=False):
    rows = []
    for q in range(3):
        paras = [{"idx": i, "title": f"Title {q}-{i}", "paragraph_text": f"paragraph {i} of question {q} " * 3,
                  "is_supporting": i in (1, 4)} for i in range(8)]
        rows.append({"id": f"q{q}", "question": f"question {q}?", "paragraphs": paras})
    if reverse:
        rows.reverse()
    path = tmp_path / ("musique_rev.jsonl" if reverse else "musique.jsonl")
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_musique_gold_follows_shuffle_and_is_order_independent(tmp_path):
    items = build_seeds("musique", _musique(tmp_path), _tok())
    assert len(items) == 3
    for it in items:
        assert sorted(c.split("\n")[0] for c in (it.candidates[g] for g in it.gold)) == \
            sorted(f"Title {it.doc_id[1:]}-{i}" for i in (1, 4))
    assert any(it.gold != [1, 4] for it in items)  # shuffled
    again = {it.id: it for it in build_seeds("musique", _musique(tmp_path, reverse=True), _tok())}
    for it in items:  # same item, same candidate order, whatever the file order
        assert again[it.id].candidates == it.candidates and again[it.id].gold == it.gold
    fewer = build_seeds("musique", _musique(tmp_path), _tok(), n_candidates=5, shuffle=False)
    assert all(len(it.candidates) == 5 and len(it.gold) == 2 for it in fewer)
    assert all("\n".join(it.candidates).index("Title") == 0 for it in fewer)
    capped = build_seeds("musique", _musique(tmp_path), _tok(), max_tokens=8)
    budget = TokenBudget(_tok())
    assert all(budget.count(c) <= 8 for it in capped for c in it.candidates)


def test_hotpotqa_both_formats(tmp_path):
    official = [{"_id": "h1", "question": "Which is older?", "answer": "A",
                 "supporting_facts": [["Alpha", 0], ["Gamma", 1]],
                 "context": [["Alpha", ["Alpha is old.", " Very old."]], ["Beta", ["Beta is new."]],
                             ["Gamma", ["Gamma is a town.", " It is old."]]]}]
    (tmp_path / "h.json").write_text(json.dumps(official))
    ircot = [{"question_id": "h2", "question_text": "Who?", "answers_objects": [],
              "contexts": [{"id": "0", "title": "X", "paragraph_text": "x text", "is_supporting": False},
                           {"id": "1", "title": "Y", "paragraph_text": "y text", "is_supporting": True}]}]
    (tmp_path / "h.jsonl").write_text(json.dumps(ircot[0]) + "\n")
    (a,) = build_seeds("hotpotqa", tmp_path / "h.json", _tok())
    assert sorted(a.candidates[g].split("\n")[0] for g in a.gold) == ["Alpha", "Gamma"]
    assert "Alpha is old. Very old." in "\n".join(a.candidates)
    (b,) = build_seeds("hotpotqa", tmp_path / "h.jsonl", _tok())
    assert [b.candidates[g] for g in b.gold] == ["Y\ny text"]


def _locomo(tmp_path):
    turns1 = [{"speaker": "Ann" if i % 2 else "Bob", "dia_id": f"D1:{i + 1}",
               "text": f"turn {i} about the garden and the river number {i}"} for i in range(12)]
    turns2 = [{"speaker": "Ann", "dia_id": "D2:1", "text": "I adopted a grey parrot yesterday.",
               "blip_caption": "a photo of a parrot"},
              {"speaker": "Bob", "dia_id": "D2:2", "text": "Lovely, what is its name?"}]
    conv = {"speaker_a": "Ann", "speaker_b": "Bob", "session_1_date_time": "1 May 2023", "session_1": turns1,
            "session_2_date_time": "9 May 2023", "session_2": turns2}
    qa = [{"question": "Which grey parrot did Ann adopt yesterday?", "answer": "a parrot", "evidence": ["D2:1"],
           "category": 1},
          {"question": "What about turn 3, river number 3?", "answer": "x", "evidence": ["D1:3; D1:4"], "category": 4},
          {"question": "Adversarial?", "adversarial_answer": "y", "evidence": ["D1:2"], "category": 5}]
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps([{"sample_id": "conv-1", "conversation": conv, "qa": qa}]))
    return path, conv


def test_locomo_chunks_never_split_turns(tmp_path):
    path, conv = _locomo(tmp_path)
    budget = TokenBudget(_tok())
    chunks = locomo_chunks(conv, budget, target_tokens=40)
    ids = [d for c in chunks for d in c["dia_ids"]]
    assert ids == [t["dia_id"] for s in ("session_1", "session_2") for t in conv[s]]  # each turn once, in order
    for c in chunks:
        assert c["text"].startswith(f"Session {c['session']} (")
        for d in c["dia_ids"]:
            turn = next(t for s in ("session_1", "session_2") for t in conv[s] if t["dia_id"] == d)
            assert f"{turn['speaker']}: {turn['text']}" in c["text"]
    assert "[shares a photo of a parrot]" in next(c["text"] for c in chunks if "D2:1" in c["dia_ids"])
    items = build_seeds("locomo", path, _tok(), n_candidates=3, max_tokens=40)
    assert [it.meta["category"] for it in items] == [1, 4]  # category 5 skipped
    pet = items[0]
    assert len(pet.candidates) == 3 and "grey parrot" in pet.candidates[pet.gold[0]]
    rand = build_seeds("locomo", path, _tok(), n_candidates=3, negatives="random", max_tokens=40)
    assert all(it.gold for it in rand)


def test_narrativeqa_silver_evidence(tmp_path):
    story = ("*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n"
             "Krag met Maskull at the harbour.\n\n"
             "Much later, Maskull accepted an invitation from Krag to travel north.\n\n"
             "The weather was cold and Nightspore waited.\n\n"
             "*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence text Krag")
    (tmp_path / "stories").mkdir()
    (tmp_path / "stories" / "d1.txt").write_text(story)
    rows = [{"qid": "d1:0", "document_id": "d1", "question": "Who does Maskull accept an invitation from?",
             "answers": ["Krag", "Krag."], "story_available": True, "story_file": "stories/d1.txt"},
            {"qid": "d1:1", "document_id": "d1", "question": "What colour is the sky?", "answers": ["blue"],
             "story_available": True, "story_file": "stories/d1.txt"}]
    (tmp_path / "qaps.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    budget = TokenBudget(_tok())
    chunks = story_chunks(story, budget, target_tokens=50, max_tokens=50)
    assert not any("licence" in c for c in chunks) and len(chunks) == 3  # one paragraph per chunk here
    items = build_seeds("narrativeqa", tmp_path / "qaps.jsonl", _tok(), max_tokens=50)
    assert [it.id for it in items] == ["narrativeqa:d1:0"]  # "blue" occurs nowhere: dropped
    (it,) = items
    # Both chunks naming Krag contain the answer; the one sharing the question's words wins.
    assert [("invitation" in it.candidates[g]) for g in it.gold] == [True]


def test_seed_file_round_trip_and_validation(tmp_path):
    items = [SeedItem("a", "x", "q?", ["c1", "c2"], [1], "d")]
    write_seeds(tmp_path / "s.jsonl", items)
    assert read_seeds(tmp_path / "s.jsonl")[0] == items[0]
    from bookqa.errors import InputError

    (tmp_path / "bad.jsonl").write_text(json.dumps({"id": "b", "question": "q", "candidates": ["c"], "gold": [3]}))
    with pytest.raises(InputError):
        read_seeds(tmp_path / "bad.jsonl")


# ---------------------------------------------------------------------------------------------
# ranking and evaluation maths
# ---------------------------------------------------------------------------------------------

def test_qr_scores_evaluate_and_greedy():
    # 3 heads x 4 candidates, two items; head 0 finds the gold, head 1 finds it only in item 0,
    # head 2 puts lots of mass everywhere but prefers a wrong candidate.
    m1 = np.array([[0.1, 0.6, 0.1, 0.1], [0.0, 0.5, 0.2, 0.1], [0.9, 0.8, 0.9, 0.9]])
    m2 = np.array([[0.5, 0.1, 0.1, 0.1], [0.0, 0.4, 0.0, 0.0], [0.8, 0.9, 0.9, 0.7]])
    mats, golds = [m1, m2], [[1], [0]]
    qr = det.qr_scores(mats, golds)
    np.testing.assert_allclose(qr, [(0.6 + 0.5) / 2, (0.5 + 0.0) / 2, (0.8 + 0.8) / 2])
    ev = det.evaluate(mats, golds, [0])
    assert ev["R@1"] == 1.0 and ev["MRR"] == 1.0 and ev["n"] == 2
    ev1 = det.evaluate(mats, golds, [1])
    # item 2: gold ties with two others at 0 behind candidate 1; ties keep input order -> rank 2
    assert ev1["R@1"] == 0.5 and ev1["Hit@3"] == 1.0 and ev1["MRR"] == pytest.approx(0.75)
    order = det.evaluate(mats, golds, None)  # input order: gold at position 2 then 1
    assert order["R@1"] == 0.5 and order["MRR"] == pytest.approx((0.5 + 1.0) / 2)
    # multi-gold recall: share of gold in the top k
    two = det.evaluate([m1], [[1, 2]], [0])
    assert two["R@1"] == 0.5 and two["Hit@1"] == 1.0
    assert det.greedy_select(mats, golds, 2)[0] == 0
    assert det.greedy_select(mats, golds, 1, pool=[1, 2]) == [1]


def test_heldout_split_is_deterministic():
    items = [SeedItem(f"id{i}", "s", "q", ["a"], [0]) for i in range(200)]
    a_sel, a_held = det.heldout_split(items, 0.25)
    b_sel, b_held = det.heldout_split(list(reversed(items)), 0.25)
    assert {i.id for i in a_held} == {i.id for i in b_held} and 25 < len(a_held) < 75
    assert det.parse_layers("2-4", 10) == [2, 3, 4] and det.parse_layers(None, 3) == [0, 1, 2]


# ---------------------------------------------------------------------------------------------
# end to end on a tiny model saved to disk
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def tiny_dir(tmp_path):
    model = tiny_model("qwen2", layers=3)
    model.save_pretrained(tmp_path / "tiny")
    tiny_tokenizer().save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny"


def _seed_file(path, n, prefix):
    rng = np.random.default_rng(len(prefix))
    words = "whale ship captain sea river garden letter sister doctor village".split()
    items = []
    for i in range(n):
        cands = [" ".join(rng.choice(words, 6)) for _ in range(4)]
        items.append(SeedItem(f"{prefix}{i}", prefix, f"who was the {words[i % 10]}?", cands, [i % 4]))
    write_seeds(path, items)


def test_detect_end_to_end_and_resume(tmp_path, tiny_dir, settings, monkeypatch, capsys):
    from bookqa.cli import main
    from bookqa.rerank.qr import QRRanker

    _seed_file(tmp_path / "sel.jsonl", 6, "sel")
    _seed_file(tmp_path / "held.jsonl", 3, "held")
    calls = []
    real = QRRanker.head_scores

    def counting(self, *a, **kw):
        calls.append(kw.get("spans"))
        return real(self, *a, **kw)

    monkeypatch.setattr(QRRanker, "head_scores", counting)
    out, report, cache = tmp_path / "heads.json", tmp_path / "report.md", tmp_path / "cache"
    argv = ["heads", "detect", "--model", str(tiny_dir), "--data", str(tmp_path / "sel.jsonl"), "--heldout",
            str(tmp_path / "held.jsonl"), "--layers", "1-2", "--top", "4", "--out", str(out), "--report",
            str(report), "--cache", str(cache), "--dtype", "float32"]
    assert main(["-q"] + argv) == 0
    scored = [c for c in calls if c is not None]
    assert len(scored) == 9  # every item once, both spans in the same pass
    heads = json.loads(out.read_text())
    assert len(heads["heads"]) == 4 and all(1 <= l <= 2 for l, _ in heads["heads"])
    assert heads["detection"]["n_items"] == 6 and heads["detection"]["n_heldout"] == 3
    text = report.read_text()
    for section in ("Top heads by QR score", "Held-out evaluation", "top-4 (qr)", "Question span",
                    "All layers vs the layer range", f"bookqa heads detect --model {tiny_dir} --data"):
        assert section in text
    assert len(list(cache.glob("*.npy"))) == 9
    calls.clear()
    assert main(["-q"] + argv + ["--select", "greedy"]) == 0  # resumes: nothing is recomputed
    assert [c for c in calls if c is not None] == []
    assert "Chosen by `greedy`" in report.read_text()
    # The written heads file evaluates through the reranker itself.
    capsys.readouterr()
    assert main(["-q", "heads", "eval", "--model", str(tiny_dir), "--heads", str(out), "--data",
                 str(tmp_path / "held.jsonl"), "--json", str(tmp_path / "eval.json")]) == 0
    printed = capsys.readouterr().out
    assert "| all | heads |" in printed and "| held | input order |" in printed
    ev = json.loads((tmp_path / "eval.json").read_text())
    assert ev["heads"]["n"] == 3 and 0 <= ev["heads"]["R@1"] <= 1
