"""The application factory: routes, error bodies, guards and shared state of one server process."""

from __future__ import annotations

import logging
import os
import re
import sys

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .. import __version__
from ..errors import (
    AudioDecodeError,
    AudioragError,
    IncompatibleLibraryError,
    LibraryDamagedError,
    MissingDependencyError,
    UnknownEmbedderError,
)
from ..library.cluster import ShardsMissing
from .contract import openapi
from .guards import Deadline, LimitBody, RequireToken
from .media import ChangedFile, Moments
from .settings import SETTINGS_ENV, Settings
from .state import Busy, Libraries, Pool
from .warm import Warmer, freeze_heap, prepare

log = logging.getLogger(__name__)

#: the error code of each HTTP status the API answers with
_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 406: "not_acceptable",
          409: "conflict", 410: "gone", 413: "too_large", 415: "unsupported_media_type", 416: "range_not_satisfiable",
          422: "invalid_parameter", 503: "unavailable", 504: "timeout"}
#: an absolute path in a message: its folders are the server's business, its last name may stay
_PATH = re.compile(r"(?<![\w.])(?:/[^/\s'\"]+)+/(?=[^/\s'\"]+)")
#: expected failures of the library's functions → (status, code); the first class that matches wins
_FAILURES = ((AudioDecodeError, 415, "undecodable_audio"), (UnknownEmbedderError, 422, "unknown_embedder"),
             (IncompatibleLibraryError, 409, "incompatible"), (LibraryDamagedError, 503, "library_damaged"),
             (MissingDependencyError, 503, "missing_dependency"), (AudioragError, 422, "invalid_parameter"))


def without_folders(text: str, folders=()) -> str:
    """``text`` with every absolute path cut to its last name: first the known ``folders`` (they may
    hold spaces), then anything that looks like a path.

    >>> without_folders("/srv/my music/t1.wav: truncated (see /tmp/x)", ["/srv/my music"])
    't1.wav: truncated (see x)'
    """
    for folder in sorted(folders, key=len, reverse=True):
        text = text.replace(folder.rstrip("/") + "/", "")
    return _PATH.sub("", text)


def error(status: int, detail: str, code: str | None = None, headers: dict | None = None) -> JSONResponse:
    """The API's error response: ``{"error": code, "detail": detail}``."""
    return JSONResponse({"error": code or _CODES.get(status, "error"), "detail": detail}, status, headers=headers)


def create_app(settings: Settings) -> FastAPI:
    """A FastAPI app serving ``settings.library`` (opened here, once per process).

    Routers are included in order, so a later ``app.mount("/", StaticFiles(...))`` (a web page)
    only gets the paths no route claims.

    >>> import tempfile
    >>> from fastapi.testclient import TestClient
    >>> from audiorag import Library
    >>> lib = Library.create(tempfile.mkdtemp(), window=2, hop=1)
    >>> client = TestClient(create_app(Settings(str(lib.path))))
    >>> client.get("/health").json()["generation"], client.get("/tracks/7").status_code
    (0, 404)
    """
    from .identify import router as identify
    from .queries import router as queries
    from .recommend import router as recommend
    from .tracks import router as tracks
    app = FastAPI(title="audiorag", version=__version__,
                  description="Segment-level (moment) audio search over one audiorag library. Errors are "
                              "`{error, detail}`; with a token, every route but /health needs "
                              "`Authorization: Bearer <token>`.")
    app.state.settings = settings
    app.state.libraries = Libraries(settings.library, ray_address=settings.ray_address, prepare=prepare,
                                    missing="error" if settings.missing_shards == "503" else "partial")
    app.openapi = lambda: openapi(app, app.state.libraries.current())
    app.state.pool = Pool(settings.threads, settings.queue)
    app.state.moments = Moments()
    app.include_router(tracks)
    app.include_router(queries)
    app.include_router(identify)
    app.include_router(recommend)
    from ..web import mount
    mount(app)  # the listening page at / and its files under /static
    _handle_errors(app)
    # the last added runs first: CORS (answers preflights), token, body size, deadline, then routes
    app.add_middleware(Deadline, timeout=settings.timeout)
    app.add_middleware(LimitBody, max_upload=settings.max_upload)
    if settings.token:
        app.add_middleware(RequireToken, token=settings.token)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "Range"],
                           expose_headers=["Content-Range", "Accept-Ranges", "Content-Length"])
    app.state.warmer = Warmer(app.state.libraries)
    if settings.warm:  # at start-up (not at creation: a TestClient used without `with` never warms)
        app.router.on_startup.append(app.state.warmer.start)
    else:
        app.state.warmer.ready.set()
    app.router.on_shutdown.append(app.state.pool.close)
    return app


def folders(lib) -> set[str]:
    """The folders a library's answers must not show: its own and its files' (per generation)."""
    key = str(lib.data)
    if key not in _FOLDERS:
        _FOLDERS.clear()
        _FOLDERS[key] = {os.path.abspath(lib.path), *(os.path.dirname(os.path.abspath(str(u)))
                                                      for u in lib.tracks["uri"])}
    return _FOLDERS[key]


_FOLDERS: dict = {}


def app_from_env() -> FastAPI:
    """The app of a uvicorn worker process started by ``audiorag serve`` (settings in the environment)."""
    settings = Settings.from_json(os.environ[SETTINGS_ENV])
    app = create_app(settings)
    app.state.warmer.announce = lambda line: print(f"[{os.getpid()}] {line}", file=sys.stderr, flush=True)
    app.state.warmer.freeze = True  # a server process's heap, once warm (not a test's, nor a notebook's)
    if not settings.warm:
        freeze_heap()
    return app


def _handle_errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors()[:5]:
            loc = [str(x) for x in e.get("loc", ()) if x not in ("query", "body", "path", "header", "form")]
            parts.append(f"{'.'.join(loc) or 'request'}: {e.get('msg', 'invalid')}")
        return error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(HTTPException)
    async def http(request: Request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail), getattr(exc, "code", None), getattr(exc, "headers", None))

    @app.exception_handler(AudioragError)
    async def expected(request: Request, exc: AudioragError):
        status, code = next((s, c) for cls, s, c in _FAILURES if isinstance(exc, cls))
        # the server's folders are not the client's business
        return error(status, without_folders(str(exc), folders(app.state.libraries.current())), code)

    @app.exception_handler(ShardsMissing)
    async def shards_missing(request: Request, exc: ShardsMissing):  # serve --missing-shards 503
        return JSONResponse({"error": "shards_missing", "detail": f"shard(s) {', '.join(map(str, exc.shards))} of "
                             "the sharded library did not answer; no partial answer (--missing-shards 503)",
                             "missing_shards": exc.shards}, 503, headers={"Retry-After": "1"})

    @app.exception_handler(ChangedFile)
    async def changed(request: Request, exc: ChangedFile):
        return error(409, str(exc), "file_changed")

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy):
        return error(503, str(exc), "busy", {"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error(500, f"unexpected {type(exc).__name__}: this is a bug in audiorag (details in the server log)",
                     "internal_error")
