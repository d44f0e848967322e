"""``bookqa serve``, the HTTP API, through real clients against a real uvicorn server on 127.0.0.1: the
Cohere SDK and LangChain's CohereRerank on /v1/rerank and /v2/rerank, httpx for the rest, server-sent
events read to the end, and the faults (a client that leaves mid-stream, a 100 MB body, malformed JSON,
an unknown book, a full queue, a generator that is down).

The models are tiny (tests/serve_helpers.py): a random Qwen2 QR reranker and llama.cpp GGUFs written on
the spot, so each request takes milliseconds; tests/test_serve_real.py runs the embedded models.
"""
from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path

import httpx
import pytest

from helpers import free_port
from serve_helpers import serve_process, serving, tiny_models, tiny_settings

STORY = Path(__file__).parent / "fixtures" / "ui" / "lighthouse.txt"
QUERY = "Who was the captain of the whale ship?"
DOCS = ["The ship sailed at night from the village.", "Silas Thorne was the captain of the whale ship.",
        "A letter from her sister lay in the garden.", "The doctor walked the river road to the house.",
        "Mara Quill kept the lighthouse for forty years.", "The captain wrote a letter to his mother."]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="module")
def api(models, tmp_path_factory):
    """A served app with the story ingested; yields (base URL, app, settings, book)."""
    from bookqa.library import Library

    settings = tiny_settings(tmp_path_factory.mktemp("serve-home"), models)
    book = Library(settings).ingest(STORY, title="The Keeper of Gull Rock").book
    with serving(settings) as (base, app):
        yield base, app, settings, book


@pytest.fixture
def client(api):
    with httpx.Client(base_url=api[0], timeout=30) as c:
        yield c


def qr_order(settings, query, texts) -> list[int]:
    """The order QRRanker.rank gives the texts (the ranker the server uses: the process cache)."""
    from bookqa.pipeline import get_reranker

    return [r.index for r in get_reranker(settings).rank(query, list(texts)).results]


# --- rerank ---------------------------------------------------------------------------------------

def test_cohere_sdk_rerank_has_the_order_of_qrranker(api):
    import cohere

    base, _, settings, _ = api
    co = cohere.Client(api_key="unused-on-loopback", base_url=base)
    expected = qr_order(settings, QUERY, DOCS)
    response = co.rerank(model="bookqa-qr", query=QUERY, documents=DOCS)
    assert [r.index for r in response.results] == expected
    scores = [r.relevance_score for r in response.results]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0 and scores[-1] == 0.0
    assert response.id and response.meta.api_version.version == "1"

    top = co.rerank(model="bookqa-qr", query=QUERY, documents=[{"text": d, "source": f"s{i}"} for i, d in
                                                                  enumerate(DOCS)], top_n=2, return_documents=True)
    assert [r.index for r in top.results] == expected[:2]
    first = top.results[0].document
    assert first.text == DOCS[expected[0]] and getattr(first, "source", None) == f"s{expected[0]}"


def test_cohere_v2_client_and_langchain_rerank_have_the_order_of_qrranker(api):
    import cohere
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    base, _, settings, _ = api
    expected = qr_order(settings, QUERY, DOCS)
    v2 = cohere.ClientV2(api_key="unused", base_url=base)
    assert [r.index for r in v2.rerank(model="bookqa-qr", query=QUERY, documents=DOCS).results] == expected

    reranker = CohereRerank(client=v2, model="bookqa-qr", top_n=3)
    docs = [Document(page_content=d, metadata={"n": i}) for i, d in enumerate(DOCS)]
    kept = reranker.compress_documents(docs, QUERY)
    assert [d.metadata["n"] for d in kept] == expected[:3]
    assert kept[0].metadata["relevance_score"] == 1.0


