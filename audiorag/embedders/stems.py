"""Stems: any embedder applied to one separated source of the track, stored as an embedding of its own
(``features45@percussive``, ``aisfx@drums``) with the library's segments and timestamps.

The track (or query clip) is separated whole, then cut into the same windows as the full mix, so a moment's
stem vector and its mix vector describe the same seconds. A stem embedder keeps its inner embedder's params
plus its source's (its key differs by the ``@stem`` in its name) and stores no tags (one tagger per library
stays the default for text search).

Stem sources (:data:`SOURCES`), each a separator whose ``separate(y, sr)`` returns every stem at once:
``hpss`` — librosa's harmonic/percussive separation (median filtering of the spectrogram, Fitzgerald 2010),
no weights; ``demucs`` — drums, bass, vocals, other (the model's ``sources``; :mod:`.demucs_stems`), weights
found offline. Inside :func:`shared_separation` (the build runs each track's embedders in one) a track is
separated once per source, whatever number of stems and embedders use it.

>>> from audiorag.embedders import get_embedder
>>> e = get_embedder("features45@percussive")
>>> e.name, e.dim, e.key.startswith("features45@percussive-")
('features45@percussive', 45, True)
"""

from __future__ import annotations

import importlib
import threading
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..audio import resample
from ..errors import ParameterError
from .base import Embedder


class HPSS:
    """librosa's harmonic/percussive separation; both stems from one STFT.

    >>> sr = 22050; t = np.arange(sr) / sr
    >>> tone = np.sin(2 * np.pi * 440 * t).astype("float32")
    >>> clicks = np.zeros(sr, np.float32); clicks[::sr // 8] = 1.0
    >>> s = HPSS().separate(tone + clicks, sr)
    >>> bool(np.abs(s["harmonic"] - tone).mean() < np.abs(s["percussive"] - tone).mean())
    True
    """

    name = "hpss"
    stems = known_stems = ("harmonic", "percussive")
    params: dict = {}

    def __init__(self, *, margin: float = 1.0):
        self.margin = margin

    def describe(self) -> dict:
        return {"name": self.name, "margin": self.margin}

    def versions(self) -> dict:
        import librosa
        return {"librosa": librosa.__version__}

    def separate(self, y: np.ndarray, sr: int) -> dict[str, np.ndarray]:
        """Both stems of mono ``y`` (same length; shorter than one STFT frame: all harmonic)."""
        import librosa
        y = np.asarray(y, np.float32)
        if len(y) < 2048:
            return {"harmonic": y.copy(), "percussive": np.zeros_like(y)}
        h, p = librosa.effects.hpss(y, margin=self.margin)
        return {"harmonic": h.astype(np.float32), "percussive": p.astype(np.float32)}


#: stem source → its separator (``"module:Class"`` for the ones needing optional packages)
SOURCES = {"hpss": HPSS, "demucs": "audiorag.embedders.demucs_stems:Demucs"}
#: every stem name and its source
STEM_SOURCE = {"harmonic": "hpss", "percussive": "hpss",
               **{s: "demucs" for s in ("drums", "bass", "vocals", "other", "guitar", "piano")}}
STEMS = tuple(STEM_SOURCE)


@lru_cache(maxsize=8)
def _separator(source: str, options: tuple):
    target = SOURCES[source]
    if isinstance(target, str):
        module, _, cls = target.partition(":")
        try:
            target = getattr(importlib.import_module(module), cls)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] == "audiorag":
                raise
            from . import missing_dependency
            raise missing_dependency(f"--stems {source}", exc.name) from None
    try:
        return target(**dict(options))
    except TypeError:
        raise ParameterError(f"--stems {source} takes no option {', '.join(k for k, _ in options)}") from None


def separator(source: str, **options):
    """The separator of ``source`` (one per process and options: every stem embedder of it shares its model).

    >>> separator("hpss").separate(np.zeros(4096, np.float32), 22050)["percussive"].shape
    (4096,)
    """
    if source not in SOURCES:
        raise ParameterError(f"--stems must be one of {', '.join(SOURCES)}, got {source!r}")
    given = {k: str(Path(v).expanduser().resolve()) if isinstance(v, Path) else v
             for k, v in options.items() if v is not None}
    return _separator(source, tuple(sorted(given.items())))


