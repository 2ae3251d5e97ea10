"""Resumable, checksummed HTTP downloads.

A download writes ``<dest>.part`` and resumes it with an HTTP ``Range`` request after an
interruption (a dropped connection is retried at once; a killed process resumes on the next
call). A finished file is checked against its published SHA1 before it is renamed into place;
on a mismatch the partial file is **removed** (resuming cannot repair it) and
:class:`DownloadError` says so. An unreachable server fails fast (connect timeout, no retry).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import requests

from ..errors import DownloadError

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
CHUNK = 1 << 20


def sha1_of(path: str | os.PathLike) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: str | os.PathLike, *, sha1: str | None = None, session: requests.Session | None = None,
             headers: dict | None = None, retries: int = 5, progress: bool = True, desc: str | None = None) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify ``sha1``, return ``dest``.

    An existing ``dest`` whose checksum matches (or, without ``sha1``, any existing ``dest``) is kept.
    """
    from tqdm.auto import tqdm
    dest = Path(dest)
    if dest.exists() and (sha1 is None or sha1_of(dest) == sha1):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    http = session or requests.Session()
    attempt = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        req_headers = dict(headers or {})
        if have:
            req_headers["Range"] = f"bytes={have}-"
        try:
            with http.get(url, headers=req_headers, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)) as r:
                if r.status_code == 416 and have:  # nothing left to fetch: the part is complete
                    break
                if r.status_code not in (200, 206):
                    raise DownloadError(f"{public_url(url)}: HTTP {r.status_code} {r.reason}")
                if r.status_code == 200 and have:
                    log.info("%s: server ignored the Range request; starting over", public_url(url))
                    have = 0
                total = have + int(r.headers.get("Content-Length", 0)) or None
                with open(part, "ab" if have else "wb") as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                                  desc=desc or dest.name, disable=not progress,
                                                                  leave=False) as bar:
                    for chunk in r.iter_content(1 << 16):
                        f.write(chunk)
                        bar.update(len(chunk))
                got = part.stat().st_size
                if total is not None and got < total:
                    raise requests.exceptions.ChunkedEncodingError(f"connection closed at {got} of {total} bytes")
                break
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            if unreachable(exc):
                raise DownloadError(f"cannot reach {public_url(url)}: {failure_reason(exc)}") from None
            attempt += 1
            if attempt > retries:
                raise DownloadError(f"{public_url(url)}: gave up after {retries} retries ({failure_reason(exc)}); "
                                    f"{part} is kept and the next call resumes it") from None
            log.info("%s: %s; resuming (attempt %d)", public_url(url), failure_reason(exc), attempt)
            time.sleep(min(2 ** (attempt - 1) * 0.2, 10))
        except requests.exceptions.Timeout as exc:
            raise DownloadError(f"{public_url(url)}: timed out ({failure_reason(exc)}); "
                                f"{part} is kept for resume") from None
    if sha1 is not None:
        digest = sha1_of(part)
        if digest != sha1:
            part.unlink()
            raise DownloadError(f"{public_url(url)}: SHA1 {digest} does not match the published {sha1}; "
                                "the partial file was removed, the next call downloads it again")
    os.replace(part, dest)
    return dest


def unreachable(exc: Exception) -> bool:
    """No connection was ever made (refused, unknown host, no route): retrying will not help."""
    text = str(exc)
    return any(s in text for s in ("NewConnectionError", "NameResolutionError", "Failed to establish",
                                   "Connection refused", "Failed to resolve"))


def failure_reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "Temporary failure in name resolution",
                   "No route to host", "timed out", "connection closed", "Connection broken"):
        if marker in text:
            return marker
    return text.splitlines()[0][:200] if text else type(exc).__name__


def public_url(url: str) -> str:
    """The URL without its query string (which may carry a token)."""
    return url.split("?", 1)[0]
