"""FAISS indexes over an embedding's vectors, driven by factory strings.

Every index is inner product on L2-normalised vectors (cosine similarity), wrapped in
an ID map whose ids are segment ids (rows of failed tracks are left out). Each index is
``index-<name>.faiss`` beside an ``index-<name>.json`` sidecar (factory, metric, n, dim,
search params, build time, the embedding state it was built from), and is loaded
memory-mapped and read-only.

>>> import numpy as np
>>> x = np.random.default_rng(0).standard_normal((500, 16)).astype("float32")
>>> x /= np.linalg.norm(x, axis=1, keepdims=True)
>>> index = make_index(x, np.arange(500) * 2, "HNSW32")
>>> scores, ids = index.search(x[:1], 1)
>>> int(ids[0, 0])
0
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time

import faiss
import numpy as np

from .errors import IncompatibleLibraryError, ParameterError
from .library.store import read_json, write_json

log = logging.getLogger(__name__)
DEFAULT_EF_SEARCH = 64
_CACHE: dict = {}


def index_name(factory: str) -> str:
    """File-name form of a factory string: ``"IVF256,PQ16"`` → ``"ivf256-pq16"``."""
    return re.sub(r"[^a-z0-9]+", "-", factory.lower()).strip("-")


def default_search_params(factory: str) -> dict:
    """Search-time parameters recorded with a new index (nprobe for IVF, efSearch for HNSW)."""
    params = {}
    m = re.search(r"IVF(\d+)", factory)
    if m:
        params["nprobe"] = max(1, int(m.group(1)) // 8)
    if "HNSW" in factory:
        params["efSearch"] = DEFAULT_EF_SEARCH
    return params


def apply_search_params(index: faiss.Index, params: dict) -> None:
    if params:
        faiss.ParameterSpace().set_index_parameters(index, ",".join(f"{k}={v}" for k, v in params.items()))


def make_index(vectors: np.ndarray, ids: np.ndarray, factory: str, *, seed: int = 0,
               max_train: int = 100_000) -> faiss.Index:
    """Train (when the factory needs it) and fill an ID-mapped inner-product index.

    Raises :class:`ParameterError` naming the factory when FAISS rejects it or there are too few
    vectors to train it.
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ParameterError(f"index {factory!r}: no vectors to index")
    try:
        base = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ParameterError(f"index factory {factory!r} rejected by FAISS for dim {x.shape[1]}: "
                             f"{str(exc).strip().splitlines()[-1]}") from None
    if not base.is_trained:
        nlist = int(m.group(1)) if (m := re.search(r"IVF(\d+)", factory)) else 1
        if len(x) < nlist:
            raise ParameterError(f"index {factory!r} needs at least {nlist} vectors to train, have {len(x)}")
        rng = np.random.default_rng(seed)
        train = x if len(x) <= max_train else x[np.sort(rng.choice(len(x), max_train, replace=False))]
        try:
            _train(base, train, seed)
        except RuntimeError as exc:
            raise ParameterError(f"index {factory!r} failed to train on {len(train)} vectors: "
                                 f"{str(exc).strip().splitlines()[-1]}") from None
    index = faiss.IndexIDMap2(base)
    # HNSW insertion is multi-threaded and its graph then depends on thread timing; one thread makes
    # the index, and every metric measured on it, reproducible
    threads = faiss.omp_get_max_threads()
    if "HNSW" in factory:
        faiss.omp_set_num_threads(1)
    try:
        index.add_with_ids(x, np.asarray(ids, dtype=np.int64))
    finally:
        faiss.omp_set_num_threads(threads)
    apply_search_params(index, default_search_params(factory))
    return index


def _train(index: faiss.Index, x: np.ndarray, seed: int) -> None:
    # k-means in IVF/PQ training draws from FAISS's own RNG; fix its seed for reproducible indexes
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.cp.seed = seed
    index.train(x)


def build_index(lib, emb, factory: str = "Flat", *, name: str | None = None):
    """Build, save and return the sidecar of an index over ``emb``'s vectors in ``lib``."""
    name = name or index_name(factory)
    vectors = lib.vectors(emb.key)
    seg_tracks = lib.segments["track_id"].to_numpy()
    valid = emb.valid_rows(seg_tracks)
    ids = np.flatnonzero(valid)
    t0 = time.perf_counter()
    index = make_index(np.asarray(vectors)[valid], ids, factory)
    seconds = time.perf_counter() - t0
    path = emb.path / f"index-{name}.faiss"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    faiss.write_index(index, str(tmp))
    os.replace(tmp, path)
    sidecar = {"name": name, "factory": factory, "metric": "inner_product", "n": int(index.ntotal),
               "dim": int(vectors.shape[1]), "search_params": default_search_params(factory),
               "build_seconds": round(seconds, 4), "bytes": path.stat().st_size,
               "embedding": emb.key, "vectors_state": vectors_state(emb),
               "faiss_version": faiss.__version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json(emb.path / f"index-{name}.json", sidecar)
    _CACHE.pop(str(path), None)
    log.info("built index %s (%s) over %d vectors in %.2fs", name, factory, index.ntotal, seconds)
    return sidecar


def vectors_state(emb) -> str:
    """Fingerprint of what an index was built from: segment count, missing tracks, standardisation."""
    meta = emb.meta
    blob = repr((meta.get("n_segments"), meta.get("missing_tracks"), meta.get("standardisation")))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def list_indexes(emb) -> list[dict]:
    return [read_json(p) for p in sorted(emb.path.glob("index-*.json"))]


def load_index(emb, name: str | None = None, *, mmap: bool = True) -> tuple[faiss.Index, dict]:
    """Open an index read-only (memory-mapped by default); refuses one built from other vectors."""
    indexes = list_indexes(emb)
    if not indexes:
        raise ParameterError(f"embeddings/{emb.key} has no index; build one with lib.build_index()")
    if name is None:
        sidecar = indexes[0] if len(indexes) == 1 else next((i for i in indexes if i["name"] == "flat"), indexes[0])
    else:
        matches = [i for i in indexes if i["name"] in (name, index_name(name))]
        if not matches:
            raise ParameterError(f"no index {name!r} for {emb.key}; have {[i['name'] for i in indexes]}")
        sidecar = matches[0]
    if sidecar["vectors_state"] != vectors_state(emb):
        raise IncompatibleLibraryError(f"index {sidecar['name']} of {emb.key} was built from other vectors; "
                                       f"rebuild it with lib.build_index({emb.name!r}, {sidecar['factory']!r})")
    path = emb.path / f"index-{sidecar['name']}.faiss"
    key = (str(path), path.stat().st_mtime_ns, mmap)
    if key not in _CACHE:
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        index = faiss.read_index(str(path), flags)
        apply_search_params(index, sidecar.get("search_params", {}))
        _CACHE.clear() if len(_CACHE) > 16 else None
        _CACHE[key] = index
    return _CACHE[key], sidecar


def rebuild_stale(lib, emb) -> None:
    """Rebuild indexes whose vectors changed (e.g. after ``add``), keeping their names and factories."""
    for sidecar in list_indexes(emb):
        if sidecar["vectors_state"] != vectors_state(emb):
            build_index(lib, emb, sidecar["factory"], name=sidecar["name"])
