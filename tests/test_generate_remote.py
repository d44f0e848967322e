"""The OpenAI-compatible remote generator: URL handling and failures (fast, real sockets), and a real
llama.cpp server started from the embedded GGUF (``real_model``)."""
from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from typing import Optional

import pytest

from bookqa.errors import GeneratorError
from bookqa.generate import as_messages, get_generator, text_completer
from bookqa.generate.remote import RemoteGenerator, chat_url, estimate_tokens
from helpers import free_port, running_llama_server


def test_chat_url():
    assert chat_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1/chat/completions"
    assert chat_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1/chat/completions"
    assert chat_url("http://localhost:11434") == "http://localhost:11434/v1/chat/completions"
    assert chat_url("https://api.example.com/openai/v1") == "https://api.example.com/openai/v1/chat/completions"
    with pytest.raises(GeneratorError, match="not an http"):
        chat_url("localhost:8000")


def test_messages_and_estimates():
    assert as_messages("hi") == [{"role": "user", "content": "hi"}]
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert as_messages(msgs) == msgs
    with pytest.raises(GeneratorError):
        as_messages([{"role": "user"}])
    with pytest.raises(GeneratorError):
        as_messages([])
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcdefg") == 2 and estimate_tokens("灯笼铺") == 3


def test_unreachable_server_is_a_clear_error(settings):
    port = free_port()  # nothing listens here
    gen = RemoteGenerator(settings.replace(generator="remote", base_url=f"http://127.0.0.1:{port}/v1"),
                          backoff_s=0.05)
    t0 = time.perf_counter()
    with pytest.raises(GeneratorError) as err:
        gen.complete("hello", max_tokens=4)
    assert time.perf_counter() - t0 < 5
    msg = str(err.value)
    assert f"cannot reach the generator at http://127.0.0.1:{port}/v1/chat/completions" in msg
    assert "after 3 tries" in msg and "is the server running?" in msg
    with pytest.raises(GeneratorError, match="cannot reach"):
        list(gen.stream("hello", max_tokens=4))


def test_silent_server_times_out(settings):
    # a socket that accepts connections (kernel backlog) but never answers
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        gen = get_generator(settings.replace(generator="remote", base_url=f"http://127.0.0.1:{port}/v1",
                                             request_timeout_s=0.5))
        t0 = time.perf_counter()
        with pytest.raises(GeneratorError, match=r"did not answer within 0.5 s"):
            gen.complete("hello", max_tokens=4)
        assert time.perf_counter() - t0 < 3  # a timeout is not retried


# ---------------------------------------------------------------------------------------------
# a real llama.cpp server on the embedded model
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    from bookqa.weights import gguf_file
    from bookqa.settings import Settings

    gguf = gguf_file("qwen2.5-coder-0.5b", Settings.from_env())
    with running_llama_server(gguf, tmp_path_factory.mktemp("llama-server")) as server:
        yield server


@pytest.mark.real_model
def test_real_server_complete_stream_and_shutdown(llama_server, settings):
    proc, base = llama_server
    gen = get_generator(settings.replace(generator="remote", base_url=base, request_timeout_s=60))
    gen.probe()  # llama.cpp's server lists its model at /v1/models
    out = gen.complete("Name the capital of France in one word.", max_tokens=8)
    assert "Paris" in out.text
    assert out.prompt_tokens > 5 and 0 < out.completion_tokens <= 8 and out.finish_reason in ("stop", "length")
    messages = [{"role": "system", "content": "You answer in one word."},
                {"role": "user", "content": "What is the capital of Italy?"}]
    pieces = list(gen.stream(messages, max_tokens=8))
    assert len(pieces) >= 1 and "Rome" in "".join(pieces)
    assert "Paris" in text_completer(gen)("Name the capital of France in one word.", 8)
    # stop the server: the next call fails with a clear one-line error, within the timeout
    proc.terminate()
    proc.wait(timeout=20)
    t0 = time.perf_counter()
    with pytest.raises(GeneratorError, match="cannot reach the generator.*is the server running"):
        gen.probe()
    assert time.perf_counter() - t0 < 5
    t0 = time.perf_counter()
    with pytest.raises(GeneratorError, match="cannot reach the generator.*is the server running"):
        gen.complete("Name the capital of France in one word.", max_tokens=8)
    assert time.perf_counter() - t0 < settings.request_timeout_s


# ---------------------------------------------------------------------------------------------
# the probe: a cheap request before any work, so a server that is down fails in seconds
# ---------------------------------------------------------------------------------------------

