"""The index of a sharded library (:mod:`audiorag.library.shards`): the query is resolved once on the
global view (a moment's vector from the shard owning its track, a clip or text embedded once), each
shard's own index is searched in a thread pool, and the lists are merged **exactly**: by score, ties
by global segment id. Flat shards therefore give the top-k of one Flat index over all the tracks, and
everything :func:`audiorag.search.search` builds on candidates (filters, exclusion, ``by="track"``,
sequence matching of long clips) runs unchanged on the merged candidates, with global ids.

Every query kind runs on the merged candidates with the code it runs on one library, because the view
(:class:`~audiorag.library.shards.ShardedLibrary`) shows the shards' per-segment data in global segment
order: the moments' descriptors (re-ranking by harmony, tempo, key and mood; ``recommend`` and its mood
inference; filters such as ``key="A minor"``, ``tempo>=100``, ``mood=calm``), the taggers' tags (tag-space
text queries), the melody contours (hum: the coarse stage through this fan-out, the fine alignment on the
candidates' contours) and every embedding's vectors (late fusion: each embedding's own fan-out proposes
candidates). Where candidates are re-ranked (re-ranking, ``recommend``, hum, late fusion), every shard is
asked for the whole candidate depth (``k × fan_out``, deepened as one index would be), never
``depth / N``: a shard may hold all of the best candidates, so the merged list is one library's and the
re-ranked hits are too. Not merged (refused in one line where asked): ``aggregate="mean" | "max"`` (the
track indexes are per shard).

>>> import numpy as np
>>> maps = [np.array([0, 2]), np.array([1, 3, 4])]  # shard 0's segments are global 0 and 2, ...
>>> merge([np.array([[.9, .5]]), np.array([[.9, .7]])], [np.array([[0, 1]]), np.array([[0, 2]])], maps, 3)
(array([[0.9, 0.9, 0.7]], dtype=float32), array([[0, 1, 4]]))
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..index import choose
from .cluster import ShardsMissing, watch
from .indexes import list_indexes, load_index
from .shards import ShardedLibrary


def open_index(lib, emb, name: str | None = None):
    """The index search and evaluation read: a :class:`FanoutIndex` over a sharded library's
    shards, else the library's own (:func:`audiorag.library.indexes.load_index`)."""
    if not isinstance(lib, ShardedLibrary):
        return load_index(lib, emb, name)
    if lib.cluster is not None:  # shard actors on Ray (audiorag.library.cluster)
        return RayFanoutIndex(lib.cluster, emb, name, [lib.to_global(s) for s in emb._shards])
    return FanoutIndex([load_index(lib.shards[s], e, name) for s, e in zip(emb._shards, emb.parts)],
                       [lib.to_global(s) for s in emb._shards], lib.n)


def reports_missing(fn):
    """Decorate a query function ``fn(lib, ...)`` returning a DataFrame: on a sharded library its result
    says which shards did not answer, in ``attrs["missing_shards"]`` (``[]``: all answered), or, when the
    library was opened with ``missing="error"``, it raises :class:`~audiorag.library.cluster.ShardsMissing`."""
    @functools.wraps(fn)
    def answer(lib, *args, **kwargs):
        if not isinstance(lib, ShardedLibrary):
            return fn(lib, *args, **kwargs)
        with watch() as missing:
            out = fn(lib, *args, **kwargs)
        if missing and lib.missing == "error":  # opened with missing="error": no partial answer
            raise ShardsMissing(lib.path, missing)
        out.attrs["missing_shards"] = sorted(missing)
        return out
    return answer


class FanoutIndex:
    """The shards' indexes searched as one, in parallel threads; ids and scores as one index over all
    the vectors would give (global segment ids). Quacks like :class:`audiorag.index.Index`."""

    def __init__(self, indexes: list, maps: list[np.ndarray], n: int):
        self.indexes, self.maps, self.n = indexes, maps, n
        first = indexes[0].sidecar
        self.sidecar = {**first, "n": self.ntotal, "shards": n,  # bytes: every shard's index file
                        "bytes": sum(i.sidecar.get("bytes") or 0 for i in indexes),
                        "factories": sorted({i.sidecar["factory"] for i in indexes})}
        self._pool = ThreadPoolExecutor(max_workers=len(indexes), thread_name_prefix="audiorag-fanout")

    @property
    def ntotal(self) -> int:
        return sum(i.ntotal for i in self.indexes)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, each ``[n_queries, k]``, merged from every shard's top-``k``."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        live = [(i, g) for i, g in zip(self.indexes, self.maps) if i.ntotal]
        found = list(self._pool.map(lambda pair: pair[0].search(queries, min(k, pair[0].ntotal)), live))
        return merge([f[0] for f in found], [f[1] for f in found], [g for _, g in live], k)

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)


class RayFanoutIndex:
    """The shards' indexes searched by their Ray actors (:mod:`audiorag.library.cluster`) and merged as
    :class:`FanoutIndex` merges them; quacks like an :class:`~audiorag.index.Index`
    (``search``, ``ntotal``, ``sidecar``)."""

    def __init__(self, cluster, emb, name: str | None, maps: list[np.ndarray]):
        self.cluster, self.key, self.maps = cluster, emb.key, maps
        self.shards = list(emb._shards)
        sidecars = [choose(list_indexes(e), name, what=f"embeddings/{e.key}") for e in emb.parts]
        self.name = sidecars[0]["name"]
        self.sizes = [int(c.get("n") or 0) for c in sidecars]
        self.sidecar = {**sidecars[0], "n": self.ntotal, "shards": cluster.lib.n, "ray": True,
                        "bytes": sum(c.get("bytes") or 0 for c in sidecars),
                        "factories": sorted({c["factory"] for c in sidecars})}

    @property
    def ntotal(self) -> int:
        return sum(self.sizes)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, global ids)``, each ``[n_queries, k]``, merged from every answering shard's top-``k``."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        live = [s for s, n in zip(self.shards, self.sizes) if n]
        found = self.cluster.search(live, self.key, self.name, queries, k)
        pos = {s: i for i, s in enumerate(self.shards)}
        got = [s for s in live if s in found]
        if not got:  # no shard answered: no hits (the missing shards are named by the caller)
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        return merge([found[s][0] for s in got], [found[s][1] for s in got],
                           [self.maps[pos[s]] for s in got], k)


def merge(scores: list, ids: list, maps: list, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-shard ``(scores, local ids)`` lists and each shard's local → global id map → the global
    top-``k``: score descending, then global segment id ascending; ``-1`` ids (``-inf`` scores) past the end."""
    m = scores[0].shape[0] if scores else 0
    if not scores:
        return np.full((m, k), -np.inf, np.float32), np.full((m, k), -1, np.int64)
    sc = np.concatenate([np.asarray(s, np.float32) for s in scores], axis=1)
    gid = np.concatenate([np.where(i >= 0, g[np.maximum(i, 0)], -1) for i, g in zip(ids, maps)], axis=1)
    sc = np.where(gid >= 0, sc, -np.inf)
    out_s = np.full((m, k), -np.inf, np.float32)
    out_i = np.full((m, k), -1, np.int64)
    for r in range(m):
        order = np.lexsort((np.where(gid[r] >= 0, gid[r], np.iinfo(np.int64).max), -sc[r]))[:k]
        keep = gid[r, order] >= 0
        out_s[r, : keep.sum()], out_i[r, : keep.sum()] = sc[r, order][keep], gid[r, order][keep]
    return out_s, out_i
