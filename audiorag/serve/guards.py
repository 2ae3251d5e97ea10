"""Pure ASGI middlewares that guard every request before any route runs: the bearer token, the
request body size (413 before the body is read whole) and the time a request may take (504)."""

from __future__ import annotations

import asyncio
import hmac
import json

from starlette.exceptions import HTTPException

#: routes that take an upload (multipart): their bodies may reach ``--max-upload``
UPLOAD_PATHS = ("/search/audio", "/search/hybrid", "/search/hum", "/identify", "/recommend")
#: what multipart framing and form fields may add to an upload, and the body limit of other routes
FORM_OVERHEAD = 64 * 1024


async def send_error(send, status: int, error: str, detail: str, headers: dict | None = None) -> None:
    """Send the API's error body ``{error, detail}`` straight from a middleware."""
    body = json.dumps({"error": error, "detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return v.decode("latin-1")
    return None


def _public(path: str) -> bool:
    """``/health`` and the listening page's own files (no library data: the page sends the token it is
    given in ``?token=`` with every API call)."""
    return path in ("/health", "/") or path.startswith("/static/")


class RequireToken:
    """Every route but ``/health`` and the page's files needs ``Authorization: Bearer <token>`` (compared
    in constant time)."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not _public(scope["path"]):
            given = _header(scope, b"authorization") or ""
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), self.token):
                detail = "this server needs Authorization: Bearer <token>" if not given else "wrong token"
                return await send_error(send, 401, "unauthorized", detail, {"WWW-Authenticate": "Bearer"})
        await self.app(scope, receive, send)


class TooLarge(HTTPException):
    """Raised while reading a body that passes the limit (FastAPI lets an HTTPException through)."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than {limit:,} bytes (--max-upload)")


class LimitBody:
    """413 for a body over the limit: at once when ``Content-Length`` says so, else as soon as
    the bytes received pass it (the rest is never read)."""

    def __init__(self, app, max_upload: int):
        self.app = app
        self.max_upload = max_upload

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = (self.max_upload if scope["path"] in UPLOAD_PATHS else 0) + FORM_OVERHEAD
        length = _header(scope, b"content-length")
        if length is not None and (not length.strip().isdigit() or int(length) > limit):
            detail = (TooLarge(limit).detail if length.strip().isdigit()
                      else f"Content-Length {length[:40]!r} is not a number")
            return await send_error(send, 413 if length.strip().isdigit() else 400,
                                    "too_large" if length.strip().isdigit() else "bad_request", detail,
                                    {"Connection": "close"})
        received = 0
        started = False

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise TooLarge(limit)
            return message

        async def watch(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, watch)
        except TooLarge as exc:
            if started:
                raise
            await send_error(send, 413, "too_large", exc.detail, {"Connection": "close"})


class Deadline:
    """A request that takes longer than ``timeout`` seconds (a slow upload included) ends with 504.

    A timer cancels the request's own task (``asyncio.wait_for`` would run it in a new task: 13 µs a
    request, against 3)."""

    def __init__(self, app, timeout: float):
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = expired = False
        task = asyncio.current_task()

        async def watch(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        def expire():
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(self.timeout, expire)
        try:
            await self.app(scope, receive, watch)
        except asyncio.CancelledError:
            if not expired:  # the server's own cancellation (the client went away, shutdown)
                raise
            if hasattr(task, "uncancel"):  # Python ≥ 3.11: this cancellation is handled here
                task.uncancel()
            if not started:
                await send_error(send, 504, "timeout", f"the request took longer than {self.timeout:g} s",
                                 {"Connection": "close"})
        finally:
            timer.cancel()
