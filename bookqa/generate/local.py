"""llama.cpp in-process (llama-cpp-python) on a GGUF, using the chat template stored in the GGUF.

A model is loaded once per process and reused: a module-level cache keyed by (path, n_ctx, threads).
A llama.cpp context is not re-entrant, so every generation holds that model's lock; a ``stream`` holds
it until the stream is exhausted or closed.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from ..errors import GeneratorError
from ..progress import Progress, no_progress
from ..settings import Settings
from .base import Completion, PromptOrMessages, as_messages

_MODELS: dict[tuple[str, int, int], tuple[Any, threading.Lock]] = {}
_MODELS_LOCK = threading.Lock()


def load_llama(path: Path | str, n_ctx: int, threads: int = 0) -> tuple[Any, threading.Lock]:
    """The (cached) ``llama_cpp.Llama`` for a GGUF, and the lock that guards its context."""
    key = (str(Path(path).resolve()), int(n_ctx), int(threads))
    with _MODELS_LOCK:
        if key in _MODELS:
            return _MODELS[key]
        try:
            from llama_cpp import Llama
        except ImportError:
            raise GeneratorError(
                "the local generator needs llama-cpp-python: pip install 'llama-cpp-python[server]==0.3.36' "
                "(or use --generator remote)") from None
        try:
            llm = Llama(model_path=key[0], n_ctx=key[1], n_threads=threads or None, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise GeneratorError(f"llama.cpp could not load {path}: {exc}") from None
        _MODELS[key] = (llm, threading.Lock())
        return _MODELS[key]


def _overflow(exc: Exception, n_ctx: int) -> GeneratorError:
    msg = str(exc)
    if "context window" in msg or "exceed" in msg:
        return GeneratorError(f"the prompt does not fit the generator's context ({msg}); raise "
                              f"BOOKQA_GENERATOR_N_CTX (now {n_ctx}) or send less text")
    return GeneratorError(f"llama.cpp failed: {msg}")


class LocalGenerator:
    def __init__(self, settings: Settings, progress: Progress = no_progress):
        from ..weights import gguf_file

        self.path = gguf_file(settings.generator_model, settings, progress)
        self.n_ctx = settings.generator_n_ctx
        self.threads = settings.threads
        self.repeat_penalty = settings.generator_repeat_penalty
        self.model_id = f"llama.cpp:{Path(self.path).name}"

    def _llm(self) -> tuple[Any, threading.Lock]:
        return load_llama(self.path, self.n_ctx, self.threads)

    def complete(self, prompt_or_messages: PromptOrMessages, max_tokens: int, temperature: float = 0.0,
                 stop: Optional[Sequence[str]] = None) -> Completion:
        messages = as_messages(prompt_or_messages)
        llm, lock = self._llm()
        t0 = time.perf_counter()
        with lock:
            try:
                out = llm.create_chat_completion(messages=messages, max_tokens=max_tokens,
                                                 temperature=temperature, stop=list(stop) if stop else None,
                                                 repeat_penalty=self.repeat_penalty)
            except (ValueError, RuntimeError) as exc:
                raise _overflow(exc, self.n_ctx) from None
        seconds = time.perf_counter() - t0
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Completion(text=choice["message"].get("content") or "",
                          prompt_tokens=int(usage.get("prompt_tokens", 0)),
                          completion_tokens=int(usage.get("completion_tokens", 0)),
                          seconds=seconds, finish_reason=choice.get("finish_reason"))

    def stream(self, prompt_or_messages: PromptOrMessages, max_tokens: int, temperature: float = 0.0,
               stop: Optional[Sequence[str]] = None) -> Iterator[str]:
        messages = as_messages(prompt_or_messages)
        llm, lock = self._llm()
        with lock:
            try:
                pieces = llm.create_chat_completion(messages=messages, max_tokens=max_tokens,
                                                    temperature=temperature, stop=list(stop) if stop else None,
                                                    repeat_penalty=self.repeat_penalty, stream=True)
                for chunk in pieces:
                    piece = (chunk["choices"][0].get("delta") or {}).get("content")
                    if piece:
                        yield piece
            except (ValueError, RuntimeError) as exc:
                raise _overflow(exc, self.n_ctx) from None

    def count_tokens(self, text: str) -> int:
        # tokenizing reads only the vocabulary, not the context, so it needs no lock
        llm, _ = self._llm()
        return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
