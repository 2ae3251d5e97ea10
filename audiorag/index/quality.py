"""Measured index quality: recall@k against exact search, single-query latency, and tuning
of search parameters (``nprobe``, ``efSearch``) to the cheapest setting reaching a target recall.

>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((2000, 16)).astype("float32")
>>> x /= np.linalg.norm(x, axis=1, keepdims=True)
>>> from audiorag.index.factory import make_index
>>> index = make_index(x, np.arange(2000), "IVF32,Flat")
>>> q = held_out(np.arange(2000), 100)
>>> truth = exact_neighbours(x, np.arange(2000), q, 10)
>>> tuned = tune(index, "IVF32,Flat", x[q], truth, exclude=q, target_recall=0.95)
>>> tuned["recall@10"] >= 0.95, sorted(tuned["search_params"])
(True, ['nprobe'])
"""

from __future__ import annotations

import re
import time

import faiss
import numpy as np

from ..errors import ParameterError
from .factory import apply_search_params


def neighbour_recall(found, truth) -> np.ndarray:
    """Share of each query's true neighbours (``truth[i]``) that ``found[i]`` contains: the
    recall@k of an approximate index against exact search, k = ``truth.shape[1]``. Padding
    ids (-1) in ``found`` count as misses; in ``truth`` they are neighbours that do not exist (an
    index of fewer than k + 1 vectors) and are not asked for (a query with none has recall 1).

    >>> neighbour_recall([[3, 1, 9], [4, 5, 6], [2, 7, -1]], [[1, 2, 3], [6, 5, 4], [7, 2, -1]]).tolist()
    [0.6666666666666666, 1.0, 1.0]
    """
    found, truth = np.asarray(found), np.asarray(truth)
    if found.ndim != 2 or truth.ndim != 2 or len(found) != len(truth):
        raise ParameterError(f"neighbour_recall: expected two [n_queries, k] arrays, "
                             f"got {found.shape} and {truth.shape}")
    hits = np.array([len(np.intersect1d(f[f >= 0], t[t >= 0])) for f, t in zip(found, truth)], dtype=float)
    wanted = (truth >= 0).sum(axis=1)
    return np.where(wanted > 0, hits / np.maximum(wanted, 1), 1.0)


def held_out(ids: np.ndarray, n_queries: int, *, seed: int = 0) -> np.ndarray:
    """A seeded sample of ``n_queries`` of ``ids`` (sorted), the queries of a tuning run."""
    ids = np.asarray(ids)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(ids, min(n_queries, len(ids)), replace=False))


def exact_neighbours(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Ids of the exact top-``k`` neighbours (inner product) of rows ``queries`` of ``vectors``,
    the query's own id left out. ``vectors[i]`` has id ``ids[i]``; ``queries`` are ids."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    pos = np.searchsorted(ids, queries)
    _, found = faiss.knn(np.ascontiguousarray(x[pos]), x, k + 1, faiss.METRIC_INNER_PRODUCT)
    return _drop_self(np.where(found >= 0, np.asarray(ids)[found], -1), queries, k)  # -1: fewer than k + 1 vectors


def _drop_self(found: np.ndarray, queries: np.ndarray | None, k: int) -> np.ndarray:
    if queries is None:
        return found[:, :k]
    out = np.full((len(found), k), -1, dtype=np.int64)
    for i, (row, q) in enumerate(zip(found, queries)):
        row = row[row != q][:k]
        out[i, :len(row)] = row
    return out


def measure(index: faiss.Index, queries: np.ndarray, truth: np.ndarray, *, exclude: np.ndarray | None = None,
            k: int = 10, params: dict | None = None, batch: bool = True) -> dict:
    """Recall@k of ``index`` against ``truth`` and its single-query latency (ms, p50/p99).

    ``exclude`` (one id per query: the query's own) is left out of the results as it was of
    ``truth``. ``batch`` adds the batched throughput (queries per second, all queries at once).
    """
    apply_search_params(index, params or {})
    q = np.ascontiguousarray(queries, dtype=np.float32)
    depth = k + (exclude is not None)
    found, seconds = [], []
    for row in q:
        t0 = time.perf_counter()
        _, ids = index.search(row[None, :], depth)
        seconds.append(time.perf_counter() - t0)
        found.append(ids[0])
    result = {f"recall@{k}": float(neighbour_recall(_drop_self(np.array(found), exclude, k), truth).mean())}
    p50, p99 = np.percentile(np.asarray(seconds) * 1000, [50, 99])
    result.update(latency_p50_ms=round(float(p50), 4), latency_p99_ms=round(float(p99), 4))
    if batch:
        t0 = time.perf_counter()
        index.search(q, depth)
        result["batch_qps"] = round(len(q) / (time.perf_counter() - t0), 1)
    return result


def search_grid(factory: str) -> list[dict]:
    """Search settings to try, cheapest first: ``nprobe`` 1 … nlist, ``efSearch`` 16 … 1024."""
    if m := re.search(r"IVF(\d+)", factory):
        nlist = int(m.group(1))
        return [{"nprobe": p} for p in 2 ** np.arange(int(np.log2(nlist)) + 1)]
    if "HNSW" in factory:
        return [{"efSearch": int(e)} for e in (16, 32, 64, 128, 256, 512, 1024)]
    return [{}]


def tune(index: faiss.Index, factory: str, queries: np.ndarray, truth: np.ndarray, *,
         exclude: np.ndarray | None = None, target_recall: float = 0.95, k: int = 10) -> dict:
    """Walk :func:`search_grid` until recall@k reaches ``target_recall``, stops improving
    (less than 0.001 gained by the last doubling), or the grid ends.

    When the target is out of reach, the cheapest setting within 0.005 of the best recall
    reached is chosen. Returns the chosen ``search_params`` with their measurement,
    ``target_met`` and the ``curve`` of every setting tried; leaves ``index`` set to the
    chosen parameters.
    """
    curve = []
    for params in search_grid(factory):
        params = {key: int(v) for key, v in params.items()}
        result = {"search_params": params, **measure(index, queries, truth, exclude=exclude, k=k, params=params,
                                                      batch=False)}
        curve.append(result)
        if result[f"recall@{k}"] >= target_recall:
            break
        if len(curve) >= 3 and result[f"recall@{k}"] - curve[-2][f"recall@{k}"] < 0.001:
            break  # a plateau: the codes, not the search breadth, limit recall
    if curve[-1][f"recall@{k}"] >= target_recall:
        best = curve[-1]
    else:  # out of reach: the cheapest setting within 0.005 of the best recall the grid reached
        top = max(r[f"recall@{k}"] for r in curve)
        best = next(r for r in curve if r[f"recall@{k}"] >= top - 0.005)
    final = measure(index, queries, truth, exclude=exclude, k=k, params=best["search_params"])
    return {"search_params": best["search_params"], **final,
            "target_recall": target_recall, "target_met": final[f"recall@{k}"] >= target_recall,
            "n_queries": int(len(queries)), "curve": curve}
