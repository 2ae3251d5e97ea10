"""Decode, validate, mix down, resample and normalise audio.

All decoding goes through :func:`load`; every public entry point that takes raw
samples validates them with :func:`valid_audio`.

Examples
--------
>>> import numpy as np, soundfile as sf, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
>>> sf.write(path, np.sin(np.arange(44100) / 10).astype("float32"), 44100)
>>> y, sr = load(path, sr=22050)
>>> y.shape, sr
((22050,), 22050)
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioDecodeError, ParameterError, UnusableClipError
from .io import encode_path, native_stderr_held, open_regular

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au")
NORMALISATIONS = (None, "peak", "rms")
# Frames a decoded file may fall short of its header's count before it counts as truncated:
# none for PCM and FLAC (exact counts); one MPEG-1 frame for MP3, whose count comes from the
# Xing/LAME header and may be rounded by some encoders.
_MPEG_TOLERANCE = 1152
# Beyond that, a lossy file's header may promise a little more than decodes (an Ogg page's granule
# position past the codec's end trim, pre-skip, padding): a real soundtrack's OGG promised 0.13 s
# of 207 s that no decoder gives. A short tail of at most 5 % (at least 4096 frames, at most one
# second) is accepted and reported (:func:`short_tail`); more is a truncated file. A cut Ogg
# file is caught by its missing end-of-stream page, a cut FLAC by its decoder, whatever the share.
_SHORT_TAIL_SHARE, _SHORT_TAIL_FLOOR, _SHORT_TAIL_SECONDS = 0.05, 4096, 1.0
_BLOCK = 1 << 16  # frames decoded per read (a failing read still tells how far decoding got)


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file (no decoding)."""

    duration: float
    sample_rate: int
    channels: int
    frames: int
    format: str


def info(path: str | os.PathLike) -> AudioInfo:
    """Read an audio file's header.

    The file is opened as a file object, so names that are not valid UTF-8 work too.
    Raises :class:`AudioDecodeError` naming the file when it is not readable audio.

    >>> import soundfile as sf, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "z.wav"); sf.write(p, np.zeros(800, "float32"), 8000)
    >>> info(p).duration, info(p).channels
    (0.1, 1)
    """
    item = display_name(path)
    with _open_file(path, item) as fh:
        _check_not_empty(fh, item)
        try:
            with _held_stderr(fh), sf.SoundFile(fh) as f:
                return AudioInfo(f.frames / f.samplerate if f.samplerate else 0.0, int(f.samplerate),
                                 int(f.channels), int(f.frames), f.format)
        except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / OSError
            raise AudioDecodeError(item, f"unreadable audio ({_reason(exc)})") from exc


