"""Instruments, patterns and effects of the synthetic corpus (additive, FM and noise synthesis).

Pure numpy/scipy; every function takes an explicit ``numpy.random.Generator`` when it is random.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

SR = 22050


def midi_hz(m):
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=float) - 69) / 12)


def rms(y: np.ndarray) -> float:
    """Root mean square of ``y`` (computed in float64), never 0.

    >>> rms(np.ones(4)) - 1.0 < 1e-11
    True
    """
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))) + 1e-12)


def add_noise(y: np.ndarray, snr_db: float, *, rng: np.random.Generator | None = None, noise: np.ndarray | None = None,
              level: float | None = None) -> np.ndarray:
    """``y`` plus ``noise`` at ``snr_db`` dB below ``level``: ``y + noise · level · 10^(−snr/20)``.

    ``noise`` defaults to white noise (``rng.standard_normal``, unit variance); a coloured noise is
    given with unit RMS. ``level`` defaults to :func:`rms` of ``y`` (give the RMS of the part that
    counts, e.g. only the sung notes). The corpus generators and the degradations of the evaluations
    all add their noise here.

    >>> y = np.sin(np.linspace(0, 100, 22050))
    >>> noisy = add_noise(y, 20.0, rng=np.random.default_rng(0))
    >>> round(20 * np.log10(rms(y) / rms(noisy - y)))
    20
    """
    if noise is None:
        noise = rng.standard_normal(len(y))
    return y + noise * (rms(y) if level is None else level) * 10 ** (-snr_db / 20)


def envelope(n: int, attack: float, decay: float, sr: int = SR) -> np.ndarray:
    """Linear attack then exponential decay with time constant ``decay`` seconds."""
    t = np.arange(n) / sr
    a = np.minimum(t / max(attack, 1e-4), 1.0)
    return a * np.exp(-np.maximum(t - attack, 0) / max(decay, 1e-4))


def tone(freq: float, dur: float, timbre: dict, sr: int = SR) -> np.ndarray:
    """One note. ``timbre``: kind (additive|fm|noise), partials, rolloff, detune, attack, decay, drive."""
    n = max(int(dur * sr), 16)
    t = np.arange(n) / sr
    kind = timbre.get("kind", "additive")
    if kind == "fm":
        ratio, index = timbre.get("ratio", 2.0), timbre.get("index", 3.0)
        mod_env = envelope(n, 0.002, timbre.get("mod_decay", 0.2), sr)
        y = np.sin(2 * np.pi * freq * t + index * mod_env * np.sin(2 * np.pi * freq * ratio * t))
    else:
        y = np.zeros(n)
        rolloff, detune = timbre.get("rolloff", 1.0), timbre.get("detune", 0.0)
        odd_only = timbre.get("odd_only", False)
        for k in range(1, timbre.get("partials", 6) + 1):
            if odd_only and k % 2 == 0:
                continue
            f = freq * k * timbre.get("stretch", 1.0) ** (k - 1)
            if f >= sr / 2:
                break
            amp = k ** -rolloff * np.exp(-t * timbre.get("partial_damp", 0.0) * (k - 1))
            y += amp * np.sin(2 * np.pi * f * t)
            if detune:
                y += amp * np.sin(2 * np.pi * f * (1 + detune) * t + k)
    y *= envelope(n, timbre.get("attack", 0.005), timbre.get("decay", 0.3), sr)
    if timbre.get("tremolo"):
        y *= 1 + 0.3 * np.sin(2 * np.pi * timbre["tremolo"] * t)
    if timbre.get("drive"):
        y = np.tanh(timbre["drive"] * y)
    return y / (np.abs(y).max() + 1e-9)


def drum(kind: str, rng: np.random.Generator, params: dict, sr: int = SR) -> np.ndarray:
    """One drum hit: kick, snare, clap, hat, openhat, ride, crash, rim, brush."""
    dur = {"kick": 0.45, "snare": 0.25, "clap": 0.3, "hat": 0.06, "openhat": 0.3, "ride": 0.8,
           "crash": 1.5, "rim": 0.05, "brush": 0.2}[kind]
    n = int(dur * sr)
    t = np.arange(n) / sr
    noise = rng.standard_normal(n)
    if kind == "kick":
        f0 = params.get("kick_pitch", 50.0)
        phase = 2 * np.pi * np.cumsum(f0 + 4 * f0 * np.exp(-t / 0.03)) / sr
        y = np.sin(phase) * np.exp(-t / params.get("kick_decay", 0.15))
        y += 0.2 * noise * np.exp(-t / 0.004)
    elif kind in ("snare", "rim"):
        body = np.sin(2 * np.pi * params.get("snare_pitch", 190.0) * t) * np.exp(-t / 0.04)
        y = 0.6 * body + _highpass(noise, 1500) * np.exp(-t / (0.09 if kind == "snare" else 0.01))
    elif kind == "clap":
        bursts = sum(np.exp(-np.maximum(t - d, 0) / 0.012) * (t >= d) for d in (0, 0.01, 0.022))
        y = _bandpass(noise, 900, 2500) * (bursts + 0.4 * np.exp(-t / 0.12))
    elif kind in ("hat", "openhat"):
        y = _highpass(noise, 7000) * np.exp(-t / (0.015 if kind == "hat" else 0.12))
    elif kind in ("ride", "crash"):
        partials = [1.0, 1.47, 1.83, 2.61, 3.22, 4.11]
        f = params.get("ride_pitch", 420.0)
        y = sum(np.sin(2 * np.pi * f * p * t + p) for p in partials) / len(partials)
        y = 0.5 * y + _highpass(noise, 5000) * (0.8 if kind == "crash" else 0.3)
        y *= np.exp(-t / (0.35 if kind == "ride" else 0.7))
    else:  # brush
        y = _bandpass(noise, 2000, 8000) * envelope(n, 0.03, 0.06, sr)
    return y / (np.abs(y).max() + 1e-9)


def place(hits: list[tuple[float, float]], sound: np.ndarray, n: int, sr: int = SR) -> np.ndarray:
    """Sum copies of ``sound`` at (time, gain) ``hits`` into a buffer of ``n`` samples (impulse train ⊛ sound)."""
    train = np.zeros(n)
    for time, gain in hits:
        i = int(time * sr)
        if 0 <= i < n:
            train[i] += gain
    if not train.any():
        return train
    return signal.fftconvolve(train, sound)[:n]


def reverb(y: np.ndarray, rng: np.random.Generator, seconds: float, wet: float, sr: int = SR) -> np.ndarray:
    """Convolution with an exponentially decaying noise tail."""
    if wet <= 0 or seconds <= 0:
        return y
    n = int(seconds * sr)
    ir = rng.standard_normal(n) * np.exp(-np.arange(n) / (sr * seconds / 5))
    ir = _lowpass(ir, 6000)
    wet_sig = signal.fftconvolve(y, ir)[: len(y)]
    wet_sig *= np.abs(y).max() / (np.abs(wet_sig).max() + 1e-9)
    return (1 - wet) * y + wet * wet_sig


def crackle(n: int, rng: np.random.Generator, density: float, sr: int = SR) -> np.ndarray:
    """Vinyl-like clicks plus hiss."""
    y = 0.02 * _lowpass(rng.standard_normal(n), 4000)
    clicks = rng.random(n) < density / sr
    y[clicks] += rng.uniform(-0.6, 0.6, clicks.sum())
    return y


def lowpass(y: np.ndarray, cutoff: float, sr: int = SR) -> np.ndarray:
    return _lowpass(y, cutoff, sr)


def _sos(kind, freq, sr=SR):
    return signal.butter(4, freq, btype=kind, fs=sr, output="sos")


def _lowpass(y, f, sr=SR):
    return signal.sosfilt(_sos("lowpass", min(f, sr / 2 * 0.95), sr), y)


def _highpass(y, f, sr=SR):
    return signal.sosfilt(_sos("highpass", f, sr), y)


def _bandpass(y, lo, hi, sr=SR):
    return signal.sosfilt(_sos("bandpass", [lo, hi], sr), y)
