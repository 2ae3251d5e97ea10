"""A sharded library: one directory holding ``shards.json`` and N shard directories, each a normal
:class:`~audiorag.Library` with its own segments, embeddings and indexes.

Routing: a file goes to the shard that already holds its path (an edited file replaces its own
track), else to ``int(sha256(file bytes)[:16], 16) % N``: the same bytes land in the same shard on
every run and re-add, where the shard's own duplicate check skips them.

Ids: a shard's local track ids are interleaved into global ones, ``global = local * N + shard``, so
they never change when a shard grows and ``global % N`` is the owning shard. Global segment ids are
the rows of the view (segments ordered by global track id, then time). The read side of
:class:`ShardedLibrary` shows the whole corpus with global ids (``tracks``, ``segments``,
``embedding``, ``vectors``), so search and evaluation run on it unchanged; the index is a fan-out
over the shards' indexes (:mod:`audiorag.library.fanout`), searched in threads or, opened with a
``ray_address``, by one Ray actor per shard (:mod:`audiorag.library.cluster`; ``shards.json`` records
where each is placed). Standardised embeddings (``features45``) get one set of statistics over every
shard (:meth:`ShardedLibrary.standardise`).

>>> split_id(global_id(5, 3, 4), 4)
(5, 3)
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import IncompatibleLibraryError, LibraryNotFoundError, ParameterError
from ..io import file_sha256
from . import Library
from .store import read_json, write_json

log = logging.getLogger(__name__)
SHARDS_FILE = "shards.json"
FORMAT_VERSION = 1
ROUTING = "path of a file already present, else int(sha256(file bytes)[:16], 16) % n"


def is_sharded(path) -> bool:
    """Whether ``path`` holds a sharded library."""
    return (Path(path) / SHARDS_FILE).exists()


def global_id(local, shard, n: int):
    """A shard's local track or segment id → the global one (works on arrays)."""
    return local * n + shard


def split_id(gid, n: int):
    """A global id → ``(local id, shard)``."""
    return gid // n, gid % n


def refuse(path: Path) -> None:
    """The one-line error of a command that works on single libraries only."""
    meta = read_json(Path(path) / SHARDS_FILE)
    dirs = [str(Path(path) / d) for d in meta["shards"]]
    raise IncompatibleLibraryError(
        f"{path} is a sharded library ({meta['n']} shards); this command works on its shards: "
        f"{dirs[0]} … {dirs[-1]} (build, search, info, eval and serve take the sharded library itself)")


def open_library(path, *, ray_address: str | None = None, missing: str = "partial", **kw):
    """A :class:`ShardedLibrary` or a :class:`~audiorag.Library`, whichever is at ``path``; ``ray_address``
    (a sharded library only): search it through shard actors on that Ray cluster (docs/cluster.md);
    ``missing``: see :meth:`ShardedLibrary.open` (a library has no shards to miss)."""
    if is_sharded(path):
        return ShardedLibrary.open(path, ray_address=ray_address, missing=missing)
    if ray_address is not None:
        raise ParameterError(f"--ray-address: {path} is a library without shards; Ray serves sharded libraries "
                             "(build --shards N)")
    return Library.open(path, **kw)


class _Generation:
    """The shards' committed generations (``serve`` reopens when they move on)."""

    def __init__(self, shards):
        self._shards = shards

    @property
    def generation(self) -> int:
        return sum(s.store.generation for s in self._shards)


