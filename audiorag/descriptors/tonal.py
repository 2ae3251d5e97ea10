"""Per-window musical descriptors: key + mode + confidence, tempo, loudness, and a compact
harmonic-progression descriptor. Plain arrays in, plain arrays out (layer 2).

Everything is computed from two short-time spectra of the whole track at 11.025 kHz (one with
a long window for pitch, one with a short hop for onsets) and pooled per window, so overlapping
windows never recompute a spectrum:

- **chroma**: magnitude of the bins between 55 Hz and 2.1 kHz folded onto 12 pitch classes
  (each bin weighted by its distance to the nearest semitone), square-root compressed;
- **key**: the window's summed chroma correlated (Pearson) with the 24 rotations of a major
  and a minor key profile (Temperley's by default, or Krumhansl–Kessler's: 24/24 and 21/24
  keys right on generated I–IV–V–I / i–iv–V–i triad progressions); the best is the key,
  ``key_confidence`` its correlation (−1..1; above ≈ 0.7 the estimate is usually right);
- **tempo**: the autocorrelation of the window's onset envelope (log spectral flux, 23 ms
  hop), weighted by a log-normal prior around 120 BPM (one octave wide), between 50 and 220 BPM;
- **loudness**: RMS level of the window in dB relative to full scale (a sine of amplitude 1 is −3 dB);
- **onset rate**: onsets per second: local maxima of the onset envelope above its window's mean plus half its
  standard deviation and above three times its median (a steady drone's small fluctuations are not onsets),
  at least 70 ms apart;
- **centroid**: the window's spectral centroid in Hz at 11.025 kHz (so at most 5.5 kHz), frames weighted by
  their energy;
- **harmony**: the window cut into ``steps`` equal parts, each part's chroma rotated so that the
  estimated tonic is pitch class 0 (a I–IV–V reads the same in every key), unit-normalised,
  concatenated: ``12 × steps`` floats; :func:`harmonic_similarity` compares two of them.

>>> import numpy as np
>>> sr = 22050; t = np.arange(4 * sr) / sr
>>> y = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 261.63, 329.63)).astype("float32") / 3  # A C E
>>> d = describe(y, sr, [0.0], [4.0])
>>> key_name(d["tonic"][0], d["mode"][0]), d["harmony"].shape
('A minor', (1, 48))
"""

from __future__ import annotations

import numpy as np

from ..audio import resample
from ..errors import ParameterError
from .spectrum import stft_magnitude

SR = 11025
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#", "Cb": "B", "Fb": "E", "E#": "F", "B#": "C"}
MODES = ("major", "minor")
#: key profiles (pitch-class weights from the tonic): Krumhansl & Kessler (1982), Temperley (1999)
PROFILES = {
    "krumhansl": (np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]),
                  np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])),
    "temperley": (np.array([5.0, 2.0, 3.5, 2.0, 4.5, 4.0, 2.0, 4.5, 2.0, 3.5, 1.5, 4.0]),
                  np.array([5.0, 2.0, 3.5, 4.5, 2.0, 4.0, 2.0, 4.5, 3.5, 2.0, 1.5, 4.0])),
}
CHROMA_FFT, CHROMA_HOP = 4096, 2048     # 372 ms window (2.7 Hz bins), 186 ms hop
ONSET_FFT, ONSET_HOP = 512, 256         # 46 ms window, 23 ms hop
TEMPO_RANGE = (50.0, 220.0)
STEPS = 4


def key_name(tonic: int, mode: int) -> str:
    """``key_name(9, 1)`` → ``"A minor"`` (mode 0 major, 1 minor).

    >>> key_name(6, 0)
    'F# major'
    """
    return f"{PITCH_CLASSES[int(tonic) % 12]} {MODES[int(mode)]}"