def test_tei_rerank(api, client):
    _, _, settings, _ = api
    expected = qr_order(settings, QUERY, DOCS)
    hits = client.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True, "return_text": True})
    assert hits.status_code == 200, hits.text
    body = hits.json()
    assert [h["index"] for h in body] == expected
    assert body[0]["text"] == DOCS[expected[0]] and body[0]["score"] >= body[-1]["score"]
    plain = client.post("/rerank", json={"query": QUERY, "texts": DOCS}).json()
    assert set(plain[0]) == {"index", "score"} and plain[0]["score"] == 1.0


def test_long_rerank_inputs_are_cut_or_refused_with_a_4xx(api, client):
    _, _, settings, _ = api
    long_doc = " ".join(["the captain of the whale ship sailed at night"] * 200)  # ~1800 tokens
    # /v1/rerank cuts each document to max_tokens_per_doc (default serve_doc_tokens) and says so
    cut = client.post("/v1/rerank", json={"query": QUERY, "documents": [long_doc, DOCS[1]], "max_tokens_per_doc": 64})
    assert cut.status_code == 200, cut.text
    assert cut.json()["meta"]["warnings"] == ["1 documents were cut to 64 tokens"]
    # TEI's form refuses a text over the limit unless truncate=true
    refused = client.post("/rerank", json={"query": QUERY, "texts": [long_doc]})
    assert refused.status_code == 413 and "send truncate=true" in refused.json()["message"]
    assert client.post("/rerank", json={"query": QUERY, "texts": [long_doc], "truncate": True}).status_code == 200
    # a prompt over the server's limit (here the tiny model's positions) is a 413, not a 500
    many = client.post("/v1/rerank", json={"query": QUERY, "documents": [long_doc] * 12})
    assert many.status_code == 413, many.text
    assert "more than this server's" in many.json()["message"]
    too_many = client.post("/v1/rerank", json={"query": QUERY, "documents": ["x"] * (settings.serve_max_documents + 1)})
    assert too_many.status_code == 413 and "BOOKQA_SERVE_MAX_DOCUMENTS" in too_many.json()["message"]
    long_query = client.post("/v1/rerank", json={"query": long_doc, "documents": DOCS})
    assert long_query.status_code == 413 and "the query has" in long_query.json()["message"]


def test_bad_rerank_requests_are_4xx_with_one_line_messages(client):
    bad_json = client.post("/v1/rerank", content=b'{"query": "q", "documents": [', headers={"content-type": "application/json"})
    assert bad_json.status_code == 400
    body = bad_json.json()
    assert body["type"] == "invalid_json" and body["message"].startswith("the request body is not valid JSON")
    assert body["request_id"] == bad_json.headers["x-request-id"]
    missing = client.post("/v1/rerank", json={"query": "q"})
    assert missing.status_code == 422 and missing.json()["message"] == "documents: Field required"
    no_text = client.post("/v1/rerank", json={"query": "q", "documents": [{"title": "t"}]})
    assert no_text.status_code == 422 and "without a string 'text' field" in no_text.json()["message"]
    empty_query = client.post("/v1/rerank", json={"query": " ", "documents": DOCS})
    assert empty_query.status_code == 422 and empty_query.json()["message"] == "the query is empty"
    assert client.post("/v1/rerank", json={"query": "q", "documents": []}).json()["results"] == []
    given = client.post("/v1/rerank", json={"query": "q"}, headers={"X-Request-ID": "trace-42"})
    assert given.headers["x-request-id"] == "trace-42" and given.json()["request_id"] == "trace-42"
    assert client.get("/v1/nothing-here").status_code == 404


# --- size limits ------------------------------------------------------------------------------------

def _raw_post(base: str, path: str, headers: str, first: bytes) -> tuple[bytes, float]:
    """Send a request's headers and the first bytes of its body on a plain socket; the response and the
    seconds it took."""
    host, port = base.removeprefix("http://").split(":")
    t0 = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode() + first)
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            more = s.recv(65536)
            if not more:
                break
            data += more
    return data, time.perf_counter() - t0


