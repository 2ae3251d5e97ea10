"""The indexes of a library's embeddings: :mod:`audiorag.index` (arrays and directories) bound to the library.

An embedding's indexes live in its folder (``embeddings/<key>/index-<name>.faiss`` + ``.json``). Each
sidecar records what it covers (:func:`coverage`: vector rows, standardisation, tracks left out,
removed segments); an index opened when that no longer matches the library is refused, and
:func:`refresh` brings every index of an embedding up to date after tracks were added or removed.
"""

from __future__ import annotations

import logging

import numpy as np

from .. import index as ix
from ..errors import IncompatibleLibraryError, ParameterError
from . import trackvectors
from .embedding import coverage

log = logging.getLogger(__name__)


def build_index(lib, emb, factory: str = "Flat", *, name: str | None = None, max_memory: float | None = None,
                target_recall: float = 0.95, seed: int = 0, max_resident: float | None = None) -> dict:
    """Build, measure, save and return the sidecar of an index over ``emb``'s vectors in ``lib``
    (the rows of live tracks, under their segment ids); see :func:`audiorag.index.build_index`."""
    vectors = lib.vectors(emb.key)
    ids = np.flatnonzero(emb.valid_rows(lib.segments["track_id"].to_numpy()))
    return ix.build_index(emb.path, vectors, ids, factory, name=name, max_memory=max_memory,
                          target_recall=target_recall, seed=seed, max_resident=max_resident,
                          what=f"embeddings/{emb.key}", fields={"embedding": emb.key, **coverage(lib, emb)})


def list_indexes(emb) -> list[dict]:
    """The sidecars of ``emb``'s indexes."""
    return ix.list_indexes(emb.path)


def load_index(lib, emb, name: str | None = None, *, mmap: bool = True) -> ix.Index:
    """Open an index read-only (memory-mapped by default); refuses one built from other vectors."""
    sidecar = ix.choose(list_indexes(emb), name, what=f"embeddings/{emb.key}")
    if {k: sidecar.get(k) for k in ("n_rows", "standardisation", "removed_segments")} != \
            {k: v for k, v in coverage(lib, emb).items() if k != "excluded_tracks"}:
        raise IncompatibleLibraryError(f"index {sidecar['name']} of {emb.key} was built from other vectors; "
                                       f"rebuild it with lib.build_index({emb.name!r}, {sidecar['factory']!r})")
    return ix.open_index(emb.path, sidecar, lambda: lib.vectors(emb.key), mmap=mmap)


def refresh(lib, emb) -> None:
    """Bring every index of ``emb`` up to date with the library after tracks were added or removed.

    New rows are added and removed tracks' segments deleted in place (the file is rewritten,
    nothing is retrained); an index is rebuilt (same factory, re-tuned) only when its type
    cannot delete (HNSW) or the embedding's standardisation changed (which moves every vector).
    The per-track vectors (:mod:`.trackvectors`) follow in the same change.
    """
    trackvectors.update(lib, emb)
    now = coverage(lib, emb)
    for sidecar in list_indexes(emb):
        if all(sidecar.get(k) == v for k, v in now.items()):
            continue
        if sidecar.get("standardisation") != now["standardisation"]:
            _rebuild(lib, emb, sidecar, "the standardisation changed")
            continue
        try:
            lib.verify(emb.path / f"index-{sidecar['name']}.faiss")  # updated in place: from its committed content
            seg_tracks = lib.segments["track_id"].to_numpy()
            ix.update_index(emb.path, sidecar, lib.vectors(emb.key), emb.valid_rows(seg_tracks), seg_tracks, now)
        except ParameterError as exc:
            _rebuild(lib, emb, sidecar, str(exc))


def _rebuild(lib, emb, sidecar: dict, why: str) -> None:
    log.info("rebuilding index %s of %s: %s", sidecar["name"], emb.key, why)
    auto = sidecar.get("auto") or {}
    build_index(lib, emb, sidecar["factory"], name=sidecar["name"],
                target_recall=auto.get("target_recall", sidecar.get("quality", {}).get("target_recall", 0.95)))
