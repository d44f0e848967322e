"""HTTP plumbing around the API's routes, as plain ASGI middleware: a request id on every request and log
line, a bearer token when one is configured, and body size limits enforced before a body is read.

Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``: the size limit has to answer 413 from the
headers alone (a 100 MB upload is refused without reading it) and must see the body as it arrives, and
streamed answers must pass through untouched.
"""
from __future__ import annotations

import contextvars
import hmac
import json
import logging
import re
import time
import uuid
from typing import Awaitable, Callable, Optional

from starlette.exceptions import HTTPException

log = logging.getLogger("bookqa.serve")

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("bookqa_request_id", default="-")

_GOOD_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every log record as ``request_id`` (for the log format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def _header(scope: Scope, name: bytes) -> Optional[str]:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def send_error(send: Send, status: int, message: str, kind: str,
                     headers: Optional[list[tuple[bytes, bytes]]] = None) -> None:
    """A JSON error answer in the API's one error shape (see app.error_body)."""
    body = json.dumps({"message": message, "type": kind, "request_id": request_id.get()}).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")] + list(headers or [])})
    await send({"type": "http.response.body", "body": body})


class RequestContext:
    """Gives each request an id (the client's ``X-Request-ID`` when it is a plain token, else a new one),
    returns it in ``X-Request-ID``, and logs one line per request: method, path, status, milliseconds."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        rid = given if given and _GOOD_ID.fullmatch(given) else uuid.uuid4().hex[:16]
        token = request_id.set(rid)
        t0 = time.perf_counter()
        status = {"code": 0}

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message = {**message, "headers": list(message.get("headers") or []) + [(b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:  # a bug: logged under the request id, answered as a 500 in the API's error shape
            log.exception("unhandled error")
            if not status["code"]:
                status["code"] = 500
                await send_error(send_with_id, 500, "internal error; the server log has the details (request id "
                                 f"{rid})", "internal_error")
        finally:
            log.info("%s %s %s %.1f ms", scope.get("method"), scope.get("path"), status["code"] or "-",
                     (time.perf_counter() - t0) * 1000)
            request_id.reset(token)


class BearerAuth:
    """Requires ``Authorization: Bearer <token>`` on every path except ``open_paths`` (health checks)."""

    def __init__(self, app: ASGIApp, token: Optional[str], open_paths: tuple[str, ...] = ("/healthz",)):
        self.app = app
        self.token = token.encode("utf-8") if token else None
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.token is None or scope.get("path") in self.open_paths:
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"authorization") or ""
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode("utf-8"), self.token):
            await send_error(send, 401, "this server needs 'Authorization: Bearer <token>' (the token the server "
                             "was started with)", "unauthorized", [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body without Content-Length passes its limit. An HTTPException, so
    the routes' body parsing lets it through as the 413 it is (FastAPI turns other errors raised while
    reading a body into a 400)."""

    def __init__(self, limit: int):
        super().__init__(status_code=413, detail=_too_large(None, limit))


class BodyLimit:
    """Refuses a request body larger than ``limit_for(scope)`` bytes with 413: from ``Content-Length``
    before anything is read, or, for a body sent without one, as soon as the bytes received pass it."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[Scope], int]):
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await send_error(send, 400, f"Content-Length {declared!r} is not a number", "bad_request")
                return
            if size > limit:
                await send_error(send, 413, _too_large(size, limit), "request_too_large")
                return
        received = {"bytes": 0}
        started = {"response": False}

        async def counting_receive() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                received["bytes"] += len(message.get("body", b""))
                if received["bytes"] > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                started["response"] = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:
            if not started["response"]:
                await send_error(send, 413, exc.detail, "request_too_large")


def _too_large(size: Optional[int], limit: int) -> str:
    what = f"{size / 2**20:.1f} MB" if size is not None else f"more than {limit / 2**20:.1f} MB"
    return f"the request body is {what}; this endpoint takes at most {limit / 2**20:.1f} MB"
