"""Real HTTP servers on loopback for dataset tests: a file mirror with Range support and a
drop-the-connection-half-way mode, and a miniature Freesound API v2."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Server:
    """``files``: path -> bytes; ``drop_once``: paths whose first GET stops half-way; ``api``: path -> callable."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop_once: set[str] = set()
        self.api: dict = {}
        self.log: list[tuple[str, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                server.log.append((url.path, dict(self.headers)))
                if url.path in server.api:
                    status, headers, body = server.api[url.path](parse_qs(url.query), dict(self.headers))
                    return self._send(status, headers, body)
                data = server.files.get(url.path)
                if data is None:
                    return self._send(404, {}, b"not found")
                start = 0
                m = re.match(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if m:
                    start = int(m.group(1))
                    if start >= len(data):
                        return self._send(416, {"Content-Range": f"bytes */{len(data)}"}, b"")
                body = data[start:]
                status = 206 if m else 200
                headers = {"Accept-Ranges": "bytes", "Content-Length": str(len(body))}
                if m:
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if url.path in server.drop_once:
                    server.drop_once.discard(url.path)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def _send(self, status, headers, body: bytes):
                self.send_response(status)
                headers = {"Content-Length": str(len(body)), **headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def freesound_api(server: Server, sounds: list[dict], *, token: str, throttle_every: int = 0,
                  retry_after: str = "1") -> None:
    """Serve ``/apiv2/search/`` (paginated, token-checked, a 429 every ``throttle_every`` requests)."""
    counter = {"n": 0}

    def search(query, headers):
        counter["n"] += 1
        if headers.get("Authorization") != f"Token {token}":
            return 401, {}, b'{"detail": "Invalid token."}'
        if throttle_every and counter["n"] % throttle_every == 0:
            return 429, {"Retry-After": retry_after}, b'{"detail": "Request was throttled."}'
        q = query.get("query", [""])[0]
        size = int(query.get("page_size", ["15"])[0])
        page = int(query.get("page", ["1"])[0])
        hits = [s for s in sounds if q in s["name"] or q in s["tags"]]
        chunk = hits[(page - 1) * size: page * size]
        nxt = None
        if page * size < len(hits):
            nxt = f"{server.url}/apiv2/search/?query={q}&page={page + 1}&page_size={size}&fields=x"
        body = {"count": len(hits), "next": nxt, "previous": None, "results": chunk}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    server.api["/apiv2/search/"] = search
