"""A moment of an indexed track as a WAV, OGG or MP3 file, with HTTP ``Range`` support.

Audio is read only from the file a track's row names, and only while that file still holds the
content the library indexed (its sha256): a file replaced since (by another file, a link to
another file) is refused, so the route cannot be turned into a way to read other files.

>>> parse_range("bytes=0-99", 1000), parse_range("bytes=900-", 1000), parse_range("bytes=-10", 1000)
((0, 99, True), (900, 999, True), (990, 999, True))
>>> parse_range("bytes=2000-", 1000) is None, parse_range("items=0-1", 1000), parse_range(None, 1000)
(True, (0, 999, False), (0, 999, False))
>>> parse_range("bytes=0-" + "9" * 5000, 1000), parse_range("bytes=" + "9" * 5000 + "-", 1000)
((0, 999, True), None)
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections import OrderedDict

import soundfile as sf

from ..audio import load, resample
from ..errors import AudioDecodeError
from ..io import decode_path, file_sha256

MEDIA_TYPES = {"wav": "audio/wav", "ogg": "audio/ogg", "mp3": "audio/mpeg"}
_SF_FORMATS = {"wav": ("WAV", "PCM_16"), "ogg": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III")}
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


class ChangedFile(Exception):
    """A track's file no longer holds what the library indexed."""


class Moments:
    """Encoded moments (an LRU of at most ``max_bytes``) and the files verified against their
    recorded content hash (remembered by device, inode, size, mtime and ctime: a file rewritten
    with its mtime set back still has a new ctime, which no user can set)."""

    def __init__(self, max_bytes: int = 64 << 20):
        self.max_bytes = max_bytes
        self._encoded: OrderedDict = OrderedDict()
        self._verified: dict = {}
        self._lock = threading.Lock()

    def get(self, uri: str, content_hash: str, start: float, end: float, fmt: str) -> bytes:
        """The span ``[start, end)`` of the file as ``fmt`` bytes (mono or stereo as the file is)."""
        path = decode_path(uri)
        stamp = _stamp(path)
        key = (path, stamp, content_hash, round(start, 3), round(end, 3), fmt)
        with self._lock:
            if key in self._encoded:
                self._encoded.move_to_end(key)
                return self._encoded[key]
        if self._verified.get(path) != (stamp, content_hash):
            if file_sha256(path) != content_hash:
                raise ChangedFile(f"the file of this track changed since it was indexed "
                                  f"({os.path.basename(path)}); rebuild the library")
            self._verified[path] = (stamp, content_hash)
        data = encode(path, start, end, fmt)
        with self._lock:
            self._encoded[key] = data
            total = sum(len(v) for v in self._encoded.values())
            while total > self.max_bytes and len(self._encoded) > 1:
                total -= len(self._encoded.popitem(last=False)[1])
        return data


def _stamp(path: str) -> tuple:
    st = os.stat(path)  # follows links: a link swapped in changes the stamp
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def encode(path, start: float, end: float, fmt: str) -> bytes:
    """Decode ``[start, end)`` of ``path`` and encode it as ``fmt`` (``wav``: 16-bit PCM, ``ogg``:
    Vorbis, ``mp3``: MPEG layer III, resampled to 44.1 kHz when its rate is not an MP3 rate)."""
    y, sr = load(path, mono=False, offset=start, duration=end - start)
    major, subtype = _SF_FORMATS[fmt]
    if fmt == "mp3" and sr not in _MP3_RATES:
        y, sr = resample(y, sr, 44100), 44100
    buf = io.BytesIO()
    try:
        sf.write(buf, y.T, sr, format=major, subtype=subtype)
    except Exception as exc:  # libsndfile's encoders refuse some rates and channel counts
        raise AudioDecodeError(os.path.basename(path), f"cannot encode as {fmt} ({exc})") from exc
    return buf.getvalue()


_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.ASCII)
#: byte positions past this are all "beyond any file" (and never go through ``int()`` of a long text)
_BEYOND = 10**18


def _position(digits: str) -> int:
    """A byte position's digits as a number, bounded by :data:`_BEYOND` (leading zeros are no size)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) < 19 else _BEYOND


def parse_range(header: str | None, size: int) -> tuple[int, int, bool] | None:
    """``(first, last, partial)``: the inclusive byte span a ``Range`` header asks for
    (``partial``: answer 206); the whole file when the header is absent, malformed, not one byte
    range or not in bytes (RFC 9110 lets a server ignore those); ``None`` when it cannot be
    satisfied (416). Numbers of any length are read bounded."""
    m = _RANGE.fullmatch((header or "").strip())
    if not m or not (m.group(1) or m.group(2)):
        return 0, size - 1, False
    if not m.group(1):  # the last N bytes
        n = _position(m.group(2))
        return (max(0, size - n), size - 1, True) if n > 0 and size else None
    first = _position(m.group(1))
    last = min(_position(m.group(2)), size - 1) if m.group(2) else size - 1
    if m.group(2) and _position(m.group(2)) < first:
        return 0, size - 1, False  # last before first: not a valid range (RFC 9110 14.1.1), ignored
    return (first, last, True) if first < size else None
