"""Order-robust QR scores (rerank/debias.py, rerank/prior.py): orders, normalisation, the position prior,
permutation averaging, calibration's cache reuse; numpy fakes and tiny random models."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bookqa.errors import ConfigError
from bookqa.rerank import QRRanker
from bookqa.rerank.orders import (PositionPrior, ScorePass, apply_refine, candidate_orders, combine, find_prior,
                                  interleaved, maxmin, refine_order, score_pass, with_prior)
from bookqa.rerank.heads import HeadSet, load_heads, save_heads
from bookqa.lab.detection.prior import (Observation, choose_mode, curves, estimate_priors, evaluate_modes,
                                 prior_prompts)
from bookqa.lab.detection.seeds import SeedItem, write_seeds
from bookqa.rerank.qr import NULL_QUERY
from test_rerank_qr import CANDIDATES, HEADS, QUESTION, _reference
from test_rerank_tiny import tiny_model, tiny_tokenizer


# --- orders, normalisation, combining (no model) ----------------------------------------------------

def test_candidate_orders():
    assert candidate_orders(5, 1) == [[0, 1, 2, 3, 4]]
    assert candidate_orders(5, 3) == [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [3, 0, 4, 1, 2]]
    assert interleaved(6) == [3, 0, 4, 1, 5, 2]
    six = candidate_orders(5, 6)
    assert len(six) == 6 and len({tuple(o) for o in six}) == 6
    assert all(sorted(o) == list(range(5)) for o in six)
    assert six == candidate_orders(5, 6)  # seeded
    assert candidate_orders(2, 3) == [[0, 1], [1, 0]]  # only two distinct orders exist
    assert candidate_orders(1, 3) == [[0]]
    with pytest.raises(ConfigError):
        candidate_orders(3, 0)


def test_maxmin():
    np.testing.assert_allclose(maxmin([2.0, 4.0, 3.0]), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(maxmin([-1.0, -3.0]), [1.0, 0.0])
    assert maxmin([0.3, 0.3]).tolist() == [0.0, 0.0]
    assert maxmin([]).size == 0


def _fake_passes(texts, value, bias, orders):
    """Passes of a fake scorer: a candidate's score is its content's value plus its position's bias."""
    passes = []
    for order in orders:
        raw = np.empty(len(texts))
        for p, i in enumerate(order):
            raw[i] = value[texts[i]] + bias[p]
        passes.append(ScorePass(order=order, raw=raw, null=None, timings={"prompt": 0.1, "forward": 1.0}))
    return passes


def test_permutation_averaging_maps_scores_back_to_their_candidates():
    texts = ["alpha", "beta", "gamma", "delta", "epsilon"]
    value = {"alpha": 0.1, "beta": 0.9, "gamma": 0.4, "delta": 0.0, "epsilon": 0.7}
    orders = candidate_orders(5, 3)
    # Without a position effect every pass normalises to the same per-content values: averaging must
    # give each candidate its own content's score, whatever order it was shown in.
    got = combine(_fake_passes(texts, value, [0.0] * 5, orders), calibrate=False)
    np.testing.assert_allclose(got, maxmin([value[t] for t in texts]), atol=1e-12)
    # With a position effect: the reference works by content (text -> score per pass), not by index.
    bias = [2.0, 0.5, 0.2, 0.1, 0.0]
    expected = {t: 0.0 for t in texts}
    for order in orders:
        shown = [texts[i] for i in order]
        z = maxmin([value[t] + bias[p] for p, t in enumerate(shown)])
        for p, t in enumerate(shown):
            expected[t] += z[p] / len(orders)
    got = combine(_fake_passes(texts, value, bias, orders), calibrate=False)
    np.testing.assert_allclose(got, [expected[t] for t in texts], atol=1e-12)
    # One plain pass keeps the raw sums; calibration subtracts the null part.
    one = _fake_passes(texts, value, bias, orders[:1])
    np.testing.assert_allclose(combine(one, calibrate=False), one[0].raw)
    one[0].null = np.full(5, 0.25)
    np.testing.assert_allclose(combine(one, calibrate=True), one[0].raw - 0.25)
    with pytest.raises(ConfigError):
        combine(_fake_passes(texts, value, bias, orders[:1]), calibrate=True)