def parse_key(text: str) -> tuple[int, int]:
    """``"A minor"`` → ``(9, 1)``; flats, ``m``/``min``/``maj`` and any case are accepted.

    >>> parse_key("Bb major"), parse_key("c#m"), parse_key("a min")
    ((10, 0), (1, 1), (9, 1))
    """
    s = str(text).strip()
    for i in (2, 1):
        name = s[:i].capitalize() if i == 1 else s[:1].upper() + s[1:2].lower()
        name = _FLATS.get(name, name)
        if name in PITCH_CLASSES:
            rest = s[i:].strip().lower()
            if rest in ("", "maj", "major"):
                return PITCH_CLASSES.index(name), 0
            if rest in ("m", "min", "minor"):
                return PITCH_CLASSES.index(name), 1
    raise ParameterError(f"not a key: {text!r} (expected e.g. 'A minor', 'F# major', 'Bb', 'c#m')")


def mirex_score(tonic, mode, ref_tonic, ref_mode) -> np.ndarray:
    """MIREX key-estimation score of estimated keys against reference keys (arrays or scalars; mode 0 major,
    1 minor): 1 the same key, 0.5 a perfect fifth above or below in the same mode, 0.3 the relative
    major/minor, 0.2 the parallel one, else 0.

    >>> mirex_score([0, 7, 9, 0, 2], [0, 0, 1, 1, 0], 0, 0).tolist()   # C major read as C, G, Am, Cm, D
    [1.0, 0.5, 0.3, 0.2, 0.0]
    """
    t, m = np.asarray(tonic) % 12, np.asarray(mode)
    rt, rm = np.asarray(ref_tonic) % 12, np.asarray(ref_mode)
    step = (t - rt) % 12
    relative = (m != rm) & (step == np.where(rm == 0, 9, 3))
    return np.select([(step == 0) & (m == rm), (m == rm) & ((step == 5) | (step == 7)), relative,
                      (step == 0) & (m != rm)], [1.0, 0.5, 0.3, 0.2], 0.0)


def _chroma_map(n_fft: int, sr: int, fmin: float = 55.0, fmax: float = 2100.0) -> tuple[slice, np.ndarray]:
    """The spectrum bins between ``fmin`` and ``fmax`` and their ``[n_bins, 12]`` pitch-class weights."""
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    inside = np.flatnonzero((freqs >= fmin) & (freqs <= fmax))
    bins = slice(int(inside[0]), int(inside[-1]) + 1)
    midi = 69 + 12 * np.log2(freqs[bins] / 440.0)
    nearest = np.round(midi)
    out = np.zeros((len(midi), 12), np.float32)
    out[np.arange(len(midi)), nearest.astype(int) % 12] = np.exp(-0.5 * ((midi - nearest) / 0.3) ** 2)
    return bins, out


def _pool(frames: np.ndarray, hop_s: float, starts, ends) -> np.ndarray:
    """Sum of the frame columns whose centre lies in each ``[start, end)`` (cumulative sums)."""
    n = frames.shape[-1]
    csum = np.concatenate([np.zeros(frames.shape[:-1] + (1,)), np.cumsum(frames, axis=-1)], axis=-1)
    a = np.clip(np.ceil(np.asarray(starts) / hop_s - 1e-9).astype(int), 0, n)
    b = np.clip(np.ceil(np.asarray(ends) / hop_s - 1e-9).astype(int), 0, n)
    b = np.maximum(a + 1, b).clip(max=n)
    return (csum[..., b] - csum[..., a]).T if frames.ndim > 1 else csum[b] - csum[a]


