"""Caching, resuming, dry runs, progress and concurrency of the summarizer (fake completion callable)."""
from __future__ import annotations

import hashlib
import json
import threading

import pytest

from summarizer import CallCache, Summarizer


class FakeLLM:
    """Deterministic answers; optionally raises after ``fail_after`` calls (an interrupted run)."""

    def __init__(self, fail_after=None, exc=RuntimeError):
        self.calls: list[str] = []
        self.fail_after = fail_after
        self.exc = exc
        self.lock = threading.Lock()

    def __call__(self, prompt: str, max_tokens: int) -> str:
        with self.lock:
            if self.fail_after is not None and len(self.calls) >= self.fail_after:
                raise self.exc("the server went away")
            self.calls.append(prompt)
        tag = hashlib.sha1(prompt.encode()).hexdigest()[:6]
        return (f"Esther Summerson arrived at Bleak House in week {tag}. Mr Jarndyce welcomed her, and "
                "Ada and Richard soon became her friends.")


def words(text: str) -> int:
    return len(text.split())


def pieces(n: int):
    out, pos = [], 0
    for i in range(n):
        text = f"Passage {i}. Esther walked through the fog of London with Ada and Richard."
        out.append((text, pos, pos + len(text)))
        pos += len(text) + 1
    return out


def test_rerun_makes_zero_calls(tmp_path):
    cache = tmp_path / "cache.json"
    first = FakeLLM()
    tree1 = Summarizer(first, words, cache=cache, model_id="m").summarize(pieces(401))
    assert len(first.calls) == 24
    second = FakeLLM()
    s = Summarizer(second, words, cache=cache, model_id="m")
    tree2 = s.summarize(pieces(401))
    assert second.calls == []
    assert s.stats.calls == 0 and s.stats.cached == 24
    assert tree2.to_json()["nodes"] == tree1.to_json()["nodes"]
    assert json.loads(cache.read_text())["version"] == 1


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupted_run_resumes_with_only_missing_calls(tmp_path, exc):
    cache = tmp_path / "cache.json"
    broken = FakeLLM(fail_after=9, exc=exc)
    with pytest.raises(exc):
        Summarizer(broken, words, cache=cache, model_id="m").summarize(pieces(401))
    assert len(broken.calls) == 9
    plan = Summarizer(FakeLLM(), words, cache=cache, model_id="m").dry_run(pieces(401))
    assert plan.cached == 9 and plan.calls == 24 - 9
    resumed = FakeLLM()
    tree = Summarizer(resumed, words, cache=cache, model_id="m").summarize(pieces(401))
    assert len(resumed.calls) == 24 - 9
    assert set(resumed.calls).isdisjoint(broken.calls)
    clean = Summarizer(FakeLLM(), words, model_id="m").summarize(pieces(401))
    assert tree.to_json()["nodes"] == clean.to_json()["nodes"]


def test_cache_key_depends_on_model(tmp_path):
    cache = tmp_path / "cache.json"
    Summarizer(FakeLLM(), words, cache=cache, model_id="a").summarize(pieces(30))
    other = FakeLLM()
    Summarizer(other, words, cache=cache, model_id="b").summarize(pieces(30))
    assert len(other.calls) == 3


def test_dry_run_counts_before_anything_runs(tmp_path):
    llm = FakeLLM()
    s = Summarizer(llm, words, cache=tmp_path / "c.json")
    plan = s.dry_run(pieces(401))
    assert llm.calls == [] and not (tmp_path / "c.json").exists()
    assert (plan.nodes, plan.calls, plan.cached) == (24, 24, 0)
    assert plan.estimated  # level-1 prompts depend on answers not made yet
    block_prompt_words = plan.input_tokens  # exact for blocks, estimated above
    assert block_prompt_words > 21 * 20 * 12
    assert plan.output_tokens > 0
    assert "24 model calls" in plan.describe()
    s.summarize(pieces(401))
    after = Summarizer(FakeLLM(), words, cache=tmp_path / "c.json").dry_run(pieces(401))
    assert (after.calls, after.cached, after.input_tokens, after.estimated) == (0, 24, 0, False)
    extractive = Summarizer(mode="extractive").dry_run(pieces(401))
    assert extractive.calls == 0 and extractive.nodes == 24


def test_progress_reports_every_node():
    seen = []
    Summarizer(FakeLLM(), words, progress=lambda stage, done, total: seen.append((stage, done, total))
               ).summarize(pieces(401))
    assert seen[0] == ("summaries", 0, 24) and seen[-1] == ("summaries", 24, 24)
    assert [d for _, d, _ in seen] == list(range(25))


def test_concurrent_workers_give_the_same_tree():
    serial = Summarizer(FakeLLM(), words).summarize(pieces(401))
    llm = FakeLLM()
    parallel = Summarizer(llm, words, workers=4).summarize(pieces(401))
    assert len(llm.calls) == 24
    assert parallel.to_json()["nodes"] == serial.to_json()["nodes"]


def test_concurrent_failure_keeps_finished_work(tmp_path):
    cache = tmp_path / "c.json"
    broken = FakeLLM(fail_after=10)
    with pytest.raises(RuntimeError):
        Summarizer(broken, words, workers=3, cache=cache).summarize(pieces(401))
    assert len(CallCache(cache)) == len(broken.calls) == 10
    resumed = FakeLLM()
    Summarizer(resumed, words, workers=3, cache=cache).summarize(pieces(401))
    assert len(resumed.calls) == 14


def test_unreadable_cache_is_ignored(tmp_path):
    cache = tmp_path / "c.json"
    cache.write_text("{not json")
    llm = FakeLLM()
    Summarizer(llm, words, cache=cache).summarize(pieces(5))
    assert len(llm.calls) == 1 and len(CallCache(cache)) == 1


def test_long_block_is_shortened_to_fit():
    long_pieces = [(" ".join(["word"] * 400) + f" end{i}.", i * 3000, i * 3000 + 2000) for i in range(20)]
    llm = FakeLLM()
    Summarizer(llm, words, max_input_tokens=1000).summarize(long_pieces)
    assert words(llm.calls[0]) <= 1000
    assert "end0." in llm.calls[0] and "end19." not in llm.calls[0]
