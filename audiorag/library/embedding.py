"""One embedder configuration's vectors inside a library (``embeddings/<key>/``)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from ..embedders import Embedder, get_embedder, l2_normalise
from ..errors import IncompatibleLibraryError
from .store import damaged, read_json, read_npy, write_json, write_npy

#: standardisation statistics are refitted on every growth of the library until they rest on this
#: many vectors, then frozen: vectors already stored (and indexed) stay as they are when tracks are added
STANDARDISATION_FROZEN_AFTER = 2_000


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
            from .derived import DerivedEmbedder
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
    def is_tagger(self) -> bool:
        """True when the stored tags are tag probabilities (musicnn), not the melody embedder's contours."""
        return bool(self.tag_names) and self.meta.get("tags_are") != "contour"

    @property
    def is_primary(self) -> bool:
        """True for an embedding of the full mix in its own right: not derived from others (fusion,
        projection), not of a stem (``aisfx@percussive``), not melody contours. Only a primary
        embedding becomes a library's default on its own (:attr:`Library.default_embedding`)."""
        return "derived" not in self.meta and "@" not in self.name and self.meta.get("tags_are") != "contour"

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

    def write(self, raw: np.ndarray, meta: dict, valid: np.ndarray) -> None:
        """Store raw rows, fit standardisation on valid rows (until frozen, see
        :data:`STANDARDISATION_FROZEN_AFTER`), and write vectors + description (in that order)."""
        raw = np.ascontiguousarray(raw, dtype=np.float32)
        fitted = (meta.get("standardisation") or {}).get("n_fitted", 0)
        if meta.get("standardise") and valid.any() and fitted < STANDARDISATION_FROZEN_AFTER:
            ref = raw[valid].astype(np.float64)
            std = ref.std(axis=0)
            meta["standardisation"] = {"mean": ref.mean(axis=0).tolist(),
                                       "std": np.where(std > 1e-8, std, 1.0).tolist(), "n_fitted": int(valid.sum())}
        self.__dict__["meta"] = meta
        vectors = self.postprocess(raw)
        vectors[~valid] = 0.0
        write_npy(self.path / "raw.npy", raw)
        write_npy(self.path / "vectors.npy", vectors)
        write_json(self.path / "embedder.json", meta)
