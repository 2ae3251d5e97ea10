"""A sharded library served by a Ray cluster: one named actor per shard answers candidate requests.

Each shard gets one Ray actor (:class:`ShardServer`), named after the sharded library and the shard
(``audiorag-<digest>-shard-000`` in the ``audiorag`` namespace) and created once: a later query, a
server or another process connected to the same cluster finds it by name and reuses it (on a cluster
joined by address it is *detached*: it outlives the process that made it). The actor opens its shard
read-only (indexes memory-mapped, nothing settled or written) where ``shards.json`` places it
(:func:`audiorag.library.shards.ShardedLibrary.placement`: a node and, optionally, that node's own
copy of the shard), and answers ``search(queries, k)`` with its shard's local ids and scores.

The driver keeps the small tables (tracks, segments: the global view of
:class:`~audiorag.library.shards.ShardedLibrary`), resolves the query once, sends the query vectors to
every shard actor at once and merges their lists with :func:`audiorag.library.fanout.merge`, exactly
as the local fan-out does: the same hits, ids and scores.

Faults: an actor that dies during a call is restarted by Ray (``max_restarts``) and the call retried
(``max_task_retries``); the query then completes. A shard whose actor cannot answer (its files missing
on its node, its copy at another generation than the driver's view, its node gone, no answer within
``timeout`` seconds) is left out of that query and *named*: :func:`missing_shards` lists it for the
query that ran in this thread, and ``search()`` puts it in the hits' ``attrs["missing_shards"]``. The
next query asks for the actor again (a new one is made when the old one is gone).
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
import time

import numpy as np

from ..engines.ray import connect, fault_hook, require_ray
from ..errors import AudioragError
from . import Library
from .indexes import load_index

log = logging.getLogger(__name__)

NAMESPACE = "audiorag"
#: restarts of a shard actor that died (then its pending call is retried)
MAX_RESTARTS = 4
#: seconds a query waits for a shard before naming it missing
TIMEOUT = 60.0

_SEEN = threading.local()


class ShardServer:
    """The body of one shard actor: the shard opened read-only, its indexes loaded on first use.

    >>> ShardServer.__name__
    'ShardServer'
    """

    def __init__(self, path: str):
        self.path = path
        self.lib = Library.open(path, settle=False)  # read-only: a reader never settles a writer's leftovers
        self.indexes: dict = {}

    def search(self, key: str, name: str | None, queries: np.ndarray, k: int, generation: int):
        """``(scores, local ids)`` of the top-``k`` of ``queries`` in this shard's index ``name`` of ``key``."""
        self._at(generation)
        if (key, name) not in self.indexes:
            self.indexes[(key, name)] = load_index(self.lib, self.lib.embedding(key), name)
        index = self.indexes[(key, name)]
        return index.search(queries, min(k, index.ntotal))

    def run(self, fn, args: tuple, generation: int):
        """``fn(shard library, *args)`` on this shard: work a query needs from every shard besides the index
        search (e.g. :func:`audiorag.identify.identify`'s fingerprint lookups). ``fn`` is a module-level
        function of audiorag, sent by reference (every node has audiorag installed)."""
        self._at(generation)
        return fn(self.lib, *args)

    def _at(self, generation: int) -> None:
        """A call's start: the test fault, and this shard at the driver's ``generation`` (reloaded if behind)."""
        fault_hook()
        if self.lib.generation != generation:
            self.lib.reload()
            self.indexes = {}
            if self.lib.generation != generation:
                raise RuntimeError(f"{self.path} is at generation {self.lib.generation}, the query's view at "
                                   f"{generation}: copy the shard again (audiorag shards place)")

    def node(self) -> str:
        """The Ray node id this actor runs on."""
        import ray
        return ray.get_runtime_context().get_node_id()


