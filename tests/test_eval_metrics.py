"""Metrics against hand-computed values."""
from __future__ import annotations

import math

import pytest

from bookqa.lab.evaluate.metrics import (answer_scores, bootstrap_ci, exact_match, locomo_f1, locomo_score,
                                     normalize_answer, parse_choice, percentiles, recall_any_at_k, recall_at_k,
                                     recalls, rouge_l, strip_citations, token_f1)


def test_recall_at_k_is_fraction_of_gold():
    ranked = [7, 3, 9, 1, 4]
    gold = {3, 4, 8}
    assert recall_at_k(ranked, gold, 1) == 0.0
    assert recall_at_k(ranked, gold, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, gold, 5) == pytest.approx(2 / 3)
    assert recall_at_k(ranked, gold, 50) == pytest.approx(2 / 3)  # a short list counts what it has
    assert recall_any_at_k(ranked, gold, 1) == 0.0 and recall_any_at_k(ranked, gold, 2) == 1.0
    r = recalls(ranked, gold, ks=(1, 3))
    assert r == {"R@1": 0.0, "R@3": pytest.approx(1 / 3), "any@1": 0.0, "any@3": 1.0}
    with pytest.raises(ValueError):
        recall_at_k(ranked, set(), 3)


def test_squad_normalisation_f1_em():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    # pred "cat sat on mat" vs ref "the cat sat": common {cat, sat} = 2; P = 2/4, R = 2/2 -> F1 = 2/3
    assert token_f1("cat sat on mat", "the cat sat") == pytest.approx(2 / 3)
    # repeated tokens count with multiplicity: pred "a a b" (-> "b"), ref "b b": common 1; P 1/1, R 1/2 -> 2/3
    assert token_f1("a a b", "b b") == pytest.approx(2 / 3)
    assert token_f1("Paris", "London") == 0.0
    assert exact_match("The Eiffel Tower.", "eiffel tower") == 1.0
    assert exact_match("Eiffel", "eiffel tower") == 0.0


