"""Landmark fingerprints: spectral peaks hashed in triplets that survive noise, EQ, tempo and speed changes.

After Wang (Shazam, 2003) for the peak constellation, Panako (Six & Leman) for hashes that do not
change when the audio is played faster or slower, and Olaf (Six) for keeping them small. The audio is
resampled to 8 kHz; a magnitude spectrogram (1024-point FFT, hop 256: 32 ms frames) is mapped onto
log-spaced bands (24 per octave, 100 Hz–3.8 kHz) so that a speed change (pitch and tempo together)
moves every peak by the same number of bands; peaks are local maxima that stand above their
neighbourhood's mean (the adaptive threshold), the strongest few per second.

A hash joins an anchor peak to two later peaks: the anchor's coarse band, the band differences of the
two others, and the *ratio* of their time distances — a ratio does not change under a time stretch, and
band differences do not change under a speed change. Each hash is stored with the anchor's frame; the
matching side (:mod:`audiorag.identify`) finds the stretch and the offset by voting.

Plain arrays in and out:

>>> import numpy as np
>>> y = np.random.default_rng(0).standard_normal(8000 * 5).astype("float32")
>>> hashes, frames = fingerprint(y, 8000)
>>> hashes.dtype, frames.dtype, len(hashes) == len(frames), int(hashes.max()) < 2 ** HASH_BITS
(dtype('uint32'), dtype('uint32'), True, True)
"""

from __future__ import annotations

import numpy as np
from scipy import fft, ndimage, sparse

from ..audio import resample, to_mono, valid_audio

SR = 8000
N_FFT = 1024
HOP = 256
FRAME_SECONDS = HOP / SR  # 32 ms
F_MIN, F_MAX, BANDS_PER_OCTAVE = 100.0, 3800.0, 24
PEAK_BANDS, PEAK_FRAMES = 7, 9  # a peak is the maximum of this neighbourhood (bands × frames)
PEAKS_PER_SECOND = 16
THRESHOLD_DB = 6.0  # a peak stands this far above the mean of its wider neighbourhood
FLOOR_DB = 70.0  # ... and within this of the loudest bin (silence and dither make no peaks)
DT_MAX, DF_MAX = 40, 31  # targets lie 1..DT_MAX frames after the anchor and within ±DF_MAX bands
FAN_OUT, LOOK_AHEAD = 3, 10  # each anchor pairs its next FAN_OUT valid peaks (among the next LOOK_AHEAD)
RATIO_LEVELS = 16
HASH_BITS = 20  # coarse band 4 + two band differences 6 + 6 + time ratio 4: see _hash
_CHUNK = 8192  # frames per FFT block (memory stays flat for hour-long files)


def n_bands() -> int:
    """The number of log-frequency bands."""
    return int(np.floor(np.log2(F_MAX / F_MIN) * BANDS_PER_OCTAVE)) + 1


