"""FAISS indexes over plain arrays, in a directory: chosen by budget, measured, updated in place, served mmapped.

This layer knows vectors, row ids, factory strings and directories, not libraries
(:mod:`audiorag.library.indexes` binds an embedding of a library to these functions). An index
holds rows of a float32 matrix under their row ids (in a library: the L2-normalised vectors of
one embedding under their segment ids, rows of failed or removed tracks left out). It is
``index-<name>.faiss`` beside an ``index-<name>.json`` sidecar: factory, metric, n, dim, search
params, build time, bytes per segment, the recall@10 / latency measured against exact search on
held-out queries, and the caller's fields (the state of the vectors it covers).

* ``factory="auto"`` (:func:`build_index`) tries :func:`~audiorag.index.factory.candidates`
  for the vectors' number, dimension and ``max_memory``, tunes each one's ``nprobe`` /
  ``efSearch`` (:func:`~audiorag.index.quality.tune`) and keeps the first that reaches
  ``target_recall``; any factory string can still be given.
* :func:`update_index` adds new rows and removes gone ones in place.
* :func:`open_index` opens the file memory-mapped and read-only, so processes serving one
  library share one copy in the page cache; :func:`mapped_memory` reports what is resident.

>>> import numpy as np
>>> x = np.random.default_rng(0).standard_normal((500, 16)).astype("float32")
>>> x /= np.linalg.norm(x, axis=1, keepdims=True)
>>> index = make_index(x, np.arange(500) * 2, "HNSW32")
>>> scores, ids = index.search(x[:1], 1)
>>> int(ids[0, 0])
0
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import faiss
import numpy as np

from ..errors import ParameterError
from ..library.store import read_index, read_json, write_index, write_json
from . import factory as F
from . import refine as R
from .factory import default_search_params, index_name, make_index
from .quality import exact_neighbours, held_out

log = logging.getLogger(__name__)
_CACHE: dict = {}
TUNING_QUERIES = 500


class Index:
    """A loaded index and its sidecar. :meth:`search` returns cosine scores whatever the metric.

    >>> import numpy as np
    >>> x = np.eye(4, dtype="float32")
    >>> index = Index(make_index(x, np.arange(4), "PCAR4,Flat"), {"factory": "PCAR4,Flat", "metric": "l2"})
    >>> scores, ids = index.search(x[:1], 2)
    >>> int(ids[0, 0]), round(float(scores[0, 0]), 4)
    (0, 1.0)
    """

    def __init__(self, index: faiss.Index, sidecar: dict):
        self.faiss = index
        self.sidecar = sidecar
        self._l2 = sidecar.get("metric") == "l2"

    @property
    def ntotal(self) -> int:
        return int(self.faiss.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, each ``[n_queries, k]``; ids are segment ids, -1 past the end."""
        scores, ids = self.faiss.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        if self._l2:  # unit vectors: |a - b|² = 2 - 2·cos
            scores = 1.0 - scores / 2.0
        return scores, ids