def test_rouge_l_hand_computed():
    # LCS("the cat sat on the mat", "the cat lay on the mat") = the cat on the mat = 5; P = R = 5/6
    assert rouge_l("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)
    # LCS("a b c d", "a c") = 2; P = 2/4, R = 2/2 -> F = 2*0.5*1/1.5 = 2/3
    assert rouge_l("a b c d", "a c") == pytest.approx(2 / 3)


def test_answer_scores_take_max_over_references_and_drop_citations():
    assert strip_citations("Tom Reed took it [2]. He had a key [1, 3].") == "Tom Reed took it. He had a key."
    scores = answer_scores("Krag [1].", ["Nightspore", "Krag."])
    assert scores == {"f1": 1.0, "em": 1.0, "rougeL": 1.0}
    partial = answer_scores("Holmes was dying", ["Sherlock Holmes", "Watson"])
    # vs "Sherlock Holmes": common {holmes}: P 1/3, R 1/2 -> F1 0.4
    assert partial["f1"] == pytest.approx(0.4) and partial["em"] == 0.0


@pytest.mark.parametrize("reply,letter", [
    ("Answer: (B)", "B"), ("B.", "B"), ('{"answer": "C", "reasoning": "the clue"}', "C"), ("The answer is D", "D"),
    ("(A) At Rotherhithe", "A"), ("B) He said so", "B"), ("**C**", "C"), ("答案是B", "B"), ("选项：D", "D"),
    ("answer: c", None), ("the answer is a dog", None), ("I think (A) or (B)", None), ("E", None), ("", None),
    ('{"answer": "(D)"}', "D"),
])
def test_parse_choice(reply, letter):
    assert parse_choice(reply) == letter


def test_parse_choice_respects_allowed_letters():
    assert parse_choice("E.", letters=["A", "B", "C", "D", "E"]) == "E"
    assert parse_choice("E.") is None


# --- LoCoMo -------------------------------------------------------------------------------------------

def test_locomo_f1_stems_and_drops_and():
    # normalisation drops commas, articles and "and"; Porter stemming makes "painting" == "paints"
    assert locomo_f1("painting and pottery", "paints, pottery") == 1.0
    # "running races" vs "ran a race": stems run/race vs ran/race -> common {race}: P 1/2, R 1/2 -> 0.5
    assert locomo_f1("running races", "ran a race") == pytest.approx(0.5)


def test_locomo_category_rules():
    # category 1 (multi-hop): answer parts "beagle Oscar" / "pottery" / "volunteering", prediction parts
    # "pottery" / "a dog named Oscar"; each answer part takes its best prediction part, then the mean
    pred, ans = "pottery, a dog named Oscar", "beagle Oscar, pottery, volunteering"
    # part "beagle Oscar" vs "dog named Oscar" (article dropped): common {oscar}: P 1/3, R 1/2 -> 0.4
    expected = (0.4 + 1.0 + 0.0) / 3
    assert locomo_score(1, pred, ans) == pytest.approx(expected)
    # categories 2 and 4: plain stemmed F1
    assert locomo_score(2, "On 7 May 2023 [1]", "7 May 2023") == pytest.approx(2 * 0.75 * 1 / 1.75)
    assert locomo_score(4, "Pine Lake", "Pine Lake") == 1.0
    # category 3: the answer is cut at the first ';'
    assert locomo_score(3, "Likely yes", "Likely yes; she paints sunsets") == 1.0
    # category 5: right when the reply says it is not mentioned / no information available
    assert locomo_score(5, "That is not mentioned in the conversation.", "Oscar") == 1.0
    assert locomo_score(5, "No information available.", "Oscar") == 1.0
    assert locomo_score(5, "Oscar", "Oscar") == 0.0
    with pytest.raises(ValueError):
        locomo_score(6, "x", "y")


# --- bootstrap ----------------------------------------------------------------------------------------

def test_bootstrap_brackets_mean_and_is_deterministic():
    values = [0, 1, 1, 0.5, 0.25, 1, 0, 0.75, 1, 0.5] * 3
    a = bootstrap_ci(values, n_boot=500, seed=7)
    b = bootstrap_ci(values, n_boot=500, seed=7)
    c = bootstrap_ci(values, n_boot=500, seed=8)
    assert a == b
    assert a["lo"] <= a["mean"] <= a["hi"] and a["lo"] < a["hi"]
    assert a["mean"] == pytest.approx(sum(values) / len(values)) and a["n"] == 30
    assert (c["lo"], c["hi"]) != (a["lo"], a["hi"])
    # the 95% interval of a mean of 30 values in [0, 1] with sd ~0.38 is about ±0.14
    assert 0.08 < (a["hi"] - a["lo"]) / 2 < 0.2
    assert bootstrap_ci([]) == {"n": 0, "mean": None, "lo": None, "hi": None}
    assert bootstrap_ci([0.3]) == {"n": 1, "mean": 0.3, "lo": 0.3, "hi": 0.3}
    constant = bootstrap_ci([1.0] * 5)
    assert constant["lo"] == constant["hi"] == 1.0


def test_percentiles():
    p = percentiles([1.0, 2.0, 3.0, 4.0])
    assert p["mean"] == 2.5 and p["p50"] == 2.5 and math.isclose(p["p95"], 3.85)
    assert percentiles([])["mean"] is None


def test_paired_differences_against_qr_and_the_best_first_stage():
    from bookqa.lab.evaluate.report import render_markdown, summarize

    def row(qid, gold, **ranked):
        return {"dataset": "locomo", "qid": qid, "doc_id": "d", "gold": {"chunk_ids": gold, "kind": "gold"},
                "configs": {name: {"chunk_ids": ids, "seconds": 0.0} for name, ids in ranked.items()}}

    rows = [row("1", [1], bm25=[1, 2, 3], qr=[2, 1, 3], qr_x=[1, 2, 3]),
            row("2", [5], bm25=[4, 5, 6], qr=[5, 4, 6], qr_x=[4, 6, 5]),
            row("3", [7, 8], bm25=[7, 9, 8], qr=[7, 8, 9], qr_x=[9, 7, 8])]
    # R@1 per question: bm25 1, 0, 1/2; qr 0, 1, 1/2; qr_x 1, 0, 0. R@3 is 1 everywhere.
    paired = summarize(rows, {"dataset": "locomo"}, n_boot=200)["paired"]
    assert paired["references"] == ["qr", "bm25"]
    vs_qr, vs_bm25 = paired["configs"]["qr"], paired["configs"]["bm25"]
    assert set(vs_qr) == {"bm25", "qr_x"} and set(vs_bm25) == {"qr", "qr_x"}
    assert vs_qr["bm25"]["R@1"]["mean"] == pytest.approx(0.0)
    assert (vs_qr["bm25"]["R@1"]["won"], vs_qr["bm25"]["R@1"]["lost"]) == (1, 1)
    x = vs_qr["qr_x"]["R@1"]
    assert x["mean"] == pytest.approx(-1 / 6) and (x["won"], x["lost"]) == (1, 2) and x["lo"] <= x["mean"] <= x["hi"]
    assert vs_bm25["qr_x"]["R@1"]["mean"] == pytest.approx(-1 / 6) and vs_bm25["qr_x"]["R@1"]["lost"] == 1
    assert vs_qr["qr_x"]["R@3"] == {**vs_qr["qr_x"]["R@3"], "mean": 0.0, "lo": 0.0, "hi": 0.0, "won": 0, "lost": 0}
    md = render_markdown(summarize(rows, {"dataset": "locomo"}, n_boot=200))
    assert "Against `qr`:" in md and "| qr_x | 3 | -16.7 [" in md and "(1/2)" in md
    # nothing to pair against: no section
    assert summarize([row("1", [1], dense=[1, 2])], {"dataset": "locomo"}, n_boot=10)["paired"] is None
