"""``bookqa serve`` on the embedded default models: the command in its own process, a book uploaded and
asked over HTTP (the answer streamed to the end, its citations checked against the book's text), and
the Cohere SDK's rerank in the order of a QRRanker built here from the same settings."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest

from serve_helpers import serve_process

pytestmark = pytest.mark.real_model

STORY = Path(__file__).parent / "fixtures" / "ui" / "lighthouse.txt"
QUERY = "What was the name of Marta's cat?"
DOCS = ["Marta kept the lamp of Gull Rock burning through every storm.",
        "Her cat, a grey tom called Pepper, slept on the warm lens housing.",
        "The fishing boat Silver Heron ran aground on the reef in autumn.",
        "Supplies came by boat from the mainland once a month."]


def test_serve_with_the_embedded_models(tmp_path):
    import cohere

    from bookqa.rerank import QRRanker
    from bookqa.settings import Settings

    env = {"BOOKQA_HOME": str(tmp_path / "home"), "BOOKQA_TOP_K": "6", "BOOKQA_TOP_N": "2",
           "BOOKQA_ANSWER_MAX_TOKENS": "64", "BOOKQA_SUMMARIES": "extractive"}
    with serve_process(env, tmp_path, timeout_s=300) as (_, base), httpx.Client(base_url=base, timeout=300) as c:
        response = cohere.Client(api_key="local", base_url=base).rerank(model="qr", query=QUERY, documents=DOCS)
        served = [r.index for r in response.results]

        job = c.post("/v1/books", files={"file": ("lighthouse.txt", STORY.read_bytes())},
                     data={"title": "The Keeper of Gull Rock"}).json()
        deadline = time.monotonic() + 240
        while (state := c.get(job["status_url"]).json())["state"] not in ("done", "failed"):
            assert time.monotonic() < deadline, state
            time.sleep(0.5)
        assert state["state"] == "done", state
        book_id = state["book_id"]

        events, kind = [], None
        with c.stream("POST", f"/v1/books/{book_id}/ask", json={"question": QUERY, "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))
        assert events[-1][0] == "done", events[-1]
        result = events[-1][1]
        streamed = "".join(d["text"] for k, d in events if k == "token")
        assert streamed.strip() == result["answer"] and result["answer"]
        citations = next(d for k, d in events if k == "citations")["citations"]
        assert citations, result["answer"]
        for cite in citations:
            chunk = c.get(f"/v1/books/{book_id}/chunks/{cite['chunk_id']}").json()
            assert (chunk["start"], chunk["end"]) == (cite["start"], cite["end"])
            offset = cite["quote_start"] - chunk["start"]
            assert chunk["text"][offset:offset + len(cite["quote"])] == cite["quote"]

    settings = Settings.from_env(env={**os.environ, **env})  # the shared model cache, as the server had it
    expected = [r.index for r in QRRanker(settings=settings).rank(QUERY, DOCS).results]
    assert served == expected
