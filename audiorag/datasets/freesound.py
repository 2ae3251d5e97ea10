"""Freesound (API v2): text search, throttled and paginated, previews downloaded with resume and dedup.

A token (``--token`` or ``$FREESOUND_TOKEN``) is enough for previews; it travels in the
``Authorization`` header and is never logged or written. The client keeps to the documented
limits (60 requests a minute, 2000 a day at the base level), honours ``429`` with its
``Retry-After``, and asks for at most 150 results a page. ``fetch`` writes previews as
``<id>.mp3`` plus ``freesound.csv`` (id, name, tags, artist = username, licence, duration, url,
query), so the folder is a dataset: ``audiorag build LIB --dataset folder:DIR --labels DIR/freesound.csv``.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import logging
import os
import time
from pathlib import Path

import requests

from ..errors import DownloadError, ParameterError
from ..io import write_atomic
from .fetch import CONNECT_TIMEOUT, READ_TIMEOUT, download, failure_reason, public_url, unreachable

log = logging.getLogger(__name__)
BASE_URL = "https://freesound.org/apiv2/"
FIELDS = "id,name,tags,username,license,duration,url,previews"
MAX_PAGE_SIZE = 150


class Throttle:
    """Sliding-window request limits: at most ``per_minute`` in 60 s and ``per_day`` in 24 h."""

    def __init__(self, per_minute: int = 60, per_day: int = 2000, clock=time.monotonic, sleep=time.sleep):
        self.limits = [(60.0, per_minute), (86400.0, per_day)]
        self.times: collections.deque = collections.deque()
        self.clock, self.sleep = clock, sleep

    def wait(self) -> None:
        while True:
            now = self.clock()
            while self.times and now - self.times[0] > 86400.0:
                self.times.popleft()
            delay = 0.0
            for window, limit in self.limits:
                recent = [t for t in self.times if now - t < window]
                if len(recent) >= limit:
                    delay = max(delay, window - (now - recent[0]))
            if delay <= 0:
                self.times.append(now)
                return
            if delay > 3600:
                raise DownloadError(f"Freesound daily limit of {self.limits[1][1]} requests reached; "
                                    "try again tomorrow or raise it with a higher API level")
            self.sleep(delay)


class FreesoundClient:
    def __init__(self, token: str | None = None, *, url: str | None = None, throttle: Throttle | None = None,
                 max_retries: int = 5):
        self.token = token or os.environ.get("FREESOUND_TOKEN")
        if not self.token:
            raise ParameterError("Freesound needs an API token: pass --token or set FREESOUND_TOKEN "
                                 "(create one at freesound.org/apiv2/apply)")
        base = url or os.environ.get("AUDIORAG_FREESOUND_URL") or BASE_URL
        self.base = base if base.endswith("/") else base + "/"
        self.throttle = throttle or Throttle()
        self.max_retries = max_retries
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {self.token}"

    def __repr__(self) -> str:  # never show the token
        return f"FreesoundClient(url={self.base!r})"

    def get(self, url: str, params: dict | None = None) -> dict:
        """GET a JSON resource, throttled; ``429`` waits ``Retry-After`` seconds and retries."""
        for attempt in range(self.max_retries + 1):
            self.throttle.wait()
            try:
                r = self.session.get(url, params=params, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
            except requests.exceptions.RequestException as exc:
                if unreachable(exc):
                    raise DownloadError(f"cannot reach {public_url(url)}: {failure_reason(exc)}") from None
                raise DownloadError(f"{public_url(url)}: {failure_reason(exc)}") from None
            if r.status_code == 429:
                wait = _retry_after(r.headers.get("Retry-After"), attempt)
                log.info("Freesound throttled the client (429); waiting %.1fs", wait)
                time.sleep(wait)
                continue
            if r.status_code == 401:
                raise DownloadError("Freesound rejected the token (401 Unauthorized)")
            if r.status_code != 200:
                raise DownloadError(f"{public_url(url)}: HTTP {r.status_code} {r.reason}")
            return r.json()
        raise DownloadError(f"{public_url(url)}: still throttled (429) after {self.max_retries} retries")

    def search(self, query: str, *, filter: str | None = None, max_results: int = 150,
               page_size: int = MAX_PAGE_SIZE, sort: str | None = None) -> list[dict]:
        """Text search; follows ``next`` pages until ``max_results`` sounds."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ParameterError(f"Freesound page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        params = {"query": query, "fields": FIELDS, "page_size": min(page_size, max_results)}
        if filter:
            params["filter"] = filter
        if sort:
            params["sort"] = sort
        results, url = [], self.base + "search/"
        while url and len(results) < max_results:
            page = self.get(url, params)
            results += page.get("results", [])
            url, params = page.get("next"), None  # the next link carries the query
        return results[:max_results]


def fetch(query: str, root: str | os.PathLike, *, max_results: int = 150, filter: str | None = None,
          token: str | None = None, url: str | None = None, client: FreesoundClient | None = None,
          progress: bool = True) -> Path:
    """Search, download each sound's HQ preview once (resumable), and write ``freesound.csv``."""
    client = client or FreesoundClient(token, url=url)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows = _read_manifest(root)
    for sound in client.search(query, filter=filter, max_results=max_results):
        previews = sound.get("previews") or {}
        link = previews.get("preview-hq-mp3") or previews.get("preview-hq-ogg")
        if not link:
            log.warning("Freesound sound %s has no preview; skipped", sound.get("id"))
            continue
        ext = ".ogg" if link.endswith(".ogg") else ".mp3"
        dest = root / f"{int(sound['id'])}{ext}"
        if not dest.exists():  # dedup: each sound once, whatever the query
            client.throttle.wait()
            download(link, dest, session=client.session, progress=False)
        rows[str(sound["id"])] = {"path": dest.name, "freesound_id": int(sound["id"]), "name": sound.get("name", ""),
                                  "tags": json.dumps(sound.get("tags", [])), "artist": sound.get("username", ""),
                                  "license": sound.get("license", ""), "duration": sound.get("duration", ""),
                                  "url": sound.get("url", ""),
                                  "query": rows.get(str(sound["id"]), {}).get("query") or query}
    _write_manifest(root, rows)
    return root


def _retry_after(value: str | None, attempt: int) -> float:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return min(2.0 ** attempt, 60.0)


def _read_manifest(root: Path) -> dict:
    path = root / "freesound.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {row["freesound_id"]: row for row in csv.DictReader(f)}


def _write_manifest(root: Path, rows: dict) -> None:
    cols = ["path", "freesound_id", "name", "tags", "artist", "license", "duration", "url", "query"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for key in sorted(rows, key=int):
        w.writerow({c: rows[key].get(c, "") for c in cols})
    write_atomic(root / "freesound.csv", buf.getvalue())
