"""Stems: any embedder applied to one separated source of the track, stored as an embedding of its own
(``features45@percussive``, ``aisfx@harmonic``) with the library's segments and timestamps.

The track (or query clip) is separated whole, then cut into the same windows as the full mix, so a moment's
stem vector and its mix vector describe the same seconds. A stem embedder keeps its inner embedder's params
(its key differs by the ``@stem`` in its name) and stores no tags (one tagger per library stays the default
for text search).

Stem sources (:data:`SOURCES`): ``hpss`` — librosa's harmonic/percussive separation (median filtering of
the spectrogram, Fitzgerald 2010), no weights, the default. Demucs would add ``drums``, ``bass``, ``vocals``,
``other``; it is not wired in (see docs/describe.md#stems).

>>> from audiorag.embedders import get_embedder
>>> e = get_embedder("features45@percussive")
>>> e.name, e.dim, e.key.startswith("features45@percussive-")
('features45@percussive', 45, True)
"""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from .base import Embedder

#: stem source → the stems it separates
SOURCES = {"hpss": ("harmonic", "percussive")}
STEMS = tuple(s for stems in SOURCES.values() for s in stems)


def separate(y: np.ndarray, stem: str, *, margin: float = 1.0) -> np.ndarray:
    """One HPSS stem of mono audio (same length).

    >>> sr = 22050; t = np.arange(sr) / sr
    >>> tone = np.sin(2 * np.pi * 440 * t).astype("float32")
    >>> clicks = np.zeros(sr, np.float32); clicks[::sr // 8] = 1.0
    >>> h, p = separate(tone + clicks, "harmonic"), separate(tone + clicks, "percussive")
    >>> bool(np.abs(h - tone).mean() < np.abs(p - tone).mean())
    True
    """
    import librosa
    if stem not in STEMS:
        raise ParameterError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    y = np.asarray(y, np.float32)
    if len(y) < 2048:
        return y.copy() if stem == "harmonic" else np.zeros_like(y)
    part = librosa.effects.harmonic if stem == "harmonic" else librosa.effects.percussive
    return part(y, margin=margin).astype(np.float32)


def split_name(name: str) -> tuple[str, str | None]:
    """``"aisfx@percussive"`` → ``("aisfx", "percussive")``; a name without ``@`` has no stem."""
    inner, at, stem = name.partition("@")
    if at and stem not in STEMS:
        raise ParameterError(f"{name!r}: unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    return inner, (stem if at else None)


class StemEmbedder(Embedder):
    """``inner`` applied to the ``stem`` of each track; see the module docstring."""

    def __init__(self, inner: Embedder, stem: str):
        split_name(f"{inner.name}@{stem}")
        super().__init__(**inner.params)
        self.inner, self.stem = inner, stem
        self.name = f"{inner.name}@{stem}"
        self.sample_rate, self.dim, self.window = inner.sample_rate, inner.dim, inner.window
        self.standardise = inner.standardise

    def describe(self) -> dict:
        return {**super().describe(), "stem": self.stem, "stem_source": "hpss"}

    def weights_identity(self):
        return self.inner.weights_identity()

    def locate_weights(self):
        return self.inner.locate_weights()

    def versions(self) -> dict:
        import librosa
        return {**self.inner.versions(), "librosa": librosa.__version__}

    def embed(self, batch: np.ndarray) -> np.ndarray:
        return self.inner.embed(np.stack([separate(w, self.stem) for w in self.check_batch(batch)]))

    def embed_track(self, y: np.ndarray, starts, ends, *, batch_size: int = 32) -> np.ndarray:
        return self.inner.embed_track(separate(y, self.stem), starts, ends, batch_size=batch_size)


class StemModel(StemEmbedder):
    """A stem of a model embedder: its windows are prepared from the stem, its model runs as the inner's."""

    def __init__(self, inner: Embedder, stem: str):
        super().__init__(inner, stem)
        self.batch_windows = inner.batch_windows

    def prepare_track(self, y: np.ndarray, starts, ends) -> list:
        return self.inner.prepare_track(separate(y, self.stem), starts, ends)

    def run(self, prepared: list) -> dict:
        return {"vectors": self.inner.run(prepared)["vectors"]}


def stem_embedder(inner: Embedder, stem: str) -> StemEmbedder:
    """The stem embedder of ``inner`` (a model one keeps the pipeline's batched forward passes)."""
    model = callable(getattr(inner, "prepare_track", None)) and callable(getattr(inner, "run", None))
    return (StemModel if model else StemEmbedder)(inner, stem)


def with_stems(embedders: list, source: str | None) -> list:
    """``embedders`` followed by each one's stems from ``source`` (``build --stems hpss``); ``None``: as given.

    >>> from audiorag.embedders import get_embedder
    >>> [e.name for e in with_stems([get_embedder("features45")], "hpss")]
    ['features45', 'features45@harmonic', 'features45@percussive']
    """
    if source is None:
        return list(embedders)
    if source not in SOURCES:
        raise ParameterError(f"--stems must be one of {', '.join(SOURCES)}, got {source!r}"
                             + (" (Demucs is not installed with audiorag; see docs/describe.md#stems)"
                                if source == "demucs" else ""))
    return [*embedders, *(stem_embedder(e, s) for e in embedders if "@" not in e.name for s in SOURCES[source])]


def stem_ref(embedder: str | None, stem: str, names: list[str]) -> str:
    """The embedding ``search --stem STEM`` uses: ``EMBEDDER@STEM``, or without ``embedder`` the only
    ``…@STEM`` among a library's embedding ``names``.

    >>> stem_ref(None, "percussive", ["aisfx", "aisfx@harmonic", "aisfx@percussive"])
    'aisfx@percussive'
    """
    split_name(f"x@{stem}")
    if embedder is not None:
        return embedder if embedder.endswith(f"@{stem}") else f"{split_name(embedder)[0]}@{stem}"
    found = [n for n in names if n.endswith(f"@{stem}")]
    if len(found) != 1:
        have = ", ".join(found) or "none; build with --stems hpss"
        raise ParameterError(f"--stem {stem}: {len(found)} {stem} embeddings here ({have}); name one with --embedder")
    return found[0]