class ShardedLibrary:
    """N libraries searched as one. Create with :meth:`create`, fill with :meth:`add`, search with
    :func:`audiorag.search.search` as a library.

    >>> import tempfile
    >>> lib = ShardedLibrary.create(tempfile.mkdtemp() + "/lib", 3, window=5, hop=2.5)
    >>> lib.n, [p.name for p in lib.paths]
    (3, ['shard-000', 'shard-001', 'shard-002'])
    """

    def __init__(self, path: Path, meta: dict):
        self.path = Path(path)
        self.meta = meta
        self.n = int(meta["n"])
        self.paths = [self.path / d for d in meta["shards"]]
        self.shards = [Library.open(p) for p in self.paths]
        self.segmentation = self.shards[0].segmentation
        self.store = _Generation(self.shards)
        self._cache: dict = {}
        self.cluster = None  # the shard actors answering its searches (open with ray_address)
        self.missing = "partial"  # what a query whose shards did not all answer gives (see open)

    @classmethod
    def create(cls, path, n: int, *, window: float = 10.0, hop: float = 2.0, tail: str = "keep-short",
               dataset: str | None = None, exist_ok: bool = False) -> ShardedLibrary:
        """Create ``n`` empty shards (or, with ``exist_ok``, open the sharded library, which must have ``n``)."""
        path = Path(path)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ParameterError(f"--shards must be an integer >= 1, got {n!r}")
        if (path / "library.json").exists():
            raise ParameterError(f"{path}: a library without shards is here; shard into another directory")
        if is_sharded(path):
            if not exist_ok:
                raise ParameterError(f"{path}: a sharded library already exists here")
            lib = cls.open(path)
            if lib.n != n:
                raise IncompatibleLibraryError(f"{path}: a sharded library of {lib.n} shards, asked for {n}; "
                                               "the number of shards is fixed when it is created")
            for shard in lib.paths:
                Library.create(shard, window=window, hop=hop, tail=tail, exist_ok=True).close()
            return lib
        dirs = [f"shard-{s:03d}" for s in range(n)]
        for d in dirs:
            Library.create(path / d, window=window, hop=hop, tail=tail, dataset=dataset, exist_ok=True).close()
        write_json(path / SHARDS_FILE, {"format_version": FORMAT_VERSION, "n": n, "routing": ROUTING,
                                        "ids": "global = local * n + shard", "dataset": dataset, "shards": dirs})
        return cls.open(path)

    @classmethod
    def open(cls, path, *, ray_address: str | None = None, timeout: float | None = None,
             missing: str = "partial") -> ShardedLibrary:
        """Open the sharded library at ``path``. With ``ray_address`` (``"auto"``, ``"HOST:PORT"``, or
        ``"local"``: a Ray on this machine, or the one this process already joined) its searches go to one
        Ray actor per shard (:mod:`audiorag.library.cluster`; ``timeout``: seconds to wait for a shard).
        ``missing``: when shards do not answer a query, ``"partial"`` answers from the others and names
        them (``attrs["missing_shards"]``); ``"error"`` raises
        :class:`~audiorag.library.cluster.ShardsMissing` naming them instead."""
        if missing not in ("partial", "error"):
            raise ParameterError(f"missing must be 'partial' or 'error', got {missing!r}")
        path = Path(path)
        if not is_sharded(path):
            raise LibraryNotFoundError(f"{path}: no sharded library here ({SHARDS_FILE} missing)")
        meta = read_json(path / SHARDS_FILE)
        if meta.get("format_version") != FORMAT_VERSION or len(meta.get("shards", [])) != meta.get("n"):
            raise IncompatibleLibraryError(f"{path / SHARDS_FILE}: format {meta.get('format_version')} with "
                                           f"{len(meta.get('shards', []))} shard directories for n={meta.get('n')}; "
                                           f"this audiorag reads format {FORMAT_VERSION}")
        lib = cls(path, meta)
        lib.missing = missing
        if ray_address is not None:
            from .cluster import ShardCluster
            lib.cluster = ShardCluster(lib, None if ray_address == "local" else ray_address,
                                       **({"timeout": timeout} if timeout else {}))
        return lib

    # -- where each shard is served ---------------------------------------------------------
    def placement(self, shard: int) -> dict:
        """Where ``shard``'s actor runs and what it opens: ``{"node": Ray node id or address, or None (any
        node: the shard is on shared storage), "path": the shard directory as that node sees it}``."""
        place = self.meta.get("placement", {}).get(self.meta["shards"][shard], {})
        return {"node": place.get("node"), "path": place.get("path") or str(self.paths[shard].resolve())}

    def place(self, shard: int, *, node: str | None = None, path: str | None = None) -> dict:
        """Record in ``shards.json`` where ``shard`` is served: on ``node`` (a Ray node id or address; None:
        any node) from ``path`` (that node's copy of the shard; None: the shard directory itself). Returns
        the placement; the shard's actor is made there on the next query (stop the old one first:
        :meth:`audiorag.library.cluster.ShardCluster.stop`)."""
        if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < self.n:
            raise ParameterError(f"--shard must be 0..{self.n - 1}, got {shard!r}")
        placement = dict(self.meta.get("placement", {}))
        entry = {k: v for k, v in (("node", node), ("path", str(path) if path else None)) if v}
        if entry:
            placement[self.meta["shards"][shard]] = entry
        else:
            placement.pop(self.meta["shards"][shard], None)
        self.meta = {**self.meta, "placement": placement}
        write_json(self.path / SHARDS_FILE, self.meta)
        return self.placement(shard)

    # -- building ---------------------------------------------------------------------------
    def route(self, sources) -> list[list]:
        """Split ``sources`` (TrackSource items) into one list per shard (see the module doc)."""
        from ..io import encode_path
        owner = {uri: s for s, lib in enumerate(self.shards) for uri in lib.tracks["uri"]}
        parts: list[list] = [[] for _ in range(self.n)]
        for src in sources:
            shard = owner.get(encode_path(src.uri))
            if shard is None:
                try:
                    shard = int(file_sha256(src.uri).split(":")[1][:16], 16) % self.n
                except OSError:
                    shard = 0  # unreadable: shard 0 records the failure
            parts[shard].append(src)
        return parts

    def add(self, source, *, embedders=None, indexes=("Flat",), workers: int | None = None, parallel: bool = True,
            max_memory: float | None = None, max_resident: float | None = None, target_recall: float = 0.95,
            fingerprint: bool = False, **engine) -> list[dict]:
        """Route ``source``'s files to the shards, add and index each shard (``parallel``: one process
        per shard, the ``workers`` cores split between them), and return one report per shard.
        ``engine`` (e.g. ``engine="ray"``) is passed on to each shard's :meth:`Library.add`.
        Re-running resumes each shard (each is a crash-safe library)."""
        from ..datasets import Dataset, resolve
        dataset = resolve(source) if isinstance(source, (str, os.PathLike)) else source
        sources = list(dataset.sources()) if isinstance(dataset, Dataset) else list(dataset)
        parts = self.route(sources)
        specs = [(e.name, e.params) for e in embedders or []]  # a loaded model does not pickle: rebuilt there
        budget = {"max_memory": max_memory, "target_recall": target_recall,
                  **({"max_resident": max_resident} if max_resident else {})}
        jobs = [(str(p), part, specs, list(indexes), budget, fingerprint, engine)
                for p, part in zip(self.paths, parts)]
        cores = workers or os.cpu_count() or 1
        procs = max(1, min(self.n, cores)) if parallel else 1
        each = max(1, cores // procs)
        if not parallel:
            reports = [_build_shard(*job, each) for job in jobs]
        else:
            with ProcessPoolExecutor(procs, mp_context=get_context("spawn")) as pool:
                reports = list(pool.map(_build_shard, *zip(*jobs), [each] * len(jobs)))
        self.standardise()
        return reports

    def standardise(self) -> list[str]:
        """Give each standardised embedding (``features45``) one set of statistics over every shard, as one
        library holding every track would fit: per-shard sums of the valid raw rows (n, Σx, Σx²) merged into
        the mean and standard deviation, then each shard's vectors rewritten with them (``fit=False``) and its
        indexes brought up to date, one commit per shard. As in a library, the statistics are refitted on
        every growth until they rest on :data:`~audiorag.library.embedding.STANDARDISATION_FROZEN_AFTER`
        vectors, then frozen (a shard's later adds use them unchanged) until the vectors drift past
        :data:`~audiorag.library.embedding.DRIFT_BOUND`, when they are refitted on every vector. Runs after
        every :meth:`add`; returns the keys re-standardised. The merged counts and the last drift measured are
        kept in ``shards.json``."""
        from .embedding import STANDARDISATION_FROZEN_AFTER, drift, fitted
        self.reload()  # what the builds committed
        filled = self._filled()
        keys = sorted({e.key for s in filled for e in self.shards[s].embeddings() if e.meta.get("standardise")})
        done = []
        for key in keys:
            stats = [self.shards[s].embedding(key).meta.get("standardisation") or {} for s in filled]
            agreed = stats[0].get("shards") == self.n and all(st == stats[0] for st in stats)
            sums = [_sums(self.shards[s], key) for s in filled]
            n = sum(x[0] for x in sums)
            if not n:
                continue
            total, squares = sum(x[1] for x in sums), sum(x[2] for x in sums)
            counts = {"n_fitted": int(n), "per_shard": [int(x[0]) for x in sums]}
            if agreed and stats[0].get("n_fitted", 0) >= STANDARDISATION_FROZEN_AFTER:  # frozen over every shard
                moved = drift(stats[0], n, total, squares)
                if not moved["past_bound"]:  # kept frozen; the drift recorded
                    self._record_standardisation(key, {**self.meta.get("standardisation", {}).get(key, {}),
                                                       "drift": moved})
                    continue
                counts["drift"] = moved
            merged = {**fitted(n, total, squares), "shards": self.n}
            if all(st == merged for st in stats):
                continue  # nothing added since: already standardised over every shard
            for s in filled:
                _restandardise(self.paths[s], key, merged)
            self._record_standardisation(key, counts)
            done.append(key)
        if done:
            self.reload()
        return done

    def _record_standardisation(self, key: str, record: dict) -> None:
        """Keep ``key``'s standardisation counts (and last drift) in ``shards.json``."""
        if self.meta.get("standardisation", {}).get(key) != record:
            self.meta = {**self.meta, "standardisation": {**self.meta.get("standardisation", {}), key: record}}
            write_json(self.path / SHARDS_FILE, self.meta)

    # -- the corpus as one library, global ids ----------------------------------------------
    @property
    def data(self) -> Path:
        """A name for what this object reads (the shards' generations); the search cache keys on it."""
        # served by Ray: another index (bound to this object's actors and placement), so another cache entry
        ray = f"@ray{id(self.cluster)}" if self.cluster is not None else ""
        return self.path / ("@" + "-".join(str(s.generation) for s in self.shards) + ray)

    @property
    def generation(self) -> int:
        """The sum of the shards' generations: it grows with every commit to any shard."""
        return sum(s.generation for s in self.shards)

    def reload(self) -> ShardedLibrary:
        for s in self.shards:
            s.reload()
        self._cache = {}
        return self

    def close(self) -> None:
        for s in self.shards:
            s.close()

    @property
    def tracks(self) -> pd.DataFrame:
        """Every shard's tracks, ``track_id`` global, in global id order."""
        if "tracks" not in self._cache:
            parts = [lib.tracks.assign(track_id=global_id(lib.tracks["track_id"].to_numpy(), s, self.n))
                     for s, lib in enumerate(self.shards)]
            out = pd.concat(parts, ignore_index=True) if parts else self.shards[0].tracks
            self._cache["tracks"] = out.sort_values("track_id", kind="stable").reset_index(drop=True)
        return self._cache["tracks"]

    @property
    def segments(self) -> pd.DataFrame:
        """Every shard's live segments, ordered by global track id then time (each track's segments
        contiguous, as in a library); ``segment_id`` is the row. Segment ids are positions in this
        view (they move when a shard changes); track ids are the stable ones."""
        if "segments" not in self._cache:
            parts = []
            for s, lib in enumerate(self.shards):
                seg = lib.segments
                seg = seg[seg["track_id"] >= 0]
                parts.append(pd.DataFrame({"track_id": global_id(seg["track_id"].to_numpy(), s, self.n),
                                           "start": seg["start"].to_numpy(), "end": seg["end"].to_numpy(),
                                           "shard": s, "local": seg["segment_id"].to_numpy()}))
            rows = pd.concat(parts, ignore_index=True).sort_values(["track_id", "local"], kind="stable")
            rows = rows.reset_index(drop=True)
            to_global = []  # built whole, then published: threads of a server may ask at the same time
            for s, lib in enumerate(self.shards):
                m = np.full(len(lib.segments), -1, np.int64)
                mine = np.flatnonzero(rows["shard"].to_numpy() == s)
                m[rows["local"].to_numpy()[mine]] = mine
                to_global.append(m)
            self._cache["rows"] = (rows["shard"].to_numpy(), rows["local"].to_numpy())
            self._cache["to_global"] = to_global
            self._cache["segments"] = pd.DataFrame({"segment_id": np.arange(len(rows), dtype=np.int64),
                                                    "track_id": rows["track_id"].to_numpy(np.int64),
                                                    "start": rows["start"].to_numpy(), "end": rows["end"].to_numpy()})
        return self._cache["segments"]

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(shard, local segment id)`` of every global segment id."""
        _ = self.segments
        return self._cache["rows"]

    def to_global(self, shard: int) -> np.ndarray:
        """A shard's segment ids → global segment ids (-1: a removed segment)."""
        _ = self.segments
        return self._cache["to_global"][shard]

    def embeddings(self) -> list:
        keys = [{e.key for e in self.shards[s].embeddings()} for s in self._filled()]
        common = sorted(set.intersection(*keys)) if keys else []
        return [self.embedding(k) for k in common]

    def embedding(self, ref=None) -> ShardedEmbedding:
        """The embedding ``ref`` of every shard, seen as one (see :meth:`Library.embedding`)."""
        key = ("embedding", getattr(ref, "key", ref))
        if key not in self._cache:
            filled = self._filled()
            self._cache[key] = ShardedEmbedding(self, [self.shards[s].embedding(ref) for s in filled], filled)
        return self._cache[key]

    def vectors(self, embedder=None):
        return self.embedding(embedder).vectors()

    def errors(self) -> pd.DataFrame:
        return pd.concat([lib.errors() for lib in self.shards], ignore_index=True)

    # -- the shards' per-segment data in view order: descriptors, tags, melody contours ----------
    # The same readers as a library's, on the view's embeddings and global segment ids.
    tagger = Library.tagger
    tags = Library.tags
    descriptors = Library.descriptors  # audiorag.library.descriptors reads a view through per_segment()

    def per_segment(self, name: str, read):
        """``read(shard)`` (an array, a dict of arrays, or a table with one row per segment of that shard)
        of every shard, in the view's segment order: row ``i`` is global segment ``i``. Built on first use
        and kept until :meth:`reload`, like :attr:`segments`. Arrays stay in the shards (:class:`ShardRows`
        reads the rows asked for); a table is gathered into one, indexed by global ``segment_id``.

        >>> import tempfile
        >>> lib = ShardedLibrary.create(tempfile.mkdtemp() + "/lib", 2)
        >>> lib.per_segment("n", lambda shard: np.zeros(len(shard.segments))).shape
        (0,)
        """
        key = ("per_segment", name)
        if key not in self._cache:
            self._cache[key] = self._gather([read(lib) for lib in self.shards])
        return self._cache[key]

    def _gather(self, parts: list):
        """Every shard's part (row ``j`` = its local segment ``j``) → the view's rows (see :meth:`per_segment`)."""
        shard, local = self.rows()
        first = parts[0]
        if isinstance(first, dict):
            return {a: self._gather([p[a] for p in parts]) for a in first}
        if isinstance(first, pd.DataFrame):
            offsets = np.cumsum([0] + [len(p) for p in parts])[:-1]
            whole = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
            out = whole.iloc[offsets[shard] + local].reset_index(drop=True)
            out.index = pd.Index(np.arange(len(shard)), name=first.index.name)
            return out
        return ShardRows(parts, list(range(self.n)), shard, local)

    def _filled(self) -> list[int]:
        """The shards holding tracks (an empty shard has no embeddings yet)."""
        return [s for s, lib in enumerate(self.shards) if len(lib.tracks)] or [0]

    def info(self, *, memory: bool = False) -> dict:
        """A summary: the shards' counts and their embeddings and indexes."""
        shards = [lib.info(memory=memory) for lib in self.shards]
        return {"path": str(self.path), "n_shards": self.n, "routing": self.meta["routing"], "ids": self.meta["ids"],
                "dataset": self.meta.get("dataset"), "segmentation": self.segmentation.to_dict(),
                "tracks": sum(d["tracks"] for d in shards), "segments": sum(d["segments"] for d in shards),
                "hours": round(sum(d["hours"] for d in shards), 3), "errors": sum(d["errors"] for d in shards),
                "generation": self.generation, "embeddings": _merged_embeddings(shards), "shards": shards}


def _merged_embeddings(shards: list[dict]) -> list[dict]:
    """The embeddings every filled shard has, their vectors and indexes' sizes summed."""
    filled = [d for d in shards if d["tracks"]] or shards[:1]
    keys = set.intersection(*({e["key"] for e in d["embeddings"]} for d in filled))
    out = []
    for key in sorted(keys):
        parts = [next(e for e in d["embeddings"] if e["key"] == key) for d in filled]
        names = set.intersection(*({i["name"] for i in p["indexes"]} for p in parts))
        indexes = [{**i, "n": sum(next(j for j in p["indexes"] if j["name"] == i["name"])["n"] or 0 for p in parts)}
                   for i in parts[0]["indexes"] if i["name"] in names]
        out.append({**parts[0], "n_segments": sum(p["n_segments"] for p in parts),
                    "missing_tracks": sum(p["missing_tracks"] for p in parts), "indexes": indexes})
    return out


class ShardedEmbedding:
    """One embedding key in every shard: the global view search and evaluation read."""

    def __init__(self, lib: ShardedLibrary, parts: list, shards: list[int]):
        self.lib, self.parts = lib, parts
        first = parts[0]
        if any(e.meta.get("standardisation") != first.meta.get("standardisation") for e in parts):
            raise IncompatibleLibraryError(f"embeddings/{first.key} is standardised with each shard's own statistics; "
                                           f"run `audiorag build {lib.path}` again (it merges them over the shards)")
        self.key, self.name, self.dim, self.path = first.key, first.name, first.dim, first.path
        self.has_text, self.is_tagger, self.is_primary = first.has_text, first.is_tagger, first.is_primary
        self.kind = first.kind
        self.tag_names = first.tag_names
        self._shards = shards
        self._tags = None  # opened on first use (a view is one generation of every shard)
        missing = [global_id(np.asarray(e.meta.get("missing_tracks", []), np.int64), s, lib.n)
                   for e, s in zip(parts, self._shards)]
        self.meta = {**first.meta, "n_segments": len(lib.segments),
                     "missing_tracks": np.concatenate(missing).tolist() if missing else []}

    @property
    def embedder(self):
        return self.parts[0].embedder

    @property
    def n_segments(self) -> int:
        return self.meta["n_segments"]

    def postprocess(self, raw):
        return self.parts[0].postprocess(raw)

    def vectors(self) -> ShardRows:
        return ShardRows([e.vectors() for e in self.parts], self._shards, *self.lib.rows())

    def tags(self) -> ShardRows:
        """The shards' tag probabilities (a tagger) or melody contours, one row per global segment (their
        memory-mapped files opened once)."""
        if self._tags is None:
            self._tags = ShardRows([e.tags() for e in self.parts], self._shards, *self.lib.rows())
        return self._tags

    def valid_rows(self, segment_track_ids, *, missing=None):
        ids = np.asarray(segment_track_ids)
        return (ids >= 0) & ~np.isin(ids, self.meta["missing_tracks"] if missing is None else missing)


class ShardRows:
    """The shards' arrays (vectors, tags, descriptors: one row per shard segment) as one array over global
    segment ids, read on demand; rows a shard does not have yet read as zeros; ``np.asarray`` gathers all of it.

    >>> rows = ShardRows([np.array([10, 11]), np.array([20])], [0, 1], np.array([1, 0, 0]), np.array([0, 1, 0]))
    >>> rows[[0, 1, 2]].tolist(), int(rows[1]), rows.shape
    ([20, 11, 10], 11, (3,))
    """

    def __init__(self, arrays: list, shards: list[int], row_shard: np.ndarray, row_local: np.ndarray):
        self.arrays, self.shards, self.row_shard, self.row_local = arrays, shards, row_shard, row_local
        self.shape, self.dtype = (len(row_shard), *np.shape(arrays[0])[1:]), np.asarray(arrays[0]).dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows):
        single = np.ndim(rows) == 0
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        out = np.zeros((len(rows), *self.shape[1:]), self.dtype)
        shard, local = self.row_shard[rows], self.row_local[rows]
        for a, s in zip(self.arrays, self.shards):
            pick = (shard == s) & (local < len(a))
            if pick.any():
                out[pick] = a[local[pick]]
        return out[0] if single else out

    def __array__(self, dtype=None, copy=None):
        out = self[np.arange(self.shape[0])]
        return out if dtype is None else out.astype(dtype)


