"""The HTTP edge: the outermost middleware and the error handlers.

Owns: the security headers, the body limit, HEAD as GET, request metrics, the last-resort 500,
and the one JSON error shape ``{"error": {"status", "message"}}`` every error response has.
Errors become HTTP statuses here and nowhere else. Imports FastAPI/Starlette, the errors and
the batcher's ``Metrics``.
"""

from __future__ import annotations

import collections
import logging
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.batcher import Metrics
from service.errors import (
    NotReadyError,
    QueueFullError,
    StandpointError,
    UnauthorizedError,
    printable,
)

logger = logging.getLogger(__name__)

# Every response: no MIME sniffing, no framing, and scripts and styles only from this server's
# own files (the page and /docs have nothing inline; Swagger UI's icons are data: images).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    b"content-security-policy": CSP.encode(),
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
}


# The edge: body limit, HEAD, security headers, request metrics, last-resort 500 ---------------
def error_json(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"status": status, "message": printable(message)}},
        status_code=status,
        headers=headers,
    )


class EdgeMiddleware:
    """Outermost layer: refuses bodies over the limit, answers HEAD as GET without the body,
    adds the security headers, counts requests, and turns crashes into 500s."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False
        method = scope["method"]
        if method == "HEAD":  # every GET route answers HEAD too (the routes declare only GET)
            scope["method"] = "GET"

        async def send_counted(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS.items() if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            elif message["type"] == "http.response.body" and method == "HEAD":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        try:
            replay = await self._read_body(scope, receive)
            if replay is None:
                error = error_json(413, f"the request body is over {self.max_body_bytes} bytes")
                await error(scope, receive, send_counted)
            else:
                await self.app(scope, replay, send_counted)
        except Exception:
            logger.exception("unhandled error in %s %s", method, scope["path"])
            if not response_started:
                crash = error_json(500, "internal server error; it has been logged")
                await crash(scope, receive, send_counted)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(label, method, str(status)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - started)

    async def _read_body(self, scope: Scope, receive: Receive) -> Receive | None:
        """A receive that replays the whole body, or None if the body is over the limit."""
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                return None
            if not message.get("more_body", False):
                break
        pending = collections.deque(messages)

        async def replay() -> Message:
            return pending.popleft() if pending else await receive()

        return replay


# Error handlers -----------------------------------------------------------------------------
async def standpoint_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StandpointError)
    headers = {}
    if isinstance(exc, QueueFullError):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, UnauthorizedError):
        headers["WWW-Authenticate"] = "Bearer"
    if exc.status_code >= 500 and not isinstance(exc, NotReadyError):  # readiness probes poll
        logger.warning("%s %s: %s", request.method, request.url.path, exc.message)
    return error_json(exc.status_code, exc.message, headers)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if hint := _content_type_hint(request):  # the body was never read as JSON
        return error_json(422, hint)
    problems = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_json(422, "; ".join(problems) or "invalid request")


def _content_type_hint(request: Request) -> str | None:
    if request.method not in ("POST", "PUT", "PATCH"):
        return None
    content_type = request.headers.get("content-type")
    media = (content_type or "").split(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    if kind == "application" and (subtype == "json" or subtype.endswith("+json")):
        return None
    got = f"Content-Type: {content_type}" if content_type else "no Content-Type"
    return (
        f"the body must be JSON sent with Content-Type: application/json (this request has {got})"
    )


# Why FastAPI could not read a JSON body (its 400 says only "There was an error parsing the body").
BODY_ERRORS: dict[type[Exception], str] = {
    RecursionError: "the JSON body is nested too deeply to read",
    UnicodeDecodeError: "the JSON body is not UTF-8",
}


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = str(exc.detail)
    if exc.status_code == 400 and isinstance(exc.__cause__, tuple(BODY_ERRORS)):
        message = next(m for t, m in BODY_ERRORS.items() if isinstance(exc.__cause__, t))
    return error_json(exc.status_code, message, dict(exc.headers or {}))


def add_error_handlers(app: FastAPI) -> None:
    """Every error, whatever raised it, as the one JSON shape."""
    app.add_exception_handler(StandpointError, standpoint_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
