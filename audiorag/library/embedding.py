"""One embedder configuration's vectors inside a library (``embeddings/<key>/``)."""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path

import numpy as np

from ..audio import resample
from ..embedders import Embedder, get_embedder, l2_normalise
from ..errors import IncompatibleLibraryError
from .store import damaged, read_json, read_npy, read_npz, write_json, write_npy

#: standardisation statistics are refitted on every growth of the library until they rest on this
#: many vectors, then frozen: vectors already stored (and indexed) stay as they are when tracks are added
STANDARDISATION_FROZEN_AFTER = 2_000
#: frozen statistics are refitted on every vector when the vectors have drifted past this: some feature's mean
#: moved by more than ``mean_shift`` of its fitted standard deviation, or its deviation grew or shrank by more than
#: the factor ``std_ratio`` (:func:`drift`; the last drift measured is kept in ``embedder.json``, key ``drift``)
DRIFT_BOUND = {"mean_shift": 0.25, "std_ratio": 1.25}
#: what an embedding's vectors can be (:attr:`Embedding.kind`)
KINDS = ("audio", "melody", "fused", "projected", "stem")


class Embedding:
    """Vectors, standardisation statistics and description of one embedder config.

    ``embedder.json`` holds the embedder's description plus:
    ``segmentation`` (must equal the library's), ``n_tracks`` / ``n_segments`` covered
    (a prefix of the library's tracks), ``missing_tracks`` (tracks whose embedding
    failed; their rows are zero and never indexed), and ``standardisation`` (mean, std).
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def key(self) -> str:
        return self.path.name

    @cached_property
    def meta(self) -> dict:
        return read_json(self.path / "embedder.json")

    def reload(self) -> Embedding:
        return Embedding(self.path)

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def n_segments(self) -> int:
        return int(self.meta.get("n_segments", 0))

    @cached_property
    def embedder(self) -> Embedder:
        """The embedder, instantiated from the stored params and checked against the description."""
        if "derived" in self.meta:  # computed from other embeddings: embeds with them (see .derived)
            return DerivedEmbedder(self)
        e = get_embedder(self.meta["name"], **self.meta["params"])
        if e.key != self.key or e.dim != self.dim:
            raise IncompatibleLibraryError(
                f"embeddings/{self.key}: the registered {self.meta['name']} now has key {e.key}, dim {e.dim}; "
                f"the stored vectors were made with dim {self.dim}. Re-embed with lib.embed().")
        return e

    def vectors(self) -> np.ndarray:
        """``float32[n_segments, dim]``, memory-mapped read-only."""
        return self._array("vectors.npy", self.dim)

    def raw(self) -> np.ndarray:
        return self._array("raw.npy", self.dim)

    @property
    def has_text(self) -> bool:
        """True when the embedder has a text tower (text queries become vectors in this space)."""
        return bool(self.meta.get("has_text", False))

    @property
    def tag_names(self) -> list[str]:
        """Names of the tag probabilities stored with the vectors (empty for non-taggers)."""
        return list(self.meta.get("tag_names") or [])

    @property
    def kind(self) -> str:
        """What the vectors are (one of :data:`KINDS`): ``"audio"`` (an embedder of the full mix; a tagger's
        also carry tag probabilities), ``"melody"`` (interval histograms, with pitch contours as its tags),
        ``"fused"`` / ``"projected"`` (derived from other embeddings), ``"stem"`` (of one stem, ``NAME@stem``)."""
        if self.meta.get("tags_are") == "contour":
            return "melody"
        if "derived" in self.meta:
            return {"fusion": "fused", "projection": "projected"}[self.meta["derived"]["kind"]]
        return "stem" if "@" in self.name else "audio"

    @property
    def is_tagger(self) -> bool:
        """True when the stored tags are tag probabilities (musicnn), not the melody embedder's contours."""
        return bool(self.tag_names) and self.kind != "melody"

    @property
    def is_primary(self) -> bool:
        """True for an embedding of the full mix in its own right (kind ``"audio"``): not derived from others
        (fusion, projection), not of a stem (``aisfx@percussive``), not melody contours. Only a primary
        embedding becomes a library's default on its own (:attr:`Library.default_embedding`)."""
        return self.kind == "audio"

    def tags(self) -> np.ndarray:
        """``float32[n_segments, n_tags]`` tag probabilities per segment, memory-mapped read-only."""
        return self._array("tags.npy", len(self.tag_names)) if self.tag_names else np.zeros((0, 0), np.float32)

    def _array(self, name: str, width: int) -> np.ndarray:
        """A stored array, memory-mapped; empty before the first vectors; missing afterwards is damage."""
        path = self.path / name
        if path.exists():
            return read_npy(path)
        if self.n_segments:
            raise damaged(path, "missing")
        return np.zeros((0, width), np.float32)

    def write_tags(self, tags: np.ndarray) -> None:
        write_npy(self.path / "tags.npy", np.ascontiguousarray(tags, dtype=np.float32))

    def valid_rows(self, segment_track_ids: np.ndarray, *, missing=None) -> np.ndarray:
        """Boolean mask of rows that hold a live track's real vector: not a failed track's zeros
        (``missing``, default the stored list), not a removed track's row (track id -1)."""
        ids = np.asarray(segment_track_ids)
        if missing is None:
            missing, ids = self.meta.get("missing_tracks", []), ids[: self.n_segments]
        return (ids >= 0) & ~np.isin(ids, missing)

    def postprocess(self, raw: np.ndarray) -> np.ndarray:
        """Raw embedder output → stored vector space (standardised if the embedder asks, then L2)."""
        raw = np.asarray(raw, dtype=np.float32)
        stats = self.meta.get("standardisation")
        if stats:
            raw = (raw - np.asarray(stats["mean"], np.float32)) / np.asarray(stats["std"], np.float32)
        return l2_normalise(raw)

    def write(self, raw: np.ndarray, meta: dict, valid: np.ndarray, *, fit: bool = True) -> None:
        """Store raw rows, fit standardisation on valid rows (until frozen, see
        :data:`STANDARDISATION_FROZEN_AFTER`; ``fit=False``: keep ``meta``'s, e.g. a sharded library's
        statistics over every shard), and write vectors + description (in that order)."""
        raw = np.ascontiguousarray(raw, dtype=np.float32)
        stats = meta.get("standardisation") or {}
        if fit and meta.get("standardise") and valid.any() and "shards" not in stats:  # shards: their library fits
            ref = raw[valid].astype(np.float64)
            frozen = stats.get("n_fitted", 0) >= STANDARDISATION_FROZEN_AFTER
            if frozen:
                meta["drift"] = drift(stats, len(ref), ref.sum(axis=0), (ref ** 2).sum(axis=0))
            if not frozen or meta["drift"]["past_bound"]:
                meta["standardisation"] = fitted(len(ref), ref.sum(axis=0), (ref ** 2).sum(axis=0))
        self.__dict__["meta"] = meta
        vectors = self.postprocess(raw)
        vectors[~valid] = 0.0
        write_npy(self.path / "raw.npy", raw)
        write_npy(self.path / "vectors.npy", vectors)
        write_json(self.path / "embedder.json", meta)


