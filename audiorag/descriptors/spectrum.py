"""The short-time magnitude spectrum the descriptors share (scipy's FFT; no librosa on the query path).

librosa's ``stft`` pulls in numba-compiled helpers at first use: in a fresh install that compile cost a
first hum query 11.5 s on a quiet machine and minutes on a busy one. Framing with a strided view and one
``rfft`` gives the same frames (centred, zero-padded) with nothing to compile.
"""

from __future__ import annotations

import numpy as np


def stft_magnitude(y: np.ndarray, n_fft: int, hop: int, *, periodic: bool = False) -> np.ndarray:
    """Magnitude spectrogram ``[n_frames, n_fft // 2 + 1]``; frame ``i`` is centred at sample ``i * hop``
    (the signal zero-padded by ``n_fft // 2`` on both sides, as librosa's ``center=True``).

    ``periodic`` selects the periodic Hann window (librosa's ``stft``; equal to it within float32 rounding),
    otherwise the symmetric one (``np.hanning``).

    >>> stft_magnitude(np.ones(1000, np.float32), 256, 64).shape
    (16, 129)
    """
    import scipy.fft
    yp = np.pad(y, n_fft // 2)
    if len(yp) < n_fft:
        yp = np.pad(yp, (0, n_fft - len(yp)))
    frames = np.lib.stride_tricks.sliding_window_view(yp, n_fft)[::hop]
    window = np.hanning(n_fft + 1)[:-1] if periodic else np.hanning(n_fft)
    return np.abs(scipy.fft.rfft(frames * window.astype(np.float32), axis=1))