def test_refine_picks_the_top_and_reverses_their_input_positions():
    scores = [0.9, 0.1, 0.5, 0.7, 0.5, 0.0]
    # top 3 by score (ties: earlier first) = 0, 3, 2; shown in the reverse of their input positions
    assert refine_order(scores, [0, 1, 2, 3, 4, 5], 3) == [3, 2, 0]
    # in a shuffled prompt the positions are those of that prompt, not the candidate indices
    assert refine_order(scores, [3, 0, 5, 2, 1, 4], 3) == [2, 0, 3]
    assert refine_order(scores, [0, 1, 2, 3, 4, 5], 10) == [5, 4, 3, 2, 1, 0]  # fewer candidates than m
    # Refined: 1 + mean of the two max-min normalised rankings of the shown three; the rest keep
    # their normalised first score (<= 1) below them, in their first order.
    got = apply_refine(scores, [3, 2, 0], [5.0, 4.0, 1.0])  # the refine pass prefers 3, then 2, then 0
    first = maxmin([0.7, 0.5, 0.9])  # of 3, 2, 0
    second = maxmin([5.0, 4.0, 1.0])
    np.testing.assert_allclose(got[[3, 2, 0]], 1 + (first + second) / 2)
    np.testing.assert_allclose(got[[1, 4, 5]], maxmin(scores)[[1, 4, 5]])
    assert sorted(range(6), key=lambda i: -got[i])[:3] == [3, 0, 2]  # means 0.75, 0.5, 0.375
    assert min(got[[3, 2, 0]]) >= 1.0 >= max(got[[1, 4, 5]])


def test_refine_on_a_tiny_model_scores_the_reversed_top_in_a_second_prompt(settings):
    ranker = _ranker(settings, refine=3)
    res = ranker.rank(QUESTION, CANDIDATES)
    # Reference by content: the plain ranking, then the top 3 shown in reverse input order on their own.
    base = _ranker(settings)
    first = base.head_scores(QUESTION, CANDIDATES)[0].sum(0)
    shown = refine_order(first, list(range(len(CANDIDATES))), 3)
    second = base.head_scores(QUESTION, [CANDIDATES[i] for i in shown])[0].sum(0)
    expected = apply_refine(first, shown, second)
    by_index = {r.index: r.score for r in res}
    for i in range(len(CANDIDATES)):
        assert by_index[i] == pytest.approx(expected[i], abs=1e-6)
    assert res.info["refined"] == 3 and res.info["refine"] == 3 and res.info["passes"] == 1
    assert 0 < res.timings["refine"] < res.timings["forward"]
    assert {r.index for r in list(res)[:3]} == set(shown)
    with pytest.raises(ConfigError, match="refine"):
        _ranker(settings, refine=1)


def test_position_prior_curve_apply_and_storage(tmp_path):
    prior = PositionPrior(curves={4: [0.8, 0.4, 0.2, 0.3]}, mode="subtract",
                          scoring={"calibrate": False, "aggregate": "sum", "question_span": "question"})
    np.testing.assert_allclose(prior.curve(4), [0.8, 0.4, 0.2, 0.3])
    seven = prior.curve(7)  # relative positions 0, 1/6, ..., 1 on the 4-point curve
    assert seven[0] == pytest.approx(0.8) and seven[-1] == pytest.approx(0.3)
    assert seven[3] == pytest.approx(0.3)  # the middle: halfway between positions 2 and 3 of 4
    np.testing.assert_allclose(prior.apply([1.0, 0.5, 0.0, 0.5]), [0.2, 0.1, -0.2, 0.2])
    divide = PositionPrior(curves={4: [0.8, 0.4, 0.02, 0.3]}, mode="divide")
    np.testing.assert_allclose(divide.apply([0.8, 0.4, 0.1, 0.0]), [1.0, 1.0, 2.0, 0.0])  # floor 0.05
    two = PositionPrior(curves={10: list(np.linspace(1, 0, 10)), 40: list(np.linspace(2, 0, 40))})
    assert two.curve(20)[0] == pytest.approx(2.0)  # equally far (log) from 10 and 40: the larger count
    assert two.curve(12)[0] == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        PositionPrior(curves={3: [0.1, 0.2]})
    # Stored in the heads file, one entry per scoring; a new estimate replaces its own scoring's entry.
    heads = HeadSet(heads=HEADS)
    cal = PositionPrior(curves={4: [0.5, 0.3, 0.2, 0.1]}, scoring={**prior.scoring, "calibrate": True})
    heads = with_prior(with_prior(heads, [prior]), [cal])
    heads = with_prior(heads, [PositionPrior(curves={4: [0.9, 0.1, 0.1, 0.1]}, scoring=prior.scoring)])
    save_heads(tmp_path / "h.json", heads)
    loaded = load_heads(tmp_path / "h.json")
    assert len(loaded.position_prior) == 2
    assert find_prior(loaded, False, "sum", "question").curves[4] == [0.9, 0.1, 0.1, 0.1]
    assert find_prior(loaded, True, "sum", "question").curves[4] == [0.5, 0.3, 0.2, 0.1]
    assert find_prior(loaded, False, "max", "question") is None
    assert loaded.top(2).position_prior is None  # other heads: the prior does not apply