def _sums(lib: Library, key: str) -> tuple[int, np.ndarray, np.ndarray]:
    """``(n, Σx, Σx²)`` of the valid raw rows of ``lib``'s embedding ``key`` (float64)."""
    emb = lib.embedding(key)
    valid = emb.valid_rows(lib.segments["track_id"].to_numpy())
    raw = np.asarray(emb.raw()[: len(valid)], np.float64)[valid]
    return len(raw), raw.sum(axis=0), (raw ** 2).sum(axis=0)


def _restandardise(path: Path, key: str, stats: dict) -> None:
    """Rewrite one shard's vectors of ``key`` with ``stats`` and bring its indexes up to date (one commit)."""
    from .indexes import refresh
    lib = Library.open(path, wait=True)
    with lib.store.transaction():
        emb = lib.embedding(key)
        emb.write(np.asarray(emb.raw()), {**emb.meta, "standardisation": stats},
                  emb.valid_rows(lib.segments["track_id"].to_numpy()), fit=False)
        refresh(lib, emb.reload())
    lib.close()


def _build_shard(path: str, sources: list, specs: list, indexes: list, budget: dict, fingerprint: bool,
                 engine: dict, workers: int) -> dict:
    """Add ``sources`` to one shard and bring its indexes up (runs in the shard's own process)."""
    from ..embedders import get_embedder
    from ..index import index_name
    from .indexes import list_indexes
    embedders = [get_embedder(name, **params) for name, params in specs]
    lib = Library.open(path, wait=True)
    out = {"shard": Path(path).name, "added": 0, "duplicates": 0, "failed": 0, "errors": [], "indexes": []}
    if sources:
        report = lib.add(sources, embedders=embedders, workers=workers, progress=False, fingerprint=fingerprint,
                         **engine)
        out.update({k: getattr(report, k) for k in ("added", "duplicates", "failed", "errors", "seconds")})
    if not len(lib.tracks):
        return out
    for e in lib.embeddings():
        if not any(e.key == x.key for x in embedders):
            continue
        have = {i["name"] for i in list_indexes(e)}
        for f in indexes:
            if (f == "auto" and not have) or (f != "auto" and index_name(f) not in have):
                side = lib.build_index(e.key, f, **budget)
                out["indexes"].append({k: side[k] for k in ("name", "factory", "n", "build_seconds")})
    return out
