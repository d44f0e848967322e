"""Order-robust QR configurations in the evaluation runner: shared forward passes, honest seconds, the
shuffle check, resume, and the order-bias statistics of the report (tiny random models, fixtures)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bookqa.cli import main
from bookqa.lab.evaluate.bias import bias_summary, gold_at_first, position_stats, top1_position
from bookqa.lab.evaluate.registry import parse_config_names
from bookqa.lab.evaluate.datasets import load_dataset
from bookqa.lab.evaluate.report import render_markdown, summarize
from bookqa.lab.evaluate.runner import read_rows, select
from bookqa.rerank import QRRanker
from bookqa.rerank.heads import HeadSet
from bookqa.rerank.orders import PositionPrior, maxmin, with_prior

from conftest import FIXTURES
from test_eval_runner import _runner, esettings  # noqa: F401  (fixture)
from test_rerank_tiny import tiny_model, tiny_tokenizer

EVAL = FIXTURES / "eval"
HEADS = [(0, 1), (1, 2)]
CURVE = [0.8, 0.4, 0.2, 0.1]


def _counting_ranker(esettings):
    scoring = {"aggregate": "sum", "question_span": "question"}
    heads = with_prior(HeadSet(heads=HEADS), [PositionPrior(curves={4: CURVE}, scoring={**scoring, "calibrate": c})
                                              for c in (False, True)])
    ranker = QRRanker(model=(tiny_model("qwen2"), tiny_tokenizer()), heads=heads, settings=esettings, refine=0)
    calls = []
    real = ranker.head_scores

    def counting(query, texts, *a, **kw):
        calls.append(len(texts))
        return real(query, texts, *a, **kw)

    ranker.head_scores = counting
    return ranker, calls


def test_variants_share_passes_and_record_honest_seconds(esettings, tmp_path):
    data = load_dataset("musique", EVAL / "musique" / "musique_mini.jsonl")
    ranker, calls = _counting_ranker(esettings)
    names = parse_config_names("hybrid,qr,qr_cal,qr_pos,qr_perm,qr_cal_pos_perm,qr_fused")
    runner = _runner(data, names, esettings, tmp_path / "out", rerankers={"qr": ranker}, k=4, shuffle_check=True)
    rows = runner.run()
    shown_orders = 0
    for row in rows.values():
        cands = [c["chunk_id"] for c in row["candidates"]["items"]]
        n = len(cands)
        passes = row["passes"]
        shown_orders += len(passes)
        key0 = next(k for k in passes if k.endswith(":" + ",".join(map(str, cands))))
        p0 = passes[key0]
        raw, null = np.array(p0["raw"]), np.array(p0["null"])  # the null part: qr_cal is in the run
        c = row["configs"]
        by_id = lambda name: dict(zip(c[name]["chunk_ids"], c[name]["scores"]))  # noqa: E731
        for i, cid in enumerate(cands):
            assert by_id("qr")[cid] == pytest.approx(raw[i], abs=1e-6)
            assert by_id("qr_cal")[cid] == pytest.approx(raw[i] - null[i], abs=1e-6)
            if n > 1:
                prior = np.interp(np.linspace(0, 1, n), np.linspace(0, 1, 4), CURVE)
                assert by_id("qr_pos")[cid] == pytest.approx((maxmin(raw) - prior)[i], abs=1e-6)
        t = p0["timings"]
        # seconds: what each option costs on its own
        assert c["qr"]["seconds"] == pytest.approx(t["prompt"] + t["forward"], abs=2e-3)
        assert c["qr_cal"]["seconds"] == pytest.approx(t["prompt"] + t["forward"] + t["calibrate"], abs=2e-3)
        assert c["qr_pos"]["seconds"] == pytest.approx(c["qr"]["seconds"], abs=2e-3)
        expected_passes = min(n, 3) if n > 1 else 1
        assert c["qr_perm"]["info"]["passes"] == expected_passes
        if expected_passes > 1:
            assert c["qr_perm"]["timings"]["rerank.permutation"] > 0
            assert c["qr_perm"]["seconds"] > c["qr"]["seconds"]
            assert c["qr_cal_pos_perm"]["seconds"] > c["qr_perm"]["seconds"]
        for name in ("qr", "qr_cal", "qr_pos", "qr_perm", "qr_cal_pos_perm", "qr_fused"):
            assert sorted(c[name]["chunk_ids"]) == sorted(cands), name
        # the shuffle check: the same candidates in a stored seeded order, every order-sensitive config
        sh = row["shuffled"]
        assert sorted(sh["order"]) == sorted(cands) and sh["seed"] == 0
        assert set(sh["configs"]) == {"qr", "qr_cal", "qr_pos", "qr_perm", "qr_cal_pos_perm", "qr_fused"}
        assert all(sorted(r["chunk_ids"]) == sorted(cands) for r in sh["configs"].values())
    # one forward per distinct order shown, whatever the number of configurations reading it
    assert len(calls) == shown_orders
    assert runner.calls["qr_cal"] == 2 and runner.shuffled_calls["qr_perm"] == 2
    report = json.loads((tmp_path / "out" / "musique-report.json").read_text())
    bias = report["bias"]
    assert bias["hybrid"]["original"]["top1_at_1"] == 1.0 and "shuffled" not in bias["hybrid"]
    for name in ("qr", "qr_cal", "qr_pos", "qr_perm", "qr_fused"):
        assert bias[name]["original"]["n"] == 2 and bias[name]["shuffled"]["recall"]["R@3"]["n"] == 2
    md = (tmp_path / "out" / "musique-report.md").read_text()
    assert "## Order bias" in md and "top-1 @pos 1 | shuffled R@3 | s/query |" in md
    assert "| hybrid | 2 | 100.0 | 1.00 |" in md


def test_resume_adds_a_variant_and_the_shuffle_check_reusing_stored_passes(esettings, tmp_path):
    data = load_dataset("musique", EVAL / "musique" / "musique_mini.jsonl")
    ranker, calls = _counting_ranker(esettings)
    out = tmp_path / "out"
    _runner(data, ["hybrid", "qr"], esettings, out, rerankers={"qr": ranker}, k=4).run()
    first = len(calls)
    assert first == 2 and all("shuffled" not in r for r in read_rows(out / "musique.jsonl").values())
    more = _runner(data, ["hybrid", "qr", "qr_pos"], esettings, out, rerankers={"qr": ranker}, k=4, resume=True,
                   shuffle_check=True)
    rows = more.run()
    assert more.calls == {"hybrid": 0, "qr": 0, "qr_pos": 2}
    assert more.shuffled_calls == {"qr": 2, "qr_pos": 2}
    multi = sum(len(r["candidates"]["items"]) > 1 for r in rows.values())
    # qr_pos read the stored input-order pass; only the shuffled orders needed a forward (shared by both)
    assert len(calls) - first == multi
    for r in rows.values():
        assert r["configs"]["qr_pos"]["info"]["passes_computed"] == 0
    again = _runner(data, ["hybrid", "qr", "qr_pos"], esettings, out, rerankers={"qr": ranker}, k=4, resume=True,
                    shuffle_check=True)
    again.run()
    assert again.calls == {"hybrid": 0, "qr": 0, "qr_pos": 0} and again.shuffled_calls == {}
    # a variant whose prior is missing fails before the first question, with the command to fix it
    bare = QRRanker(model=(tiny_model("qwen2"), tiny_tokenizer()), heads=HEADS, settings=esettings)
    from bookqa.errors import ConfigError

    with pytest.raises(ConfigError, match="bookqa heads prior"):
        _runner(data, ["hybrid", "qr_pos"], esettings, tmp_path / "other", rerankers={"qr": bare}, k=4).run()


def test_refine_variant_reuses_the_first_pass_and_stores_its_short_one(esettings, tmp_path):
    from bookqa.rerank.orders import apply_refine, refine_order

    data = load_dataset("musique", EVAL / "musique" / "musique_mini.jsonl")
    ranker, calls = _counting_ranker(esettings)
    out = tmp_path / "out"
    before = _runner(data, ["hybrid", "qr"], esettings, out, rerankers={"qr": ranker}, k=4).run()
    first, keys_before = list(calls), sum(len(r["passes"]) for r in before.values())
    refine2 = esettings.replace(rerank_refine=2)  # qr_refine's M; "qr" (the ranker as configured) stays plain
    more = _runner(data, ["hybrid", "qr", "qr_refine", "qr_perm_refine"], refine2, out, rerankers={"qr": ranker}, k=4,
                   resume=True, shuffle_check=True)
    rows = more.run()
    multi = [r for r in rows.values() if len(r["candidates"]["items"]) > 1]
    assert multi
    # one forward per distinct order shown: the stored input-order pass was read, not recomputed
    assert len(calls) - len(first) == sum(len(r["passes"]) for r in rows.values()) - keys_before
    for r in multi:
        cands = [c["chunk_id"] for c in r["candidates"]["items"]]
        passes = r["passes"]
        raw = np.array(next(v for k, v in passes.items() if k.endswith(":" + ",".join(map(str, cands))))["raw"])
        shown = refine_order(raw, list(range(len(cands))), 2)
        short = passes[next(k for k in passes if k.endswith(":" + ",".join(str(cands[i]) for i in shown)))]
        expected = apply_refine(raw, shown, short["raw"])
        got = dict(zip(r["configs"]["qr_refine"]["chunk_ids"], r["configs"]["qr_refine"]["scores"]))
        for i, cid in enumerate(cands):
            assert got[cid] == pytest.approx(expected[i], abs=1e-6)  # stored to 6 decimals
        info = r["configs"]["qr_refine"]["info"]
        assert info["refine"] == 2 and info["passes_computed"] == 1 and len(shown) == 2
        assert r["configs"]["qr_refine"]["seconds"] == pytest.approx(
            r["configs"]["qr"]["seconds"] + r["configs"]["qr_refine"]["timings"]["rerank.refine"], abs=2e-3)
        assert "qr_refine" in r["shuffled"]["configs"]
        # permutation averaging first, then the same refinement of its own top two
        from bookqa.rerank.orders import candidate_orders

        n = len(cands)
        full = [np.array(passes[next(k for k in passes if k.endswith(":" + ",".join(str(cands[i]) for i in o)))]["raw"])
                for o in candidate_orders(n, 3)]
        averaged = np.zeros(n)
        for o, raw_o in zip(candidate_orders(n, 3), full):
            z = maxmin(raw_o)
            averaged[o] += z / len(full)
        shown = refine_order(averaged, list(range(n)), 2)
        short = passes[next(k for k in passes if k.endswith(":" + ",".join(str(cands[i]) for i in shown)))]
        expected = apply_refine(averaged, shown, short["raw"])
        got = dict(zip(r["configs"]["qr_perm_refine"]["chunk_ids"], r["configs"]["qr_perm_refine"]["scores"]))
        for i, cid in enumerate(cands):
            assert got[cid] == pytest.approx(expected[i], abs=1e-6)


def _row(qid, cands, gold, ranked, shuffled_order=None, shuffled_ranked=None):
    row = {"qid": qid, "candidates": {"items": [{"chunk_id": c} for c in cands], "seconds": 0.1},
           "gold": {"chunk_ids": gold}, "timings": {},
           "configs": {name: {"chunk_ids": r, "seconds": 1.0} for name, r in ranked.items()}}
    if shuffled_order is not None:
        row["shuffled"] = {"order": shuffled_order,
                           "configs": {name: {"chunk_ids": r} for name, r in shuffled_ranked.items()}}
    return row


def test_bias_statistics_on_constructed_rows():
    assert top1_position([5, 6, 7], [7, 5, 6]) == 3
    assert top1_position([5, 6, 7], [7, 5]) is None  # not a re-ordering of the candidates
    assert top1_position([5, 6, 7], [8, 5, 6]) is None
    stats = position_stats([1, 1, 2, 7, 12, 25])
    assert stats["top1_at_1"] == pytest.approx(2 / 6) and stats["mean_position"] == pytest.approx(8.0)
    assert stats["positions"] == {"1": 2, "2": 1, "7": 1, "12": 1, "25": 1}
    assert stats["bins"] == {"1": 2, "2": 1, "3": 0, "4-5": 0, "6-10": 1, "11-20": 1, "21+": 1}
    rows = [
        # "sticky" keeps the input order: top-1 = position 1 in both orders; gold 3 is third in the input
        _row("a", [1, 2, 3, 4], [3], {"sticky": [1, 2, 3, 4], "good": [3, 1, 2, 4], "bm25": [9, 3]},
             [4, 3, 2, 1], {"sticky": [4, 3, 2, 1], "good": [3, 4, 2, 1]}),
        _row("b", [1, 2, 3, 4], [1, 4], {"sticky": [1, 2, 3, 4], "good": [4, 1, 2, 3], "bm25": [1]},
             [2, 3, 4, 1], {"sticky": [2, 3, 4, 1], "good": [1, 4, 2, 3]}),
    ]
    out = bias_summary(rows, ["sticky", "good", "bm25", "absent"], n_boot=50)
    assert set(out) == {"sticky", "good"}  # bm25 does not rank exactly the candidates
    s, g = out["sticky"], out["good"]
    assert s["original"]["top1_at_1"] == 1.0 and s["shuffled"]["top1_at_1"] == 1.0
    assert g["original"]["positions"] == {"3": 1, "4": 1} and g["shuffled"]["positions"] == {"2": 1, "4": 1}
    # sticky: original R@3 = (1 + 1/2) / 2; shuffled order [4,3,2,1] -> R@3 a: 1, b: 1/2 -> 0.75 both;
    # R@1: original a 0, b 1/2 -> 0.25; shuffled a 0, b 0 -> 0
    assert s["shuffled"]["recall_original"]["R@3"] == pytest.approx(0.75)
    assert s["shuffled"]["recall"]["R@3"]["mean"] == pytest.approx(0.75)
    assert s["shuffled"]["recall_original"]["R@1"] == pytest.approx(0.25)
    assert s["shuffled"]["recall"]["R@1"]["mean"] == pytest.approx(0.0)
    assert s["shuffled"]["delta"]["R@1"] == pytest.approx(-0.25)
    assert g["shuffled"]["recall"]["R@1"]["mean"] == pytest.approx(0.75) and g["shuffled"]["delta"]["R@3"] == 0
    # the yardstick: position 1 holds gold in b's original order (1) only; in neither shuffled order (4, 2)
    ref = gold_at_first(rows + [_row("c", [5, 6], [], {"sticky": [5, 6]})])  # no gold: not counted
    assert ref == {"n": 2, "original": 0.5, "shuffled_n": 2, "shuffled": 0.0}
    md = render_markdown(summarize(rows, {"dataset": "locomo", "configs": ["sticky", "good"], "shuffle_check": True},
                                   n_boot=20))
    assert "| sticky | 2 |" in md and "shuffled: top-1 @pos 1" in md
    assert "first candidate is a gold chunk in 50.0% of the 2 questions with gold in the original order, 0.0% of 2" in md


def test_books_range_and_cli_flags(tmp_path, monkeypatch):
    data = load_dataset("musique", EVAL / "musique" / "musique_mini.jsonl")
    ids = [d.id for d in select(data).documents]
    assert len(ids) == 2
    assert [d.id for d in select(data, books=["1-1"]).documents] == ids[1:]
    assert [d.id for d in select(data, books=["0-5"]).documents] == ids
    monkeypatch.setenv("BOOKQA_DENSE_WEIGHT", "0")
    out = tmp_path / "out"
    assert main(["-q", "--home", str(tmp_path / "home"), "eval", "locomo", "--data", str(EVAL / "locomo" / "locomo_mini.json"),
                 "--books", "0-0", "--configs", "bm25,hybrid", "--k", "5", "--out", str(out), "--no-answers",
                 "--shuffle-check", "--permutations", "2"]) == 0
    run = json.loads((out / "locomo-run.json").read_text())
    assert run["shuffle_check"] is True and run["selection"]["books"] == ["0-0"]
    md = (out / "locomo-report.md").read_text()
    assert "## Order bias" in md and "| hybrid |" in md


def test_trained_refine_and_perm_extend_the_stored_trained_ranking_like_the_ranker_itself(esettings, tmp_path):
    """qr_trained_refine / qr_trained_perm read qr_trained's stored ranking and add only the short prompt /
    the reversed prompt, qr_trained_perm_refine reads qr_trained_perm's and adds the short prompt; their
    rankings equal what QRRanker(refine=2) / QRRanker(permutations=2) / QRRanker(permutations=2, refine=2)
    compute in one call, in the original and the shuffled order."""
    from bookqa.errors import ConfigError

    data = load_dataset("musique", EVAL / "musique" / "musique_mini.jsonl")
    trained, calls = _counting_ranker(esettings)  # one order, no refinement: what qr_trained runs
    like = {name: QRRanker(model=(trained.model, trained.tokenizer), heads=trained.heads, settings=esettings,
                           permutations=orders, refine=refine)
            for name, orders, refine in (("qr_trained_refine", 1, 2), ("qr_trained_perm", 2, 0),
                                         ("qr_trained_perm_refine", 2, 2))}
    # named before what it reads: the runner still runs qr_trained, then qr_trained_perm, then the rest
    runner = _runner(data, ["hybrid", "qr_trained_perm_refine", "qr_trained_refine", "qr_trained_perm"],
                     esettings.replace(rerank_refine=2, rerank_permutations=2), tmp_path / "out",
                     rerankers={"qr_trained": trained}, k=4, shuffle_check=True)
    rows = runner.run()
    assert [c.name for c in runner.configs] == ["hybrid", "qr_trained", "qr_trained_refine", "qr_trained_perm",
                                                "qr_trained_perm_refine"]
    multi = [r for r in rows.values() if len(r["candidates"]["items"]) > 1]
    assert multi
    # per question and order: the full prompt (qr_trained), the short one of two candidates (refine), the
    # reversed full prompt (perm) and a short one after perm — no stored pass is run again
    assert sorted(calls) == sorted([len(r["candidates"]["items"]) for r in multi] * 4 + [2] * 4 * len(multi))
    for r in multi:
        book = runner.preparer.prepare(next(d for d in data.documents if d.id == r["doc_id"])).book
        for where in (r["configs"], r["shuffled"]["configs"]):
            order = (r["shuffled"]["order"] if where is r["shuffled"]["configs"]
                     else [c["chunk_id"] for c in r["candidates"]["items"]])
            for name, base, part in (("qr_trained_refine", "qr_trained", "rerank.refine"),
                                     ("qr_trained_perm", "qr_trained", "rerank.orders"),
                                     ("qr_trained_perm_refine", "qr_trained_perm", "rerank.refine")):
                expected = like[name].rank(r["question"], [book.chunks[i] for i in order])
                got = where[name]
                assert got["chunk_ids"] == expected.chunk_ids
                assert got["scores"] == pytest.approx([x.score for x in expected.results], abs=1e-5)
                assert got["info"]["base"] == base
                assert got["seconds"] == pytest.approx(where[base]["seconds"] + got["timings"][part], abs=2e-3)
            assert where["qr_trained_refine"]["info"]["refined"] == 2
            assert where["qr_trained_perm"]["info"]["passes"] == 2
            assert where["qr_trained_perm_refine"]["info"]["passes"] == 2
            assert where["qr_trained_perm_refine"]["info"]["refined"] == 2
    # a reranker that already refines (or scores two orders) would refine twice: refused before the first question
    with pytest.raises(ConfigError, match="BOOKQA_RERANK_REFINE=0"):
        _runner(data, ["hybrid", "qr_trained_refine"], esettings, tmp_path / "other",
                rerankers={"qr_trained": like["qr_trained_refine"]}, k=4).run()
    with pytest.raises(ConfigError, match="--trained"):
        parse_config_names("qr_trained_refine")
