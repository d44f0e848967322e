"""Shared test helpers (importable from test modules: tests/ is on sys.path under pytest's default
import mode)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_llama_server(gguf: Path, log_dir: Path, n_ctx: int = 2048, timeout_s: float = 120):
    """A real ``python -m llama_cpp.server`` on 127.0.0.1 and a free port; yields (process, base_url)."""
    port = free_port()
    # the server logs a lot at load time: a file, not a pipe that nobody drains (it would block)
    log = Path(log_dir) / "server.log"
    log_fh = open(log, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(max(1, min(2, os.cpu_count() or 1))),
         "--verbose", "False"],
        stdout=log_fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not answer /v1/models within {timeout_s:.0f} s")
            time.sleep(0.5)
        yield proc, base
    finally:
        stop_server(proc)
        log_fh.close()


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
