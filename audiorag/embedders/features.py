"""Hand-crafted librosa features: ``features45``, the 45-D vector of seed S1 (the
audio-samples-semantic-search write-up; the seeds S0–S4 are listed in
:data:`audiorag.evaluate.reported.SEEDS`).

Layout of the 45 dimensions (S1's write-up, in this order):

====  ===========================================
0–12  MFCC 1–13, mean over the window
13–25 MFCC 1–13, standard deviation
26–37 chroma (12 pitch classes), mean
38–40 spectral centroid, rolloff, bandwidth (Hz), mean
41–44 zero-crossing rate mean, RMS mean, RMS std, tempo (BPM)
====  ===========================================

Frame-level features are computed **once per track** (one STFT, hop 512 at 22.05 kHz)
and pooled per window with cumulative sums, so overlapping windows never recompute a
spectrogram. A frame belongs to a window when its centre lies in ``[start, end)``. Tempo
is estimated per window by librosa's tempo estimator on the window's mean tempogram
(the tempogram itself is computed once per track).

Every frame feature is local to its frame (no track-global reference level, tuning or
normalisation), so the pooled vector equals the vector computed on the window alone,
except for frames whose analysis window crosses the window's edges.
"""

from __future__ import annotations

import librosa
import numpy as np
import scipy.sparse

from ..audio import valid_audio
from ..descriptors.spectrum import stft_magnitude
from ..errors import ParameterError
from .base import Embedder

FEATURE_NAMES = ([f"mfcc{i}_mean" for i in range(1, 14)] + [f"mfcc{i}_std" for i in range(1, 14)]
                 + [f"chroma_{p}" for p in ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")]
                 + ["centroid", "rolloff", "bandwidth", "zcr", "rms_mean", "rms_std", "tempo"])


def spectral_shape(mag: np.ndarray, freqs: np.ndarray, roll_percent: float = 0.85):
    """Spectral centroid, rolloff and bandwidth per frame from one magnitude spectrogram ``[bins, frames]``.

    Same definitions as librosa's ``spectral_centroid``, ``spectral_rolloff`` and
    ``spectral_bandwidth`` (p=2), from the first two moments of each frame's spectrum (one matrix
    product: the bandwidth² is the second moment less the centroid²) instead of three passes.

    >>> mag = np.zeros((5, 1), np.float32); mag[[1, 3]] = 1.0
    >>> [float(v[0]) for v in spectral_shape(mag, np.arange(5) * 100.0)]
    [200.0, 300.0, 100.0]
    """
    total = mag.sum(axis=0, dtype=np.float64)
    inv = 1.0 / np.maximum(total, np.finfo(mag.dtype).tiny)
    moments = np.vstack([freqs, freqs ** 2]).astype(mag.dtype) @ mag
    centroid = moments[0] * inv
    bandwidth = np.sqrt(np.maximum(moments[1] * inv - centroid ** 2, 0.0))
    cumulative = np.cumsum(mag, axis=0)
    rolloff = freqs[(cumulative < roll_percent * cumulative[-1]).sum(axis=0)]  # the first bin reaching the share
    return centroid, rolloff, bandwidth


def zero_crossing_rate(y: np.ndarray, frame_length: int, hop_length: int, n_frames: int) -> np.ndarray:
    """Fraction of zero crossings in centred frames (librosa's definition, edge-padded), via one cumsum."""
    pad = frame_length // 2
    yp = np.pad(y, pad, mode="edge")
    yp = np.where(np.abs(yp) <= 1e-10, 0.0, yp)  # librosa's threshold; zero counts as positive
    crossings = np.concatenate([[0], np.signbit(yp[1:]) != np.signbit(yp[:-1])]).astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(crossings)])
    starts = np.arange(n_frames) * hop_length
    ends = np.minimum(starts + frame_length, len(yp))
    # librosa counts crossings at positions 1..frame_length-1 within each frame
    return (csum[ends] - csum[starts + 1]) / frame_length


