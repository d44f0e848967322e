"""The answers bench (lab/evaluate/answer_bench.py): variant specs, resumable rows, and the report's
maths (paired differences, citation precision, refusals) on hand-made rows; a real generator run is in
the real-model test at the end."""
from __future__ import annotations

import json

import pytest

from bookqa.errors import ConfigError
from bookqa.lab.evaluate.answer_bench import ANSWERS, Variant, read_answers, render, summarize
from bookqa.settings import Settings


def test_variant_specs_parse_and_refuse_nonsense():
    v = Variant.parse("big=model:qwen2.5-coder-1.5b,style:prose,evidence:bm25,top:5")
    assert (v.name, v.model, v.style, v.evidence, v.top, v.generator) == ("big", "qwen2.5-coder-1.5b", "prose", "bm25", 5, "local")
    remote = Variant.parse("r=generator:remote,base_url:http://127.0.0.1:8011/v1,model:m")
    assert remote.base_url == "http://127.0.0.1:8011/v1" and remote.style == "short"
    assert Variant.parse("c=check:judge").check == "judge" and v.check == "off"
    assert Variant.parse("c=check:judge").unchecked() == Variant(name="other").unchecked()
    worked = Variant.parse("w=refusal:example")
    assert worked.settings(Settings()).refusal_example and not v.settings(Settings()).refusal_example
    assert worked.unchecked() != Variant(name="other").unchecked()  # the example changes the answer's text
    ranked = Variant.parse("o=order:rank")
    assert ranked.settings(Settings()).evidence_order == "rank" and v.settings(Settings()).evidence_order == "document"
    assert ranked.unchecked() != Variant(name="other").unchecked()  # the order changes the prompt
    trimmed = Variant.parse("k=keep:0.5")
    assert trimmed.keep == 0.5 and trimmed.settings(Settings()).evidence_keep == 0.5 and v.keep == 1.0
    assert trimmed.unchecked() != Variant(name="other").unchecked()  # trimming changes the prompt
    for bad in ("noequals", "x=colour:red", "x=style:essay", "x=top:0", "=style:short", "x=check:vibes",
                "x=refusal:always", "x=order:random", "x=keep:0", "x=keep:1.5", "x=keep:half"):
        with pytest.raises(ConfigError):
            Variant.parse(bad)


def _row(qid, gold, category=1):
    return {"qid": qid, "dataset": "locomo", "question": "q?", "references": ["r"], "category": category,
            "gold": {"chunk_ids": gold}, "configs": {"bm25": {"chunk_ids": [1, 2, 3]}}, "book": {"id": "b"}}


def _answer(qid, variant, f1, cites, refused=False, evidence=(1, 2, 3)):
    return {"qid": qid, "variant": variant, "text": "t", "citations": cites, "refused": refused, "evidence": list(evidence),
            "scores": {"f1": f1, "em": 0.0, "rougeL": f1, "locomo_f1": f1}, "seconds": 1.0, "prompt_seconds": 0.8,
            "write_seconds": 0.2, "prompt_tokens": 700, "answer_tokens": 5, "rss_mb": 900.0, "generator": "g"}


def test_summary_pairs_variants_and_measures_citation_precision():
    rows = [_row("a", [1]), _row("b", [2]), _row("c", [], category=5)]
    cite = lambda cid, inferred=False: {"chunk_id": cid, "inferred": inferred}  # noqa: E731
    done = {("a", "base"): _answer("a", "base", 0.0, [cite(1), cite(3, True)]),
            ("b", "base"): _answer("b", "base", 0.5, [cite(3)]),
            ("c", "base"): _answer("c", "base", 0.0, [], refused=True),
            ("a", "new"): _answer("a", "new", 1.0, [cite(1)]),
            ("b", "new"): _answer("b", "new", 0.5, [cite(2, True)])}
    variants = [Variant(name="base"), Variant(name="new", style="prose")]
    s = summarize(rows, variants, done)
    base, new = s["variants"]["base"], s["variants"]["new"]
    assert base["n"] == 3 and new["n"] == 2
    assert base["f1"]["mean"] == pytest.approx(1 / 6) and base["refused"] == pytest.approx(1 / 3)
    assert base["adversarial_refused"] == 1.0
    assert base["with_valid_citation"] == pytest.approx(2 / 3) and base["with_model_citation"] == pytest.approx(2 / 3)
    # per question: a has 1 of 2 citations on gold, b has 0 of 1 -> mean 0.25; model's own: 1/1 and 0/1
    cp = base["citation_precision"]
    assert cp["all"]["mean"] == pytest.approx(0.25) and cp["model"]["mean"] == pytest.approx(0.5)
    assert cp["attributed"]["mean"] == 0.0 and cp["attributed"]["n"] == 1
    assert new["citation_precision"]["all"]["mean"] == 1.0
    pair = s["paired"]["new"]
    assert pair["n"] == 2 and pair["f1"]["mean"] == pytest.approx(0.5) and (pair["f1"]["won"], pair["f1"]["lost"]) == (1, 0)
    md = render(s)
    assert "| new | 2 | 50.0 [" in md and "Citations against gold evidence" in md and "LoCoMo F1 by category" in md
    # recall: gold among the passages read (a: {1}, b: {2}) that a citation points at
    assert base["citation_recall"]["mean"] == pytest.approx(0.5) and new["citation_recall"]["mean"] == 1.0


