"""Melody contours: the predominant pitch of polyphonic audio, the pitch of a hum, and the
key- and tempo-invariant summaries query by humming matches on.

A contour is ``cents`` (float32, MIDI note × 100, so 6900 is A4 at 440 Hz) per frame of
:data:`HOP` samples at :data:`SR`, with ``0`` where no melody sounds (unvoiced).

**Pitch.** :func:`contour` computes a harmonic-summation salience (after Melodia, Salamon &
Gómez 2012): the compressed magnitude spectrum is summed at the first 8 harmonics of every
candidate f0 (MIDI 40–90 in 20-cent steps, harmonic weights 0.8^(h-1)), and the most salient
candidate per frame, median-filtered over 5 frames, is the pitch; frames far below or above
the running median of the voiced pitch (2 s) are dropped: in the lead's gaps the most salient
source is a chord or bass note, one or more octaves under the melody's line. A frame is voiced when its
peak salience stands out of the frame's salience (peak/mean ratio above an absolute floor and
above a share of the clip's clearest frames', so background noise does not unvoice a hum) and
its energy is not far below the clip's loudest frames. The same tracker serves polyphonic tracks (the lead is the
most salient harmonic source) and hums. Why not pYIN: on an 11 s hum, librosa's pYIN takes
1.2 s of CPU here (a query must answer in 100 ms) and, being monophonic, it follows the
chords when it runs on a mix; the salience tracker takes ≈50 ms and its accuracy on the
generated corpus is measured in ``docs/hum.md``. Salience grows with the candidate's pitch
(:data:`TILT`): the melody is usually the highest voice, and without the tilt the tracker
reported chord and bass notes where the lead is weak (development hums: MRR 0.78 → 0.84).

**Invariance.** A hum is in another key and at another tempo than the recording. The coarse
vector (:func:`melody_vector`) keeps only note *intervals*: the contour is cut into notes
(stable semitone runs), and the histogram of intervals between consecutive notes plus the
histogram of interval pairs are independent of key and tempo. Fine matching
(:mod:`audiorag.melody`) aligns contours relative to their median with a tempo-tolerant DTW.

>>> import numpy as np
>>> t = np.arange(SR * 2) / SR
>>> y = np.sin(2 * np.pi * 440 * t).astype("float32")
>>> cents = contour(y)
>>> round(float(np.median(cents[cents > 0])))
6900
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage, sparse

from ..audio import valid_audio
from ..errors import ParameterError
from .spectrum import stft_magnitude

SR = 16000
N_FFT = 2048
HOP = 256
#: candidate f0 range (MIDI) and resolution (cents)
MIDI_LO, MIDI_HI, STEP = 40.0, 90.0, 20.0
N_HARMONICS = 8
#: salience grows by this share from the lowest to the highest candidate: the melody is usually the highest voice
TILT = 0.5
#: a voiced frame's salience peak is at least PEAK_RATIO times the frame's mean salience, and at least
#: PEAK_SHARE of the clip's clearest frames' ratio (90th percentile): noise lowers every frame's ratio
PEAK_RATIO, PEAK_SHARE = 2.0, 0.65
#: a voiced frame is at most this many dB below the clip's loud frames (95th percentile)
FLOOR_DB = 30.0
#: a melody frame lies within BELOW semitones under and ABOVE over the median of its surrounding LINE_SECONDS
BELOW, ABOVE, LINE_SECONDS = 8.0, 12.0, 2.0
#: the coarse vector: intervals clipped to ±INTERVAL_MAX semitones; pairs clipped to ±PAIR_MAX
INTERVAL_MAX, PAIR_MAX = 12, 5
DIM = (2 * INTERVAL_MAX + 1) + (2 * PAIR_MAX + 1) ** 2 + 1
#: shortest note (seconds) when cutting a contour into notes
MIN_NOTE = 0.09


def frame_rate() -> float:
    """Contour frames per second (62.5)."""
    return SR / HOP


@lru_cache(maxsize=1)
def _salience_matrix() -> sparse.csr_matrix:
    """``[n_candidates, n_bins]``: harmonic h of candidate c spreads weight 0.8^(h-1) over its two nearest bins.
    Sparse (1.5 % of it is filled): the product skips the empty bins and needs no BLAS threads, which on a
    busy machine cost more than the arithmetic (a 5 s hum: 2.6 ms dense on a quiet core, 0.1 ms sparse)."""
    cands = np.arange(MIDI_LO * 100, MIDI_HI * 100 + 1, STEP) / 100
    f0 = 440.0 * 2 ** ((cands - 69) / 12)
    n_bins = N_FFT // 2 + 1
    w = np.zeros((len(cands), n_bins), np.float32)
    rows = np.arange(len(cands))
    for h in range(1, N_HARMONICS + 1):
        pos = h * f0 * N_FFT / SR
        ok = pos < n_bins - 1
        lo = np.floor(pos).astype(int)
        frac = pos - lo
        weight = 0.8 ** (h - 1)
        np.add.at(w, (rows[ok], lo[ok]), weight * (1 - frac[ok]))
        np.add.at(w, (rows[ok], lo[ok] + 1), weight * frac[ok])
    return sparse.csr_matrix(w * (1 + TILT * (cands - MIDI_LO) / (MIDI_HI - MIDI_LO))[:, None].astype(np.float32))


def salience(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic salience ``[n_candidates, n_frames]`` of mono audio at :data:`SR`, and frame energy (dB)."""
    mag = np.ascontiguousarray(stft_magnitude(y, N_FFT, HOP, periodic=True).T, dtype=np.float32)
    energy = 10 * np.log10(np.sum(mag ** 2, axis=0) + 1e-10)
    # compression evens out partial amplitudes, so a candidate needs several harmonics, not one loud bin
    return _salience_matrix() @ np.sqrt(mag), energy


