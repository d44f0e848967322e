"""The evaluation loop on fixtures: rows, resume, configurations on identical candidates, the report and
the CLI. BM25-only first stage (dense weight 0) and tiny random models; nothing heavy."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bookqa.cli import main
from bookqa.errors import ConfigError, InputError
from bookqa.lab.baselines.pointwise import PointwiseReranker
from bookqa.lab.evaluate.registry import build_configs, parse_config_names
from bookqa.lab.evaluate.corpus import eval_settings
from bookqa.lab.evaluate.datasets import load_dataset
from bookqa.lab.evaluate.metrics import recall_at_k
from bookqa.lab.evaluate.runner import Runner, read_id_list, read_rows, select
from bookqa.rerank import QRRanker

from conftest import FIXTURES
from test_rerank_tiny import tiny_model, tiny_tokenizer

EVAL = FIXTURES / "eval"


@pytest.fixture
def esettings(settings, tmp_path):
    return eval_settings(settings.replace(dense_weight=0.0, chunk_tokens=64), tmp_path / "evalbooks")


def _runner(data, names, esettings, out, resume=False, rerankers=None, **kw):
    selection = select(data, **{k: kw.pop(k) for k in ("books", "per_book", "limit") if k in kw})
    configs = build_configs(names, esettings, rerankers=rerankers)
    return Runner(data, selection, configs, esettings, out, k=kw.pop("k", 10), resume=resume, show_bar=False, **kw)


def test_bm25_run_writes_rows_and_report(esettings, tmp_path):
    data = load_dataset("musique", EVAL / "musique" / "musique_mini.jsonl")
    runner = _runner(data, ["bm25", "hybrid"], esettings, tmp_path / "out")
    rows = runner.run()
    assert runner.calls == {"bm25": 2, "hybrid": 2}
    stored = read_rows(tmp_path / "out" / "musique.jsonl")
    assert list(stored) == ["2hop__1_2", "3hop1__3_4_5"]
    row = stored["2hop__1_2"]
    assert row["gold"]["chunk_ids"] == [1, 3] and row["gold"]["evidence"]["items"] == ["1", "3"]
    assert row["book"]["chunks"] == 6 and row["k"] == 10
    # with the dense weight at 0 the hybrid order is BM25's order (one retriever fused)
    assert row["configs"]["hybrid"]["chunk_ids"] == row["configs"]["bm25"]["chunk_ids"]
    assert [c["chunk_id"] for c in row["candidates"]["items"]] == row["configs"]["hybrid"]["chunk_ids"]
    report = json.loads((tmp_path / "out" / "musique-report.json").read_text())
    expected = sum(recall_at_k(r["configs"]["bm25"]["chunk_ids"], r["gold"]["chunk_ids"], 3) for r in rows.values()) / 2
    assert report["configs"]["bm25"]["recall"]["R@3"]["mean"] == pytest.approx(expected)
    assert report["counts"]["done"] == 2 and report["counts"]["excluded_no_gold"] == 0 and not report["partial"]
    md = (tmp_path / "out" / "musique-report.md").read_text()
    assert "| bm25 | 2 |" in md and "R@50" in md and "95% bootstrap" in md
    # a later run with fewer configurations still shows the stored ones, marked as from an earlier run
    _runner(data, ["bm25"], esettings, tmp_path / "out", resume=True).run()
    md = (tmp_path / "out" / "musique-report.md").read_text()
    assert "| hybrid \\* | 2 |" in md and "not a configuration of this run" in md


def test_resume_skips_finished_questions_and_adds_configs(esettings, tmp_path):
    data = load_dataset("musique", EVAL / "musique" / "musique_mini.jsonl")
    out = tmp_path / "out"
    first = _runner(data, ["bm25"], esettings, out)
    first.run()
    assert first.calls == {"bm25": 2}
    with pytest.raises(ConfigError, match="--resume"):
        _runner(data, ["bm25"], esettings, out).run()
    again = _runner(data, ["bm25"], esettings, out, resume=True)
    again.run()
    assert again.calls == {"bm25": 0}
    # a killed run can leave a torn last line: it is ignored
    with open(out / "musique.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"qid": "2hop__1_2", "configs": {"bm')
    built = json.loads((out / "musique-books.json").read_text())
    more = _runner(data, ["bm25", "hybrid"], esettings, out, resume=True)
    more.run()
    assert more.calls == {"bm25": 0, "hybrid": 2}
    # the books were built by the first run: their record of that build survives the resumed run's open
    assert json.loads((out / "musique-books.json").read_text()) == built
    assert any(b["stages_run"] for b in built.values())
    rows = read_rows(out / "musique.jsonl")
    assert len((out / "musique.jsonl").read_text().splitlines()) == 2  # compacted: one row per question
    assert all(set(r["configs"]) == {"bm25", "hybrid"} for r in rows.values())
    # a second run on the same results file at the same time is refused; a stale lock is taken over
    (out / "musique.lock").write_text(str(os.getpid()))
    with pytest.raises(ConfigError, match="another bookqa eval"):
        _runner(data, ["bm25"], esettings, out, resume=True).run()
    (out / "musique.lock").write_text("999999999")
    _runner(data, ["bm25"], esettings, out, resume=True).run()
    assert not (out / "musique.lock").exists()
    # another K changes the candidates: the question is redone
    other_k = _runner(data, ["bm25"], esettings, out, resume=True, k=3)
    other_k.run()
    assert other_k.calls == {"bm25": 2}


class _Interrupting:
    """A reranker that is stopped (Ctrl-C) on its first call, as a slow baseline could be."""

    def __init__(self, inner):
        self.inner, self.stopped = inner, False

    def rank(self, *args, **kwargs):
        if not self.stopped:
            self.stopped = True
            raise KeyboardInterrupt
        return self.inner.rank(*args, **kwargs)


def test_interruption_keeps_the_configurations_that_finished(esettings, tmp_path):
    data = load_dataset("musique", EVAL / "musique" / "musique_mini.jsonl")
    out = tmp_path / "out"
    slow = _Interrupting(PointwiseReranker(model=(tiny_model("qwen3"), tiny_tokenizer()), settings=esettings))
    first = _runner(data, ["bm25", "hybrid", "pointwise"], esettings, out, rerankers={"pointwise": slow}, k=4)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    assert first.calls == {"bm25": 1, "hybrid": 1, "pointwise": 0}
    stored = read_rows(out / "musique.jsonl")
    assert list(stored) == ["2hop__1_2"] and set(stored["2hop__1_2"]["configs"]) == {"bm25", "hybrid"}
    again = _runner(data, ["bm25", "hybrid", "pointwise"], esettings, out, resume=True,
                    rerankers={"pointwise": slow}, k=4)
    again.run()
    # the first question's finished configurations are not redone; its candidates are the stored ones
    assert again.calls == {"bm25": 1, "hybrid": 1, "pointwise": 2}
    rows = read_rows(out / "musique.jsonl")
    assert all(set(r["configs"]) == {"bm25", "hybrid", "pointwise"} for r in rows.values())
    assert rows["2hop__1_2"]["candidates"] == stored["2hop__1_2"]["candidates"]


def test_rerankers_share_identical_candidates(esettings, tmp_path):
    data = load_dataset("musique", EVAL / "musique" / "musique_mini.jsonl")
    pair = (tiny_model("qwen2"), tiny_tokenizer())
    rerankers = {"qr": QRRanker(model=pair, heads=[(0, 1), (1, 2)], settings=esettings),
                 "pointwise": PointwiseReranker(model=(tiny_model("qwen3"), tiny_tokenizer()), settings=esettings)}
    names = parse_config_names("hybrid,qr_fused,qr_prefix,pointwise")
    runner = _runner(data, names, esettings, tmp_path / "out", rerankers=rerankers, k=4)
    assert [c.name for c in runner.configs] == ["hybrid", "qr", "qr_prefix", "pointwise", "qr_fused"]
    rows = runner.run()
    for row in rows.values():
        cands = [c["chunk_id"] for c in row["candidates"]["items"]]
        assert 1 <= len(cands) <= 4  # BM25 returns only chunks sharing a query term
        for name in ("qr", "qr_prefix", "pointwise", "qr_fused"):
            assert sorted(row["configs"][name]["chunk_ids"]) == sorted(cands), name
        # fused = 1/(60 + rank in qr) + 1/(60 + first-stage rank), recomputed by hand
        qr_rank = {c: i for i, c in enumerate(row["configs"]["qr"]["chunk_ids"], 1)}
        first_rank = {c: i for i, c in enumerate(cands, 1)}
        fused = {c: 1 / (60 + qr_rank[c]) + 1 / (60 + first_rank[c]) for c in cands}
        assert row["configs"]["qr_fused"]["scores"] == pytest.approx(sorted(fused.values(), reverse=True), abs=1e-6)
        assert row["configs"]["qr_fused"]["seconds"] >= row["configs"]["qr"]["seconds"]
        assert "prefix" in row["configs"]["qr_prefix"]["timings"]
        assert row["configs"]["pointwise"]["info"]["pairs"] == len(cands)
    assert runner.calls == {"hybrid": 2, "qr": 2, "qr_prefix": 2, "pointwise": 2, "qr_fused": 2}


def test_selection_books_per_book_limit_and_adversarial():
    data = load_dataset("locomo", EVAL / "locomo" / "locomo_mini.json")
    sel = select(data)
    assert len(sel.questions) == 6 and sel.excluded == {"adversarial (LoCoMo category 5)": 1}
    assert len(select(data, include_adversarial=True).questions) == 7
    three = select(data, per_book=3, seed=1)
    four = select(data, per_book=4, seed=1)
    assert len(three.questions) == 3 and {q.id for q in three.questions} <= {q.id for q in four.questions}
    assert select(data, per_book=3, seed=1).questions == three.questions
    assert len(select(data, limit=2).questions) == 2
    small, large = select(data, sample=2), select(data, sample=4)
    assert len(small.questions) == 2 and {q.id for q in small.questions} <= {q.id for q in large.questions}
    assert [q.id for q in large.questions] == sorted((q.id for q in large.questions), key=lambda i: int(i.split(":")[1]))
    left = select(data, exclude_ids={"conv-t1:0", "conv-t1:2"}, exclude_reason="seen")
    assert len(left.questions) == 4 and left.excluded["seen"] == 2
    mq = load_dataset("musique", EVAL / "musique" / "musique_mini.jsonl")
    assert [d.id for d in select(mq, books=["1"]).documents] == ["2hop__1_2"]
    assert [d.id for d in select(mq, books=["3hop"]).documents] == ["3hop1__3_4_5"]


def test_read_id_list(tmp_path):
    (tmp_path / "ids.txt").write_text("# head detection\nmusique:2hop__1_2\n\n3hop1__3_4_5\n")
    (tmp_path / "seeds.jsonl").write_text('{"id": "musique:x__9", "candidates": []}\n')
    assert read_id_list([tmp_path / "ids.txt", tmp_path / "seeds.jsonl"], "musique") == {"2hop__1_2", "3hop1__3_4_5", "x__9"}
    (tmp_path / "bad.jsonl").write_text('{"qid": 1}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl, line 1"):
        read_id_list([tmp_path / "bad.jsonl"], "musique")


def test_no_gold_questions_are_counted_and_skip_recall_only_configs(esettings, tmp_path):
    data = load_dataset("narrativeqa", EVAL / "narrativeqa_jsonl")
    runner = _runner(data, ["bm25", "hybrid"], esettings, tmp_path / "out")
    rows = runner.run()
    brother = next(r for r in rows.values() if "brother" in r["question"])
    assert brother["gold"]["chunk_ids"] == [] and brother["configs"] == {}  # no gold, no answers: nothing to run
    report = json.loads((tmp_path / "out" / "narrativeqa-report.json").read_text())
    assert report["gold_kind"] == "silver" and report["counts"]["excluded_no_gold"] == 1
    assert report["configs"]["bm25"]["n"] == report["counts"]["with_gold"] == 2


def test_rank_all_ranks_no_gold_questions_and_recall_still_leaves_them_out(esettings, tmp_path):
    data = load_dataset("narrativeqa", EVAL / "narrativeqa_jsonl")
    rows = _runner(data, ["bm25", "hybrid"], esettings, tmp_path / "out", rank_all=True).run()
    brother = next(r for r in rows.values() if "brother" in r["question"])
    assert brother["gold"]["chunk_ids"] == [] and set(brother["configs"]) == {"bm25", "hybrid"}
    assert brother["configs"]["bm25"]["chunk_ids"]  # a real ranking the answers bench can read
    report = json.loads((tmp_path / "out" / "narrativeqa-report.json").read_text())
    assert report["counts"]["excluded_no_gold"] == 1 and report["configs"]["bm25"]["n"] == 2


def test_answers_require_their_configuration(esettings, tmp_path):
    data = load_dataset("quality", EVAL / "quality" / "quality_mini.jsonl")
    with pytest.raises(ConfigError, match="not in this run"):
        _runner(data, ["bm25"], esettings, tmp_path / "out", answers=True, answer_config="qr")
    with pytest.raises(ConfigError, match="needs --trained"):
        parse_config_names("qr_trained")
    with pytest.raises(ConfigError, match="unknown configuration"):
        parse_config_names("bm25,colbert")


def test_cli_eval_and_report_only(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOKQA_DENSE_WEIGHT", "0")
    out = tmp_path / "out"
    argv = ["-q", "--home", str(tmp_path / "home"), "eval", "locomo", "--data", str(EVAL / "locomo" / "locomo_mini.json"),
            "--configs", "bm25", "--k", "5", "--out", str(out), "--no-answers"]
    assert main(argv) == 0
    rows = read_rows(out / "locomo.jsonl")
    assert len(rows) == 6 and all(r["subset"] for r in rows.values())
    report = json.loads((out / "locomo-report.json").read_text())
    assert report["counts"]["excluded"] == {"adversarial (LoCoMo category 5)": 1}
    assert set(report["by_subset"]["bm25"]) >= {"single-hop", "temporal", "macro mean"}
    assert report["run"]["command"].startswith("bookqa") and report["run"]["k"] == 5
    assert (tmp_path / "home" / "eval" / "books").is_dir()  # the evaluation's own library
    (out / "locomo-report.md").unlink()
    report_only = argv[:-1] + ["--report-only"]
    assert main(report_only) == 0
    assert "| bm25 | 6 |" in (out / "locomo-report.md").read_text()
    # the report covers the questions the command selects, not every row of the results file
    assert main(report_only + ["--limit", "2"]) == 0
    md = (out / "locomo-report.md").read_text()
    assert "complete run: 2 of 2 selected questions" in md and "| bm25 | 2 |" in md
    assert json.loads((out / "locomo-report.json").read_text())["run"]["command"] == report["run"]["command"]
    assert main(argv) == 2  # results exist and --resume was not given: a one-line error
    assert json.loads((out / "locomo-run.json").read_text())["settings"]["rerank"]["calibrate"] is False


def test_cli_eval_resume_refuses_other_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BOOKQA_DENSE_WEIGHT", "0")
    out = tmp_path / "out"
    argv = ["-q", "--home", str(tmp_path / "home"), "eval", "locomo", "--data", str(EVAL / "locomo" / "locomo_mini.json"),
            "--configs", "bm25", "--k", "5", "--out", str(out), "--no-answers", "--limit", "2"]
    assert main(argv) == 0
    before = (out / "locomo.jsonl").read_bytes()
    # "qr" would mean another reranker than the stored rows': refused, nothing touched
    monkeypatch.setenv("BOOKQA_RERANK_CALIBRATE", "1")
    assert main(argv + ["--resume"]) == 2
    assert "other settings (rerank.calibrate: False -> True)" in capsys.readouterr().err
    assert (out / "locomo.jsonl").read_bytes() == before
    monkeypatch.delenv("BOOKQA_RERANK_CALIBRATE")
    # a run file from before an option existed lacks its key, at any depth: still the same settings
    run_file = out / "locomo-run.json"
    run = json.loads(run_file.read_text())
    del run["settings"]["rerank"]["refine"]
    run_file.write_text(json.dumps(run))
    assert main(argv[:-1] + ["3", "--resume"]) == 0  # same settings: resumes
    assert len(read_rows(out / "locomo.jsonl")) == 3
    # device and dtype are recorded as resolved on this machine: "auto" is float32 on one CPU and bfloat16
    # on another, and rows of both must not meet under one name
    run = json.loads(run_file.read_text())
    assert run["settings"]["device"] == "cpu" and run["settings"]["dtype"] in ("float32", "bfloat16")
    other = "bfloat16" if run["settings"]["dtype"] == "float32" else "float32"
    monkeypatch.setenv("BOOKQA_DTYPE", other)
    capsys.readouterr()
    assert main(argv + ["--resume"]) == 2
    assert f"dtype: '{run['settings']['dtype']}' -> '{other}'" in capsys.readouterr().err
    run["settings"]["dtype"] = "auto"  # a run file from before they were resolved: unknown, so it passes
    run_file.write_text(json.dumps(run))
    assert main(argv + ["--resume"]) == 0
    assert json.loads(run_file.read_text())["settings"]["dtype"] == other


@pytest.mark.real_model
def test_answers_with_the_local_generator(esettings, tmp_path):
    data = load_dataset("quality", EVAL / "quality" / "quality_mini.jsonl")
    runner = _runner(data, ["bm25"], esettings, tmp_path / "out", answers=True, answer_config="bm25")
    rows = runner.run()
    for row in rows.values():
        ans = row["answer"]
        assert ans["config"] == "bm25" and len(ans["evidence"]) == esettings.top_n and ans["text"]
        assert ans["scores"]["accuracy"] in (0.0, 1.0)
    report = json.loads((tmp_path / "out" / "quality-report.json").read_text())
    assert report["answers"]["bm25"]["n"] == 2


def test_cli_eval_resume_refuses_another_trained_checkpoint(tmp_path, monkeypatch, capsys):
    """qr_trained rows of one checkpoint must not be continued with another's: the run file records which."""
    monkeypatch.setenv("BOOKQA_DENSE_WEIGHT", "0")
    out = tmp_path / "out"
    first, second = tmp_path / "ckpt-a", tmp_path / "ckpt-b"
    for directory, loss in ((first, 1.0), (second, 2.0)):
        directory.mkdir()
        (directory / "training-report.json").write_text(json.dumps({"loss": loss}))
    argv = ["-q", "--home", str(tmp_path / "home"), "eval", "locomo", "--data", str(EVAL / "locomo" / "locomo_mini.json"),
            "--configs", "bm25", "--k", "5", "--out", str(out), "--no-answers", "--limit", "2"]
    assert main(argv + ["--trained", str(first)]) == 0
    run = json.loads((out / "locomo-run.json").read_text())
    stored = run["settings"]["trained"]
    # stored relative to the working directory (a committed report names no machine path)
    assert not Path(stored["path"]).is_absolute() and Path(stored["path"]).resolve() == first.resolve()
    assert len(stored["sha256"]) == 64
    # what "qr" merges into the reranker (reranker_adapter resolved): by default the embedded model's adapter
    assert run["settings"]["adapter"] == "qwen2.5-coder-0.5b-qr-lora"
    del run["settings"]["adapter"]  # a run file from before the setting: its rows were made without one,
    (out / "locomo-run.json").write_text(json.dumps(run))
    capsys.readouterr()
    assert main(argv + ["--trained", str(first), "--resume"]) == 2  # so the default would mix two rerankers
    assert "adapter: 'none' -> 'qwen2.5-coder-0.5b-qr-lora'" in capsys.readouterr().err
    monkeypatch.setenv("BOOKQA_RERANKER_ADAPTER", "none")  # as the committed runs' scripts pin it
    assert main(argv + ["--trained", str(first), "--resume"]) == 0
    assert main(argv + ["--trained", str(second), "--resume"]) == 2
    assert "other settings (trained.sha256:" in capsys.readouterr().err
    # a run that names no checkpoint keeps the stored one; the same checkpoint, moved, resumes
    assert main(argv + ["--resume"]) == 0
    assert json.loads((out / "locomo-run.json").read_text())["settings"]["trained"] == stored
    moved = first.rename(tmp_path / "ckpt-moved")
    assert main(argv[:-1] + ["3", "--trained", str(moved), "--resume"]) == 0
    assert len(read_rows(out / "locomo.jsonl")) == 3
    # --trained also takes a shipped adapter's name (bookqa/adapters/<name>/); anything else is refused
    from bookqa.rerank import adapter as adapter_module

    shipped = tmp_path / "adapters"
    (shipped / "tiny-qr-lora").mkdir(parents=True)
    (shipped / "tiny-qr-lora" / "adapter.json").write_text("{}")
    monkeypatch.setattr(adapter_module, "SHIPPED_DIR", shipped)
    assert main(argv + ["--trained", "tiny-qr-lora", "--out", str(tmp_path / "named")]) == 0
    named = json.loads((tmp_path / "named" / "locomo-run.json").read_text())["settings"]["trained"]
    assert Path(named["path"]).resolve() == (shipped / "tiny-qr-lora").resolve()
    capsys.readouterr()
    assert main(argv + ["--trained", "no-such-adapter", "--out", str(tmp_path / "none")]) != 0
    assert "neither a checkpoint directory nor a shipped adapter" in capsys.readouterr().err