class ShardCluster:
    """The shard actors of one sharded library, on the Ray cluster at ``address`` (see the module doc).

    ``address``: ``"auto"``, ``"HOST:PORT"``, or None for a local Ray on this machine (or the Ray this
    process already joined, e.g. a test cluster)."""

    def __init__(self, lib, address: str | None = None, *, timeout: float = TIMEOUT):
        self.ray = require_ray()
        connect(address)
        self.lib, self.address, self.timeout = lib, address, timeout
        digest = hashlib.sha256(str(lib.path.resolve()).encode()).hexdigest()[:12]
        self.names = [f"audiorag-{digest}-shard-{s:03d}" for s in range(lib.n)]
        self._actors: dict[int, object] = {}
        self._lock = threading.Lock()

    def actor(self, shard: int):
        """The named actor of ``shard``: found on the cluster, else created where the shard is placed."""
        with self._lock:
            if shard not in self._actors:
                self._actors[shard] = self._create(shard)
            return self._actors[shard]

    def _create(self, shard: int):
        ray = self.ray
        place = self.lib.placement(shard)
        opts = {"name": self.names[shard], "namespace": NAMESPACE, "get_if_exists": True, "num_cpus": 0,
                "max_restarts": MAX_RESTARTS, "max_task_retries": MAX_RESTARTS, "max_concurrency": 4}
        if self.address is not None:
            opts["lifetime"] = "detached"  # a later process (another CLI call) reuses it
        if place.get("node"):
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id(place["node"]), soft=False)
        else:
            opts["scheduling_strategy"] = "SPREAD"
        return ray.remote(ShardServer).options(**opts).remote(place["path"])

    def forget(self, shard: int) -> None:
        """Drop the handle of ``shard``'s actor (the next query looks it up or makes it again)."""
        with self._lock:
            self._actors.pop(shard, None)

    def search(self, shards: list[int], key: str, name: str | None, queries: np.ndarray, k: int) -> dict:
        """``{shard: (scores, local ids)}`` of the shards that answered; the others are noted missing."""
        return self.ask(shards, "search", key, name, queries, k)

    def run(self, shards: list[int], fn, *args) -> dict:
        """``{shard: fn(that shard's library, *args)}`` computed by the shard actors (:meth:`ShardServer.run`),
        for the shards that answered; the others are noted missing."""
        return self.ask(shards, "run", fn, args)

    def ask(self, shards: list[int], method: str, *args) -> dict:
        """``{shard: answer}`` of ``method(*args)`` on each shard's actor, all at once; a shard that does not
        answer is noted missing (see the module doc), never dropped silently."""
        held = {s for s in shards if s in self._actors}
        calls = {s: self._call(s, method, args) for s in shards}
        out = {}
        for s, ref in calls.items():
            try:
                out[s] = self._answer(ref)
            except self.ray.exceptions.RayActorError:
                if s not in held:  # made (or found) for this query and already dead: down
                    self._missing(s, sys.exc_info()[1])
                    continue
                self.forget(s)  # a handle held from before, to an actor gone since: look it up or make it, once
                try:
                    out[s] = self._answer(self._call(s, method, args))
                except Exception as exc:  # noqa: BLE001 - still down: named, not dropped
                    self._missing(s, exc)
            except Exception as exc:  # noqa: BLE001 - timed out, or failed: named, not dropped
                self._missing(s, exc)
        return out

    def _call(self, s: int, method: str, args: tuple):
        """The object ref of shard ``s``'s answer (its actor looked up or made first), or why there is none."""
        try:
            return getattr(self.actor(s), method).remote(*args, self.lib.shards[s].generation)
        except Exception as exc:  # noqa: BLE001 - an actor that cannot be placed (its node is not in the cluster)
            return exc

    def _answer(self, ref):
        if isinstance(ref, Exception):
            raise ref
        return self.ray.get(ref, timeout=self.timeout)

    def _missing(self, shard: int, exc: Exception) -> None:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("shard %d (%s) did not answer: %s", shard, self.names[shard], reason[:300])
        self.forget(shard)
        seen = getattr(_SEEN, "missing", None)
        if seen is not None:
            seen.add(shard)

    def nodes(self) -> dict[int, str]:
        """``{shard: node id}`` of the shard actors (making them if needed)."""
        return {s: self.ray.get(self.actor(s).node.remote(), timeout=self.timeout) for s in range(self.lib.n)}

    def stop(self, shards: list[int] | None = None) -> None:
        """Kill the shard actors of this library (``shards``: those only; a detached actor lives until then)."""
        shards = range(self.lib.n) if shards is None else shards
        for s in shards:
            try:
                self.ray.kill(self.ray.get_actor(self.names[s], namespace=NAMESPACE), no_restart=True)
            except ValueError:  # not running
                pass
            self.forget(s)
        deadline = time.monotonic() + self.timeout
        while any(self.running(s) for s in shards):  # a name is free once its actor is dead
            if time.monotonic() > deadline:
                raise TimeoutError(f"shard actors of {self.lib.path} still running {self.timeout:g} s after ray.kill")
            time.sleep(0.1)

    def running(self, shard: int) -> bool:
        """Whether the named actor of ``shard`` is alive on the cluster."""
        try:
            self.ray.get_actor(self.names[shard], namespace=NAMESPACE)
        except ValueError:
            return False
        return True


class ShardsMissing(AudioragError):
    """Shards of a sharded library opened with ``missing="error"`` did not answer a query: no partial answer.

    >>> str(ShardsMissing("lib", [2, 0])), ShardsMissing("lib", [2, 0]).shards
    ('lib: shard(s) 0, 2 did not answer, and partial answers are off (see the log for the reason)', [0, 2])
    """

    def __init__(self, path, shards):
        self.shards = sorted(int(s) for s in shards)
        super().__init__(f"{path}: shard(s) {', '.join(map(str, self.shards))} did not answer, and partial answers "
                         "are off (see the log for the reason)")


class watch:
    """Collect the shards that did not answer during the queries run inside this ``with`` (this thread).

    >>> with watch() as missing:
    ...     pass
    >>> sorted(missing)
    []
    """

    def __enter__(self) -> set:
        self.outer = getattr(_SEEN, "missing", None)
        _SEEN.missing = set()
        return _SEEN.missing

    def __exit__(self, *exc) -> None:
        if self.outer is not None:
            self.outer |= _SEEN.missing
        _SEEN.missing = self.outer


def node_id(node: str) -> str:
    """A Ray node id, or the address of a node, → the id of that live node (one line when none matches)."""
    import ray

    from ..errors import ParameterError
    alive = [n for n in ray.nodes() if n.get("Alive")]
    for n in alive:
        if node in (n["NodeID"], n.get("NodeManagerAddress"), n.get("NodeName")):
            return n["NodeID"]
    raise ParameterError(f"shards.json places a shard on node {node!r}, which is not a live node of the Ray cluster "
                         f"({len(alive)} live: {', '.join(n['NodeID'][:12] for n in alive)}…)")