def estimate_key(chroma, *, profiles: str = "temperley") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tonic (0–11), mode (0 major, 1 minor) and confidence (Pearson r) of each chroma row ``[n, 12]``.

    >>> c = np.zeros(12); c[[0, 4, 7]] = 1          # C E G
    >>> [int(v[0]) for v in estimate_key(c[None, :])[:2]]
    [0, 0]
    """
    if profiles not in PROFILES:
        raise ParameterError(f"profiles must be one of {', '.join(PROFILES)}, got {profiles!r}")
    c = np.atleast_2d(np.asarray(chroma, dtype=np.float64))
    if c.shape[-1] != 12:
        raise ParameterError(f"estimate_key: chroma must be [n, 12], got shape {c.shape}")
    templates = np.stack([np.roll(p, t) for p in PROFILES[profiles] for t in range(12)])  # [24, 12]: major, minor
    templates = (templates - templates.mean(1, keepdims=True))
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    cz = c - c.mean(1, keepdims=True)
    norm = np.linalg.norm(cz, axis=1, keepdims=True)
    r = (cz / np.where(norm > 0, norm, 1.0)) @ templates.T
    best = r.argmax(axis=1)
    conf = np.where(norm[:, 0] > 0, r[np.arange(len(c)), best], 0.0)
    return best % 12, best // 12, conf


def _tempo(onset: np.ndarray, hop_s: float) -> float:
    """BPM of an onset envelope: prior-weighted autocorrelation peak, parabolically refined."""
    if len(onset) < 8:  # too short to hold a beat (and an empty window has no mean)
        return float("nan")
    x = onset - onset.mean()
    if not np.any(x):
        return float("nan")
    ac = np.fft.irfft(np.abs(np.fft.rfft(x, 2 * len(x))) ** 2)[: len(x)]
    lags = np.arange(len(ac)) * hop_s
    lo, hi = 60.0 / TEMPO_RANGE[1], 60.0 / TEMPO_RANGE[0]
    ok = np.flatnonzero((lags >= lo) & (lags <= hi))
    if len(ok) < 3:
        return float("nan")
    bpm = 60.0 / lags[ok]
    weighted = ac[ok] * np.exp(-0.5 * np.log2(bpm / 120.0) ** 2)
    i = int(np.argmax(weighted))
    lag = float(ok[i])
    if 0 < i < len(ok) - 1:
        a, b, c = ac[ok[i] - 1], ac[ok[i]], ac[ok[i] + 1]
        denom = a - 2 * b + c
        if denom < 0:
            lag += 0.5 * (a - c) / denom
    return 60.0 / (lag * hop_s)


def _onsets(flux: np.ndarray, min_gap: int = 3) -> int:
    """Onsets in an onset envelope: local maxima above mean + ½ std and 3 × median, ``min_gap`` frames apart."""
    if len(flux) < 3 or not np.any(flux):
        return 0
    threshold = max(flux.mean() + 0.5 * flux.std(), 3.0 * float(np.median(flux)))
    peak = (flux[1:-1] > flux[:-2]) & (flux[1:-1] >= flux[2:]) & (flux[1:-1] > threshold)
    count, last = 0, -min_gap
    for i in np.flatnonzero(peak):
        if i - last >= min_gap:
            count, last = count + 1, i
    return count


def describe(y: np.ndarray, sr: int, starts, ends, *, profiles: str = "temperley", steps: int = STEPS) -> dict:
    """Descriptors of the windows ``[starts[i], ends[i])`` (seconds) of mono audio ``y``.

    Returns arrays with one row per window: ``tonic`` (int8), ``mode`` (int8), ``key_confidence``,
    ``tempo`` (BPM, NaN when the window has no onsets), ``loudness_db``, ``onset_rate`` (per second),
    ``centroid_hz`` (float32) and ``harmony`` (float32 ``[n, 12 * steps]``).
    """
    starts, ends = np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)
    if starts.shape != ends.shape or starts.ndim != 1:
        raise ParameterError("describe: starts and ends must be 1-D arrays of equal length")
    if steps < 1:
        raise ParameterError(f"describe: steps must be >= 1, got {steps}")
    x = resample(np.asarray(y, dtype=np.float32), sr, SR) if sr != SR else np.asarray(y, dtype=np.float32)
    n = len(starts)
    # loudness: exact RMS over each window's samples
    sq = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    a = np.clip((starts * SR).round().astype(int), 0, len(x))
    b = np.clip((ends * SR).round().astype(int), 0, len(x))
    mean_sq = (sq[b] - sq[a]) / np.maximum(b - a, 1)
    loudness = 10 * np.log10(np.maximum(mean_sq, 1e-12))
    # chroma per frame, pooled per window and per step
    bins, fold = _chroma_map(CHROMA_FFT, SR)
    chroma = np.sqrt(np.ascontiguousarray(stft_magnitude(x, CHROMA_FFT, CHROMA_HOP)[:, bins]) @ fold).T
    hop_c = CHROMA_HOP / SR
    tonic, mode, conf = estimate_key(_pool(chroma, hop_c, starts, ends), profiles=profiles)
    edges = starts[:, None] + (ends - starts)[:, None] * np.arange(steps + 1)[None, :] / steps
    parts = _pool(chroma, hop_c, edges[:, :-1].ravel(), edges[:, 1:].ravel()).reshape(n, steps, 12)
    rows = np.arange(12)[None, :] + tonic[:, None]                      # rotate: tonic -> pitch class 0
    parts = np.take_along_axis(parts, (rows % 12)[:, None, :].repeat(steps, axis=1), axis=2)
    parts /= np.maximum(np.linalg.norm(parts, axis=2, keepdims=True), 1e-9)
    harmony = parts.reshape(n, 12 * steps) / np.sqrt(steps)
    # tempo from the onset envelope (log spectral flux)
    spec = stft_magnitude(x, ONSET_FFT, ONSET_HOP)
    mag = np.log1p(100.0 * spec)
    flux = np.concatenate([[0.0], np.maximum(np.diff(mag, axis=0), 0).sum(axis=1)])
    hop_o = ONSET_HOP / SR
    fa = np.clip(np.ceil(starts / hop_o).astype(int), 0, len(flux))
    fb = np.clip(np.ceil(ends / hop_o).astype(int), 0, len(flux))
    tempo = np.array([_tempo(flux[i:j], hop_o) for i, j in zip(fa, fb)])
    onset_rate = np.array([_onsets(flux[i:j]) / max((j - i) * hop_o, hop_o) for i, j in zip(fa, fb)])
    power = spec ** 2
    weight = _pool(power.sum(axis=1), hop_o, starts, ends)
    centroid = _pool(power @ np.fft.rfftfreq(ONSET_FFT, 1 / SR), hop_o, starts, ends) / np.where(weight > 0, weight, 1)
    return {"tonic": tonic.astype(np.int8), "mode": mode.astype(np.int8),
            "key_confidence": conf.astype(np.float32), "tempo": tempo.astype(np.float32),
            "loudness_db": loudness.astype(np.float32), "harmony": harmony.astype(np.float32),
            "onset_rate": onset_rate.astype(np.float32),
            "centroid_hz": np.where(weight > 0, centroid, np.nan).astype(np.float32)}


def harmonic_similarity(a, b, *, steps: int = STEPS) -> np.ndarray:
    """Similarity (0..1) of harmony descriptors: the best cosine over circular shifts of the steps,
    so a progression matches itself started one step later. ``a`` ``[d]`` or ``[n, d]``, ``b`` ``[m, d]``
    → ``[m]`` (or ``[n, m]``).

    >>> h = describe(np.sin(np.arange(44100) * 0.1).astype("float32"), 22050, [0.0], [2.0])["harmony"]
    >>> round(float(harmonic_similarity(h[0], h)[0]), 3)
    1.0
    """
    a, b = np.asarray(a, dtype=np.float32), np.atleast_2d(np.asarray(b, dtype=np.float32))
    single = a.ndim == 1
    a = np.atleast_2d(a)
    d = a.shape[1]
    if b.shape[1] != d or d % steps:
        raise ParameterError(f"harmonic_similarity: descriptors of {d} and {b.shape[1]} values, steps={steps}")
    best = np.full((len(a), len(b)), -np.inf, dtype=np.float32)
    for s in range(steps):
        shifted = np.roll(a.reshape(len(a), steps, -1), s, axis=1).reshape(len(a), d)
        best = np.maximum(best, shifted @ b.T)
    best = np.clip(np.nan_to_num(best, neginf=0.0), 0.0, 1.0)
    return best[0] if single else best
