"""Any OpenAI-compatible chat server (llama.cpp's server, vLLM, Ollama, hosted APIs), over the standard
library's HTTP client: ``POST {base_url}/chat/completions``, plain or streamed (server-sent events).

Connection failures and 5xx/429 answers are retried with exponential backoff (``RETRIES`` tries in
all); a timeout is not retried (the server is up but busy, and waiting again would double the wait).
Every failure ends in a one-line :class:`GeneratorError`, never a traceback.
"""
from __future__ import annotations

import http.client
import json
import math
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Iterator, Optional, Sequence

from ..errors import GeneratorError
from ..settings import Settings
from .base import Completion, PromptOrMessages, as_messages

RETRIES = 3  # tries per request, first included
BACKOFF_S = 0.5  # wait before the 2nd try; doubles each time
PROBE_TIMEOUT_S = 3.0  # longest wait for the server's answer to the probe before any work


def chat_url(base_url: str) -> str:
    """``{base_url}/chat/completions``; a bare ``http://host:port`` gets the usual ``/v1`` prefix."""
    base = base_url.strip().rstrip("/")
    parsed = urllib.parse.urlparse(base)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise GeneratorError(f"base URL {base_url!r} is not an http(s) URL (e.g. http://127.0.0.1:8000/v1)")
    if parsed.path in ("", "/"):
        base += "/v1"
    return base + "/chat/completions"


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (the server's tokenizer is unknown): one token per CJK character and
    per 3.5 other characters, rounded up — a little high on English, which is the safe side for
    fitting prompts into a context."""
    cjk = sum(1 for ch in text if "\u3000" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff")
    return math.ceil(cjk + (len(text) - cjk) / 3.5)


def _error_detail(body: bytes) -> str:
    try:
        data = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:300]
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or err)[:300]
    if err:
        return str(err)[:300]
    if isinstance(data, dict) and data.get("detail"):
        return str(data["detail"])[:300]
    return json.dumps(data)[:300]


class RemoteGenerator:
    def __init__(self, settings: Settings, retries: int = RETRIES, backoff_s: float = BACKOFF_S):
        self.url = chat_url(settings.base_url)
        self.model = settings.generator_model
        self.timeout = settings.request_timeout_s
        self.retries = max(1, retries)
        self.backoff_s = backoff_s
        self.api_key_env = settings.api_key_env
        self.model_id = f"openai:{self.model}"

    # ------------------------------------------------------------------ HTTP
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:  # a local server needs none
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _open(self, payload: dict[str, Any]):
        """The HTTP response for ``payload``, after retries; GeneratorError when it cannot be had."""
        return self._request(self.url, json.dumps(payload).encode("utf-8"), self.timeout)

    def probe(self) -> None:
        """A cheap request (``GET {base}/models``, a few seconds at most) that fails as the real one would
        when the server is down, so ``ask`` reports it before retrieving and reranking. Any answer passes
        except one refusing the API key: a server without that route is still up."""
        url = self.url[: -len("/chat/completions")] + "/models"
        response = self._request(url, None, min(self.timeout, PROBE_TIMEOUT_S), probe=True)
        if response is not None:
            response.close()

    def _request(self, url: str, data: Optional[bytes], timeout: float, probe: bool = False):
        """POST ``data`` (GET when None) with retries; GeneratorError when no answer can be had. A probe
        returns None for an HTTP error other than 401/403 (the server answered)."""
        last = ""
        for attempt in range(self.retries):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(url, data=data, headers=self._headers(),
                                             method="GET" if data is None else "POST")
            try:
                return urllib.request.urlopen(request, timeout=timeout)
            except urllib.error.HTTPError as exc:
                detail = _error_detail(exc.read() or b"")
                exc.close()
                if probe and exc.code not in (401, 403):
                    return None
                if exc.code >= 500 or exc.code == 429:
                    last = f"HTTP {exc.code}: {detail}"
                    continue
                hint = f" (is ${self.api_key_env} set?)" if exc.code in (401, 403) else ""
                raise GeneratorError(f"the generator at {self.url} refused the request: HTTP {exc.code}: "
                                     f"{detail}{hint}") from None
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, (socket.timeout, TimeoutError)):
                    raise self._timeout(timeout, url if probe else None) from None
                last = str(exc.reason)
            except (socket.timeout, TimeoutError):
                raise self._timeout(timeout, url if probe else None) from None
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}"
        raise GeneratorError(f"cannot reach the generator at {self.url}: {last} (after {self.retries} tries); "
                             "is the server running?")

    def _timeout(self, seconds: Optional[float] = None, probed: Optional[str] = None) -> GeneratorError:
        seconds = self.timeout if seconds is None else seconds
        if probed:
            return GeneratorError(f"the generator at {self.url} did not answer GET {probed} within {seconds:g} s; "
                                  "is the server running and reachable?")
        return GeneratorError(f"the generator at {self.url} did not answer within {seconds:g} s "
                              "(raise BOOKQA_REQUEST_TIMEOUT_S, or use a smaller model)")

    def _payload(self, prompt_or_messages: PromptOrMessages, max_tokens: int, temperature: float,
                 stop: Optional[Sequence[str]], stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model, "messages": as_messages(prompt_or_messages),
                                   "max_tokens": int(max_tokens), "temperature": float(temperature),
                                   "stream": stream}
        if stop:
            payload["stop"] = list(stop)
        return payload

    # ------------------------------------------------------------------ interface
    def complete(self, prompt_or_messages: PromptOrMessages, max_tokens: int, temperature: float = 0.0,
                 stop: Optional[Sequence[str]] = None) -> Completion:
        payload = self._payload(prompt_or_messages, max_tokens, temperature, stop, stream=False)
        t0 = time.perf_counter()
        response = self._open(payload)
        try:
            with response:
                body = response.read()
        except (socket.timeout, TimeoutError):
            raise self._timeout() from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise GeneratorError(f"the generator at {self.url} dropped the connection: {exc}") from None
        seconds = time.perf_counter() - t0
        try:
            data = json.loads(body.decode("utf-8"))
            choice = data["choices"][0]
            text = (choice.get("message") or {}).get("content") or choice.get("text") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise GeneratorError(f"the generator at {self.url} sent an unexpected answer: "
                                 f"{body[:200]!r}") from None
        usage = data.get("usage") or {}
        return Completion(text=text, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0), seconds=seconds,
                          finish_reason=choice.get("finish_reason"))

    def stream(self, prompt_or_messages: PromptOrMessages, max_tokens: int, temperature: float = 0.0,
               stop: Optional[Sequence[str]] = None) -> Iterator[str]:
        payload = self._payload(prompt_or_messages, max_tokens, temperature, stop, stream=True)
        response = self._open(payload)
        try:
            with response:
                yield from self._events(response)
        except (socket.timeout, TimeoutError):
            raise self._timeout() from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise GeneratorError(f"the generator at {self.url} dropped the stream: {exc}") from None

    def _events(self, response) -> Iterator[str]:
        """Text pieces from a server-sent-event stream: ``data:`` lines, events end at a blank line,
        ``data: [DONE]`` ends the stream."""
        data_lines: list[str] = []
        for raw in response:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("data:"):
                data_lines.append(line[5:].lstrip(" "))
                continue
            if line or not data_lines:
                continue  # comments (":"), "event:"/"id:" fields, keep-alives
            event, data_lines = "\n".join(data_lines), []
            if event.strip() == "[DONE]":
                return
            piece = self._piece(event)
            if piece:
                yield piece
        if data_lines and "\n".join(data_lines).strip() != "[DONE]":
            piece = self._piece("\n".join(data_lines))
            if piece:
                yield piece

    def _piece(self, event: str) -> str:
        try:
            data = json.loads(event)
        except ValueError:
            raise GeneratorError(
                f"the generator at {self.url} sent a malformed stream event: {event[:200]!r}") from None
        if isinstance(data, dict) and data.get("error"):
            raise GeneratorError(f"the generator at {self.url} failed mid-stream: {_error_detail(event.encode())}")
        try:
            choice = data["choices"][0]
        except (KeyError, IndexError, TypeError):
            return ""
        return (choice.get("delta") or {}).get("content") or choice.get("text") or ""

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)
