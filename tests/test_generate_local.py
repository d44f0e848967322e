"""The local llama.cpp generator and LLM summaries on the real embedded model (``real_model``)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")

from bookqa.generate import get_generator, text_completer  # noqa: E402
from bookqa.generate.local import load_llama  # noqa: E402
from summarizer import Summarizer, problem  # noqa: E402

pytestmark = pytest.mark.real_model

SAMPLE = Path(__file__).parents[1] / "bookqa" / "data" / "sample" / "dying_detective.txt"


@pytest.fixture(scope="module")
def generator():
    from bookqa.settings import Settings

    return get_generator(Settings.from_env(generator="local", generator_n_ctx=2048))


def test_complete_stream_count(generator):
    out = generator.complete("Name the capital of France in one word.", max_tokens=8)
    assert "Paris" in out.text
    assert out.prompt_tokens > 5 and 0 < out.completion_tokens <= 8 and out.seconds > 0
    assert out.finish_reason in ("stop", "length")
    pieces = list(generator.stream("Name the capital of France in one word.", max_tokens=8))
    assert "".join(pieces) == out.text  # greedy: streaming gives the same answer
    assert generator.count_tokens("Hello world") == 2
    # loaded once per process
    assert load_llama(generator.path, 2048, 0)[0] is load_llama(generator.path, 2048, 0)[0]


def test_context_overflow_is_a_generator_error(generator):
    from bookqa.errors import GeneratorError

    with pytest.raises(GeneratorError, match="context"):
        generator.complete("word " * 3000, max_tokens=4)


def test_block_summary_is_english_prose_naming_a_character(generator):
    text = SAMPLE.read_text(encoding="utf-8")
    body = text[text.index("Mrs. Hudson, the landlady"):]
    paragraphs = [p for p in re.split(r"\n\s*\n", body) if p.strip()][:3]
    pieces, pos = [], 0
    for p in paragraphs:
        start = text.index(p, pos)
        pieces.append((p, start, start + len(p)))
        pos = start + len(p)
    summarizer = Summarizer(text_completer(generator), generator.count_tokens, model_id=generator.model_id,
                            block_tokens=80)
    tree = summarizer.summarize(pieces)
    node = tree.root
    assert node.status in ("ok", "retried"), node.error
    assert problem(node.text, "en") is None
    assert re.search(r"Holmes|Watson|Hudson", node.text)
    assert summarizer.stats.calls in (1, 2)