# --- estimation (no model) --------------------------------------------------------------------------

def _items(n_items=6, n_cands=5, sources=("musique", "locomo")):
    items = []
    for s, source in enumerate(sources):
        for i in range(n_items):
            cands = [f"{source} doc{i} text {j}" for j in range(n_cands)]
            items.append(SeedItem(id=f"{source}:{i}", source=source, question=f"question {i} of {source}?",
                                  candidates=cands, gold=[(i + s) % n_cands], doc_id=f"{source}-doc{i}"))
    return items


def test_prior_prompts_fill_with_other_documents():
    items = _items()
    prompts = prior_prompts(items, [3, 12], seed=1)
    assert len(prompts) == 2 * len(items)
    assert prompts == prior_prompts(items, [3, 12], seed=1)  # deterministic
    by_id = {it.id: it for it in items}
    for pr in prompts:
        it = by_id[pr.item_id]
        assert len(set(pr.texts)) == pr.n
        assert [pr.texts[g] for g in pr.gold] == [it.candidates[g] for g in it.gold]
        others = [t for t in pr.texts if t not in it.candidates]
        if pr.n == 3:
            assert not others  # fewer than its own candidates: a sample of them
        else:
            assert set(it.candidates) <= set(pr.texts)
            assert others and all(t.startswith(it.source) and f" doc{it.id.split(':')[1]} " not in t for t in others)
    assert len({tuple(pr.gold) for pr in prompts if pr.n == 12}) > 1  # gold lands at various positions


def test_curves_skip_gold_and_fill_unseen_positions():
    obs = [Observation("a", np.array([1.0, 0.2, 0.0, 0.4]), [0]),
           Observation("b", np.array([0.6, 1.0, 0.0, 0.2]), [1]),
           Observation("c", np.array([0.5, 1.0, 0.0]), [1])]
    fitted, prompts = curves(obs)
    np.testing.assert_allclose(fitted[4], [0.6, 0.2, 0.0, 0.3])
    np.testing.assert_allclose(fitted[3], [0.5, 0.25, 0.0])  # position 2 only ever held gold: interpolated
    assert prompts == {4: 2, 3: 1}


def test_estimation_finds_a_planted_primacy_bias():
    """Simulated scores: gold content earns 1, others noise, and position 1 earns +1.5 on its own. The
    fitted prior shows the bump, and correcting with it (held out) beats no correction."""
    rng = np.random.default_rng(0)
    items = _items(n_items=30, n_cands=6)
    obs = []
    for pr in prior_prompts(items, [8], seed=0):
        s = rng.uniform(0, 0.6, pr.n)
        s[pr.gold] += 1.0
        s[0] += 1.5
        obs.append(Observation(pr.item_id, maxmin(s), pr.gold))
    fitted, _ = curves(obs)
    assert fitted[8][0] > 0.8 and max(fitted[8][1:]) < 0.4
    ev = evaluate_modes(obs)
    assert ev["n"] == len(obs)
    assert ev["none"]["top1_at_position_1"] > 0.8
    assert ev["subtract"]["hit@1"] > ev["none"]["hit@1"] + 0.3
    assert ev["subtract"]["top1_at_position_1"] < 0.3
    assert choose_mode(ev) in ("subtract", "divide")
    assert choose_mode({"n": 0}) == "subtract"