def contour(y: np.ndarray, *, sr: int = SR) -> np.ndarray:
    """Predominant melody of mono audio: cents per frame (0: unvoiced), see the module docstring.

    >>> float(contour(np.zeros(SR, np.float32)).max())
    0.0
    """
    valid_audio(y)
    if sr != SR:
        from ..audio import resample
        y = resample(np.asarray(y, np.float32), sr, SR)
    if len(y) < N_FFT:
        return np.zeros(max(1, len(y) // HOP), np.float32)
    sal, energy = salience(np.asarray(y, np.float32))
    best = np.argmax(sal, axis=0)
    peak = sal[best, np.arange(sal.shape[1])]
    ratio = peak / (sal.mean(axis=0) + 1e-9)
    cents = (MIDI_LO * 100 + STEP * best).astype(np.float32)
    cents = ndimage.median_filter(cents, size=5, mode="nearest")
    loud = np.percentile(energy, 95)
    clear = max(PEAK_RATIO, PEAK_SHARE * float(np.percentile(ratio, 90)))
    voiced = (ratio >= clear) & (energy > loud - FLOOR_DB) & (energy > -60)
    voiced = ndimage.binary_opening(voiced, np.ones(3, bool))  # single-frame blips are not melody
    return _off_line(np.where(voiced, cents, 0.0).astype(np.float32))


def _off_line(cents: np.ndarray) -> np.ndarray:
    """Unvoice frames far below (chords, bass in the lead's gaps) or far above the running median
    of the voiced pitch over :data:`LINE_SECONDS`: a melody moves by steps and leaps around its line."""
    idx = np.flatnonzero(cents > 0)
    if len(idx) < 3:
        return cents
    size = max(3, int(LINE_SECONDS * frame_rate()) | 1)
    line = ndimage.median_filter(cents[idx], size=size, mode="nearest")
    off = (cents[idx] < line - BELOW * 100) | (cents[idx] > line + ABOVE * 100)
    out = cents.copy()
    out[idx[off]] = 0.0
    return out


def resample_contour(cents: np.ndarray, n: int) -> np.ndarray:
    """``cents`` resampled to ``n`` points by nearest frame (voicing is kept, never interpolated).

    >>> resample_contour(np.array([0, 6000, 6100, 0], np.float32), 8).tolist()
    [0.0, 0.0, 6000.0, 6000.0, 6100.0, 6100.0, 0.0, 0.0]
    """
    cents = np.asarray(cents, np.float32)
    if len(cents) == 0:
        return np.zeros(n, np.float32)
    idx = np.minimum((np.arange(n) + 0.5) * len(cents) / n, len(cents) - 1).astype(int)
    return cents[idx]


def notes(cents: np.ndarray, rate: float) -> np.ndarray:
    """Notes of a contour at ``rate`` frames/s: ``[n_notes, 3]`` rows of (first frame, frames, semitone).

    A note is a run of voiced frames within 0.6 semitone of the run's mean so far, at least
    :data:`MIN_NOTE` long; its pitch is the run's median, rounded to a semitone.

    >>> c = np.repeat(np.array([6000, 6200, 0, 6700], np.float32), 10)
    >>> notes(c, 62.5)[:, 2].tolist()
    [60.0, 62.0, 67.0]
    """
    semis = np.asarray(cents, np.float64) / 100
    runs = _runs(semis)
    runs = runs[runs[:, 1] >= MIN_NOTE * rate]
    pitch = [np.round(np.median(semis[a:a + n])) for a, n in runs]
    return np.column_stack([runs, pitch]).astype(np.float64) if len(runs) else np.zeros((0, 3))


def _runs(semis: np.ndarray) -> np.ndarray:
    """``(start, length)`` of the stable voiced runs: a run ends where the pitch leaves 0.6 semitone of
    the run's mean so far (a plain loop over frames: no compile step, a 10 s segment in well under 1 ms)."""
    out, start, total = [], -1, 0.0
    values = semis.tolist()
    for i, s in enumerate(values + [0.0]):
        if start >= 0 and (s <= 0 or abs(s - total / (i - start)) > 0.6):
            out.append((start, i - start))
            start = -1
        if s > 0 and start < 0:
            start, total = i, 0.0
        if s > 0:
            total += s
    return np.array(out, np.int64).reshape(-1, 2)


def melody_vector(cents: np.ndarray, rate: float) -> np.ndarray:
    """The coarse, key- and tempo-invariant summary of a contour: ``float32[DIM]``, L2-normalised
    per block; a contour without two different notes has only its last dimension ("no melody") set.

    Block 1: histogram of intervals between consecutive notes (semitones, clipped to ±12;
    repeated notes are not intervals). Block 2: histogram of consecutive interval pairs
    (clipped to ±5). Square roots of the counts, so a few frequent intervals do not dominate.
    The last dimension marks "no melody": such segments are orthogonal to every hum.

    >>> c = np.repeat(np.array([6000, 6200, 6400, 6200], np.float32), 12)
    >>> v = melody_vector(c, 62.5)
    >>> v.shape, bool(np.allclose(v, melody_vector(c + 500, 62.5)))
    ((147,), True)
    """
    pitches = notes(cents, rate)[:, 2]
    iv = np.diff(pitches)
    iv = iv[iv != 0]
    out = np.zeros(DIM, np.float32)
    if len(iv) == 0:
        out[-1] = 1.0
        return out
    single = np.bincount(np.clip(iv, -INTERVAL_MAX, INTERVAL_MAX).astype(int) + INTERVAL_MAX,
                         minlength=2 * INTERVAL_MAX + 1)
    p = np.clip(iv, -PAIR_MAX, PAIR_MAX).astype(int) + PAIR_MAX
    width = 2 * PAIR_MAX + 1
    pairs = np.bincount(p[:-1] * width + p[1:], minlength=width ** 2)
    for block, lo in ((single, 0), (pairs, 2 * INTERVAL_MAX + 1)):
        block = np.sqrt(block.astype(np.float32))
        norm = np.linalg.norm(block)
        if norm > 0:
            out[lo:lo + len(block)] = block / norm
    return out


def check_melody(cents: np.ndarray, *, what: str = "audio", min_seconds: float = 1.0) -> None:
    """Raise ``ParameterError("<what>: no melody found ...")`` unless ``cents`` holds at least
    ``min_seconds`` of voiced frames in at least three notes.

    >>> check_melody(np.zeros(100, np.float32), what="hum.wav")
    Traceback (most recent call last):
    ...
    audiorag.errors.ParameterError: hum.wav: no melody found (0.00 s pitched in 0 notes; needs 1 s in 3 notes)
    """
    voiced = float(np.count_nonzero(cents)) / frame_rate()
    n_notes = len(notes(cents, frame_rate()))
    if voiced < min_seconds or n_notes < 3:
        raise ParameterError(f"{what}: no melody found ({voiced:.2f} s pitched in {n_notes} notes; "
                             f"needs {min_seconds:g} s in 3 notes)")
