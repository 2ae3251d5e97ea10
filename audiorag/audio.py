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

import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioDecodeError, ParameterError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au")
NORMALISATIONS = (None, "peak", "rms")
# A file whose decoded length falls short of its header by more than this is truncated.
_TRUNCATION_TOLERANCE = 0.01


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

    Raises :class:`AudioDecodeError` naming the file when it is not readable audio.
    """
    try:
        i = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / OSError
        raise AudioDecodeError(path, f"unreadable audio ({_reason(exc)})") from exc
    if i.channels < 1:
        raise AudioDecodeError(path, "zero channels")
    return AudioInfo(i.frames / i.samplerate if i.samplerate else 0.0, int(i.samplerate),
                     int(i.channels), int(i.frames), i.format)


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
    if not np.isfinite(y).all():
        raise AudioDecodeError(item, "non-finite samples (NaN or Inf)")
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
    source : path or file-like
        WAV, FLAC, OGG/Vorbis, MP3 (decoded by libsndfile) or anything else it reads.
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
        Naming the file and the reason: unreadable, empty, truncated, zero channels, non-finite.
    """
    item = str(source) if isinstance(source, (str, os.PathLike)) else str(getattr(source, "name", "<file>"))
    if offset < 0 or (duration is not None and duration <= 0):
        raise ParameterError(f"load: offset must be >= 0 and duration > 0, got {offset}, {duration}")
    try:
        with sf.SoundFile(source if not isinstance(source, os.PathLike) else str(source)) as f:
            native_sr, expected = f.samplerate, f.frames
            if f.channels < 1:
                raise AudioDecodeError(item, "zero channels")
            _check_declared_size(f, item)
            start = int(round(offset * native_sr))
            if start:
                if start >= expected:
                    raise AudioDecodeError(item, f"offset {offset:.3f}s is beyond the end ({expected / native_sr:.3f}s)")
                f.seek(start)
            n = -1 if duration is None else int(round(duration * native_sr))
            data = f.read(n, dtype="float32", always_2d=True)
    except AudioDecodeError:
        raise
    except Exception as exc:
        raise AudioDecodeError(item, f"unreadable audio ({_reason(exc)})") from exc
    want = (expected - start) if duration is None else min(n, expected - start)
    if len(data) < want * (1 - _TRUNCATION_TOLERANCE) - 1:
        raise AudioDecodeError(item, f"truncated: header promises {want} frames, decoded {len(data)}")
    y = valid_audio(data.T, item=item)
    if mono:
        y = to_mono(y)
    if sr is not None and sr != native_sr:
        if sr <= 0:
            raise ParameterError(f"load: sr must be positive, got {sr}")
        y = resample(y, native_sr, sr)
    return normalise(np.ascontiguousarray(y, dtype=np.float32), normalize), int(sr or native_sr)


def read_bytes_and_hash(path: str | os.PathLike) -> tuple[bytes, str]:
    """Read a file once and return its bytes and ``sha256:<hex>`` content hash."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AudioDecodeError(path, f"cannot read file ({exc.strerror or exc})") from exc
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
    data, digest = read_bytes_and_hash(path)
    if not data:
        raise AudioDecodeError(path, "empty file (0 bytes)")
    buf = io.BytesIO(data)
    buf.name = str(path)
    try:
        i = sf.info(buf)
        buf.seek(0)
    except Exception as exc:
        raise AudioDecodeError(path, f"unreadable audio ({_reason(exc)})") from exc
    header = AudioInfo(i.frames / i.samplerate, int(i.samplerate), int(i.channels), int(i.frames), i.format)
    y, sr_out = load(buf, sr=sr, normalize=normalize)
    return y, sr_out, digest, header


_DECLARED = re.compile(r"^data : (\d+) \(should be (\d+)\)", re.MULTILINE)


def _check_declared_size(f: sf.SoundFile, item: str) -> None:
    """WAV-family headers declare the data size; libsndfile silently shortens a truncated file."""
    m = _DECLARED.search(f.extra_info or "")
    if m and int(m.group(1)) > int(m.group(2)):
        raise AudioDecodeError(item, f"truncated: header declares {m.group(1)} data bytes, file holds {m.group(2)}")


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    # libsndfile prefixes messages with the (possibly long) file name; keep its reason only
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text