def test_a_100_mb_body_is_refused_with_413_without_being_read(api):
    base = api[0]
    hundred_mb = 100 * 1024 * 1024
    for path, kind in (("/v1/rerank", "application/json"), ("/v1/books", "multipart/form-data; boundary=x")):
        response, seconds = _raw_post(base, path, f"Content-Type: {kind}\r\nContent-Length: {hundred_mb}\r\n",
                                      b"{" * 65536)
        assert response.startswith(b"HTTP/1.1 413"), response[:200]
        assert b"the request body is 100.0 MB" in response and seconds < 5
    # httpx sending the whole 100 MB still gets the 413 (the server stops reading and answers)
    big = httpx.post(f"{base}/v1/rerank", content=b"x" * hundred_mb, headers={"content-type": "application/json"},
                     timeout=60)
    assert big.status_code == 413


def test_a_body_without_length_is_cut_off_at_the_limit(api):
    base, _, settings, _ = api
    chunk = b" " * (1 << 20)

    def body():
        for _ in range(int(settings.serve_max_request_mb) + 4):
            yield chunk

    response = httpx.post(f"{base}/v1/rerank", content=body(), headers={"content-type": "application/json"},
                          timeout=60)
    assert response.status_code == 413
    assert "more than 8.0 MB" in response.json()["message"]
    # the server is fine afterwards
    assert httpx.get(f"{base}/healthz").json()["status"] == "ok"


# --- books ------------------------------------------------------------------------------------------

def test_upload_poll_list_read_delete(api, client, tmp_path):
    text = ("CHAPTER I\n\nThe ferryman of Brook Marsh kept a blue lantern. Ada Brook rowed across the river "
            "every night with letters for the doctor.\n\nCHAPTER II\n\nOne night the lantern went out, and Ada "
            "found the ferryman asleep by the road.\n")
    accepted = client.post("/v1/books", files={"file": ("../../ferry tale.txt", text.encode())},
                           data={"title": "The Ferry"})
    assert accepted.status_code == 202, accepted.text
    job_url = accepted.json()["status_url"]
    seen, deadline = [], time.monotonic() + 60
    while True:
        job = client.get(job_url).json()
        seen.append(job)
        assert 0.0 <= job["fraction"] <= 1.0
        if job["state"] in ("done", "failed"):
            break
        assert time.monotonic() < deadline, seen[-1]
        time.sleep(0.05)
    assert job["state"] == "done", job
    assert job["fraction"] == 1.0 and job["filename"] == "ferry-tale.txt" and job["stages_run"]
    assert {"stage", "step", "eta_s", "elapsed_s"} <= set(seen[0]) | set(seen[-1])
    book_id = job["book_id"]

    listed = {b["id"]: b for b in client.get("/v1/books").json()["books"]}
    assert listed[book_id]["title"] == "The Ferry" and listed[book_id]["ready"] and listed[book_id]["chunks"] >= 1
    chunk = client.get(f"/v1/books/{book_id}/chunks/0").json()
    assert chunk["id"] == 0 and text.startswith(chunk["text"][:20]) and chunk["start"] == 0
    beyond = client.get(f"/v1/books/{book_id}/chunks/999")
    assert beyond.status_code == 404 and "has chunks 0.." in beyond.json()["message"]

    assert client.delete(f"/v1/books/{book_id}").json() == {"deleted": book_id}
    assert client.get(f"/v1/books/{book_id}/chunks/0").status_code == 404
    assert book_id not in {b["id"] for b in client.get("/v1/books").json()["books"]}