def test_cached_configurations_rank_the_same_candidates_from_each_books_cache(esettings, tmp_path):
    data = load_dataset("musique", EVAL / "musique" / "musique_mini.jsonl")
    pair = (tiny_model("qwen2"), tiny_tokenizer())
    rerankers = {"qr": QRRanker(model=pair, heads=[(0, 1), (1, 2)], settings=esettings, refine=0)}
    names = parse_config_names("hybrid,qr,qr_cached,qr_cascade")
    runner = _runner(data, names, esettings, tmp_path / "out", rerankers=rerankers, k=4)
    rows = runner.run()
    for row in rows.values():
        cands = sorted(c["chunk_id"] for c in row["candidates"]["items"])
        for name in ("qr_cached", "qr_cascade"):
            assert sorted(row["configs"][name]["chunk_ids"]) == cands, name
        assert row["configs"]["qr_cached"]["info"]["cached_tokens"] > 0
    books = runner.preparer.library.books()
    assert books and all((book.dir / "qr_kv").is_dir() for book in books)


def test_the_cached_pass_with_its_question_side_adapter_shares_the_plain_cached_store(esettings, tmp_path):
    """qr_cached_adapted asks through the adapter over the chunk keys/values qr_cached stored: the same
    candidates, other scores, one store per book."""
    import torch

    from bookqa.lab.train.scope import prepare
    from bookqa.rerank.adapter import write_adapter
    from bookqa.rerank.heads import HeadSet, save_heads

    base_dir, adapter_dir = tmp_path / "tiny", tmp_path / "tiny-question-lora"
    tiny_model("qwen2").save_pretrained(base_dir)
    tiny_tokenizer().save_pretrained(base_dir)
    heads = HeadSet(heads=[(0, 1), (1, 2)], model="tiny")
    save_heads(tmp_path / "heads.json", heads)
    adapted = tiny_model("qwen2").model  # the decoder stack, as training adapts it
    prepared = prepare(adapted, heads, "lora")
    with torch.no_grad():
        for p in prepared.trainable.values():
            p.add_(torch.randn_like(p) * 0.2)
    write_adapter(adapter_dir, adapted, prepared.lora_modules(), base_model=str(base_dir), rank=16, alpha=32.0,
                  extra={"applies_to": "question"})
    save_heads(adapter_dir / "qr_heads.json", heads)
    settings = esettings.replace(qr_cached_adapter=str(adapter_dir), dtype="float32")
    data = load_dataset("musique", EVAL / "musique" / "musique_mini.jsonl")
    ranker = QRRanker(model=str(base_dir), heads=str(tmp_path / "heads.json"), settings=settings, refine=0)
    names = parse_config_names("hybrid,qr_cached,qr_cached_adapted")
    runner = _runner(data, names, settings, tmp_path / "out", rerankers={"qr": ranker}, k=4)
    rows = runner.run()
    differ = 0
    for row in rows.values():
        plain, mine = row["configs"]["qr_cached"], row["configs"]["qr_cached_adapted"]
        assert sorted(plain["chunk_ids"]) == sorted(mine["chunk_ids"])
        differ += plain["scores"] != mine["scores"]
    assert differ
    for book in runner.preparer.library.books():
        assert len([d for d in (book.dir / "qr_kv").iterdir() if d.is_dir()]) == 1
    with pytest.raises(ConfigError, match="BOOKQA_QR_CACHED_ADAPTER"):
        [c.setup() for c in build_configs(["qr_cached_adapted"], esettings, rerankers={"qr": ranker})]