@contextmanager
def http_server(status: int, body: bytes = b'{"object": "list", "data": []}'):
    """A real HTTP server on 127.0.0.1 answering every GET with ``status`` and every POST (a chat request)
    with 400; yields (base_url, requests seen)."""
    seen: list[tuple[str, str, Optional[str]]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the standard library's name
            seen.append(("GET", self.path, self.headers.get("Authorization")))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):  # noqa: N802
            seen.append(("POST", self.path, self.headers.get("Authorization")))
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            refusal = b'{"error": {"message": "no chat here"}}'
            self.send_response(400)
            self.send_header("Content-Length", str(len(refusal)))
            self.end_headers()
            self.wfile.write(refusal)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()


def test_probe_of_a_closed_port_fails_in_seconds(settings):
    port = free_port()  # nothing listens here
    gen = RemoteGenerator(settings.replace(generator="remote", base_url=f"http://127.0.0.1:{port}/v1"))
    t0 = time.perf_counter()
    with pytest.raises(GeneratorError, match=rf"cannot reach the generator at http://127.0.0.1:{port}/v1/chat/"
                                             r"completions: .*refused.*is the server running\?"):
        gen.probe()
    assert time.perf_counter() - t0 < 5  # three tries with the default backoff


def test_probe_of_a_silent_server_gives_up_after_a_few_seconds(settings, monkeypatch):
    from bookqa.generate import remote

    assert remote.PROBE_TIMEOUT_S <= 3
    monkeypatch.setattr(remote, "PROBE_TIMEOUT_S", 0.5)  # the same path, faster
    with socket.socket() as listener:  # accepts connections (kernel backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        gen = RemoteGenerator(settings.replace(generator="remote", base_url=f"http://127.0.0.1:{port}/v1"))
        assert gen.timeout == 120  # the request timeout stays for real requests
        t0 = time.perf_counter()
        with pytest.raises(GeneratorError, match=rf"did not answer GET http://127.0.0.1:{port}/v1/models within "
                                                 r"0.5 s; is the server running and reachable\?"):
            gen.probe()
        assert time.perf_counter() - t0 < 2  # a timeout is not retried


def test_probe_passes_for_any_answer_but_a_refused_key(settings, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    for status in (200, 404, 500):  # up (a server without /models is still up)
        with http_server(status) as (base, seen):
            RemoteGenerator(settings.replace(generator="remote", base_url=base)).probe()
            assert seen == [("GET", "/v1/models", "Bearer sk-test")]  # one request, with the key
    with http_server(401, b'{"error": {"message": "invalid api key"}}') as (base, seen):
        with pytest.raises(GeneratorError, match=r"refused the request: HTTP 401: invalid api key "
                                                 r"\(is \$OPENAI_API_KEY set\?\)"):
            RemoteGenerator(settings.replace(generator="remote", base_url=base)).probe()


class CountingRanker:
    """A real (tiny, random) QRRanker that counts its rank calls."""

    def __init__(self, settings):
        from bookqa.rerank import QRRanker
        from test_rerank_tiny import tiny_model, tiny_tokenizer

        self.ranker = QRRanker(model=(tiny_model("qwen2"), tiny_tokenizer()), heads=[(0, 1), (1, 2)],
                               settings=settings)
        self.calls = 0

    def rank(self, *args, **kwargs):
        self.calls += 1
        return self.ranker.rank(*args, **kwargs)


def test_ask_with_an_unreachable_generator_fails_before_the_rerank(settings):
    """`ask` probes the remote generator before it retrieves and reranks: a closed port fails in seconds
    with the rerank never run; a server that is up passes the probe, so the same question is reranked."""
    from bookqa.library import Library
    from bookqa.pipeline import ask
    from bookqa.retrieve.stages import Bm25Stage
    from bookqa.stages import ChunkStage
    from conftest import FIXTURES

    settings = settings.replace(top_k=3, summaries="none")
    book = Library(settings).ingest(FIXTURES / "ui" / "lighthouse.txt", stages=[ChunkStage(), Bm25Stage()]).book
    ranker = CountingRanker(settings)
    question = "What was the name of Marta's cat?"
    closed = settings.replace(generator="remote", base_url=f"http://127.0.0.1:{free_port()}/v1")
    t0 = time.perf_counter()
    with pytest.raises(GeneratorError, match="cannot reach the generator.*is the server running"):
        ask(book, question, closed, method="bm25", use_prefix=False, reranker=ranker)
    assert time.perf_counter() - t0 < 5
    assert ranker.calls == 0
    # a server that answers GET but not the chat request: the probe passes, the rerank runs, the answer fails
    with http_server(404) as (base, seen):
        with pytest.raises(GeneratorError, match="refused the request: HTTP 400: no chat here"):
            ask(book, question, settings.replace(generator="remote", base_url=base), method="bm25",
                use_prefix=False, reranker=ranker)
    assert ranker.calls == 1 and [r[:2] for r in seen] == [("GET", "/v1/models"), ("POST", "/v1/chat/completions")]
