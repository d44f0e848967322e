"""The snippets of docs/integrations.md, run as written against a real ``bookqa serve`` app on 127.0.0.1
(tiny models, tests/serve_helpers.py): the Cohere SDK, LangChain, LlamaIndex (where installed), curl and
the streaming Python client. Only the address changes: the docs' port is replaced by the test server's."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from serve_helpers import serving, tiny_models, tiny_settings

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "integrations.md").read_text(encoding="utf-8")
STORY = Path(__file__).parent / "fixtures" / "ui" / "lighthouse.txt"
DOC_BASE = "http://127.0.0.1:8400"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, re.S)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from bookqa.library import Library

    settings = tiny_settings(tmp_path_factory.mktemp("doc-home"), tiny_models(tmp_path_factory.mktemp("doc-models")))
    Library(settings).ingest(STORY, title="The Keeper of Gull Rock")
    with serving(settings) as (url, _):
        yield url


def _run_python(snippet: str, base: str) -> list[str]:
    printed: list[str] = []
    code = snippet.replace(DOC_BASE, base)
    exec(compile(code, "docs/integrations.md", "exec"),
         {"print": lambda *a, end="\n", flush=False: printed.append(" ".join(map(str, a)) + end)})
    return printed


def _snippet(marker: str) -> str:
    found = [b for b in blocks("python") if marker in b]
    assert len(found) == 1, marker
    return found[0]


def test_cohere_sdk_snippet(base):
    printed = _run_python(_snippet("co = cohere.Client("), base)
    assert len(printed) == 2 and printed[0].split()[1] == "1.0"


def test_langchain_snippet(base):
    printed = _run_python(_snippet("from langchain_cohere import CohereRerank"), base)
    assert len(printed) == 2 and printed[0].startswith("1.0 ")


def test_llamaindex_snippet(base):
    pytest.importorskip("llama_index.postprocessor.cohere_rerank",
                        reason="llama-index-postprocessor-cohere-rerank is not installed")
    printed = _run_python(_snippet("from llama_index"), base)
    assert len(printed) == 2 and printed[0].startswith("1.0 ")


def test_streaming_python_snippet(base):
    printed = "".join(_run_python(_snippet("httpx.stream("), base))
    assert "The answer is in the letter [1]." in printed and re.search(r"\[1\] chunk \d+, characters \d+-\d+: ", printed)


def test_curl_snippet(base, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    (script,) = blocks("bash")[1:]  # the first bash block starts the server
    shutil.copy(STORY, tmp_path / "story.txt")
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script.replace(DOC_BASE, base)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    decoder = json.JSONDecoder()
    cohere_form, end = decoder.raw_decode(text)  # curl -s adds no newline: the answers follow each other
    tei_form, _ = decoder.raw_decode(text, end)
    assert len(cohere_form["results"]) == 1 and cohere_form["results"][0]["relevance_score"] == 1.0
    assert "text" in cohere_form["results"][0]["document"]
    assert sorted(hit["index"] for hit in tei_form) == [0, 1]
    assert text.count("event: token") >= 5 and "event: citations" in text and "event: done" in text
    assert '"book_id":"my-story-' in text and '"start":0' in text
