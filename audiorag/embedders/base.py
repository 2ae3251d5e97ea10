"""The embedder protocol (after hear-eval-kit) and the helpers every embedder shares.

An embedder declares ``name``, ``sample_rate``, ``dim`` and its native ``window``
(seconds, ``None`` when any length works) and maps a batch of equal-length mono windows
to one vector each with :meth:`Embedder.embed`. :meth:`Embedder.embed_track` embeds
many windows of one track; embedders that can share work between overlapping windows
(e.g. frame-level features) override it.

Vectors that leave an embedder are *raw*; the library standardises them when
``standardise`` is true (statistics fitted on the library, stored with it) and always
L2-normalises them, so inner product is cosine similarity.
"""

from __future__ import annotations

import hashlib
import json
from typing import ClassVar

import numpy as np

from ..audio import valid_audio
from ..errors import ParameterError
from ..segment import cut


class Embedder:
    """Base class of all embedders.

    Subclasses set the class attributes and implement :meth:`embed`.
    """

    name: ClassVar[str] = ""
    sample_rate: ClassVar[int] = 0
    dim: int = 0
    window: float | None = None
    #: z-score raw vectors with statistics fitted on the library before L2 normalisation
    standardise: ClassVar[bool] = False
    #: names of the tag probabilities the embedder also outputs per window (taggers only)
    tag_names: tuple[str, ...] = ()
    #: True when :meth:`embed_text` maps text into the audio vectors' space (a text tower, e.g. CLAP)
    has_text: ClassVar[bool] = False

    def __init__(self, **params):
        self.params = dict(params)

    # -- identity ---------------------------------------------------------------------------
    @property
    def key(self) -> str:
        """Stable, human-readable directory name: ``name`` plus a short hash of the params.

        >>> from audiorag.embedders import get_embedder
        >>> get_embedder("features45").key
        'features45-6b0fdaa4'
        """
        blob = json.dumps({"name": self.name, "params": self.params}, sort_keys=True)
        return f"{self.name}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"

    def describe(self) -> dict:
        """What goes into ``embedder.json``: name, params, dim, sample rate, weights identity, versions."""
        return {"name": self.name, "key": self.key, "params": self.params, "dim": self.dim,
                "sample_rate": self.sample_rate, "window": self.window,
                "standardise": self.standardise, "weights": self.weights_identity(),
                "tag_names": list(self.tag_names), "has_text": self.has_text, "versions": self.versions()}

    def weights_identity(self) -> dict | None:
        """Where the weights came from and their revision or sha256; ``None`` without weights."""
        return None

    def locate_weights(self):
        """Where this embedder's weights are on this machine (:class:`~audiorag.embedders.hub.Located`),
        ``None`` when it has none; raises :class:`~audiorag.errors.WeightsNotFoundError` when they are missing."""
        return None

    def versions(self) -> dict:
        import numpy
        return {"numpy": numpy.__version__}

    # -- computation ------------------------------------------------------------------------
    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Embed ``float32[n, samples]`` mono windows at :attr:`sample_rate` into ``float32[n, dim]``."""
        raise NotImplementedError

    def embed_track(self, y: np.ndarray, starts, ends, *, batch_size: int = 32) -> np.ndarray:
        """Embed the windows ``[starts[i], ends[i])`` (seconds) of one mono track at :attr:`sample_rate`.

        The default cuts the windows and calls :meth:`embed` on batches of equal-length windows.
        """
        valid_audio(y)
        windows = cut(y, self.sample_rate, starts, ends)
        out = np.empty((len(windows), self.dim), dtype=np.float32)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        for lo in range(0, len(order), batch_size):
            idx = order[lo:lo + batch_size]
            lengths = {len(windows[i]) for i in idx}
            for length in lengths:
                group = [i for i in idx if len(windows[i]) == length]
                out[group] = self.embed(np.stack([windows[i] for i in group]))
        return out

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """Embed descriptions into the audio space (embedders with :attr:`has_text` only)."""
        raise ParameterError(f"{self.name} has no text tower; text queries need an embedder such as clap")

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """Validate an ``embed`` input: float, 2-D, finite, non-empty."""
        if not isinstance(batch, np.ndarray) or batch.ndim != 2:
            got = getattr(batch, "shape", type(batch))
            raise ParameterError(f"{self.name}.embed: expected float32[n, samples], got {got}")
        valid_audio(batch, item=f"{self.name}.embed input")
        return batch.astype(np.float32, copy=False)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as float32.

    >>> l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