def test_a_bad_upload_fails_its_job_with_the_reason(client):
    accepted = client.post("/v1/books", files={"file": ("empty.txt", b"")})
    job_url = accepted.json()["status_url"]
    for _ in range(200):
        job = client.get(job_url).json()
        if job["state"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert job["state"] == "failed" and "empty" in job["error"] and "/uploads/" not in job["error"]
    assert client.post("/v1/books", files={"file": ("a.txt", b"x")}, data={"kind": "poem"}).status_code == 422
    assert client.get("/v1/jobs/no-such-job").status_code == 404


def test_a_damaged_book_is_listed_apart_refused_with_its_repair_and_can_be_deleted(api, client, tmp_path):
    from bookqa.library import Library

    _, _, settings, _ = api
    source = tmp_path / "brook.txt"
    source.write_text("Felix Marsh rowed the ferry. " * 40)
    book = Library(settings).ingest(source, title="Brook Ferry").book
    chunks = book.dir / "chunks.jsonl"
    chunks.write_bytes(chunks.read_bytes()[:-10])  # truncated: its recorded size no longer matches
    listing = client.get("/v1/books").json()
    assert book.id not in {b["id"] for b in listing["books"]}
    (damaged,) = [b for b in listing["broken"] if b["id"] == book.id]
    assert damaged["repair"] == "bookqa ingest brook.txt"
    asked = client.post(f"/v1/books/{book.id}/ask", json={"question": "Who rowed?"})
    assert asked.status_code == 409 and asked.json()["type"] == "broken_book"
    assert "repair it with: bookqa ingest brook.txt" in asked.json()["message"]
    assert client.delete(f"/v1/books/{book.id}").json() == {"deleted": book.id}
    assert book.id not in {b["id"] for b in client.get("/v1/books").json()["broken"]}


def test_unknown_books_are_404(client):
    for method, path in (("GET", "/v1/books/nope/chunks/0"), ("DELETE", "/v1/books/nope"),
                         ("POST", "/v1/books/nope/ask"), ("GET", "/v1/books/..%2F..%2Fetc/chunks/0")):
        r = client.request(method, path, json={"question": "Who?"} if method == "POST" else None)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["type"] == "not_found"


# --- asking -----------------------------------------------------------------------------------------

def _check_citations(citations, book):
    assert citations
    for c in citations:
        chunk = book.chunk(c["chunk_id"])
        assert (c["start"], c["end"]) == (chunk.start, chunk.end)
        assert book.text[c["quote_start"]:c["quote_end"]] == c["quote"]


def test_ask_json(api, client):
    _, _, _, book = api
    r = client.post(f"/v1/books/{book.id}/ask", json={"question": "Who did Marta pull from the boat?"})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["answer"] == "The answer is in the letter [1]."
    _check_citations(result["citations"], book)
    assert [e["number"] for e in result["evidence"]] == [1, 2] and len(result["ranked"]) == 4
    empty = client.post(f"/v1/books/{book.id}/ask", json={"question": "  "})
    assert empty.status_code == 422 and empty.json()["message"] == "the question is empty"
    assert client.post(f"/v1/books/{book.id}/ask", json={"question": "Who?", "top_n": 0}).status_code == 422
    assert result["info"]["answer_style"] == "short"  # the server's default
    prose = client.post(f"/v1/books/{book.id}/ask", json={"question": "Who did Marta pull from the boat?",
                                                          "style": "prose"})
    assert prose.status_code == 200 and prose.json()["info"]["answer_style"] == "prose"
    assert client.post(f"/v1/books/{book.id}/ask", json={"question": "Who?", "style": "essay"}).status_code == 422


def read_events(response) -> list[tuple[str, dict]]:
    events, kind = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            events.append((kind, json.loads(line[6:])))
    return events


def test_ask_streams_tokens_then_citations(api, client):
    _, _, _, book = api
    with client.stream("POST", f"/v1/books/{book.id}/ask", json={"question": "Who did Marta pull from the boat?",
                                                                 "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = read_events(r)
    kinds = [k for k, _ in events]
    assert kinds[0] == "status" and kinds[-2:] == ["citations", "done"] and "token" in kinds
    assert kinds.index("citations") > max(i for i, k in enumerate(kinds) if k == "token")
    tokens = "".join(d["text"] for k, d in events if k == "token")
    done = events[-1][1]
    assert tokens.strip() == done["answer"] == "The answer is in the letter [1]."
    _check_citations(events[-2][1]["citations"], book)
    # Accept: text/event-stream chooses the stream too
    with client.stream("POST", f"/v1/books/{book.id}/ask", json={"question": "Who rowed?"},
                       headers={"Accept": "text/event-stream"}) as r:
        assert [k for k, _ in read_events(r)][-1] == "done"


@pytest.fixture(scope="module")
def busy_api(models, tmp_path_factory):
    """A server whose generator repeats its answer up to 3000 tokens and whose queue holds one request."""
    from bookqa.library import Library

    endless = str(Path(models["BOOKQA_GENERATOR_MODEL"]).with_name("tiny-gen-repeating.gguf"))
    settings = tiny_settings(tmp_path_factory.mktemp("busy-home"), {**models, "BOOKQA_GENERATOR_MODEL": endless},
                             answer_max_tokens=3000, serve_queue=1, answer_style="prose")  # short stops at 48
    book = Library(settings).ingest(STORY, title="The Keeper of Gull Rock").book
    with serving(settings) as (base, app):
        yield base, app, book


def test_full_queue_is_503_and_a_client_leaving_mid_stream_frees_the_worker(busy_api, caplog):
    base, app, book = busy_api
    worker = app.state.bookqa.worker
    caplog.set_level(logging.INFO, logger="bookqa.serve")
    with httpx.Client(base_url=base, timeout=30) as c:
        with c.stream("POST", f"/v1/books/{book.id}/ask", json={"question": "Who?", "stream": True}) as r:
            lines = r.iter_lines()
            tokens = 0
            for line in lines:
                if line.startswith("event: token"):
                    tokens += 1
                    if tokens == 3:
                        break
            # the one place in the queue is taken by the streaming answer
            busy = c.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})
            assert busy.status_code == 503, busy.text
            assert int(busy.headers["retry-after"]) >= 1 and busy.json()["type"] == "busy"
            assert c.post(f"/v1/books/{book.id}/ask", json={"question": "Who?"}).status_code == 503
        # leaving the stream (the connection closes) stops the answer at its next token
        deadline = time.monotonic() + 10
        while worker.pending and time.monotonic() < deadline:
            time.sleep(0.02)
        assert worker.pending == 0
        assert any("the client went away" in rec.getMessage() for rec in caplog.records)
        after = c.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})
        assert after.status_code == 200 and len(after.json()["results"]) == len(DOCS)


