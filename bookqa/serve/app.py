"""The HTTP API's FastAPI application: routes, error answers, request ids, size limits, the model worker.

``create_app(settings, token=...)`` builds it; ``bookqa serve`` runs it with uvicorn. The OpenAPI page is
at ``/docs`` (schema at ``/openapi.json``), ``GET /healthz`` says whether the reranker is loaded and how
full the queue is.
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .. import __version__
from ..errors import BookQAError
from ..settings import Settings
from . import books, rerank
from .failures import classify
from .middleware import BearerAuth, BodyLimit, RequestContext, RequestIdFilter
from .state import ServeState
from .worker import QueueFull

log = logging.getLogger("bookqa.serve")
log.addFilter(RequestIdFilter())

UPLOAD_OVERHEAD = 1 << 20  # multipart framing and form fields around an uploaded file

DESCRIPTION = """Cited answers about long books, and QRRanker (attention-head reranking) for any texts.

* `POST /v1/rerank` (also `/v2/rerank`): the rerank schema of Cohere, Jina and Voyage.
* `POST /rerank`: text-embeddings-inference's rerank schema.
* `POST /v1/books` → a job id; `GET /v1/jobs/{id}` → stage, fraction, ETA.
* `POST /v1/books/{id}/ask`: JSON, or server-sent events (`stream: true`): `token` events, then `citations`
  (chunk ids and character spans), then `done`.

Errors are `{"message", "type", "request_id"}`; a full queue answers 503 with `Retry-After`.
"""


async def _error(request: Request, exc: Exception) -> JSONResponse:
    failure = classify(exc)
    if failure.status == 500:
        log.error("unhandled error", exc_info=exc)
    return JSONResponse(failure.body(), status_code=failure.status, headers=failure.headers)


def create_app(settings: Optional[Settings] = None, *, token: Optional[str] = None, warm: bool = True) -> FastAPI:
    """The API over ``settings``' library and models. ``token``: require ``Authorization: Bearer
    <token>`` on every route but /healthz. ``warm``: load the reranker on the worker at start-up, so the
    first request does not pay for it."""
    settings = settings or Settings.from_env()
    state = ServeState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if warm:
            def loaded(future) -> None:
                if not future.cancelled() and future.exception() is not None:
                    log.error("the reranker could not be loaded: %s", future.exception())

            state.worker.submit(state.reranker).add_done_callback(loaded)
        try:
            yield
        finally:
            state.close()

    app = FastAPI(title="bookqa", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  exception_handlers={BookQAError: _error, QueueFull: _error, RequestValidationError: _error,
                                      HTTPException: _error, Exception: _error})
    app.state.bookqa = state
    app.include_router(rerank.router)
    app.include_router(books.router)

    @app.get("/healthz", tags=["service"], summary="Liveness, the reranker's state, the queue")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__,
                "reranker": {"model": settings.reranker_model, "loaded": state.reranker_loaded},
                "generator": {"backend": settings.generator, "model": settings.generator_model},
                "queue": state.worker.stats()}

    json_limit = int(settings.serve_max_request_mb * 1024 * 1024)
    upload_limit = settings.max_upload_bytes + UPLOAD_OVERHEAD

    def body_limit(scope: dict) -> int:
        is_upload = scope.get("method") == "POST" and scope.get("path", "").rstrip("/") == "/v1/books"
        return upload_limit if is_upload else json_limit

    # Starlette runs the last added outermost: request id → token → size limit → routes.
    app.add_middleware(BodyLimit, limit_for=body_limit)
    app.add_middleware(BearerAuth, token=token)
    app.add_middleware(RequestContext)
    return app
