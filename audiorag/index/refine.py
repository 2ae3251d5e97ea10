"""Refined indexes: compressed codes in RAM propose candidates, full-precision vectors on disk rank them.

A refined factory is a FAISS factory followed by ``,Refine`` (``"PCAR192,IVF4096,PQ48,Refine"``).
Only the FAISS part is resident: the product-quantised codes, the ids and the coarse centroids.
A search asks it for ``k_factor × k`` candidates, reads those candidates' rows — sorted, so
the reads go forward through the file — from the embedding's own ``vectors.npy``
(memory-mapped, float32, one row per segment id) and keeps the ``k`` with the highest exact
inner product. Those vectors cost disk and page cache, not resident budget: an index is
chosen by :func:`candidates` under ``max_resident`` bytes, and its search parameters
(``nprobe`` and ``k_factor``) are tuned by :func:`tune`. Removed segments are not in the
codes, so they are never candidates; added ones are read from the current vectors.

``SQfp16,Refine`` is exact: half-precision codes move a unit vector's score by at most
:func:`half_precision_error`, so after re-ranking a search widens its candidates (doubling them)
until the last candidate's code score plus that margin is below the k-th exact score — no vector
left out can then be a neighbour. Its ``k_factor`` is tuned for speed alone (too few candidates
cost a second scan, too many a longer re-rank). It answers as ``Flat`` (up to float32 ties) from half the bytes,
which is what a single query's scan is bound by (``benchmarks/exact.py``).

>>> import numpy as np
>>> from audiorag.index.factory import build
>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((4000, 32)).astype("float32")
>>> x /= np.linalg.norm(x, axis=1, keepdims=True)
>>> base, _ = build("IVF16,PQ4", x, [(np.arange(4000), x)])
>>> index = RefinedIndex(base, x, "IVF16,PQ4,Refine", k_factor=50)
>>> index.set_search_params({"nprobe": 16})
>>> _, ids = index.search(x[:1], 3)
>>> int(ids[0, 0])
0
"""

from __future__ import annotations

import math
import mmap
import re

import faiss
import numpy as np

from ..errors import ParameterError
from . import factory as F
from . import quality as Q

REFINE = "Refine"
DEFAULT_K_FACTOR = 32
K_FACTORS = (2, 4, 8, 16, 32, 64, 128)
CERTIFIED = "SQfp16"  # its re-ranked search is exact: candidates are widened until no vector left out can win
EXTRA_PQ = (48, 24)  # code sizes between the plain candidates' 56, 32, 16: a resident budget is used closely


def is_refined(factory: str) -> bool:
    """True for a factory string ending in ``,Refine``."""
    return factory.rsplit(",", 1)[-1] == REFINE


def base_factory(factory: str) -> str:
    """The FAISS part of a (refined) factory: ``"IVF256,PQ16,Refine"`` → ``"IVF256,PQ16"``."""
    return factory.rsplit(",", 1)[0] if is_refined(factory) else factory