def test_generator_down_is_a_clear_error_within_the_timeout(models, tmp_path):
    from bookqa.library import Library

    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    settings = tiny_settings(tmp_path / "home", models, generator="remote", base_url=dead, request_timeout_s=5)
    book = Library(settings).ingest(STORY, title="The Keeper of Gull Rock").book
    with serving(settings) as (base, _):
        with httpx.Client(base_url=base, timeout=30) as c:
            t0 = time.perf_counter()
            r = c.post(f"/v1/books/{book.id}/ask", json={"question": "Who did Marta pull from the boat?"})
            assert time.perf_counter() - t0 < settings.request_timeout_s
            assert r.status_code == 502 and r.json()["type"] == "generator_unavailable"
            assert f"cannot reach the generator at {dead}/chat/completions" in r.json()["message"]
            with c.stream("POST", f"/v1/books/{book.id}/ask", json={"question": "Who?", "stream": True}) as s:
                events = read_events(s)
            assert events[-1][0] == "error" and events[-1][1]["status"] == 502
            assert "cannot reach the generator" in events[-1][1]["message"]
            assert c.post("/v1/rerank", json={"query": QUERY, "documents": DOCS}).status_code == 200


# --- service ----------------------------------------------------------------------------------------

def test_health_and_openapi(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["reranker"]["loaded"] is True
    assert health["queue"]["limit"] == 16
    spec = client.get("/openapi.json").json()
    for path in ("/v1/rerank", "/rerank", "/v1/books", "/v1/jobs/{job_id}", "/v1/books/{book_id}",
                 "/v1/books/{book_id}/ask", "/v1/books/{book_id}/chunks/{number}", "/healthz"):
        assert path in spec["paths"], path
    assert "RerankRequest" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_a_token_guards_every_route_but_health(api):
    import cohere

    _, _, settings, _ = api
    with serving(settings, token="s3cret-token", warm=False) as (base, _):
        assert httpx.get(f"{base}/healthz").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            r = httpx.get(f"{base}/v1/books", headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert "Authorization: Bearer" in r.json()["message"]
        ok = cohere.Client(api_key="s3cret-token", base_url=base).rerank(model="m", query=QUERY, documents=DOCS[:2])
        assert len(ok.results) == 2
        with pytest.raises(cohere.core.api_error.ApiError) as refused:
            cohere.Client(api_key="nope", base_url=base).rerank(model="m", query=QUERY, documents=DOCS[:2])
        assert refused.value.status_code == 401


def test_job_progress_fraction_and_eta():
    from bookqa.serve.jobs import JobProgress

    now = [100.0]
    progress = JobProgress(["chunks", "bm25", "dense", "summaries"], clock=lambda: now[0])
    assert progress.snapshot()["fraction"] == 0.0 and progress.snapshot()["stage"] is None
    dense = progress.reporter(2)
    dense("embedding", 0, 40)
    now[0] += 10
    dense("embedding", 10, 40)  # 1 per second: 30 s left
    snap = progress.snapshot()
    assert snap["stage"] == "dense" and snap["step"] == "embedding"
    assert snap["fraction"] == pytest.approx((2 + 0.25) / 4) and snap["eta_s"] == pytest.approx(30.0)
    assert progress.snapshot(finished=True)["fraction"] == 1.0


def test_serve_cli_refuses_remote_hosts_without_flag_and_token(tmp_path, monkeypatch, capsys):
    from bookqa.cli import main

    monkeypatch.setenv("BOOKQA_HOME", str(tmp_path))
    monkeypatch.delenv("BOOKQA_SERVE_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "refusing to listen on 0.0.0.0" in capsys.readouterr().err
    assert main(["serve", "--host", "0.0.0.0", "--allow-remote"]) == 2
    assert "needs a bearer token: set $BOOKQA_SERVE_TOKEN" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        assert main(["serve", "--port", str(taken.getsockname()[1])]) == 2
        assert "is already in use" in capsys.readouterr().err


def test_the_bookqa_serve_command_ranks_for_the_cohere_sdk_as_qrranker_does(models, tmp_path):
    """The acceptance check end to end: the real command in its own process, the SDK over HTTP, and a
    QRRanker built here from the same settings."""
    import cohere

    from bookqa.rerank import QRRanker

    env = {**models, "BOOKQA_HOME": str(tmp_path / "home")}
    expected = [r.index for r in QRRanker(settings=tiny_settings(tmp_path / "home", models)).rank(QUERY, DOCS).results]
    with serve_process(env, tmp_path) as (_, base):
        response = cohere.Client(api_key="local", base_url=base).rerank(model="qr", query=QUERY, documents=DOCS)
        assert [r.index for r in response.results] == expected
    log = (tmp_path / "serve.log").read_text()
    assert "bookqa API on http://127.0.0.1:" in log
    assert "POST /v1/rerank 200" in log  # one line per request, with its request id in brackets
    line = next(ln for ln in log.splitlines() if "POST /v1/rerank 200" in ln)
    assert "[-]" not in line and line.split("[", 1)[1].split("]", 1)[0]