# --- on tiny models ------------------------------------------------------------------------------

def _ranker(settings, heads=HEADS, **kw):
    kw.setdefault("refine", 0)  # each option on its own (the CPU default also refines the top 5)
    return QRRanker(model=(tiny_model("qwen3"), tiny_tokenizer()), heads=heads, settings=settings, **kw)


def test_calibration_runs_the_prefix_once(settings):
    """Counted at the embedding layer: the calibrated call pushes the prompt once plus the null
    question's own suffix, never the candidates again; the kept null part equals a two-pass reference."""
    ranker = _ranker(settings, calibrate=True)
    embedded = []
    hook = ranker.model.model.embed_tokens.register_forward_hook(lambda m, a, out: embedded.append(a[0].shape[1]))
    try:
        got, info = ranker.head_scores(QUESTION, CANDIDATES)
        plain, pinfo = ranker.head_scores(QUESTION, CANDIDATES, keep_null=True)
    finally:
        hook.remove()
    prompt, null = ranker.prompt(QUESTION, CANDIDATES), ranker.prompt(NULL_QUERY, CANDIDATES)
    suffix = null.n_tokens - info["null_reused_tokens"]
    assert embedded == [prompt.n_tokens, suffix] * 2
    assert suffix < null.n_tokens - prompt.candidates[-1][1] + 1  # no candidate token runs twice
    ref_q, ref_null = _reference(ranker, QUESTION, "question"), _reference(ranker, NULL_QUERY, "question")
    np.testing.assert_allclose(got, ref_q - ref_null, atol=1e-5)
    np.testing.assert_allclose(plain, ref_q, atol=1e-5)
    np.testing.assert_allclose(pinfo["null_scores"], ref_null, atol=1e-5)
    # The pass used by the order-robust path carries both parts, by candidate.
    # A pass in another order maps its scores back to the candidates they belong to.
    ps = score_pass(ranker, QUESTION, CANDIDATES, None, [4, 3, 2, 1, 0], with_null=True)
    rev, rinfo = ranker.head_scores(QUESTION, CANDIDATES[::-1], keep_null=True)
    np.testing.assert_allclose(ps.raw, rev.sum(0)[::-1], atol=1e-9)
    np.testing.assert_allclose(ps.null, rinfo["null_scores"].sum(0)[::-1], atol=1e-9)
    assert ps.seconds(True) > ps.seconds(False) > 0


def test_permutation_averaging_on_a_tiny_model(settings):
    ranker = _ranker(settings, permutations=2)
    res = ranker.rank(QUESTION, CANDIDATES)
    by_text = {CANDIDATES[r.index]: r.score for r in res}
    # Reference by content: each order's prompt scored on its own, normalised, keyed by text.
    base = _ranker(settings)
    expected = {t: 0.0 for t in CANDIDATES}
    for shown in (CANDIDATES, CANDIDATES[::-1]):
        z = maxmin(base.head_scores(QUESTION, shown)[0].sum(0))
        for p, t in enumerate(shown):
            expected[t] += z[p] / 2
    for t in CANDIDATES:
        assert by_text[t] == pytest.approx(expected[t], abs=1e-6)
    # Input and reversed orders make the same two prompts: the same score per candidate either way.
    back = ranker.rank(QUESTION, CANDIDATES[::-1])
    for r in back:
        assert r.score == pytest.approx(by_text[CANDIDATES[::-1][r.index]], abs=1e-9)
    assert res.info["passes"] == 2 and res.timings["permutation"] > 0
    assert res.timings["forward"] >= res.timings["permutation"] - res.timings["prompt"]
    with pytest.raises(ConfigError):
        _ranker(settings, permutations=99)


