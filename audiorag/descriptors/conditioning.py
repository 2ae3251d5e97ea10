"""Conditioning of audio before it is described and embedded: noise reduction, then loudness levelling.

A library states its conditioning once (``library.json``: ``{"loudness": LUFS or null, "denoise": bool}``,
set by ``audiorag build --loudness LUFS [--denoise]``); every track is conditioned right after it is
decoded, and every query clip the same way (:func:`audiorag.audio.load_clip`), so a query is always
treated like the library.

* **Levelling** — the integrated loudness of ITU-R BS.1770-4 (K-weighting, 400 ms blocks, absolute gate
  at −70 LUFS and relative gate at −10 LU; measured with pyloudnorm) is brought to ``loudness`` LUFS by
  one gain. Samples are floats and are not clipped (a quiet track raised by 30 dB may exceed ±1;
  the embedders take floats). Silence (no block above the absolute gate) is left as it is. A clip shorter
  than one 400 ms block is measured looped to one block (the loudness of its content).
* **Noise reduction** — stationary spectral gating (noisereduce): a per-frequency threshold from the
  signal's own spectral statistics (mean + 1.5 std of each bin's dB over time, 1024-point frames),
  below which bins are attenuated; the mask is smoothed over 50 ms and one frequency bin. (noisereduce's
  default 500 Hz smoothing spreads the mask of quiet bins over tones: on notes in white noise it took
  9 dB off the notes; one bin takes 0.4 dB, while the noise between notes drops by 20 dB.) Made for
  steady noise (hiss, hum, fan); it also softens quiet, steady musical content. Applied before
  levelling (it changes the loudness).

>>> sr = 22050
>>> y = (0.01 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)).astype(np.float32)
>>> round(integrated_loudness(Conditioning(loudness=-20.0).apply(y, sr), sr), 1)
-20.0
>>> Conditioning().apply(y, sr) is y
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError

BLOCK_SECONDS = 0.4  # BS.1770's gating block
LOUDNESS_RANGE = (-70.0, 0.0)  # LUFS targets accepted
DENOISE_FFT = 1024


def integrated_loudness(y: np.ndarray, sr: int) -> float:
    """BS.1770-4 integrated loudness of mono ``y`` in LUFS (``-inf`` for silence).

    >>> sr = 22050
    >>> tone = np.sin(2 * np.pi * 1000 * np.arange(sr) / sr).astype(np.float32)  # a full-scale 1 kHz sine
    >>> round(integrated_loudness(tone, sr)), round(integrated_loudness(0.1 * tone, sr))  # BS.1770: -3.01
    (-3, -23)
    """
    import pyloudnorm
    y = np.asarray(y, dtype=np.float64)
    block = int(np.ceil(BLOCK_SECONDS * sr)) + 1
    if 0 < len(y) < block:
        y = np.tile(y, int(np.ceil(block / len(y))))
    if len(y) == 0:
        return float("-inf")
    return float(pyloudnorm.Meter(sr).integrated_loudness(y))


def level(y: np.ndarray, sr: int, target: float) -> np.ndarray:
    """``y`` scaled to an integrated loudness of ``target`` LUFS (silence unchanged)."""
    now = integrated_loudness(y, sr)
    if not np.isfinite(now):
        return y
    return (y * np.float32(10 ** ((target - now) / 20))).astype(np.float32)


def denoise(y: np.ndarray, sr: int) -> np.ndarray:
    """``y`` after stationary spectral gating (see the module's doc)."""
    import noisereduce
    if len(y) < 2048:  # shorter than its analysis frame: nothing to gate against
        return y
    return noisereduce.reduce_noise(y=np.asarray(y, np.float32), sr=sr, stationary=True, n_fft=DENOISE_FFT,
                                    freq_mask_smooth_hz=np.ceil(sr / (DENOISE_FFT / 2)),
                                    n_jobs=1).astype(np.float32)


@dataclass(frozen=True)
class Conditioning:
    """What is done to audio after decoding: ``denoise`` (spectral gating), then levelling to ``loudness`` LUFS
    (None: none). The identity by default.

    >>> Conditioning.from_dict({"loudness": -23, "denoise": True})
    Conditioning(loudness=-23.0, denoise=True)
    >>> Conditioning(loudness=6.0)
    Traceback (most recent call last):
    ...
    audiorag.errors.ParameterError: loudness must be a number of LUFS in [-70, 0], got 6.0
    """

    loudness: float | None = None
    denoise: bool = False

    def __post_init__(self):
        if self.loudness is not None:
            value = self.loudness
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not \
                    LOUDNESS_RANGE[0] <= value <= LOUDNESS_RANGE[1]:
                raise ParameterError(f"loudness must be a number of LUFS in [{LOUDNESS_RANGE[0]:g}, "
                                     f"{LOUDNESS_RANGE[1]:g}], got {value!r}")
            object.__setattr__(self, "loudness", float(value))
        object.__setattr__(self, "denoise", bool(self.denoise))

    @property
    def is_identity(self) -> bool:
        return self.loudness is None and not self.denoise

    def apply(self, y: np.ndarray, sr: int) -> np.ndarray:
        """``y`` (mono float32 at ``sr`` Hz) conditioned; ``y`` itself when there is nothing to do."""
        if self.denoise:
            y = denoise(y, sr)
        if self.loudness is not None:
            y = level(y, sr, self.loudness)
        return y

    def to_dict(self) -> dict:
        return {"loudness": self.loudness, "denoise": self.denoise}

    @classmethod
    def from_dict(cls, d: dict | None) -> Conditioning:
        """From ``library.json``'s ``conditioning`` (absent: the identity)."""
        d = d or {}
        return cls(loudness=d.get("loudness"), denoise=bool(d.get("denoise", False)))
