"""The ask pipeline end to end on the embedded models (search → prefix → QR rerank → generate → cite),
through the local llama.cpp generator and through a real OpenAI-compatible llama.cpp server."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from bookqa.errors import GeneratorError, InputError
from bookqa.library import Library
from helpers import running_llama_server

STORY = Path(__file__).parent / "fixtures" / "ui" / "lighthouse.txt"
pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A short story ingested once, with small settings so each question costs seconds."""
    from bookqa.settings import Settings

    home = tmp_path_factory.mktemp("pipeline-home")
    settings = Settings.from_env(home=home, top_k=6, top_n=2, answer_max_tokens=64, summaries="extractive")
    book = Library(settings).ingest(STORY, title="The Keeper of Gull Rock").book
    return settings, book


def _check_citations(result, book):
    provided = {e.chunk.id: e.chunk for e in result.evidence}
    assert result.citations, f"no citation in {result.answer!r}"
    for c in result.citations:
        assert c.chunk_id in provided
        chunk = provided[c.chunk_id]
        assert (c.start, c.end) == (chunk.start, chunk.end)
        assert chunk.start <= c.quote_start < c.quote_end <= chunk.end
        assert book.text[c.quote_start:c.quote_end] == c.quote
    assert result.invalid_citations == [] or all(n not in {e.number for e in result.evidence}
                                                  for n in result.invalid_citations)


def test_local_path_answers_with_citations(small):
    from bookqa.pipeline import ask

    settings, book = small
    streamed: list[str] = []
    result = ask(book, "What was the name of Marta's cat?", settings, on_token=streamed.append)
    assert result.answer and "".join(streamed).strip() == result.answer
    _check_citations(result, book)
    assert [e.number for e in result.evidence] == [1, 2]
    assert result.info["evidence_order"] == "document"
    assert [e.chunk.start for e in result.evidence] == sorted(e.chunk.start for e in result.evidence)
    assert len(result.ranked) == min(6, len(book.chunks)) and result.ranked[0].rank == 1
    assert {"search", "rerank", "generate", "cite", "total"} <= set(result.timings)
    assert "Pepper" in result.answer or any("Pepper" in e.chunk.text for e in result.evidence)


def test_trimmed_passages_are_read_and_cited_whole(small):
    from bookqa.pipeline import ask

    settings, book = small
    result = ask(book, "What was the name of Marta's cat?", settings.replace(evidence_keep=0.5))
    assert "focus" in result.timings
    for e in result.evidence:
        assert e.shown is not None and len(e.shown) <= len(e.chunk.text)
    _check_citations(result, book)  # citations still resolve to the whole chunks and their sentences
    shown = [row.get("shown") for row in result.to_json()["evidence"]]
    assert shown == [e.shown for e in result.evidence]


def test_empty_question_is_refused(small):
    from bookqa.pipeline import ask

    settings, book = small
    with pytest.raises(InputError, match="empty"):
        ask(book, "   ", settings)


def test_remote_path_and_stopped_server(small, tmp_path):
    pytest.importorskip("llama_cpp.server")
    from bookqa.generate import get_generator
    from bookqa.weights import gguf_file
    from bookqa.pipeline import ask, get_reranker

    settings, book = small
    with running_llama_server(gguf_file("qwen2.5-coder-0.5b", settings), tmp_path) as (proc, base):
        # the transport is under test: no citation check (the served 0.5B cannot judge; test_answer.py)
        remote = settings.replace(generator="remote", base_url=base, request_timeout_s=60, citation_check="off")
        result = ask(book, "Who did Marta pull from the boat?", remote, generator=get_generator(remote))
        _check_citations(result, book)
        assert result.info["generator"].startswith("openai:")
        proc.terminate()
        proc.wait(timeout=20)
        ranker = _Counted(get_reranker(remote))
        t0 = time.perf_counter()
        with pytest.raises(GeneratorError, match="cannot reach the generator"):
            ask(book, "Who did Marta pull from the boat?", remote, generator=get_generator(remote), reranker=ranker)
        assert time.perf_counter() - t0 < 5 and ranker.calls == 0  # probed before the search and the rerank


class _Counted:
    """The real reranker, counting its rank calls."""

    def __init__(self, ranker):
        self.ranker, self.calls = ranker, 0

    def rank(self, *args, **kwargs):
        self.calls += 1
        return self.ranker.rank(*args, **kwargs)