def split_name(name: str) -> tuple[str, str | None]:
    """``"aisfx@percussive"`` → ``("aisfx", "percussive")``; a name without ``@`` has no stem."""
    inner, at, stem = name.partition("@")
    if at and stem not in STEMS:
        raise ParameterError(f"{name!r}: unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    return inner, (stem if at else None)


_TRACK = threading.local()


@contextmanager
def shared_separation(y: np.ndarray, sr: int):
    """Within the block, stem embedders given this track (resampled to their rate) separate it once per
    source, at ``sr``, and share the stems; each thread has its own block (the build decodes in threads).

    >>> from audiorag.embedders import get_embedder
    >>> y = np.random.default_rng(0).standard_normal(22050 * 3).astype(np.float32)
    >>> with shared_separation(y, 22050):
    ...     h = get_embedder("features45@harmonic").embed_track(y, [0.0], [3.0])
    ...     p = get_embedder("features45@percussive").embed_track(y, [0.0], [3.0])
    >>> h.shape, p.shape
    ((1, 45), (1, 45))
    """
    before = getattr(_TRACK, "now", None)
    _TRACK.now = (y, sr, {})
    try:
        yield
    finally:
        _TRACK.now = before


class StemEmbedder(Embedder):
    """``inner`` applied to the ``stem`` that ``source`` (a separator) gives; see the module docstring."""

    def __init__(self, inner: Embedder, stem: str, source=None):
        split_name(f"{inner.name}@{stem}")
        source = source or separator(STEM_SOURCE[stem])
        if stem not in source.known_stems:
            raise ParameterError(f"{source.name} gives no stem {stem!r}; it gives {', '.join(source.known_stems)}")
        super().__init__(**inner.params, **source.params)
        self.inner, self.stem, self.source = inner, stem, source
        self.name = f"{inner.name}@{stem}"
        self.sample_rate, self.dim, self.window = inner.sample_rate, inner.dim, inner.window
        self.standardise = inner.standardise

    def describe(self) -> dict:
        return {**super().describe(), "stem": self.stem, "stem_source": self.source.describe()}

    def weights_identity(self):
        return self.inner.weights_identity()

    def locate_weights(self):
        return self.inner.locate_weights()

    def versions(self) -> dict:
        return {**self.inner.versions(), **self.source.versions()}

    def stem_audio(self, y: np.ndarray) -> np.ndarray:
        """This stem of ``y`` (mono, at :attr:`sample_rate`): from the track's shared separation when ``y`` is
        the track of the enclosing :func:`shared_separation`, else separated on its own."""
        now = getattr(_TRACK, "now", None)
        if now is not None:
            track, sr, done = now
            if self.source not in done:
                done[self.source] = self.source.separate(track, sr)
            out = resample(self._pick(done[self.source]), sr, self.sample_rate)
            if len(out) == len(y):
                return out
        return self._pick(self.source.separate(y, self.sample_rate))

    def _pick(self, stems: dict) -> np.ndarray:
        if self.stem not in stems:
            raise ParameterError(f"{self.name}: {self.source.name} gives {', '.join(stems)}, not {self.stem!r}")
        return stems[self.stem]

    def embed(self, batch: np.ndarray) -> np.ndarray:
        return self.inner.embed(np.stack([self._pick(self.source.separate(w, self.sample_rate))
                                          for w in self.check_batch(batch)]))

    def embed_track(self, y: np.ndarray, starts, ends, *, batch_size: int = 32) -> np.ndarray:
        return self.inner.embed_track(self.stem_audio(y), starts, ends, batch_size=batch_size)


class StemModel(StemEmbedder):
    """A stem of a model embedder: its windows are prepared from the stem, its model runs as the inner's."""

    def __init__(self, inner: Embedder, stem: str, source=None):
        super().__init__(inner, stem, source)
        self.batch_windows = inner.batch_windows

    def prepare_track(self, y: np.ndarray, starts, ends) -> list:
        return self.inner.prepare_track(self.stem_audio(y), starts, ends)

    def run(self, prepared: list) -> dict:
        return {"vectors": self.inner.run(prepared)["vectors"]}


def stem_embedder(inner: Embedder, stem: str, source=None) -> StemEmbedder:
    """The stem embedder of ``inner`` (a model one keeps the pipeline's batched forward passes); ``source``:
    a separator, by default the one that gives ``stem`` with default options."""
    model = callable(getattr(inner, "prepare_track", None)) and callable(getattr(inner, "run", None))
    return (StemModel if model else StemEmbedder)(inner, stem, source)


def named_stem_embedder(name: str, **params) -> StemEmbedder:
    """``get_embedder("NAME@STEM", **params)``: the source's params (``demucs_model``, ``demucs_repo``) go to
    the separator, the others to the inner embedder."""
    from . import get_embedder
    inner, stem = split_name(name)
    source = STEM_SOURCE[stem]
    options = {k.removeprefix(f"{source}_"): params.pop(k) for k in list(params) if k.startswith(f"{source}_")}
    return stem_embedder(get_embedder(inner, **params), stem, separator(source, **options))


def with_stems(embedders: list, source: str | None, **options) -> list:
    """``embedders`` followed by each one's stems from ``source`` (``build --stems hpss``); ``None``: as given.
    ``options`` (``None`` values ignored) go to the separator: ``model`` and ``repo`` for ``demucs``, whose
    weights are located and loaded here (a missing model fails before any work).

    >>> from audiorag.embedders import get_embedder
    >>> [e.name for e in with_stems([get_embedder("features45")], "hpss")]
    ['features45', 'features45@harmonic', 'features45@percussive']
    """
    if source is None:
        given = [f"--demucs-{k}" for k, v in options.items() if v is not None]
        if given:
            raise ParameterError(f"{', '.join(given)} need --stems demucs")
        return list(embedders)
    sep = separator(source, **options)
    return [*embedders, *(stem_embedder(e, s, sep) for e in embedders if "@" not in e.name for s in sep.stems)]


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
        have = ", ".join(found) or f"none; build with --stems {STEM_SOURCE[stem]}"
        raise ParameterError(f"--stem {stem}: {len(found)} {stem} embeddings here ({have}); name one with --embedder")
    return found[0]