def fitted(n: int, total: np.ndarray, squares: np.ndarray) -> dict:
    """Standardisation statistics from the sums of ``n`` rows (``Σx``, ``Σx²``, float64): mean, std (1 where a
    feature is constant) and ``n_fitted``.

    >>> fitted(2, np.array([2.0, 4.0]), np.array([2.0, 8.0]))
    {'mean': [1.0, 2.0], 'std': [1.0, 1.0], 'n_fitted': 2}
    """
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean ** 2, 0.0))
    return {"mean": mean.tolist(), "std": np.where(std > 1e-8, std, 1.0).tolist(), "n_fitted": int(n)}


def drift(stats: dict, n: int, total: np.ndarray, squares: np.ndarray) -> dict:
    """How far the statistics of ``n`` rows (their sums) have moved from the fitted ``stats``: the largest mean
    shift in fitted standard deviations, the largest ratio of deviations (≥ 1, either way), and whether either
    is past :data:`DRIFT_BOUND`.

    >>> d = drift({"mean": [0.0], "std": [1.0], "n_fitted": 4}, 4, np.array([2.0]), np.array([5.0]))
    >>> d["mean_shift"], d["std_ratio"], d["past_bound"]
    (0.5, 1.0, True)
    """
    now = fitted(n, total, squares)
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    shift = float(np.max(np.abs(np.asarray(now["mean"]) - mean) / std))
    ratio = np.asarray(now["std"]) / std
    ratio = float(np.max(np.maximum(ratio, 1 / ratio)))
    return {"n": int(n), "n_fitted": int(stats["n_fitted"]), "mean_shift": round(shift, 6),
            "std_ratio": round(ratio, 6),
            "past_bound": shift > DRIFT_BOUND["mean_shift"] or ratio > DRIFT_BOUND["std_ratio"]}


