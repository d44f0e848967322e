"""The summaries stage in bookqa: summaries.json, modes, transcripts, the prefix, the CLI.

LLM-mode structure tests use a deterministic fake generator (the Generator interface around fixed
answers); the real llama.cpp model is exercised in test_generate_local.py."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bookqa.cli import main
from bookqa.generate import Completion
from bookqa.library import Library
from bookqa.stages import ChunkStage
from bookqa.summaries import (SummaryStage, load_summaries, plan_summaries, summary_prefix, token_counter)

SAMPLE = Path(__file__).parents[1] / "bookqa" / "data" / "sample" / "dying_detective.txt"
TRANSCRIPT = Path(__file__).parent / "fixtures" / "ingest" / "transcript.txt"


class FakeGenerator:
    """Deterministic answers in the Generator interface (block summaries or event JSON)."""

    model_id = "fake:v1"

    def __init__(self):
        self.prompts: list[str] = []

    def complete(self, prompt, max_tokens, temperature=0.0, stop=None):
        self.prompts.append(prompt)
        if '"related_line_indices"' in prompt:
            text = json.dumps({"events": [{"summary": "Bob painted the garden gate green.", "class": "EPHEMERAL",
                                           "related_line_indices": [1, 2]}]})
        else:
            tag = hashlib.sha1(prompt.encode()).hexdigest()[:6]
            text = f"Watson found Holmes gravely ill in Baker Street (case {tag}) and fetched Culverton Smith."
        return Completion(text, len(prompt.split()), len(text.split()), 0.0, "stop")

    def stream(self, prompt, max_tokens, temperature=0.0, stop=None):
        yield self.complete(prompt, max_tokens).text

    def count_tokens(self, text):
        return len(text.split())


def stages(generator=None):
    return [ChunkStage(), SummaryStage(generator)]


def test_extractive_stage_writes_a_tree(settings):
    lib = Library(settings)
    report = lib.ingest(SAMPLE, stages=stages())
    book = report.book
    assert "summaries" in report.stages_run
    tree = load_summaries(book)
    n = len(book.chunks)
    assert tree.meta["mode"] == "extractive" and tree.n_chunks == n
    for level in tree.levels:
        assert [c for node in level for c in node.chunk_ids] == list(range(n))
    assert all(node.status == "extractive" and node.text for node in tree.nodes())
    assert "Gutenberg" not in tree.levels[0][0].text
    assert book.stage("summaries")["nodes"] == sum(len(lv) for lv in tree.levels)
    # unchanged settings: nothing to do
    again = lib.ingest(SAMPLE, stages=stages())
    assert again.stages_run == [] and "summaries" in again.stages_skipped
    # the prefix for the reranker: within budget in reranker tokens, covering the candidates
    prefix = summary_prefix(book, [0, 1, n - 1], settings)
    count = token_counter(settings)
    assert 0 < prefix.tokens == count(prefix.text) <= settings.prefix_tokens
    assert "L0-0" in prefix.used
    tight = summary_prefix(book, list(range(n)), settings.replace(prefix_tokens=100))
    assert tight.tokens <= 100


def test_mode_none(settings):
    lib = Library(settings.replace(summaries="none"))
    book = lib.ingest(SAMPLE, stages=stages()).book
    assert load_summaries(book) is None
    assert summary_prefix(book, [0, 1], settings).text == ""


def test_llm_stage_and_upgrade_is_kept(settings):
    fake = FakeGenerator()
    llm_settings = settings.replace(summaries="llm")
    lib = Library(llm_settings)
    book = lib.ingest(SAMPLE, stages=stages(fake)).book
    n_blocks = len(load_summaries(book).levels[0])
    assert len(fake.prompts) == n_blocks + (1 if n_blocks > 1 else 0)
    tree = load_summaries(book)
    assert tree.meta["mode"] == "llm" and tree.meta["model"] == "fake:v1"
    assert all(node.status == "ok" for node in tree.nodes())
    assert (book.dir / "summaries-cache.json").exists()
    info = book.stage("summaries")
    assert info["calls"] == len(fake.prompts) and info["failed"] == 0
    plan = plan_summaries(book, llm_settings, generator=FakeGenerator())
    assert plan.calls == 0 and plan.cached == len(fake.prompts)
    # the default (extractive) settings do not throw the LLM summaries away
    report = Library(settings).ingest(SAMPLE, stages=stages())
    assert report.stages_run == ["summaries"]
    assert report.book.stage("summaries")["mode"] == "llm (kept)"
    assert load_summaries(book).meta["mode"] == "llm"
    # a re-run in llm mode after a changed fingerprint reuses every cached answer
    again = FakeGenerator()
    Library(llm_settings).build(book, stages=[SummaryStage(again)])
    assert again.prompts == []


def test_transcript_sessions(settings):
    fake = FakeGenerator()
    lib = Library(settings.replace(summaries="llm"))
    book = lib.ingest(TRANSCRIPT, stages=stages(fake)).book
    tree = load_summaries(book)
    assert tree.meta["kind"] == "sessions"
    sessions = [node.session for node in tree.levels[0]]
    assert sessions == sorted(sessions) and sessions[0] == 1
    first = tree.levels[0][0]
    assert first.events[0]["utterance_ids"] == ["S1:1", "S1:2"]
    assert set(first.events[0]["chunk_ids"]) <= set(first.chunk_ids)
    assert "1. [19:02] Alice: Did you finish the garden fence?" in fake.prompts[0]
    prefix = summary_prefix(book, first.events[0]["chunk_ids"], settings)
    assert prefix.used[0] == "L0-0/e1" and "gate" in prefix.text
    extractive = Library(settings).ingest(TRANSCRIPT, stages=stages())  # llm tree kept
    assert extractive.book.stage("summaries")["mode"] == "llm (kept)"


def test_cli_summarize_extractive_and_dry_run(settings, capsys):
    home = str(settings.home)
    lib = Library(settings.replace(summaries="none"))
    book = lib.ingest(SAMPLE, stages=stages()).book
    assert main(["--home", home, "summarize", book.id, "--dry-run", "--mode", "extractive"]) == 0
    assert "extractive: no model calls" in capsys.readouterr().out
    assert main(["-q", "--home", home, "summarize", book.id, "--mode", "extractive"]) == 0
    out = capsys.readouterr().out
    assert "summaries (extractive)" in out and "Book summary:" in out
    assert load_summaries(book).meta["mode"] == "extractive"
    assert main(["-q", "--home", home, "summarize", book.id, "--mode", "extractive"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_cli_remote_unreachable_is_one_line(settings, capsys):
    home = str(settings.home)
    book = Library(settings.replace(summaries="none")).ingest(SAMPLE, stages=stages()).book
    code = main(["-q", "--home", home, "summarize", book.id, "--generator", "remote",
                 "--base-url", "http://127.0.0.1:9/v1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot reach the generator at http://127.0.0.1:9/v1/chat/completions" in err
    assert "is the server running?" in err and "Traceback" not in err
