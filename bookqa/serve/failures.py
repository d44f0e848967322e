"""How a failure becomes an HTTP answer: one status and one error shape (``{"message", "type",
"request_id"}``) for every route, so a client can show ``message`` as it is. bookqa's own errors are
the user's to act on (4xx) or an upstream's fault (502/503); anything else is a bug (500, logged with
its traceback under the request's id)."""
from __future__ import annotations

from typing import Any, Optional

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from ..errors import (AmbiguousNameError, BookQAError, BrokenBookError, ConfigError, GeneratorError, InputError,
                      ModelError, NotFoundError, StorageError)
from .middleware import request_id
from .rerank import InputTooLarge
from .worker import QueueFull


class Failure:
    def __init__(self, status: int, kind: str, message: str, headers: Optional[dict[str, str]] = None):
        self.status, self.kind, self.message = status, kind, message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.kind, "request_id": request_id.get()}


# bookqa error classes, most specific first
_STATUS = ((InputTooLarge, 413, "input_too_large"), (NotFoundError, 404, "not_found"),
           (AmbiguousNameError, 409, "ambiguous"), (BrokenBookError, 409, "broken_book"),
           (StorageError, 409, "storage"), (InputError, 422, "invalid_input"),
           (ConfigError, 422, "invalid_setting"), (GeneratorError, 502, "generator_unavailable"),
           (ModelError, 503, "model_unavailable"), (BookQAError, 400, "bad_request"))


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, QueueFull):
        return Failure(503, "busy", str(exc), {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, BookQAError):
        for cls, status, kind in _STATUS:
            if isinstance(exc, cls):
                return Failure(status, kind, str(exc))
    if isinstance(exc, RequestValidationError):
        return _validation(exc)
    if isinstance(exc, HTTPException):
        kind = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status_code, "http_error")
        return Failure(exc.status_code, kind, str(exc.detail), dict(exc.headers or {}))
    return Failure(500, "internal_error", f"internal error; the server log has the details (request id "
                                          f"{request_id.get()})")


def _validation(exc: RequestValidationError) -> Failure:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        where = first.get("ctx", {}).get("error") or "invalid JSON"
        return Failure(400, "invalid_json", f"the request body is not valid JSON ({where})")
    parts = []
    for e in errors[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {e.get('msg')}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return Failure(422, "invalid_request", "; ".join(parts) + more)
