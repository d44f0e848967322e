"""Running the HTTP API for tests: a real uvicorn server on 127.0.0.1 and a free port, in a thread of
the test process (``serving``) or as the ``bookqa serve`` command (``serve_process``), and the tiny
models it is configured with in the fast tests."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import httpx

from helpers import free_port, stop_server

TINY_HEADS = [(0, 1), (1, 2), (2, 3)]


def tiny_models(directory: Path) -> dict[str, str]:
    """A tiny random Qwen2 reranker (a model directory with its heads file) and two tiny llama GGUF
    generators (tiny_gguf: one writes a cited answer, one repeats it) under ``directory``; returns the
    settings that name the reranker and the first generator (BOOKQA_* variable names)."""
    from bookqa.rerank.heads import HeadSet, save_heads
    from test_rerank_tiny import tiny_model, tiny_tokenizer
    from tiny_gguf import write_tiny_gguf

    model_dir = directory / "tiny-qr"
    if not (model_dir / "config.json").exists():
        tiny_model("qwen2").save_pretrained(model_dir)
        tiny_tokenizer().save_pretrained(model_dir)
        save_heads(model_dir / "heads.json", HeadSet(heads=TINY_HEADS, model="tiny-qr"))
    gguf = directory / "tiny-gen.gguf"
    if not gguf.exists():
        write_tiny_gguf(gguf)
    endless = directory / "tiny-gen-repeating.gguf"  # streams until answer_max_tokens
    if not endless.exists():
        write_tiny_gguf(endless, repeat=True)
    return {"BOOKQA_RERANKER_MODEL": str(model_dir), "BOOKQA_RERANKER_HEADS": str(model_dir / "heads.json"),
            "BOOKQA_RERANKER_ADAPTER": "none", "BOOKQA_GENERATOR": "local", "BOOKQA_GENERATOR_MODEL": str(gguf),
            "BOOKQA_GENERATOR_N_CTX": "4096", "BOOKQA_ANSWER_MAX_TOKENS": "24", "BOOKQA_TOP_K": "4",
            "BOOKQA_TOP_N": "2", "BOOKQA_SUMMARIES": "extractive", "BOOKQA_DEVICE": "cpu",
            "BOOKQA_DTYPE": "float32"}


def tiny_settings(home: Path, models: dict[str, str], **overrides):
    from bookqa.settings import Settings

    return Settings.from_env(env={**models, "BOOKQA_HOME": str(home)}, **overrides)


def wait_healthy(base: str, timeout_s: float = 60, proc: Optional[subprocess.Popen] = None,
                 log: Optional[Path] = None) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"bookqa serve exited: {log.read_text(errors='replace')[-3000:] if log else ''}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{base}/healthz did not answer within {timeout_s:.0f} s")
        time.sleep(0.1)


@contextmanager
def serving(settings, token: Optional[str] = None, warm: bool = True) -> Iterator[tuple[str, object]]:
    """``create_app(settings)`` served by uvicorn in a thread; yields (base URL, the FastAPI app)."""
    import uvicorn

    from bookqa.serve.app import create_app

    app = create_app(settings, token=token, warm=warm)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                           lifespan="on", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, timeout_s=30)
        yield base, app
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def serve_process(env: dict[str, str], log_dir: Path, args: tuple[str, ...] = (),
                  timeout_s: float = 120) -> Iterator[tuple[subprocess.Popen, str]]:
    """The ``bookqa serve`` command on 127.0.0.1 and a free port; yields (process, base URL)."""
    port = free_port()
    log = Path(log_dir) / "serve.log"
    log_fh = open(log, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "bookqa", "-q", "serve", "--port", str(port), *args],
                            env={**os.environ, **env}, stdout=log_fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, timeout_s=timeout_s, proc=proc, log=log)
        yield proc, base
    finally:
        stop_server(proc)
        log_fh.close()