def test_permutations_zero_picks_the_orders_by_device(settings):
    from bookqa.rerank.orders import resolve_permutations
    from bookqa.settings import Settings

    assert [resolve_permutations(0, d) for d in ("cpu", "cuda", "cuda:1", "mps")] == [1, 2, 2, 2]
    assert resolve_permutations(3, "cpu") == 3 and resolve_permutations(1, "cuda") == 1
    # trained heads: one order (refined) on every device; an explicit number is kept
    assert [resolve_permutations(0, d, trained=True) for d in ("cpu", "cuda", "mps")] == [1, 1, 1]
    assert resolve_permutations(2, "cuda", trained=True) == 2
    assert Settings().rerank_permutations == 0  # the default is the device's choice
    ranker = _ranker(settings.replace(rerank_permutations=0))  # the tiny model runs on CPU: one order
    assert ranker.permutations == 1 and ranker.rank(QUESTION, CANDIDATES).info["permutations"] == 1
    assert _ranker(settings, permutations=0).permutations == 1
    with pytest.raises(ConfigError, match="0 \\(auto\\)"):
        settings.replace(rerank_permutations=-1)


def test_auto_orders_follow_whether_the_heads_were_trained(settings, monkeypatch):
    """QRRanker asks resolve_permutations with its heads' training record: a head file written by `bookqa
    train` (detection.trained) gets one order and the top refined where untrained heads get two (a GPU's
    choice, forced here on CPU)."""
    import bookqa.rerank.orders as debias

    from bookqa.rerank.orders import trained_heads

    monkeypatch.setitem(debias.AUTO_PERMUTATIONS, "cpu", 2)  # as on an accelerator
    trained = HeadSet(heads=list(HEADS), detection={"method": "bookqa train", "trained": {"scope": "lora"}})
    assert trained_heads(trained) and not trained_heads(HeadSet(heads=list(HEADS)))
    auto = settings.replace(rerank_permutations=0, rerank_refine=-1)
    plain = _ranker(auto, refine=None)
    assert (plain.permutations, plain.refine) == (2, 0)
    own = _ranker(auto, heads=trained, refine=None)
    assert (own.permutations, own.refine) == (1, 5)
    res = own.rank(QUESTION, CANDIDATES)
    assert res.info["permutations"] == 1 and res.info["refined"] == len(CANDIDATES)


def test_refine_auto_refines_the_top_five_only_with_one_order(settings):
    from bookqa.rerank.orders import resolve_refine
    from bookqa.settings import Settings

    assert Settings().rerank_refine == -1  # auto
    assert [resolve_refine(-1, p) for p in (1, 2, 3)] == [5, 0, 0]
    assert resolve_refine(0, 1) == 0 and resolve_refine(3, 2) == 3
    auto = QRRanker(model=(tiny_model("qwen3"), tiny_tokenizer()), heads=HEADS, settings=settings)
    assert auto.permutations == 1 and auto.refine == 5  # the tiny model runs on CPU: one order, refined
    res = auto.rank(QUESTION, CANDIDATES)
    assert res.info["refine"] == 5 and res.info["refined"] == len(CANDIDATES) and res.info["layers_run"] == 3
    two = QRRanker(model=(tiny_model("qwen3"), tiny_tokenizer()), heads=HEADS, settings=settings, permutations=2)
    assert two.refine == 0 and two.rank(QUESTION, CANDIDATES).info["refined"] is None
    with pytest.raises(ConfigError, match="-1 \\(auto\\)"):
        settings.replace(rerank_refine=-2)


def test_position_prior_on_a_tiny_model(settings):
    with pytest.raises(ConfigError, match="bookqa heads prior"):
        _ranker(settings, debias="position")
    curve = [0.9, 0.5, 0.3, 0.2, 0.1]
    prior = PositionPrior(curves={5: curve}, scoring={"calibrate": False, "aggregate": "sum",
                                                      "question_span": "question"})
    heads = with_prior(HeadSet(heads=HEADS), [prior])
    ranker = _ranker(settings, heads=heads, debias="position")
    res = ranker.rank(QUESTION, CANDIDATES, per_head=True)
    raw = _ranker(settings).head_scores(QUESTION, CANDIDATES)[0].sum(0)
    expected = maxmin(raw) - np.array(curve)
    for r in res:
        assert r.score == pytest.approx(expected[r.index], abs=1e-6)
        assert set(r.per_head) == {"2-1", "0-3", "1-0", "2-2"}
    assert res.info["debias"] == "position" and res.info["prior_mode"] == "subtract" and res.info["passes"] == 1
    # A calibrated ranker needs a prior estimated on calibrated scores.
    with pytest.raises(ConfigError, match="calibrate=true"):
        _ranker(settings, heads=heads, debias="position", calibrate=True)


