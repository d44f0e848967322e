"""The OpenAI-compatible remote generator: URL handling and failures (fast, real sockets), and a real
llama.cpp server started from the embedded GGUF (``real_model``)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

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
        gen.complete("Name the capital of France in one word.", max_tokens=8)
    assert time.perf_counter() - t0 < settings.request_timeout_s
