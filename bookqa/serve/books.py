"""The library over HTTP: upload a book (an ingest job with progress), list and delete books, read a
chunk, and ask a question (JSON, or server-sent events that stream the answer and then its citations).

Books are named by id only (``GET /v1/books``), never by a guess at a title. Asking runs on the model
worker; a streamed answer that loses its client stops at the next token, which frees the worker.
"""
from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Optional

from fastapi import APIRouter, File, Form, Request, UploadFile
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse

from ..errors import InputError, NotFoundError
from ..pipeline import AskResult, ask
from ..store import slugify
from .failures import classify
from .schemas import AskRequest, BookInfo, BookList, ChunkInfo, JobAccepted, JobInfo
from .state import book_info

log = logging.getLogger("bookqa.serve")
router = APIRouter(tags=["books"])

KEEPALIVE_S = 5.0  # an SSE comment after this long without an event: proxies keep the stream, and a
# client that went away is noticed (its socket fails) while the question still waits for the worker
KINDS = ("novel", "transcript")


@router.get("/v1/books", response_model=BookList, summary="List the books (and any damaged ones)")
async def list_books(request: Request) -> dict[str, Any]:
    state = request.app.state.bookqa
    library = state.library()
    books, broken = await run_in_threadpool(lambda: (library.books(), library.broken()))
    return {"books": [book_info(b) for b in books],
            "broken": [{"id": b.id, "title": b.title, "reason": b.reason, "repair": b.repair} for b in broken]}


@router.post("/v1/books", status_code=202, response_model=JobAccepted,
             summary="Upload a .txt or .json book; returns the id of its ingest job")
async def upload_book(request: Request, file: UploadFile = File(...), title: Optional[str] = Form(None),
                      kind: Optional[str] = Form(None, description="novel | transcript | auto (default)")):
    state = request.app.state.bookqa
    kind = None if kind in (None, "", "auto") else kind
    if kind is not None and kind not in KINDS:
        raise InputError(f"kind must be novel, transcript or auto, not {kind!r}")
    job_id, directory = state.jobs.new_upload_dir()
    path = directory / _safe_name(file.filename)
    try:
        await run_in_threadpool(_copy, file, path)
        state.jobs.submit(job_id, path, title, kind, retry_after=30)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    log.info("ingest job %s queued for %s", job_id, path.name)
    return {"job_id": job_id, "status_url": f"/v1/jobs/{job_id}"}


def _safe_name(filename: Optional[str]) -> str:
    """The upload's name without any directory part, as a plain file name (the book records it)."""
    name = Path((filename or "").replace("\\", "/")).name
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, "txt"
    return f"{slugify(stem, max_len=80)}.{slugify(suffix, max_len=10)}"


def _copy(upload: UploadFile, path: Path) -> None:
    upload.file.seek(0)
    with open(path, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)


@router.get("/v1/jobs/{job_id}", response_model=JobInfo,
            summary="An ingest job: state, stage, fraction done, ETA")
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    job = request.app.state.bookqa.jobs.get(job_id)
    if job is None:
        raise NotFoundError(f"no job with id {job_id!r} (jobs are kept while the server runs)")
    return job.to_json()


@router.delete("/v1/books/{book_id}", summary="Delete a book and all its files")
async def delete_book(request: Request, book_id: str) -> dict[str, str]:
    state = request.app.state.bookqa
    state.book_dir(book_id)  # 404 for an unknown id (a damaged book can be deleted)
    await run_in_threadpool(state.library().remove, book_id)
    state.forget_book(book_id)
    log.info("deleted book %s", book_id)
    return {"deleted": book_id}


@router.get("/v1/books/{book_id}", response_model=BookInfo, summary="One book")
async def get_book(request: Request, book_id: str) -> dict[str, Any]:
    return book_info(request.app.state.bookqa.book(book_id))


@router.get("/v1/books/{book_id}/chunks/{number}", response_model=ChunkInfo,
            summary="One chunk of a book, with its exact character span")
async def get_chunk(request: Request, book_id: str, number: int) -> dict[str, Any]:
    book = request.app.state.bookqa.book(book_id)
    chunk = await run_in_threadpool(book.chunk, number)
    return {"book_id": book.id, **chunk.to_json(), "location": chunk.location}


# --- asking ----------------------------------------------------------------------------------------

class _Stopped(Exception):
    """Raised in the worker's token callback once the client of a streamed answer has gone."""


def _ask(state, book, body: AskRequest, on_token: Optional[Callable[[str], None]] = None) -> AskResult:
    settings = state.settings.replace(answer_style=body.style) if body.style else state.settings
    return ask(book, body.question, settings, k=body.k, top_n=body.top_n, use_prefix=body.use_prefix,
               rerank=body.rerank, method=body.method, generator=state.generator(), on_token=on_token)


@router.post("/v1/books/{book_id}/ask", summary="Ask a question; JSON, or server-sent events with stream=true",
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "AskResult JSON, or events: status, token…, citations, done "
                                             "(error instead when answering fails)"}})
async def ask_book(request: Request, book_id: str, body: AskRequest):
    state = request.app.state.bookqa
    book = state.book(book_id)  # an unknown book is a 404 before anything is queued
    if not (body.stream or "text/event-stream" in (request.headers.get("accept") or "")):
        result: AskResult = await state.worker.submit(lambda: _ask(state, book, body))
        return result.to_json()

    loop = asyncio.get_running_loop()
    events: "asyncio.Queue[tuple[str, Any]]" = asyncio.Queue()
    stop = threading.Event()

    def emit(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(events.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is gone (server shutting down)
            stop.set()

    def on_token(piece: str) -> None:
        if stop.is_set():
            raise _Stopped()
        emit("token", piece)

    def work() -> None:
        if stop.is_set():  # the client left while the question waited
            return
        emit("status", "answering")
        try:
            emit("done", _ask(state, book, body, on_token))
        except _Stopped:
            log.info("streamed answer stopped: the client went away")
        except BaseException as exc:  # sent to the client as an error event
            status = classify(exc).status
            if status >= 500:
                log.error("answering failed: %s", exc, exc_info=status == 500)
            emit("error", exc)

    state.worker.submit(work)  # a full queue is a 503 here, before the stream starts
    return EventStream(_events(events, stop), on_close=stop.set)


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _events(events: "asyncio.Queue[tuple[str, Any]]", stop: threading.Event) -> AsyncIterator[str]:
    try:
        yield sse("status", {"state": "queued"})
        while True:
            try:
                kind, value = await asyncio.wait_for(events.get(), timeout=KEEPALIVE_S)
            except asyncio.TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if kind == "token":
                yield sse("token", {"text": value})
            elif kind == "status":
                yield sse("status", {"state": value})
            elif kind == "done":
                result: AskResult = value
                yield sse("citations", {"citations": [asdict(c) for c in result.citations],
                                        "cited_answer": result.cited_answer,
                                        "invalid_citations": result.invalid_citations})
                yield sse("done", result.to_json())
                return
            elif kind == "error":
                failure = classify(value)
                yield sse("error", {**failure.body(), "status": failure.status})
                return
    finally:
        stop.set()


class EventStream(StreamingResponse):
    """A server-sent-event stream that calls ``on_close`` however it ends: finished, or its client gone."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None]):
        super().__init__(content, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except (ClientDisconnect, OSError):
            log.info("the client of a streamed answer went away")
        finally:
            self.on_close()
