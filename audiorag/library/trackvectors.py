"""Per-track vectors of an embedding (S4's track vectors): each live track's segment vectors pooled into one,
searched with a flat inner-product index for track-level similarity (``search(..., by="track", aggregate=...)``).

Two poolings, both of the stored (L2-normalised) segment vectors and L2-normalised again:

* ``mean`` — the centroid of the track's moments (S4: ``H_track = mean_i H_seg[i]``, then IndexFlatIP).
  A track that changes a lot gets a short centroid before normalisation: what it is *on average*.
* ``max`` — the element-wise maximum (max-pooling over time, as taggers pool frames): a dimension is
  high when any moment has it high.

They live in ``embeddings/<key>/tracks.npz`` (``track_ids``, ``mean``, ``max`` and the ``coverage`` they
were made from, as :func:`audiorag.library.embedding.coverage` states it), derived data kept up to date
with the indexes (:func:`audiorag.library.indexes.refresh` calls :func:`update` in the same commit):
an add appends the new tracks' rows, a remove drops the removed tracks' rows, a change of the
standardisation (which moves every vector) recomputes them all. A reader whose file does not match
the library (a library made before they existed) pools in memory and says so in the log; ``audiorag
check`` reports it and ``--repair`` writes it.

>>> v = np.array([[1, 0], [0, 1], [1, 0]], np.float32)
>>> ids, pooled = pool(v, np.array([7, 7, 9]), np.ones(3, bool))
>>> ids.tolist(), pooled["mean"].astype(float).round(3).tolist(), pooled["max"].astype(float).round(3).tolist()
([7, 9], [[0.707, 0.707], [1.0, 0.0]], [[0.707, 0.707], [1.0, 0.0]])
"""

from __future__ import annotations

import json
import logging

import faiss
import numpy as np

from ..embedders import l2_normalise
from ..errors import LibraryDamagedError
from .embedding import coverage
from .store import read_npz, write_npz

log = logging.getLogger(__name__)
POOLINGS = ("mean", "max")
FILE = "tracks.npz"
_CHUNK_ROWS = 65_536  # pooled this many segment rows at a time: a big library is never copied whole


def pool(vectors: np.ndarray, seg_track: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, dict]:
    """``(track_ids, {"mean": [n, dim], "max": [n, dim]})`` of the tracks of the rows where the boolean
    mask ``rows`` is set; a track's rows are contiguous (segments are appended per track, never moved).
    Each pooled vector is L2-normalised (see the module's doc)."""
    at = np.flatnonzero(rows)
    tracks = np.asarray(seg_track)[at]
    firsts = np.flatnonzero(np.r_[True, tracks[1:] != tracks[:-1]]) if len(at) else np.zeros(0, np.int64)
    dim = vectors.shape[1]
    out = {"mean": [np.zeros((0, dim), np.float32)], "max": [np.zeros((0, dim), np.float32)]}
    lo = 0
    while lo < len(firsts):  # whole tracks at a time, about _CHUNK_ROWS rows each
        hi = max(lo + 1, int(np.searchsorted(firsts, firsts[lo] + _CHUNK_ROWS)))
        end = firsts[hi] if hi < len(firsts) else len(at)
        x = np.asarray(vectors[at[firsts[lo]:end]], np.float32)
        starts = firsts[lo:hi] - firsts[lo]
        counts = np.diff(np.r_[starts, len(x)])[:, None]
        out["mean"].append(np.add.reduceat(x, starts, axis=0) / counts)
        out["max"].append(np.maximum.reduceat(x, starts, axis=0))
        lo = hi
    return tracks[firsts].astype(np.int64), {p: l2_normalise(np.concatenate(v)) for p, v in out.items()}


def pool_query(qv: np.ndarray, pooling: str) -> np.ndarray:
    """A query's window vectors ``[m, dim]`` pooled as tracks are (so a clip meets tracks as their peer).

    >>> pool_query(np.array([[1, 0], [0, 1]], np.float32), "max").astype(float).round(3).tolist()
    [0.707, 0.707]
    """
    return pool(qv, np.zeros(len(qv), np.int64), np.ones(len(qv), bool))[1][pooling][0]


def _stored(emb) -> dict | None:
    path = emb.path / FILE
    if not path.exists():
        return None
    z = read_npz(path)
    return {**z, "coverage": json.loads(str(z["coverage"]))}


def update(lib, emb) -> None:
    """Inside a change: bring ``embeddings/<key>/tracks.npz`` up to date with the library (see the module's
    doc); nothing to do when it is. The old file is extended only when it is the one committed (else it is
    recomputed: damage is never carried into a new generation)."""
    now = coverage(lib, emb)
    seg_track = lib.segments["track_id"].to_numpy()[: emb.n_segments]
    valid = emb.valid_rows(seg_track)
    try:
        old = _stored(emb)
        if old is not None:
            lib.verify(emb.path / FILE)
    except LibraryDamagedError as exc:
        log.warning("recomputing the track vectors of %s: %s", emb.key, exc)
        old = None
    if old is not None and old["coverage"] == now:
        return
    vectors = emb.vectors()
    if old is not None and old["coverage"].get("standardisation") == now["standardisation"] \
            and old["coverage"].get("n_rows", 0) <= now["n_rows"]:
        kept = np.isin(old["track_ids"], seg_track[valid])
        ids, pooled = pool(vectors, seg_track, valid & (np.arange(len(seg_track)) >= old["coverage"]["n_rows"]))
        ids = np.concatenate([old["track_ids"][kept], ids])
        pooled = {p: np.concatenate([old[p][kept], pooled[p]]) for p in POOLINGS}
    else:
        ids, pooled = pool(vectors, seg_track, valid)
    write_npz(emb.path / FILE, track_ids=ids, coverage=np.array(json.dumps(now)), **pooled)


def is_current(lib, emb) -> bool:
    """Whether the stored track vectors match the library (``audiorag check`` reports them otherwise)."""
    try:
        old = _stored(emb)
    except LibraryDamagedError:
        return False
    return old is not None and old["coverage"] == coverage(lib, emb)


class TrackIndex:
    """One pooling's track vectors in a flat inner-product index (cosine: the vectors are unit length);
    :attr:`track_ids` maps its rows to tracks."""

    def __init__(self, track_ids: np.ndarray, vectors: np.ndarray):
        self.track_ids = np.asarray(track_ids, np.int64)
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, rows)``, each ``[n_queries, k]`` (rows of :attr:`track_ids`, -1 past the end)."""
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def track_index(lib, emb, pooling: str) -> TrackIndex:
    """The ``pooling`` (``mean`` | ``max``) track index of ``emb``: from the stored track vectors when they
    match the library, else pooled in memory from the segment vectors (logged)."""
    old = _stored(emb)
    if old is not None and old["coverage"] == coverage(lib, emb):
        return TrackIndex(old["track_ids"], old[pooling])
    log.info("embeddings/%s: track vectors %s; pooling them in memory (audiorag check --repair stores them)",
             emb.key, "missing" if old is None else "out of date")
    seg_track = lib.segments["track_id"].to_numpy()[: emb.n_segments]
    ids, pooled = pool(emb.vectors(), seg_track, emb.valid_rows(seg_track))
    return TrackIndex(ids, pooled[pooling])