def test_a_checked_variant_counts_only_supported_citations_and_pairs_their_precision():
    rows = [_row("a", [1]), _row("b", [2])]
    cite = lambda cid, ok=None: {"chunk_id": cid, "inferred": False, **({} if ok is None else {"supported": ok})}  # noqa: E731
    done = {("a", "base"): _answer("a", "base", 0.5, [cite(1), cite(3)]),
            ("b", "base"): _answer("b", "base", 0.5, [cite(3)]),
            ("a", "checked"): {**_answer("a", "checked", 0.5, [cite(1, True), cite(3, False)]), "check": "judge",
                               "check_seconds": 0.4},
            ("b", "checked"): {**_answer("b", "checked", 0.5, [cite(3, False)]), "check": "judge", "check_seconds": 0.2}}
    s = summarize(rows, [Variant(name="base"), Variant(name="checked", check="judge")], done)
    checked = s["variants"]["checked"]
    # a: the unsupported [3] is not shown as backing -> 1/1; b: nothing shown -> no precision for b
    assert checked["citation_precision"]["all"]["mean"] == 1.0 and checked["citation_precision"]["all"]["n"] == 1
    assert checked["unsupported_share"] == pytest.approx(2 / 3) and checked["citation_recall"]["mean"] == pytest.approx(0.5)
    pair = s["paired"]["checked"]["citation_precision"]
    assert pair["n"] == 1 and pair["mean"] == pytest.approx(0.5) and (pair["won"], pair["lost"]) == (1, 0)
    md = render(s)
    assert "| checked | judge | 100.0" in md and "67%" in md


def test_an_answer_no_passage_backs_is_counted_with_the_refusals():
    rows = [_row("a", [1]), _row("b", [2]), _row("c", [2]), _row("d", [2])]
    cite = lambda cid, ok: {"chunk_id": cid, "inferred": False, "supported": ok}  # noqa: E731
    checked = lambda qid, cites, refused=False: {**_answer(qid, "checked", 0.0, cites, refused=refused),  # noqa: E731
                                                 "check": "both", "check_seconds": 0.1}
    done = {("a", "checked"): checked("a", [cite(1, True), cite(3, False)]),  # backed by one passage
            ("b", "checked"): checked("b", [cite(3, False)]),  # backed by none: shown as not held
            ("c", "checked"): checked("c", []),  # its attribution failed everywhere: backed by none
            ("d", "checked"): checked("d", [], refused=True)}  # a refusal is refused, not unbacked
    for q in "abcd":
        done[q, "plain"] = _answer(q, "plain", 0.0, [cite(1, None)])
    s = summarize(rows, [Variant(name="plain"), Variant(name="checked", check="both")], done)
    e = s["variants"]["checked"]
    assert (e["refused"], e["unbacked"], e["flagged"]) == (0.25, 0.5, 0.75)
    assert "flagged" not in s["variants"]["plain"]  # an unchecked answer cannot be unbacked
    md = render(s)
    assert "| checked | both | 25% | 50% | 75% |" in md and "| plain | off | 0% | – | – |" in md


def test_stored_answers_survive_a_torn_last_line(tmp_path):
    path = tmp_path / ANSWERS
    path.write_text(json.dumps(_answer("a", "v", 1.0, [])) + "\n" + '{"qid": "b", "vari', encoding="utf-8")
    assert list(read_answers(path)) == [("a", "v")]