def _band_matrix():
    """Triangular filters from FFT bins to log-spaced bands, a sparse ``[n_bands, n_fft // 2 + 1]`` matrix
    (sparse: a dense product would hand a tiny job to a multi-threaded BLAS, slow on a busy machine)."""
    centres = F_MIN * 2.0 ** (np.arange(-1, n_bands() + 1) / BANDS_PER_OCTAVE)
    freqs = np.fft.rfftfreq(N_FFT, 1 / SR)
    lo, mid, hi = centres[:-2, None], centres[1:-1, None], centres[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    w = np.maximum(0.0, np.minimum(up, down))
    # narrow low bands fall between FFT bins: give each band at least its nearest bin
    nearest = np.abs(freqs[None] - mid).argmin(axis=1)
    w[np.arange(len(w)), nearest] = np.maximum(w[np.arange(len(w)), nearest], 1.0)
    return sparse.csr_matrix((w / w.sum(axis=1, keepdims=True)).astype(np.float32))


_BANDS = _band_matrix()
_WINDOW = np.hanning(N_FFT).astype(np.float32)


def spectrogram(y: np.ndarray) -> np.ndarray:
    """Log-frequency power spectrogram in dB of 8 kHz audio, ``float32[n_bands, n_frames]``.

    >>> spectrogram(np.zeros(8000, np.float32)).shape
    (126, 28)
    """
    n = 1 + max(0, len(y) - N_FFT) // HOP if len(y) >= N_FFT else 0
    out = np.empty((_BANDS.shape[0], n), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT)[::HOP] if n else np.zeros((0, N_FFT), np.float32)
    for lo in range(0, n, _CHUNK):
        spec = fft.rfft(frames[lo:lo + _CHUNK] * _WINDOW, axis=1)  # scipy's: ~8x numpy's for float32 here
        power = spec.real ** 2 + spec.imag ** 2
        out[:, lo:lo + _CHUNK] = _BANDS @ power.T
    return 10 * np.log10(out + 1e-10)


def peaks(spec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spectral peaks of :func:`spectrogram` output: ``(frames, bands)`` as int32, sorted by frame then band.

    A peak is the maximum of its ``PEAK_BANDS × PEAK_FRAMES`` neighbourhood, stands ``THRESHOLD_DB``
    above the mean of a wider one (so a loud passage does not hide a quiet one and EQ only scales the
    level around it), and is among the ``PEAKS_PER_SECOND`` most prominent of its second.
    """
    if spec.size == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    local_max = ndimage.maximum_filter(spec, size=(PEAK_BANDS, PEAK_FRAMES), mode="constant", cval=-1e9)
    mean = ndimage.uniform_filter(spec, size=(3 * PEAK_BANDS, 3 * PEAK_FRAMES), mode="nearest")
    prominence = spec - mean
    keep = (spec == local_max) & (prominence > THRESHOLD_DB) & (spec > spec.max() - FLOOR_DB)
    band, frame = np.nonzero(keep)
    if not len(frame):
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    # the strongest few of each second
    block = frame // max(1, round(1 / FRAME_SECONDS))
    order = np.lexsort((-prominence[band, frame], block))
    block_sorted = block[order]
    first = np.searchsorted(block_sorted, block_sorted, side="left")
    chosen = order[np.arange(len(order)) - first < PEAKS_PER_SECOND]
    chosen = chosen[np.lexsort((band[chosen], frame[chosen]))]
    return frame[chosen].astype(np.int32), band[chosen].astype(np.int32)


def hashes(frames: np.ndarray, bands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triplet hashes of peaks sorted by frame: ``(hashes uint32, anchor frames uint32)``, sorted by frame.

    For each anchor, its next ``FAN_OUT`` peaks 1..``DT_MAX`` frames later within ±``DF_MAX`` bands are
    the targets; every pair of targets makes one triplet with the anchor.
    """
    n = len(frames)
    if n < 3:
        return np.zeros(0, np.uint32), np.zeros(0, np.uint32)
    idx = np.arange(n)[:, None] + np.arange(1, LOOK_AHEAD + 1)[None]
    inside = idx < n
    idx = np.minimum(idx, n - 1)
    dt = frames[idx] - frames[:, None]
    df = bands[idx] - bands[:, None]
    valid = inside & (dt >= 1) & (dt <= DT_MAX) & (np.abs(df) <= DF_MAX)
    valid &= np.cumsum(valid, axis=1) <= FAN_OUT
    a, b = np.triu_indices(LOOK_AHEAD, k=1)
    both = valid[:, a] & valid[:, b]
    anchor, pair = np.nonzero(both)
    j, k = idx[anchor, a[pair]], idx[anchor, b[pair]]
    dt1, dt2 = dt[anchor, a[pair]], dt[anchor, b[pair]]
    h = _hash(bands[anchor], bands[j] - bands[anchor], bands[k] - bands[anchor], dt1 / dt2)
    return h, frames[anchor].astype(np.uint32)


def _hash(band: np.ndarray, df1: np.ndarray, df2: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """Pack the stretch- and speed-invariant parts of a triplet into ``HASH_BITS`` bits."""
    coarse = (band // 8).astype(np.uint32) & 0xF  # 16 regions of a third of an octave
    d1 = (df1 + DF_MAX).astype(np.uint32) & 0x3F
    d2 = (df2 + DF_MAX).astype(np.uint32) & 0x3F
    q = np.minimum((ratio * RATIO_LEVELS).astype(np.uint32), RATIO_LEVELS - 1)
    return (((coarse << 6 | d1) << 6 | d2) << 4) | q


def fingerprint(y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Landmark hashes of audio (``(n,)`` or ``(channels, n)``, mixed to mono):
    ``(hashes uint32, anchor frames uint32)`` (a frame is 32 ms).

    >>> import numpy as np
    >>> h, t = fingerprint(np.zeros(16000, np.float32), 16000)
    >>> len(h)
    0
    """
    y = to_mono(valid_audio(np.asarray(y), item="<array>"))
    y8 = resample(np.ascontiguousarray(y, dtype=np.float32), int(sr), SR)
    f, b = peaks(spectrogram(y8))
    return hashes(f, b)
