"""Work a query needs from each shard of a sharded library besides the index search (which
:mod:`audiorag.library.fanout` does): a function of one shard's :class:`~audiorag.Library` run on every
shard, in this process, or by the shard actors (:meth:`audiorag.library.cluster.ShardServer.run`) when
the sharded library was opened with a ``ray_address``. The caller merges the answers (with global ids).

A shard actor that does not answer is left out and named, as in a search
(:class:`audiorag.library.cluster.watch`, ``attrs["missing_shards"]`` through
:func:`audiorag.library.fanout.reports_missing`).

>>> import tempfile
>>> from audiorag.library.shards import ShardedLibrary
>>> lib = ShardedLibrary.create(tempfile.mkdtemp() + "/lib", 2, window=5, hop=2.5)
>>> each_shard(lib, lambda shard: len(shard.tracks))
{0: 0, 1: 0}
"""

from __future__ import annotations


def each_shard(lib, fn, *args, shards: list[int] | None = None) -> dict:
    """``{shard: fn(that shard's library, *args)}`` for ``shards`` (default: all) of the sharded library ``lib``.

    ``fn`` must be a module-level function of audiorag (Ray sends it by reference) whose arguments and
    result pickle; it runs where the shard is served: here, or in the shard's actor on a Ray cluster,
    where a shard that does not answer is missing from the result (and named, see the module doc).
    """
    shards = list(range(lib.n)) if shards is None else list(shards)
    if lib.cluster is not None:
        return lib.cluster.run(shards, fn, *args)
    return {s: fn(lib.shards[s], *args) for s in shards}