def build_index(directory, vectors: np.ndarray, ids: np.ndarray, factory: str = "Flat", *, name: str | None = None,
                max_memory: float | None = None, target_recall: float = 0.95, seed: int = 0,
                max_resident: float | None = None, what: str = "vectors", fields: dict | None = None) -> dict:
    """Build, measure and save an index over the rows ``ids`` of ``vectors`` (ids are the rows); return its sidecar.

    The index is ``directory/index-<name>.faiss`` beside ``index-<name>.json``; ``fields`` are written
    into the sidecar too (what the caller needs to know the index is current); ``what`` names the
    vectors in messages. ``factory="auto"`` picks the index family from the number of vectors, their
    dimension and ``max_memory`` (bytes for the whole index), keeping the first candidate whose tuned
    recall@10 reaches ``target_recall``; its name is ``auto``. ``max_resident`` (bytes in RAM)
    also admits refined families, whose candidates are re-ranked from ``vectors`` (``vectors.npy`` on disk,
    :mod:`audiorag.index.refine`). Every index, automatic or not,
    has its search parameters tuned to ``target_recall`` and its measurement in the sidecar.

    >>> import tempfile
    >>> x = np.random.default_rng(0).standard_normal((300, 8)).astype("float32")
    >>> x /= np.linalg.norm(x, axis=1, keepdims=True)
    >>> side = build_index(tempfile.mkdtemp(), x, np.arange(300), "Flat")
    >>> side["name"], side["n"], side["quality"]["recall@10"]
    ('flat', 300, 1.0)
    """
    if not 0 < target_recall <= 1:
        raise ParameterError(f"target_recall must be in (0, 1], got {target_recall}")
    directory = Path(directory)
    if not len(ids):
        raise ParameterError(f"{what}: no vectors to index")
    dim = int(vectors.shape[1])
    x = np.asarray(vectors)[ids]
    queries = held_out(ids, TUNING_QUERIES, seed=seed)
    truth = exact_neighbours(x, ids, queries, 10)
    qx = np.asarray(vectors)[queries]
    tried = []
    factories = R.candidates(len(ids), dim, max_memory=max_memory, max_resident=max_resident) \
        if factory == "auto" else [factory]
    for candidate in factories:
        try:
            index, built = R.build(candidate, x, ids, vectors, seed=seed, tried=tried)
        except ParameterError as exc:
            if factory != "auto":
                raise
            log.info("auto index: skipping %s (%s)", candidate, exc)
            continue
        measured = R.tune(index, candidate, qx, truth, exclude=queries, target_recall=target_recall)
        tried.append({"factory": candidate, "build_seconds": built["build_seconds"], "n_train": built["n_train"],
                      "index": index, **measured})
        log.info("index %s over %d vectors: recall@10 %.3f at %s, p99 %.2f ms", candidate, len(ids),
                 measured["recall@10"], measured["search_params"], measured["latency_p99_ms"])
        if measured["target_met"]:
            break
    if not tried:
        raise ParameterError(f"{what}: none of {factories} could be trained on {len(ids)} vectors")
    best = tried[-1] if tried[-1]["target_met"] else max(tried, key=lambda t: t["recall@10"])
    if not best["target_met"]:
        log.warning("no index reached recall@10 %.2f for %s; kept %s (%.3f)", target_recall, what,
                    best["factory"], best["recall@10"])
    name = name or ("auto" if factory == "auto" else index_name(factory))
    path = _save(directory, name, R.faiss_index(best.pop("index")))
    sidecar = {"name": name, "factory": best["factory"], "metric": F.metric(best["factory"]),
               "n": int(len(ids)), "dim": dim, "search_params": best["search_params"],
               "build_seconds": best["build_seconds"], "n_train": best["n_train"], "bytes": path.stat().st_size,
               "bytes_per_segment": round(path.stat().st_size / len(ids), 1),
               "quality": {k: v for k, v in best.items() if k not in ("factory", "build_seconds", "n_train",
                                                                    "search_params")},
               **R.sidecar_fields(best["factory"], dim, len(vectors)),
               "auto": {"max_memory": max_memory, "max_resident": max_resident, "target_recall": target_recall,
                        "tried": [{k: t[k] for k in ("factory", "recall@10", "latency_p99_ms", "search_params",
                                                     "build_seconds")} for t in tried]} if factory == "auto" else None,
               **(fields or {}), "faiss_version": faiss.__version__,
               "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json(directory / f"index-{name}.json", sidecar)
    log.info("built index %s (%s) over %d vectors in %.2fs", name, sidecar["factory"], len(ids), best["build_seconds"])
    return sidecar


def _save(directory: Path, name: str, index: faiss.Index) -> Path:
    path = directory / f"index-{name}.faiss"
    write_index(path, index)
    return path


def list_indexes(directory) -> list[dict]:
    """The sidecars of the indexes in ``directory``, by name.

    >>> list_indexes("/no/such/folder")
    []
    """
    return [read_json(p) for p in sorted(Path(directory).glob("index-*.json"))]


def choose(sidecars: list[dict], name: str | None, *, what: str = "vectors") -> dict:
    """The sidecar named ``name`` (or its factory's name); without a name the only index, else ``flat``, else the
    first; :class:`~audiorag.errors.ParameterError` when there is none.

    >>> choose([{"name": "flat"}, {"name": "hnsw32"}], "HNSW32")
    {'name': 'hnsw32'}
    """
    if not sidecars:
        raise ParameterError(f"{what} has no index; build one with lib.build_index()")
    if name is None:
        return sidecars[0] if len(sidecars) == 1 else next((i for i in sidecars if i["name"] == "flat"), sidecars[0])
    matches = [i for i in sidecars if i["name"] in (name, index_name(name))]
    if not matches:
        raise ParameterError(f"no index {name!r} for {what}; have {[i['name'] for i in sidecars]}")
    return matches[0]


def open_index(directory, sidecar: dict, vectors, *, mmap: bool = True) -> Index:
    """Open the index of ``sidecar`` in ``directory`` read-only (memory-mapped by default), once per file version.
    ``vectors``: a function returning the indexed matrix (read only by refined indexes, to re-rank)."""
    path = Path(directory) / f"index-{sidecar['name']}.faiss"
    key = (str(path), path.stat().st_mtime_ns if path.exists() else 0, mmap)
    if key not in _CACHE:
        index = R.wrap(read_index(path, _read_flags(sidecar["factory"]) if mmap else 0), sidecar["factory"], vectors)
        F.apply_search_params(index, sidecar.get("search_params", {}))
        _CACHE.clear() if len(_CACHE) > 16 else None
        _CACHE[key] = Index(index, sidecar)
    return _CACHE[key]


def _read_flags(factory: str) -> int:
    """Memory-map the bulk of the file: inverted lists for IVF, the code array for the rest."""
    return faiss.IO_FLAG_READ_ONLY | (faiss.IO_FLAG_MMAP if "IVF" in factory else faiss.IO_FLAG_MMAP_IFC)


def mapped_memory(path) -> dict:
    """This process's mappings of ``path``: bytes mapped, resident and shared with other processes
    (from ``/proc/self/smaps``; empty on systems without it)."""
    path = os.path.realpath(str(path))
    out = {"mapped_bytes": 0, "resident_bytes": 0, "shared_bytes": 0}
    try:
        with open("/proc/self/smaps") as f:
            inside = False
            for line in f:
                head = line.split()
                if len(head) >= 5 and "-" in head[0] and not line.startswith(tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")):
                    inside = len(head) >= 6 and head[-1] == path  # anonymous mappings have no 6th field
                elif inside and head and head[0] in ("Size:", "Rss:", "Shared_Clean:", "Shared_Dirty:"):
                    field = {"Size:": "mapped_bytes", "Rss:": "resident_bytes"}.get(head[0], "shared_bytes")
                    out[field] += int(head[1]) * 1024
    except OSError:
        return {}
    return out


def resident_memory() -> int:
    """Resident set size of this process in bytes (``VmRSS``; 0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


def update_index(directory, sidecar: dict, vectors: np.ndarray, valid: np.ndarray, segment_tracks: np.ndarray,
                 fields: dict) -> dict:
    """Update an index in place after rows were added or tracks removed; returns its new sidecar (also saved).

    ``valid``: which rows of ``vectors`` hold a live track's vector now; rows past the sidecar's
    ``n_rows`` are new and added, rows below it no longer valid (except those of ``excluded_tracks``,
    never indexed) are removed. The file is rewritten, nothing is retrained; an index type that cannot
    remove (HNSW) raises :class:`~audiorag.errors.ParameterError`. ``fields`` replace the sidecar's own.
    """
    directory = Path(directory)
    path = directory / f"index-{sidecar['name']}.faiss"
    index = read_index(path)
    old_rows = int(sidecar.get("n_rows", 0))
    new = np.flatnonzero(valid[old_rows:]) + old_rows
    gone = np.zeros(0, dtype=np.int64)
    if index.ntotal > valid[:old_rows].sum():  # it still holds rows of tracks removed since
        old = np.arange(old_rows)
        gone = old[~valid[:old_rows] & ~np.isin(segment_tracks[:old_rows], sidecar.get("excluded_tracks", []))]
    t0 = time.perf_counter()
    if len(gone):
        F.remove(index, gone)
    if len(new):
        F.add(index, sidecar["factory"], np.asarray(vectors)[new], new)
    _save(directory, sidecar["name"], index)
    sidecar.update(n=int(index.ntotal), bytes=path.stat().st_size,
                   bytes_per_segment=round(path.stat().st_size / max(index.ntotal, 1), 1), **fields,
                   updated=time.strftime("%Y-%m-%dT%H:%M:%S"),
                   last_update={"added": int(len(new)), "removed": int(len(gone)),
                                "seconds": round(time.perf_counter() - t0, 4)})
    write_json(directory / f"index-{sidecar['name']}.json", sidecar)
    log.info("index %s in %s: added %d, removed %d vectors in place", sidecar["name"], directory, len(new), len(gone))
    return sidecar


__all__ = ["Index", "build_index", "choose", "default_search_params", "index_name", "list_indexes", "make_index",
           "mapped_memory", "open_index", "resident_memory", "update_index"]