def display_name(source) -> str:
    """How a file is named in messages: its path with bytes that are not UTF-8 shown as ``\\xNN``.

    >>> display_name("caf\\udce9.wav")
    'caf\\\\xe9.wav'
    """
    if isinstance(source, (str, os.PathLike)):
        return encode_path(os.fsdecode(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    name = getattr(source, "name", None)
    return encode_path(os.fsdecode(name)) if isinstance(name, (str, bytes)) else "<file>"


def _open_file(path, item: str):
    """Open a regular file for reading; an ``OSError`` (missing, unreadable, a folder, a FIFO, a device)
    becomes an AudioDecodeError, and so does a file of 0 bytes (``/proc`` files say 0 and cannot seek)."""
    try:
        fh = open_regular(path)
    except OSError as exc:
        raise AudioDecodeError(item, f"cannot read file ({exc.strerror or exc})") from exc
    if os.fstat(fh.fileno()).st_size == 0:
        fh.close()
        raise AudioDecodeError(item, "empty file (0 bytes)")
    return fh


def _peek(fh, n: int) -> bytes:
    try:
        pos = fh.tell()
        head = fh.read(n)
        fh.seek(pos)
        return bytes(head)
    except (OSError, ValueError, AttributeError):
        return b""


#: containers libsndfile parses itself (quiet); anything else may reach libmpg123, which prints to stderr
_QUIET_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"FORM", b"fLaC", b"OggS", b".snd", b"caff")


def _held_stderr(fh):
    """A context holding back libmpg123's stderr chatter while ``fh`` is decoded (MP3 and unknown contents)."""
    return contextlib.nullcontext() if _peek(fh, 4) in _QUIET_MAGIC else native_stderr_held()


def _check_not_empty(fh, item: str) -> None:
    try:
        pos = fh.tell()
        size = fh.seek(0, io.SEEK_END)
        fh.seek(pos)
    except (OSError, ValueError, AttributeError):
        return  # not seekable: libsndfile says what it thinks
    if size == 0:
        raise AudioDecodeError(item, "empty file (0 bytes)")


def valid_audio(y: np.ndarray, *, item: str = "<array>") -> np.ndarray:
    """Check that ``y`` is a finite, non-empty float array of shape ``(n,)`` or ``(channels, n)``.

    Returns ``y`` unchanged; raises :class:`AudioDecodeError` otherwise.

    >>> valid_audio(np.zeros(10, dtype="float32")).shape
    (10,)
    """
    if not isinstance(y, np.ndarray):
        raise AudioDecodeError(item, f"expected a numpy array, got {type(y).__name__}")
    if not np.issubdtype(y.dtype, np.floating):
        raise AudioDecodeError(item, f"expected floating-point samples, got dtype {y.dtype}")
    if y.ndim not in (1, 2):
        raise AudioDecodeError(item, f"expected shape (n,) or (channels, n), got {y.shape}")
    if y.ndim == 2 and y.shape[0] == 0:
        raise AudioDecodeError(item, "zero channels")
    if y.shape[-1] == 0:
        raise AudioDecodeError(item, "empty audio (0 samples)")
    finite = np.isfinite(y)
    if not finite.all():
        bad = ~finite.all(axis=0) if y.ndim == 2 else ~finite
        raise AudioDecodeError(item, f"non-finite samples (NaN or Inf): {int(bad.sum())} of {bad.size} frames, "
                                     f"the first at frame {int(np.argmax(bad))}")
    return y


def to_mono(y: np.ndarray) -> np.ndarray:
    """Average channels of a ``(channels, n)`` array; 1-D input is returned as is."""
    return y if y.ndim == 1 else y.mean(axis=0)


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample with soxr (high quality); the last axis is time."""
    if sr_in == sr_out:
        return y
    if y.ndim == 1:
        return soxr.resample(y, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)
    return soxr.resample(y.T, sr_in, sr_out, quality="HQ").T.astype(np.float32, copy=False)


def normalise(y: np.ndarray, method: str | None, *, target_db: float = -20.0) -> np.ndarray:
    """Peak-normalise to 0 dBFS·0.99 (``"peak"``) or scale to an RMS level of ``target_db`` dBFS (``"rms"``).

    Silent input is returned unchanged.
    """
    if method not in NORMALISATIONS:
        raise ParameterError(f"normalise: method must be one of {NORMALISATIONS}, got {method!r}")
    if method is None:
        return y
    if method == "peak":
        level = np.abs(y).max()
        return y if level == 0 else (y * (0.99 / level)).astype(np.float32)
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    return y if rms == 0 else (y * (10 ** (target_db / 20) / rms)).astype(np.float32)


def load(source, *, sr: int | None = None, mono: bool = True, offset: float = 0.0,
         duration: float | None = None, normalize: str | None = None) -> tuple[np.ndarray, int]:
    """Decode audio to float32, optionally mixed to mono, resampled and normalised.

    Parameters
    ----------
    source : path, file object or bytes
        WAV, FLAC, OGG/Vorbis/Opus, MP3 (decoded by libsndfile) or anything else it reads. A path
        is opened as a file object, so names that are not valid UTF-8 (``str`` holding surrogates)
        work; messages show such names with ``\\xNN`` escapes.
    sr : int, optional
        Target sample rate; ``None`` keeps the file's rate.
    mono : bool
        Average channels. Otherwise the result has shape ``(channels, n)``.
    offset, duration : float
        Read only this span, in seconds. The decoder seeks to ``offset`` instead of
        decoding everything before it.
    normalize : {None, "peak", "rms"}
        See :func:`normalise`.

    Returns
    -------
    y : np.ndarray (float32), sr : int

    Raises
    ------
    AudioDecodeError
        Naming the file and the reason: unreadable, empty (0 bytes, or no samples), truncated
        (the decoded length falls short of the header's, a cut FLAC, an Ogg stream without its
        end-of-stream page), zero channels, non-finite samples.
    """
    if offset < 0 or (duration is not None and duration <= 0) or not np.isfinite(offset) \
            or (duration is not None and not np.isfinite(duration)):
        raise ParameterError(f"load: offset must be finite and >= 0 and duration finite and > 0, "
                             f"got {offset}, {duration}")
    if sr is not None and sr <= 0:
        raise ParameterError(f"load: sr must be positive, got {sr}")
    item = display_name(source)
    if isinstance(source, (str, os.PathLike)):
        with _open_file(source, item) as fh:
            return _load(fh, item, sr, mono, offset, duration, normalize)
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    return _load(source, item, sr, mono, offset, duration, normalize)


def _load(fh, item, sr, mono, offset, duration, normalize) -> tuple[np.ndarray, int]:
    _check_not_empty(fh, item)
    if _peek(fh, 4) == b"OggS":
        _check_ogg_end(fh, item)
    start = 0
    try:
        with _held_stderr(fh), sf.SoundFile(fh) as f:
            native_sr, expected = f.samplerate, f.frames
            if f.channels < 1:
                raise AudioDecodeError(item, "zero channels")
            _check_declared_size(f, item)
            start = int(round(offset * native_sr))
            if start:
                if start >= expected:
                    raise AudioDecodeError(item, f"offset {offset:.3f}s is beyond the end "
                                                 f"({expected / native_sr:.3f}s)")
                f.seek(start)
            want = (expected - start) if duration is None else min(int(round(duration * native_sr)), expected - start)
            data = _read_frames(f, None if duration is None else want, item, expected)
            tolerance = _MPEG_TOLERANCE if f.format == "MPEG" else 0
    except AudioDecodeError:
        raise
    except Exception as exc:
        raise AudioDecodeError(item, f"unreadable audio ({_reason(exc)})") from exc
    if want - len(data) > tolerance and not _short_tail_allowed(want, want - len(data), native_sr):
        raise AudioDecodeError(item, f"truncated: the header promises {want} frames, only {len(data)} decode "
                                     f"({len(data) / native_sr:.3f}s of {want / native_sr:.3f}s)")
    y = valid_audio(data.T, item=item)
    if mono:
        y = to_mono(y)
    if sr is not None and sr != native_sr:
        y = resample(y, native_sr, sr)
    return normalise(np.ascontiguousarray(y, dtype=np.float32), normalize), int(sr or native_sr)


def _read_frames(f: sf.SoundFile, limit: int | None, item: str, expected: int) -> np.ndarray:
    """Decode up to ``limit`` frames (``None``: to the end) block by block; a decoder failure says
    how far it got."""
    blocks, got = [], 0
    while limit is None or got < limit:
        try:
            block = f.read(_BLOCK if limit is None else min(_BLOCK, limit - got), dtype="float32", always_2d=True)
        except Exception as exc:  # e.g. "flac decoder lost sync" on a cut FLAC
            raise AudioDecodeError(item, f"truncated or corrupt: the header promises {expected} frames, decoding "
                                         f"failed after {got} ({_reason(exc)})") from exc
        if len(block) == 0:
            break
        blocks.append(block)
        got += len(block)
    if not blocks:
        return np.zeros((0, f.channels), np.float32)
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def _short_tail_allowed(promised: int, missing: int, sr: int) -> bool:
    return missing <= min(_SHORT_TAIL_SECONDS * sr, max(_SHORT_TAIL_FLOOR, _SHORT_TAIL_SHARE * promised))


def short_tail(header: AudioInfo, decoded: int) -> int:
    """Frames a file accepted by :func:`load` decoded short of its header's promise, beyond what its
    format always allows (0 for most files; see the note on ``_SHORT_TAIL_SHARE``).

    >>> short_tail(AudioInfo(207.155, 44100, 2, 9135516, "OGG"), 9129710)
    5806
    >>> short_tail(AudioInfo(1.0, 44100, 1, 44100, "MPEG"), 44100 - 1000)
    0
    """
    return max(0, header.frames - decoded - (_MPEG_TOLERANCE if header.format == "MPEG" else 0))


def read_bytes_and_hash(path: str | os.PathLike) -> tuple[bytes, str]:
    """Read a file once and return its bytes and ``sha256:<hex>`` content hash."""
    with _open_file(path, display_name(path)) as fh:
        try:
            data = fh.read()
        except OSError as exc:
            raise AudioDecodeError(display_name(path), f"cannot read file ({exc.strerror or exc})") from exc
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


def load_with_hash(path: str | os.PathLike, *, sr: int | None = None,
                   normalize: str | None = None) -> tuple[np.ndarray, int, str, AudioInfo]:
    """Decode a whole file (mono) reading its bytes only once; also return its content hash and header.

    >>> import soundfile as sf, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "z.wav"); sf.write(p, np.zeros(800, "float32"), 8000)
    >>> y, sr, h, i = load_with_hash(p)
    >>> (len(y), sr, h[:7], i.channels)
    (800, 8000, 'sha256:', 1)
    """
    item = display_name(path)
    data, digest = read_bytes_and_hash(path)
    if not data:
        raise AudioDecodeError(item, "empty file (0 bytes)")
    buf = io.BytesIO(data)
    try:
        with _held_stderr(buf), sf.SoundFile(buf) as f:
            header = AudioInfo(f.frames / f.samplerate if f.samplerate else 0.0, int(f.samplerate),
                               int(f.channels), int(f.frames), f.format)
    except Exception as exc:
        raise AudioDecodeError(item, f"unreadable audio ({_reason(exc)})") from exc
    buf.seek(0)
    y, sr_out = _load(buf, item, sr, True, 0.0, None, normalize)
    return y, sr_out, digest, header


# WAV says "data : N (should be M)", AIFF " SSND : N (should be M)", AU "Data Size : N (should be M)"
_DECLARED = re.compile(r"^\s*(?:data|SSND|Data Size)\s*: (\d+) \(should be (\d+)\)", re.MULTILINE)


def _check_declared_size(f: sf.SoundFile, item: str) -> None:
    """WAV/AIFF/AU headers declare the data size; libsndfile silently shortens a truncated file."""
    m = _DECLARED.search(f.extra_info or "")
    if m and int(m.group(1)) > int(m.group(2)):
        declared, held = int(m.group(1)), int(m.group(2))
        raise AudioDecodeError(item, f"truncated: the header declares {declared} bytes of samples, the file holds "
                                     f"{held} ({f.frames} frames decode)")


_OGG_TAIL = 1 << 16  # an Ogg page is at most 65,307 bytes


def _check_ogg_end(fh, item: str) -> None:
    """An Ogg stream ends with a page flagged end-of-stream. libsndfile takes an Ogg file's length
    from its last complete page, so a cut file decodes as a shorter track without complaint;
    a missing (or incomplete) last page is how the cut shows."""
    try:
        pos = fh.tell()
        size = fh.seek(0, io.SEEK_END)
        fh.seek(max(0, size - _OGG_TAIL))
        tail = fh.read()
        fh.seek(pos)
    except (OSError, ValueError, AttributeError):
        return
    end = _ogg_last_page(tail)
    if end is None:
        return  # no page structure found in the tail: leave it to the decoder
    last_start, last_end = end
    if last_end > len(tail):
        raise AudioDecodeError(item, f"truncated: the last Ogg page is cut ({size} bytes, the page needs "
                                     f"{size - len(tail) + last_end})")
    if not tail[last_start + 5] & 0x04:
        raise AudioDecodeError(item, f"truncated: the Ogg stream stops after {size} bytes without its "
                                     "end-of-stream page")


def _ogg_last_page(tail: bytes) -> tuple[int, int] | None:
    """(start, end) of the last page reached by walking page headers from the first ``OggS`` that
    starts a chain running to the end of ``tail``; ``end`` beyond ``len(tail)`` means a cut page."""
    i = tail.find(b"OggS")
    while i >= 0:
        pos, last = i, None
        while pos + 27 <= len(tail) and tail[pos:pos + 4] == b"OggS":
            n = tail[pos + 26]
            if pos + 27 + n > len(tail):
                return pos, pos + 27 + n
            last = (pos, pos + 27 + n + sum(tail[pos + 27:pos + 27 + n]))
            pos = last[1]
        if last is not None and pos >= len(tail):
            return last
        if last is not None and pos + 27 > len(tail) and tail[pos:] == b"OggS"[:len(tail) - pos]:
            return pos, pos + 27  # a cut page header
        i = tail.find(b"OggS", i + 1)
    return None


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    # libsndfile prefixes messages with the (possibly long) file name, or "Error : "; keep its reason only
    if text.startswith("Error opening"):
        text = text.split(": ", 1)[-1]
    return text.removeprefix("Error : ").rstrip(".")


#: the shortest query clip (seconds): shorter has no key, tempo, melody or landmarks to speak of, and is
#: shorter than the descriptors' FFT (2048 samples at 22.05 kHz)
MIN_CLIP_SECONDS = 0.1
#: the largest sample magnitude a query clip may hold: float audio is about ±1; 1e30 is not a signal
#: (its power overflows float32 in every spectrogram)
MAX_AMPLITUDE = 1e6


def check_span(start: float | None, end: float | None, *, what: str) -> None:
    """A clip's span: finite times >= 0 (seconds), ``end`` after ``start``; ParameterError otherwise.

    >>> check_span(2.0, 1.0, what="Query.audio")
    Traceback (most recent call last):
    ...
    audiorag.errors.ParameterError: Query.audio: end (1.0) must be after start (2.0)
    """
    for name, value in (("start", start), ("end", end)):
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise ParameterError(f"{what}: {name} must be a finite time >= 0 (seconds), got {value}")
    if start is not None and end is not None and end <= start:
        raise ParameterError(f"{what}: end ({end}) must be after start ({start})")


class Clip:
    """A query's audio, decoded once: mono float32 samples at their own rate, cut to the asked span;
    :meth:`at` resamples it once per rate that a consumer needs (embedders, descriptors, melody).

    >>> c = load_clip(np.zeros(8000, np.float32), sr=8000, start=0.25)
    >>> c.sr, len(c.y), len(c.at(16000)), c.at(16000) is c.at(16000)
    (8000, 6000, 12000, True)
    """

    def __init__(self, y: np.ndarray, sr: int, name: str, start: float = 0.0):
        self.y, self.sr, self.name, self.start = y, int(sr), name, float(start)
        self._rates: dict = {sr: y}

    @property
    def duration(self) -> float:
        return len(self.y) / self.sr

    def at(self, sr: int) -> np.ndarray:
        """The clip at ``sr`` Hz (resampled the first time, then kept)."""
        if sr not in self._rates:
            self._rates[sr] = resample(self.y, self.sr, sr)
        return self._rates[sr]


def load_clip(source, *, sr: int | None = None, start: float | None = None, end: float | None = None,
              item: str | None = None, conditioning=None) -> Clip:
    """The one loader of query clips: a path, bytes or a float array (with ``sr``), its ``[start, end)``
    span in seconds, decoded once and checked once, then conditioned as the library it is matched against
    (``conditioning``: a :class:`audiorag.descriptors.conditioning.Conditioning`, levelling / noise reduction).

    Raises :class:`ParameterError` for a bad span or missing ``sr``, :class:`AudioDecodeError` naming the
    clip for unreadable audio or non-finite samples, and its subclass :class:`UnusableClipError` for a clip
    that decodes but is empty, too short (under :data:`MIN_CLIP_SECONDS`) or beyond :data:`MAX_AMPLITUDE`.

    >>> load_clip(np.full(800, 1e30, np.float32), sr=8000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    audiorag.errors.UnusableClipError: <array>: samples reach 1e+30: not audio (float samples are about ±1; ...)
    """
    check_span(start, end, what="clip")
    offset = start or 0.0
    if isinstance(source, np.ndarray):
        if sr is None or sr <= 0:
            raise ParameterError(f"clip: an array needs its sample rate (sr=), got {sr}")
        item = item or "<array>"
        y = to_mono(valid_audio(source, item=item)).astype(np.float32, copy=False)
        y = y[int(round(offset * sr)):None if end is None else int(round(end * sr))]
    else:
        item = item or display_name(source)
        y, sr = load(source, offset=offset, duration=None if end is None else end - offset)
    if len(y) == 0:
        raise UnusableClipError(item, "empty audio (no samples in the requested span)")
    if len(y) < MIN_CLIP_SECONDS * sr:
        raise UnusableClipError(item, f"too short ({len(y) / sr:.3f} s; a query clip needs at least "
                                      f"{MIN_CLIP_SECONDS:g} s)")
    valid_audio(y, item=item)
    peak = float(np.abs(y).max())
    if peak > MAX_AMPLITUDE:
        raise UnusableClipError(item, f"samples reach {peak:.3g}: not audio (float samples are "
                                      f"about ±1; at most ±{MAX_AMPLITUDE:.0e})")
    if conditioning is not None:
        y = conditioning.apply(y, int(sr))
    return Clip(np.ascontiguousarray(y), int(sr), item, offset)
