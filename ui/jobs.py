"""Long bookqa calls run in a worker thread while a Gradio generator streams their state to the page.

``stream_ingest`` and ``stream_answer`` are plain generators (no Gradio), so they are tested without
a browser. Each yields snapshots a few times a second and finally the result; an exception of the
worker is re-raised in the consumer. When the consumer stops early (the page was closed or the event
was cancelled), an answer being generated is cut short at the next token.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from bookqa.library import IngestReport, Library
from bookqa.pipeline import AskResult, ask
from bookqa.settings import Settings
from bookqa.store import Book

from .tracker import IngestTracker

POLL_S = 0.25  # how often the page is refreshed while work is running


class _Stopped(Exception):
    """Raised inside the worker's token callback when nobody is listening any more."""


@dataclass
class IngestUpdate:
    tracker: IngestTracker
    report: Optional[IngestReport] = None  # set on the last update


def stream_ingest(settings: Settings, path: Path | str, title: Optional[str], kind: Optional[str],
                  poll: float = POLL_S) -> Iterator[IngestUpdate]:
    """Ingest ``path`` in a thread; yield the progress tracker every ``poll`` seconds, then the report."""
    tracker = IngestTracker()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["report"] = Library(settings).ingest(path, title=title or None, kind=kind, progress=tracker)
        except BaseException as exc:  # re-raised in the consumer
            box["error"] = exc

    worker = threading.Thread(target=work, name="bookqa-ingest", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(poll)
        if worker.is_alive():
            yield IngestUpdate(tracker)
    if "error" in box:
        raise box["error"]
    yield IngestUpdate(tracker, box["report"])


@dataclass
class AnswerUpdate:
    text: str  # the answer so far
    status: str  # what the pipeline is doing (before the first token)
    result: Optional[AskResult] = None  # set on the last update
    tokens: int = 0


def stream_answer(book: Book, question: str, settings: Settings, *, k: Optional[int] = None,
                  top_n: Optional[int] = None, use_prefix: bool = True, rerank: bool = True,
                  poll: float = POLL_S) -> Iterator[AnswerUpdate]:
    """Answer in a thread; yield the growing answer as tokens arrive, then the full result."""
    events: "queue.Queue[tuple[str, Any]]" = queue.Queue()
    stop = threading.Event()

    def on_token(piece: str) -> None:
        if stop.is_set():
            raise _Stopped()
        events.put(("token", piece))

    def on_progress(stage: str, done: int, total: Optional[int]) -> None:
        # the pipeline reports model loading; once a stage is finished the answer is being worked on
        finished = total is not None and done >= total
        events.put(("status", "working on the answer…" if finished else f"{stage}…"))

    def work() -> None:
        try:
            result = ask(book, question, settings, k=k, top_n=top_n, use_prefix=use_prefix, rerank=rerank,
                         on_token=on_token, progress=on_progress)
            events.put(("done", result))
        except BaseException as exc:
            events.put(("error", exc))

    status = ("retrieving and reranking passages…" if rerank else "retrieving passages…")
    text, tokens = "", 0
    worker = threading.Thread(target=work, name="bookqa-ask", daemon=True)
    worker.start()
    try:
        yield AnswerUpdate(text, status)
        while True:
            try:
                kind, value = events.get(timeout=poll)
            except queue.Empty:
                continue
            changed = False
            while True:  # drain everything that arrived, then refresh the page once
                if kind == "token":
                    if not text:
                        status = "writing the answer…"
                    text += value
                    tokens += 1
                    changed = True
                elif kind == "status":
                    status, changed = value, True
                elif kind == "done":
                    yield AnswerUpdate(value.answer, "done", result=value, tokens=tokens)
                    return
                elif kind == "error":
                    if isinstance(value, _Stopped):
                        return
                    raise value
                try:
                    kind, value = events.get_nowait()
                except queue.Empty:
                    break
            if changed:
                yield AnswerUpdate(text, status, tokens=tokens)
    finally:
        stop.set()  # the consumer went away (or finished): cut generation short at the next token