class Features45(Embedder):
    """Seed S1's (audio-samples-semantic-search) 45-D hand-crafted vector, standardised with library statistics.

    >>> import numpy as np
    >>> e = Features45()
    >>> y = np.sin(2 * np.pi * 440 * np.arange(22050 * 4) / 22050).astype("float32")
    >>> e.embed_track(y, [0.0, 2.0], [2.0, 4.0]).shape
    (2, 45)
    """

    name = "features45"
    sample_rate = 22050
    dim = 45
    window = None
    standardise = True

    def __init__(self, *, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128):
        if n_fft <= 0 or hop_length <= 0 or n_mels <= 0:
            raise ParameterError("features45: n_fft, hop_length and n_mels must be positive")
        super().__init__(n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
        self.n_fft, self.hop_length, self.n_mels = n_fft, hop_length, n_mels
        # each mel filter spans a few bins: sparse, the product costs ≈ 1/60 of the dense one's multiplications
        self._mel_basis = scipy.sparse.csr_array(librosa.filters.mel(sr=self.sample_rate, n_fft=n_fft, n_mels=n_mels))
        self._chroma_basis = librosa.filters.chroma(sr=self.sample_rate, n_fft=n_fft, tuning=0.0)
        self._freqs = librosa.fft_frequencies(sr=self.sample_rate, n_fft=n_fft)
        self._tempogram_win = int(librosa.time_to_frames(8.0, sr=self.sample_rate, hop_length=hop_length))

    def versions(self) -> dict:
        return {**super().versions(), "librosa": librosa.__version__}

    # -- frame level ------------------------------------------------------------------------
    def frame_features(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame-level matrix ``[n_frames, 30]`` (13 MFCC, 12 chroma, centroid, rolloff,
        bandwidth, ZCR, RMS) and the tempogram ``[win, n_frames]``."""
        sr, n_fft, hop = self.sample_rate, self.n_fft, self.hop_length
        # librosa's centred frames, without its overhead; [bins, frames] in C order, which the sparse mel
        # product needs to be fast (30× the dense product here, against 1.3× on the transposed view)
        mag = np.ascontiguousarray(stft_magnitude(y, n_fft, hop, periodic=True).T)
        power = mag ** 2
        log_mel = librosa.power_to_db(self._mel_basis @ power, top_db=None)
        mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=13)
        chroma = self._chroma_basis @ power
        chroma /= np.maximum(chroma.max(axis=0, keepdims=True), np.finfo(np.float32).tiny)
        centroid, rolloff, bandwidth = spectral_shape(mag, self._freqs)
        zcr = zero_crossing_rate(y, n_fft, hop, mag.shape[1])
        rms = librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop, center=True)[0]
        onset = librosa.onset.onset_strength(S=log_mel, sr=sr, hop_length=hop)
        tempogram = librosa.feature.tempogram(onset_envelope=onset, sr=sr, hop_length=hop,
                                              win_length=self._tempogram_win)
        frames = np.vstack([mfcc, chroma, centroid, rolloff, bandwidth, zcr, rms]).T
        return frames.astype(np.float64), tempogram

    def window_frames(self, starts, ends, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame index ranges ``[a, b)`` whose centres fall in each window (at least one frame)."""
        step = self.hop_length / self.sample_rate
        a = np.ceil(np.asarray(starts) / step - 1e-9).astype(int)
        b = np.ceil(np.asarray(ends) / step - 1e-9).astype(int)
        a = np.clip(a, 0, n_frames - 1)
        b = np.clip(np.maximum(b, a + 1), 1, n_frames)
        return a, b

    # -- pooling ----------------------------------------------------------------------------
    def pool(self, frames: np.ndarray, tempogram: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Pool frame features over frame ranges ``[a, b)`` into 45-D vectors."""
        csum = np.vstack([np.zeros((1, frames.shape[1])), np.cumsum(frames, axis=0)])
        csq = np.vstack([np.zeros((1, 13)), np.cumsum(frames[:, :13] ** 2, axis=0)])
        rms = frames[:, -1]
        csq_rms = np.concatenate([[0.0], np.cumsum(rms ** 2)])
        n = (b - a)[:, None].astype(np.float64)
        mean = (csum[b] - csum[a]) / n
        mfcc_std = np.sqrt(np.maximum((csq[b] - csq[a]) / n - mean[:, :13] ** 2, 0.0))
        rms_std = np.sqrt(np.maximum((csq_rms[b] - csq_rms[a]) / n[:, 0] - mean[:, -1] ** 2, 0.0))
        tg_sum = np.hstack([np.zeros((tempogram.shape[0], 1)), np.cumsum(tempogram, axis=1)])
        tg_mean = (tg_sum[:, b] - tg_sum[:, a]) / n[:, 0]
        tempo = librosa.feature.tempo(tg=tg_mean, sr=self.sample_rate, hop_length=self.hop_length, aggregate=None)
        out = np.hstack([mean[:, :13], mfcc_std, mean[:, 13:25], mean[:, 25:28], mean[:, 28:30],
                         rms_std[:, None], tempo[:, None]])
        return out.astype(np.float32)

    def embed_track(self, y: np.ndarray, starts, ends, *, batch_size: int = 32) -> np.ndarray:
        valid_audio(y)
        frames, tempogram = self.frame_features(y)
        a, b = self.window_frames(starts, ends, len(frames))
        return self.pool(frames, tempogram, a, b)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        batch = self.check_batch(batch)
        length = batch.shape[1] / self.sample_rate
        return np.vstack([self.embed_track(row, [0.0], [length]) for row in batch])
