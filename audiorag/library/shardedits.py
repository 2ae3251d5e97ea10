"""What writes to a sharded library besides a build (:mod:`audiorag.library.shards`): derived embeddings
(``fuse``, ``project``) and track columns (``analyse --write-column``). Each shard is an ordinary library
and gets its own commit; what is computed over the whole corpus is computed once, on the sharded view.

- :func:`fuse` — early fusion is per segment (the sources' vectors of that segment only), so each shard
  stores its own rows with :func:`audiorag.library.derived.fuse`: the same key, vectors and indexes as
  one library holding every track; the fan-out searches it as any other embedding.
- :func:`project` — the projection is *fitted once* on the labelled segments of every shard (the sharded
  view, in the corpus's order: :func:`audiorag.library.derived.fit`), then the same map is stored in each
  shard (:func:`audiorag.library.derived.store`), which applies it to its own rows and follows its adds.
- :func:`set_track_column` — global track ids routed to their shards' local ids.

Shards that hold no track yet have no embeddings to derive from and are skipped: a shard that gets its
first tracks later lacks the derived embedding until ``fuse`` / ``project`` runs again.
"""

from __future__ import annotations

from . import derived
from .shards import ShardedLibrary, split_id


def fuse(lib, embedders, *, weights=None, indexes=("Flat",)) -> str:
    """:func:`audiorag.library.derived.fuse` on a library or on every filled shard of a sharded one; its key."""
    if not isinstance(lib, ShardedLibrary):
        return derived.fuse(lib, embedders, weights=weights, indexes=indexes)
    keys = {derived.fuse(shard, embedders, weights=weights, indexes=indexes) for shard in _filled(lib)}
    lib.reload()
    return keys.pop()


def project(lib, embedder, *, label: str, method: str = "lda", train_tracks=None, seed: int = 0,
            provenance: dict | None = None, indexes=("Flat",)) -> str:
    """:func:`audiorag.library.derived.project` on a library, or on a sharded one: fitted once over every
    shard's labelled segments (``train_tracks``: global ids), the same map stored in each filled shard."""
    if not isinstance(lib, ShardedLibrary):
        return derived.project(lib, embedder, label=label, method=method, train_tracks=train_tracks, seed=seed,
                               provenance=provenance, indexes=indexes)
    meta, W, b = derived.fit(lib, embedder, label=label, method=method, train_tracks=train_tracks, seed=seed,
                             provenance=provenance)
    keys = {derived.store(shard, meta, indexes, projection=(W, b)) for shard in _filled(lib)}
    lib.reload()
    return keys.pop()


def set_track_column(lib, name: str, values: dict) -> None:
    """:meth:`audiorag.Library.set_track_column` on a library, or on each shard of a sharded one (``values``
    by global track id; each shard stores its own tracks' values)."""
    if not isinstance(lib, ShardedLibrary):
        lib.set_track_column(name, values)
        return
    for s, shard in enumerate(lib.shards):
        shard.set_track_column(name, {int(split_id(g, lib.n)[0]): v for g, v in values.items() if g % lib.n == s})
    lib.reload()


def _filled(lib: ShardedLibrary) -> list:
    """The shards holding tracks (an empty shard has no embeddings to derive from)."""
    return [shard for shard in lib.shards if len(shard.tracks)]