def standardisation_id(emb) -> str:
    """Fingerprint of the embedding's standardisation statistics (they change every vector)."""
    return hashlib.sha256(repr(emb.meta.get("standardisation")).encode()).hexdigest()[:16]


def coverage(lib, emb) -> dict:
    """What an index covers: vector rows, standardisation, and the tracks left out (failed or removed)."""
    return {"n_rows": emb.n_segments, "standardisation": standardisation_id(emb),
            "excluded_tracks": sorted(int(t) for t in emb.meta.get("missing_tracks", [])),
            "removed_segments": int((lib.segments["track_id"].to_numpy()[: emb.n_segments] < 0).sum())}


# -- derived embeddings (fusion, projection; stored and followed by .derived) ----------------------
def sources(emb: Embedding) -> list[Embedding]:
    """The embeddings a derived embedding is computed from (all in the library)."""
    out = []
    for key in emb.meta["derived"]["sources"]:
        src = Embedding(emb.path.parent / key)
        if not (src.path / "embedder.json").exists():
            raise IncompatibleLibraryError(f"embeddings/{emb.key} is derived from {key}, which is not in the library")
        out.append(src)
    return out


def combine(emb: Embedding, parts: list[np.ndarray]) -> np.ndarray:
    """The derived raw rows from the sources' L2-normalised rows ``parts`` (one array per source)."""
    d = emb.meta["derived"]
    if d["kind"] == "fusion":
        return np.concatenate([w * np.asarray(p, np.float32) for w, p in zip(d["weights"], parts)], axis=1)
    z = read_npz(emb.path / "projection.npz")
    return (np.asarray(parts[0], np.float32) @ z["W"] + z["b"]).astype(np.float32)


class DerivedEmbedder(Embedder):
    """Embeds audio for a derived embedding: each source embeds it, then :func:`combine`."""

    def __init__(self, emb: Embedding):
        super().__init__(**emb.meta["params"])
        self.emb, self.sources = emb, sources(emb)
        self.name, self.dim = emb.name, emb.dim
        self.sample_rate = max(s.embedder.sample_rate for s in self.sources)
        self.has_text = emb.has_text

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """A fusion of text towers: each source's text vector, combined as its audio vectors are."""
        if not self.has_text:
            return super().embed_text(texts)
        return combine(self.emb, [s.postprocess(s.embedder.embed_text(texts)) for s in self.sources])

    @property
    def key(self) -> str:
        return self.emb.key

    def embed_track(self, y, starts, ends, *, batch_size: int = 32) -> np.ndarray:
        parts = [s.postprocess(s.embedder.embed_track(resample(y, self.sample_rate, s.embedder.sample_rate),
                                                      starts, ends)) for s in self.sources]
        return combine(self.emb, parts)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[1] / self.sample_rate
        return np.concatenate([self.embed_track(row, [0.0], [n]) for row in self.check_batch(batch)])