@pytest.mark.real_model
def test_the_bench_answers_stored_questions_with_the_embedded_generator_and_resumes(tmp_path, settings):
    """Two variants (prose and short) over two LoCoMo questions stored by a real `bookqa eval` run: every
    answer is written once, a second run writes nothing new, and the report pairs the two."""
    from bookqa.cli import main
    from conftest import FIXTURES

    home = tmp_path / "home"
    out = tmp_path / "run"
    base = ["-q", "--home", str(home)]
    assert main(base + ["eval", "locomo", "--data", str(FIXTURES / "eval" / "locomo" / "locomo_mini.json"),
                        "--configs", "bm25", "--k", "5", "--out", str(out), "--no-answers", "--limit", "2"]) == 0
    # a question on a book the evaluation library does not hold is skipped, the others answered
    results = out / "locomo.jsonl"
    stored = results.read_text().splitlines()
    stray = {**json.loads(stored[0]), "qid": "stray:0", "book": {"id": "no-such-book-0000", "chunks": 1}}
    results.write_text("\n".join(stored + [json.dumps(stray)]) + "\n")
    argv = base + ["eval-answers", str(out), "--out", str(tmp_path / "answers"),
                   "--variant", "p=style:prose,evidence:bm25", "--variant", "s=style:short,evidence:bm25,top:2,check:both"]
    assert main(argv) == 0
    lines = (tmp_path / "answers" / ANSWERS).read_text().splitlines()
    assert len(lines) == 4 and "stray:0" not in {json.loads(x)["qid"] for x in lines}
    rows = [json.loads(x) for x in lines]
    assert {r["variant"] for r in rows} == {"p", "s"} and all(r["prompt_tokens"] > 100 for r in rows)
    by = {(r["qid"], r["variant"]): r["evidence"] for r in rows}
    for (qid, variant), evidence in by.items():  # the same ranking, the short variant reads its top 2
        if variant == "s":
            assert evidence == by[qid, "p"][:2] and len(by[qid, "p"]) <= 3
    assert main(argv) == 0 and len((tmp_path / "answers" / ANSWERS).read_text().splitlines()) == 4
    report = json.loads((tmp_path / "answers" / "answers-report.json").read_text())
    assert report["paired"]["s"]["n"] == 2 and report["variants"]["p"]["n"] == 2
    checked = [json.loads(x) for x in lines if json.loads(x)["variant"] == "s"]
    assert all(r["check"] == "both" and "check_seconds" in r for r in checked)
    assert all(isinstance(c["supported"], bool) for r in checked for c in r["citations"])


def test_rerankers_are_paired_with_the_twin_that_reads_the_first_variants_evidence():
    rows = [_row("a", [1]), _row("b", [2])]
    for r in rows:
        r["configs"]["hybrid"] = {"chunk_ids": [3, 2, 1]}
    done = {("a", "qr"): _answer("a", "qr", 1.0, []), ("b", "qr"): _answer("b", "qr", 0.5, []),
            ("a", "hy"): _answer("a", "hy", 0.5, []), ("b", "hy"): _answer("b", "hy", 0.5, []),
            ("a", "hy-prose"): _answer("a", "hy-prose", 0.0, []), ("b", "hy-prose"): _answer("b", "hy-prose", 0.0, [])}
    variants = [Variant(name="qr", evidence="bm25"), Variant(name="hy", evidence="hybrid"),
                Variant(name="hy-prose", evidence="hybrid", style="prose")]  # no prose twin on bm25: unpaired
    s = summarize(rows, variants, done)
    assert [(r["with"], r["against"]) for r in s["rankers"]] == [("qr", "hy")]
    f1 = s["rankers"][0]["f1"]
    assert f1["n"] == 2 and f1["mean"] == pytest.approx(0.25) and (f1["won"], f1["lost"]) == (1, 0)
    assert "Rerankers judged downstream" in render(s)


def test_evidence_changes_are_paired_with_the_plain_twin():
    rows = [_row("a", [1]), _row("b", [2])]
    done = {}
    for name, (fa, fb) in {"base": (0.0, 0.0), "plain": (0.5, 0.5), "rank": (1.0, 0.5), "trim": (0.0, 0.5),
                           "trim-prose": (1.0, 1.0)}.items():
        done["a", name], done["b", name] = _answer("a", name, fa, []), _answer("b", name, fb, [])
    variants = [Variant(name="base", style="prose"), Variant(name="plain"), Variant(name="rank", order="rank"),
                Variant(name="trim", keep=0.5, top=5),
                Variant(name="trim-prose", keep=0.5, style="prose", model="other")]  # no plain twin: unpaired
    s = summarize(rows, variants, done)
    got = {(r["with"], r["against"]): r for r in s["evidence_changes"]}
    assert set(got) == {("rank", "plain"), ("trim", "plain")}
    assert got["rank", "plain"]["changed"] == {"order": "rank"}
    assert got["trim", "plain"]["changed"] == {"keep": 0.5, "top": 5}
    assert got["rank", "plain"]["f1"]["mean"] == pytest.approx(0.25) and got["trim", "plain"]["f1"]["mean"] == pytest.approx(-0.25)
    assert "Evidence given another way" in render(s)
