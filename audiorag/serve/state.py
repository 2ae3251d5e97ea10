"""What a server process keeps between requests: the library (opened once, moved to each new
generation a build commits) and the bounded pool that decodes and embeds uploads."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from ..library import Library
from ..library.shards import open_library


class Libraries:
    """The served library at its latest committed generation.

    Each request takes :meth:`latest` once and reads only that object: a build that commits
    meanwhile gives the *next* requests a newly opened :class:`~audiorag.Library`, while the
    ones in flight keep the generation they pinned (it is not deleted until they let it go).
    ``prepare(lib)`` fills a new generation's caches before any request gets it.

    >>> import tempfile
    >>> lib = Library.create(tempfile.mkdtemp(), window=2, hop=1)
    >>> libs = Libraries(lib.path)
    >>> before = libs.current()
    >>> lib.set_track_column("mood", {})
    >>> libs.current() is before, libs.current().generation == before.generation + 1
    (False, True)
    """

    def __init__(self, path, *, ray_address: str | None = None, prepare=None, missing: str = "partial"):
        self._ray = ray_address  # a sharded library: its shard actors on Ray (docs/cluster.md)
        self._missing = missing  # "error": a query whose shards did not all answer raises ShardsMissing (503)
        self._prepare = prepare or (lambda lib: None)
        self._lib = open_library(path, ray_address=ray_address, missing=missing)  # a library, or a sharded one
        self._lock = threading.Lock()
        self._opening: asyncio.Future | None = None

    def current(self) -> Library:
        """The library at the committed generation (reopened, in this thread, when ``CURRENT`` moved on)."""
        lib = self._lib
        if lib.store.generation != lib.generation:  # reads the small CURRENT file: microseconds
            lib = self._open()
        return lib

    async def latest(self) -> Library:
        """:meth:`current` for a request on the event loop: a newly committed generation is opened and
        prepared in a thread, once, while the requests in flight go on with theirs (opening it on the loop
        stalled every one of them for 10–50 ms, each commit of a build); requests that start meanwhile wait
        for it."""
        lib = self._lib
        if lib.store.generation == lib.generation:
            return lib
        if self._opening is None:
            self._opening = asyncio.ensure_future(asyncio.to_thread(self._open))
            self._opening.add_done_callback(self._opened)
        return await asyncio.shield(self._opening)

    def _open(self) -> Library:
        with self._lock:
            if self._lib.store.generation != self._lib.generation:
                lib = open_library(self._lib.path, ray_address=self._ray, missing=self._missing)
                self._prepare(lib)
                self._lib = lib
            return self._lib

    def _opened(self, future: asyncio.Future) -> None:
        self._opening = None  # the next commit opens anew; a failure (a damaged library) is tried again


class Busy(Exception):
    """More requests wait for the pool than it may queue."""


class Pool:
    """A thread pool sized to the cores for the expensive part of requests (decode, embed and
    search of uploads, text embedding, audio encoding), with a bounded queue in front
    (:class:`Busy` beyond it): cheap requests (moments, tracks, stats) never wait behind a burst
    of uploads. A request that times out stops waiting; work already started finishes unseen."""

    def __init__(self, threads: int, queue: int):
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="audiorag-serve")
        self.slots = threads + queue
        self._admitted = 0

    async def run(self, fn, *args):
        """``fn(*args)`` in the pool; raises :class:`Busy` at once when the queue is full."""
        if self._admitted >= self.slots:
            raise Busy(f"{self._admitted} requests are being processed or wait; try again shortly")
        self._admitted += 1  # only the event loop's thread counts: no lock needed
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        finally:
            self._admitted -= 1

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