def test_a_prior_is_not_written_into_a_heads_file_that_ships_with_bookqa(tmp_path, monkeypatch, capsys):
    from bookqa.cli import heads as heads_cli
    from bookqa.cli import main

    model_dir = tmp_path / "tiny"
    tiny_model("qwen2").save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)
    package = tmp_path / "installed-bookqa"  # stands in for the installed package's folder
    heads_file = package / "heads" / "tiny.json"
    save_heads(heads_file, HeadSet(heads=HEADS, model="tiny"))
    before = heads_file.read_bytes()
    write_seeds(tmp_path / "seeds.jsonl", [SeedItem("s:0", "s", "who was the captain?",
                                                    [f"the ship sailed {j} nights" for j in range(4)], [1])])
    monkeypatch.setattr(heads_cli, "PACKAGE_DIR", package.resolve())
    argv = ["-q", "--home", str(tmp_path / "home"), "heads", "prior", "--model", str(model_dir), "--heads",
            str(heads_file), "--data", str(tmp_path / "seeds.jsonl"), "--counts", "3"]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "ship with bookqa" in err and "--out FILE.json" in err
    assert heads_file.read_bytes() == before  # untouched
    # With --out the estimate goes to the user's own file, the shipped one still untouched.
    assert main(argv + ["--out", str(tmp_path / "mine.json")]) == 0
    assert heads_file.read_bytes() == before
    assert json.loads((tmp_path / "mine.json").read_text())["position_prior"]


def test_estimate_and_store_a_prior_with_the_cli(tmp_path, settings, capsys):
    from bookqa.cli import main

    model_dir = tmp_path / "tiny"
    tiny_model("qwen2").save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)
    heads_file = tmp_path / "heads.json"
    save_heads(heads_file, HeadSet(heads=HEADS, model="tiny"))
    items = [SeedItem(f"s:{i}", "s" if i % 2 else "t", f"who was the captain {i}?",
                      [f"the ship {i} sailed {j} nights at sea" for j in range(4)], [i % 4], doc_id=f"d{i}")
             for i in range(4)]
    write_seeds(tmp_path / "seeds.jsonl", items)
    assert main(["-q", "--home", str(tmp_path / "home"), "heads", "prior", "--model", str(model_dir), "--heads",
                 str(heads_file), "--data", str(tmp_path / "seeds.jsonl"), "--counts", "3,6"]) == 0
    printed = capsys.readouterr().out
    assert "| plain | 6 | 4 |" in printed and "| calibrated | subtract |" in printed
    stored = json.loads(heads_file.read_text())
    assert stored["heads"] == [list(h) for h in HEADS]  # the heads themselves are untouched
    entries = stored["position_prior"]
    assert sorted(e["scoring"]["calibrate"] for e in entries) == [False, True]
    for e in entries:
        assert sorted(e["curves"]) == ["3", "6"] and len(e["curves"]["6"]) == 6
        assert e["prompts"] == {"3": 4, "6": 4} and e["mode"] in ("subtract", "divide")
        assert e["source"]["data"] == [str(tmp_path / "seeds.jsonl")] and e["evaluation"]["chosen"] == e["mode"]
    # The stored prior drives the reranker.
    ranker = QRRanker(model=(tiny_model("qwen2"), tiny_tokenizer()), heads=str(heads_file), settings=settings,
                      debias="position", calibrate=True)
    assert ranker.position_prior.scoring["calibrate"] is True
    assert len(ranker.rank("who was the captain?", CANDIDATES)) == len(CANDIDATES)
    # estimate_priors straight from the library: the same two scorings from one pass per prompt.
    priors = estimate_priors(_ranker(settings), items, [3], seed=0)
    assert [p.scoring["calibrate"] for p in priors] == [False, True]
    assert all(len(p.curves[3]) == 3 for p in priors)