@pytest.mark.real_model
def test_short_answers_are_recorded_as_such_and_made_again_for_another_style(esettings, tmp_path):
    """The evaluation answers in the style it is given (short by default on the command line): each stored
    answer says which, a short answer is a phrase, and a resume in the other style writes it again."""
    data = load_dataset("locomo", EVAL / "locomo" / "locomo_mini.json")
    short = esettings.replace(answer_style="short")
    rows = _runner(data, ["bm25"], short, tmp_path / "out", answers=True, answer_config="bm25", limit=2).run()
    for row in rows.values():
        ans = row["answer"]
        assert ans["style"] == "short" and ans["text"] and ans["completion_tokens"] <= 48
    report = (tmp_path / "out" / "locomo-report.md").read_text()
    assert "answer style short" in report
    prose = esettings.replace(answer_style="prose")
    again = _runner(data, ["bm25"], prose, tmp_path / "out", answers=True, answer_config="bm25", limit=2,
                    resume=True).run()
    assert {r["answer"]["style"] for r in again.values()} == {"prose"}


def test_a_run_record_names_data_and_checkpoints_relative_to_the_working_directory(tmp_path, monkeypatch):
    from bookqa.fileio import portable_path

    data = tmp_path / "data" / "locomo.json"
    data.parent.mkdir()
    data.write_text("[]")
    work = tmp_path / "repo"
    work.mkdir()
    monkeypatch.chdir(work)
    assert portable_path(str(data)) == "../data/locomo.json"
    assert portable_path("--configs") == "--configs"  # not a path: kept
    assert portable_path(str(tmp_path / "missing")) == str(tmp_path / "missing")  # not on disk: kept as typed
