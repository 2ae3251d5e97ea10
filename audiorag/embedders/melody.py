"""``melody``: the predominant melody of every segment, for query by humming.

Per segment it stores two things:

- the **vector** (``dim`` 147, :func:`audiorag.descriptors.melody.melody_vector`): histograms
  of note intervals and interval pairs, key- and tempo-invariant, searched with FAISS to find
  candidates for a hum;
- the **contour** (``points`` values, default 128): the segment's melody in cents (0 where
  unvoiced) at ``points`` evenly spaced instants, stored the way a tagger stores its tag
  probabilities (``tags.npy``, one row per segment, columns ``contour000``…), read back with
  ``lib.embedding("melody").tags()`` and aligned to the hum by :mod:`audiorag.melody`. Its
  ``embedder.json`` says ``"tags_are": "contour"``, so text queries never take it for a tag space.

The pitch is tracked once per track (harmonic-summation salience, see
:mod:`audiorag.descriptors.melody`) and cut per window, so overlapping windows share the work.
No weights.

>>> import numpy as np
>>> e = Melody()
>>> t = np.arange(16000 * 4) / 16000
>>> y = np.sin(2 * np.pi * 440 * 2 ** (np.floor(t * 2) / 12) * t).astype("float32")
>>> vectors, contours = e.embed_track_tagged(y, [0.0, 2.0], [2.0, 4.0])
>>> vectors.shape, contours.shape
((2, 147), (2, 128))
"""

from __future__ import annotations

import numpy as np

from ..audio import valid_audio
from ..descriptors import melody as md
from ..errors import ParameterError
from .base import Embedder


class Melody(Embedder):
    """Melody contour + interval histograms per segment; see the module docstring."""

    name = "melody"
    sample_rate = md.SR
    dim = md.DIM
    window = None

    def __init__(self, *, points: int = 128):
        if isinstance(points, bool) or not isinstance(points, int) or not 16 <= points <= 1024:
            raise ParameterError(f"melody: points must be an integer in [16, 1024], got {points!r}")
        super().__init__(points=points)
        self.points = points
        self.tag_names = tuple(f"contour{i:03d}" for i in range(points))

    def describe(self) -> dict:
        # the "tags" are a contour, not probabilities: text queries must not take them for a tag space
        return {**super().describe(), "tags_are": "contour"}

    def embed_track_tagged(self, y: np.ndarray, starts, ends) -> tuple[np.ndarray, np.ndarray]:
        """Vectors ``float32[n, dim]`` and contours ``float32[n, points]`` of the windows ``[starts[i], ends[i])``."""
        valid_audio(y)
        cents = md.contour(y)
        rate = md.frame_rate()
        vectors = np.zeros((len(starts), self.dim), np.float32)
        contours = np.zeros((len(starts), self.points), np.float32)
        for i, (s, e) in enumerate(zip(starts, ends)):
            part = cents[int(round(s * rate)):max(int(round(e * rate)), int(round(s * rate)) + 1)]
            vectors[i] = md.melody_vector(part, rate)
            contours[i] = md.resample_contour(part, self.points)
        return vectors, contours

    def embed_track(self, y: np.ndarray, starts, ends, *, batch_size: int = 32) -> np.ndarray:
        return self.embed_track_tagged(y, starts, ends)[0]

    def embed(self, batch: np.ndarray) -> np.ndarray:
        batch = self.check_batch(batch)
        length = batch.shape[1] / self.sample_rate
        return np.vstack([self.embed_track(row, [0.0], [length]) for row in batch])

    def versions(self) -> dict:
        import librosa
        return {**super().versions(), "librosa": librosa.__version__}