class RefinedIndex:
    """A FAISS index whose candidates are re-ranked exactly from ``vectors`` (rows = ids).

    Behaves as the FAISS index it wraps for :class:`audiorag.index.Index`: ``search`` returns
    distances in the metric of the factory (``2 − 2·cos`` for L2), ``ntotal``, and
    :meth:`set_search_params` takes ``k_factor`` beside the FAISS parameters.
    """

    def __init__(self, base: faiss.Index, vectors: np.ndarray, factory: str, *, k_factor: int = DEFAULT_K_FACTOR):
        self.base, self.vectors, self.k_factor = base, vectors, int(k_factor)
        self._l2 = F.metric(factory) == "l2"
        self.certified = base_factory(factory) == CERTIFIED  # exact: a bound on the codes' error is known
        raw = getattr(vectors, "_mmap", None)
        if raw is not None and hasattr(raw, "madvise"):
            raw.madvise(mmap.MADV_RANDOM)  # a candidate row is one or two pages: no read-ahead

    @property
    def ntotal(self) -> int:
        return int(self.base.ntotal)

    def set_search_params(self, params: dict) -> None:
        params = dict(params)
        self.k_factor = int(params.pop("k_factor", self.k_factor))
        if self.k_factor < 1:
            raise ParameterError(f"k_factor must be ≥ 1, got {self.k_factor}")
        F.apply_search_params(self.base, params)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        dist = np.full((len(q), k), np.inf if self._l2 else -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        todo, width = np.arange(len(q)), k * self.k_factor
        while len(todo):
            approx, found = self.base.search(q[todo], min(width, max(self.ntotal, 1)))
            widen = []
            for j, i in enumerate(todo):
                rows = np.unique(found[j][found[j] >= 0])  # sorted: the file is read front to back
                if not len(rows):
                    continue
                scores = np.asarray(self.vectors[rows], dtype=np.float32) @ q[i]
                top = np.argsort(-scores, kind="stable")[:k]
                dist[i, :len(top)] = 2.0 - 2.0 * scores[top] if self._l2 else scores[top]
                ids[i, :len(top)] = rows[top]
                # certified: a vector left out scores at most the last candidate's code score + the codes' error
                if self.certified and (found[j] >= 0).all() and len(top) == k \
                        and approx[j, -1] + half_precision_error(q[i]) >= scores[top[-1]]:
                    widen.append(i)
            todo, width = np.asarray(widen, dtype=np.int64), 2 * width
        return dist, ids


def half_precision_error(query: np.ndarray) -> float:
    """A bound on ``|q·x − q·fp16(x)|`` plus float32 summation error, for a unit vector ``x``.

    Rounding to half precision changes a normal component by at most 2⁻¹¹ of itself and one below
    its smallest normal (6.1e-5) by at most 2⁻²⁵, so by Cauchy–Schwarz the product moves by at most
    ``2⁻¹¹·‖q‖ + d·2⁻²⁵·max|q|``; summing ``d`` float32 products adds at most ``d·2⁻²⁴·‖q‖``. Doubled
    for safety, this is the margin that makes ``SQfp16,Refine`` exact (:class:`RefinedIndex`).

    >>> round(half_precision_error(np.full(512, 512 ** -0.5, np.float32)), 5)
    0.00104
    """
    q = np.asarray(query, dtype=np.float64)
    d, norm = len(q), float(np.linalg.norm(q))
    return 2.0 * (norm * (2.0 ** -11 + d * 2.0 ** -24) + d * 2.0 ** -25 * float(np.abs(q).max(initial=0.0)))


def faiss_index(index) -> faiss.Index:
    """The FAISS index to save: the wrapped one for a :class:`RefinedIndex`."""
    return index.base if isinstance(index, RefinedIndex) else index


def wrap(index: faiss.Index, factory: str, vectors) -> faiss.Index | RefinedIndex:
    """``index`` re-ranked from ``vectors`` when ``factory`` is refined (``vectors`` may be a
    callable returning them, called only then), else ``index`` itself."""
    if not is_refined(factory):
        return index
    return RefinedIndex(index, vectors() if callable(vectors) else vectors, factory)


def build(factory: str, x: np.ndarray, ids: np.ndarray, vectors, *, seed: int = 0, tried: list | None = None):
    """Train and fill ``factory`` over ``x`` (ids ``ids``) as :func:`audiorag.index.factory.build`
    does; a refined factory whose FAISS part was the last one ``tried`` reuses that index."""
    last = (tried or [None])[-1]
    if is_refined(factory) and last and last["factory"] == base_factory(factory):
        base, built = faiss_index(last["index"]), {k: last[k] for k in ("build_seconds", "n_train")}
    else:
        base, built = F.build(base_factory(factory), x, [(ids, x)], seed=seed)
    return wrap(base, factory, vectors), built


def resident_bytes_per_segment(factory: str, n: int, dim: int) -> float:
    """Estimated resident bytes per segment: code + id (+ graph links), plus the coarse centroids
    and PCA matrix shared out over ``n``. Re-ranking vectors on disk are not counted."""
    base = base_factory(factory)
    shared = 0
    reduced = int(m.group(1)) if (m := re.match(r"(?:PCAR?|OPQ\d+_)(\d+)", base)) else dim
    if re.match(r"PCA", base):
        shared += 4 * dim * reduced
    if m := re.search(r"IVF(\d+)", base):
        shared += 4 * int(m.group(1)) * reduced + 48 * int(m.group(1))  # centroids, list headers
    if re.search(r"PQ\d+(,|$)", base):
        shared += 4 * 256 * reduced  # 8-bit codebooks: 256 centroids per sub-space
    return F.bytes_per_segment(base, dim) + shared / max(n, 1)


def candidates(n: int, dim: int, *, max_memory: float | None = None, max_resident: float | None = None) -> list[str]:
    """:func:`audiorag.index.factory.candidates`, and with ``max_resident`` (bytes) those whose
    resident size (:func:`resident_bytes_per_segment`) fits, product quantisation also at
    :data:`EXTRA_PQ` bytes, each product-quantised family followed by its refined form, which
    ``auto`` tries when the plain one misses the target (reusing its trained codes).

    >>> candidates(10_000_000, 512, max_resident=640e6)[:3]
    ['PCAR192,IVF4096,PQ48', 'PCAR192,IVF4096,PQ48,Refine', 'PCAR128,IVF4096,PQ32']
    """
    if max_resident is None:
        return F.candidates(n, dim, max_memory=max_memory)
    budget = min(max_resident, max_memory or math.inf)
    plain = F.candidates(n, dim, max_memory=budget)
    pq = [f for f in plain if "PQ" in f] + [F.pq_family(m, dim, F.ivf_lists(n)) for m in EXTRA_PQ if m <= dim]
    families = [f for f in plain if "PQ" not in f] + sorted(dict.fromkeys(pq), key=lambda f: -F.bytes_per_segment(
        f, dim))
    fitting = [f for f in families if resident_bytes_per_segment(f, n, dim) <= budget / max(n, 1)]
    if not fitting:
        raise ParameterError(f"no index fits {budget:.0f} resident bytes for {n} vectors of dim {dim} "
                             f"({budget / max(n, 1):.1f} B each)")
    return [g for f in fitting for g in ([f, f"{f},{REFINE}"] if "PQ" in f else [f])]


def tune(index, factory: str, queries: np.ndarray, truth: np.ndarray, *, exclude: np.ndarray | None = None,
         target_recall: float = 0.95, k: int = 10) -> dict:
    """:func:`audiorag.index.quality.tune`; for a refined index ``nprobe`` is walked with
    ``k_factor`` at :data:`DEFAULT_K_FACTOR`, then ``k_factor`` lowered (or raised, up to 128,
    when the target is missed) at that ``nprobe`` to the smallest value reaching the target."""
    if not isinstance(index, RefinedIndex):
        return Q.tune(index, factory, queries, truth, exclude=exclude, target_recall=target_recall, k=k)
    if index.certified:  # exact at every k_factor: the fastest one (too few candidates cost a second scan)
        curve = [{"search_params": {"k_factor": kf}, **Q.measure(index, queries, truth, exclude=exclude, k=k,
                                                                  params={"k_factor": kf}, batch=False)}
                 for kf in K_FACTORS]
        best = min(curve, key=lambda c: c["latency_p50_ms"])
        index.set_search_params(best["search_params"])
        final = Q.measure(index, queries, truth, exclude=exclude, k=k, params=best["search_params"])
        return {**final, "search_params": best["search_params"], "target_met": final[f"recall@{k}"] >= target_recall,
                "curve": curve}
    index.k_factor = DEFAULT_K_FACTOR
    tuned = Q.tune(index, base_factory(factory), queries, truth, exclude=exclude, target_recall=target_recall, k=k)
    params = dict(tuned["search_params"])
    key = f"recall@{k}"
    found = (DEFAULT_K_FACTOR, tuned)
    steps = [f for f in K_FACTORS if f < DEFAULT_K_FACTOR][::-1] if tuned["target_met"] else \
        [f for f in K_FACTORS if f > DEFAULT_K_FACTOR]
    curve = list(tuned["curve"])
    for kf in steps:
        r = Q.measure(index, queries, truth, exclude=exclude, k=k, params={**params, "k_factor": kf}, batch=False)
        curve.append({"search_params": {**params, "k_factor": kf}, **r})
        if tuned["target_met"] and r[key] < target_recall:
            break
        if tuned["target_met"] or r[key] > found[1][key] + 0.001:
            found = (kf, r)
        if not tuned["target_met"] and r[key] >= target_recall:
            break
    index.set_search_params({**params, "k_factor": found[0]})
    final = Q.measure(index, queries, truth, exclude=exclude, k=k, params={**params, "k_factor": found[0]})
    for c in curve[:len(tuned["curve"])]:
        c["search_params"] = {**c["search_params"], "k_factor": DEFAULT_K_FACTOR}
    return {**tuned, **final, "search_params": {**params, "k_factor": found[0]},
            "target_met": final[key] >= target_recall, "curve": curve}


def sidecar_fields(factory: str, dim: int, n_rows: int) -> dict:
    """What a sidecar records of a refined index: the re-ranking source and its disk bytes.

    >>> sidecar_fields("Flat", 8, 100), sidecar_fields("HNSW32,Refine", 8, 100)["refine"]["disk_bytes"]
    ({}, 3200)
    """
    if not is_refined(factory):
        return {}
    return {"refine": {"source": "vectors.npy", "dtype": "float32", "disk_bytes_per_segment": 4 * dim,
                       "disk_bytes": 4 * dim * n_rows, "exact": base_factory(factory) == CERTIFIED}}
