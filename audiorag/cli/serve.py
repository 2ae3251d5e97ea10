"""The serve command: a REST API over a library (see :mod:`audiorag.serve`, docs/serve.md)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ..errors import ParameterError
from . import options
from ._app import app


@app.command()
def serve(library: Path = typer.Argument(..., help="library directory"),
          host: str = typer.Option("127.0.0.1", help="address to bind; other than loopback needs a token"),
          port: int = typer.Option(8000, help="TCP port"),
          workers: int = typer.Option(1, help="server processes (each opens the library once; indexes are "
                                             "memory-mapped, shared through the page cache)"),
          token: str | None = typer.Option(None, envvar="AUDIORAG_TOKEN", show_envvar=True,
                                           help="require Authorization: Bearer TOKEN on every route but /health"),
          cors_origin: list[str] = typer.Option([], help="allow browsers on this origin (repeatable; "
                                                         "default: no CORS)"),
          max_upload: str = typer.Option("20MB", help="largest upload (413 beyond, before it is read)"),
          max_clip: str = typer.Option("60s", help="longest decoded upload (422 beyond)"),
          timeout: str = typer.Option("30s", help="longest a request may take (504 beyond)"),
          threads: int | None = typer.Option(None, help="threads decoding and embedding uploads per process "
                                                        "(default: the cores)"),
          warm: bool = typer.Option(True, help="run one query of each kind at start, so the first client's does "
                                               "not load models or code (/health says 'warming' meanwhile)"),
          ray_address: str | None = typer.Option(None, help="a sharded library: serve it through one Ray actor per "
                                                            "shard on this cluster (auto | HOST:PORT; "
                                                            "docs/cluster.md)"),
          missing_shards: str = typer.Option("partial", help="with --ray-address, when shards do not answer: "
                                                             "partial (the others' hits; missing_shards names them) "
                                                             "or 503 (no hits: HTTP 503 naming them)")):
    """Serve LIBRARY over HTTP (FastAPI + uvicorn; OpenAPI at /docs). Safe by default: loopback only,
    uploads limited, CORS off."""
    # one native thread per search or embedding: concurrency comes from requests, and idle OpenMP threads
    # of every request would spin on the cores (set before faiss, torch or BLAS load; the user's value wins)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import uvicorn

    from ..library.shards import open_library
    from ..serve import Settings, check_bind, parse_seconds, parse_size
    from ..serve.settings import SETTINGS_ENV
    options.number("--port", port, minimum=0, maximum=65535)
    options.number("--workers", workers, minimum=1, maximum=64)
    options.number("--threads", threads, minimum=1, maximum=256)
    check_bind(host, token)
    limits = {}
    for option, field, parse, text in (("--max-upload", "max_upload", parse_size, max_upload),
                                       ("--max-clip", "max_clip", parse_seconds, max_clip),
                                       ("--timeout", "timeout", parse_seconds, timeout)):
        try:
            limits[field] = parse(text)
        except ParameterError as exc:
            raise ParameterError(f"{option}: {exc}") from None
    settings = Settings(str(Path(library).resolve()), token=token or None, cors_origins=tuple(cors_origin),
                        warm=warm, ray_address=ray_address, missing_shards=missing_shards, **limits,
                        **({"threads": threads} if threads else {}))
    open_library(library, ray_address=ray_address)  # a missing or damaged library (or cluster): one line here
    os.environ[SETTINGS_ENV] = settings.to_json()
    sock = _listen(host, port)  # a port in use or a bad host: one line and exit 2, before uvicorn logs anything
    typer.echo(f"serving {library} on http://{host}:{port} (OpenAPI: /docs){' with a token' if token else ''}"
               f"{'; warming up' if warm else ''}", err=True)
    config = uvicorn.Config("audiorag.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                            log_level="warning", timeout_graceful_shutdown=5)
    from uvicorn.supervisors import Multiprocess
    try:  # Ctrl-C (SIGINT) is the ordinary way to stop a server: exit 0, as uvicorn.run does
        if workers == 1:
            uvicorn.Server(config).run(sockets=[sock])
        else:
            Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass


def _listen(host: str, port: int):
    """The listening socket the worker processes share, made with ``IPPROTO_TCP``: uvicorn's own has protocol 0,
    so asyncio does not set ``TCP_NODELAY`` on the connections it accepts, and every response waits ~40 ms for
    the client's delayed ACK (Nagle)."""
    import socket
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ParameterError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None
    sock.set_inheritable(True)
    return sock
