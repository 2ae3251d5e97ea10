"""Factory strings: making, training and filling a FAISS index; the families ``auto`` picks from.

Vectors are L2-normalised, so inner product, cosine and L2 distance rank alike
(``|a − b|² = 2 − 2·a·b``). Full-precision and scalar-quantised indexes use inner
product; indexes that transform or product-quantise the vectors (``PCA``, ``OPQ``,
``PQ``) use L2, which, unlike inner product, is unchanged by the centring those
transforms do. :class:`audiorag.index.Index` turns either back into cosine scores.

>>> bytes_per_segment("IVF1024,PQ32", 512), bytes_per_segment("Flat", 512)
(40, 2056)
>>> candidates(2_000, 512)[0], candidates(400_000, 512)[0]
('Flat', 'HNSW32')
>>> [f for f in candidates(10_000_000, 512, max_memory=640_000_000)]
['PCAR224,IVF4096,PQ56', 'PCAR128,IVF4096,PQ32', 'IVF4096,PQ32', 'PCAR64,IVF4096,PQ16', 'IVF4096,PQ16']
"""

from __future__ import annotations

import math
import re
import time

import faiss
import numpy as np

from ..errors import ParameterError

DEFAULT_EF_SEARCH = 64
#: up to this many vectors exact search answers within a few milliseconds: ``auto`` stays exact
EXACT_MAX = 50_000
#: above this many vectors an HNSW graph takes too long to build on a small machine
GRAPH_MAX = 2_000_000
HNSW_M = 32
ID_BYTES = 8


def index_name(factory: str) -> str:
    """File-name form of a factory string: ``"IVF256,PQ16"`` → ``"ivf256-pq16"``."""
    return re.sub(r"[^a-z0-9]+", "-", factory.lower()).strip("-")


def metric(factory: str) -> str:
    """``"l2"`` for factories that transform or product-quantise vectors, else ``"inner_product"``."""
    return "l2" if re.search(r"PQ|PCA|OPQ|ITQ|RR", factory) else "inner_product"


def ivf_lists(n: int) -> int:
    """Inverted lists for ``n`` vectors: the power of two nearest √n (16 … 65,536)."""
    return int(min(65_536, max(16, 2 ** round(math.log2(math.sqrt(max(n, 1)))))))


def bytes_per_segment(factory: str, dim: int) -> int:
    """Estimated index bytes per vector: the code, its id, and graph links for HNSW."""
    stages = factory.split(",")
    d = dim
    size = None
    for stage in stages:
        if m := re.fullmatch(r"(?:OPQ|PCAR?|PCAW?R?)(\d+)(?:_(\d+))?", stage):
            d = int(m.group(2) or m.group(1)) if stage.startswith("OPQ") else int(m.group(1))
        elif m := re.fullmatch(r"PQ(\d+)(?:\+(\d+))?(?:x(\d+))?(fs)?", stage):
            size = math.ceil((int(m.group(1)) + int(m.group(2) or 0)) * int(m.group(3) or 8) / 8)
        elif stage in ("SQ8", "SQ4", "SQ6", "SQfp16"):
            size = math.ceil(d * {"SQ8": 8, "SQ4": 4, "SQ6": 6, "SQfp16": 16}[stage] / 8)
        elif stage == "Flat":
            size = 4 * d
    graph = re.match(r"HNSW(\d+)", factory)
    if graph:
        size = size if size is not None else 4 * d
        size += 2 * int(graph.group(1)) * 4 + 16
    return int((size if size is not None else 4 * d) + ID_BYTES)


def candidates(n: int, dim: int, *, max_memory: float | None = None) -> list[str]:
    """Factories worth trying for ``n`` vectors of ``dim``, best first, that fit ``max_memory`` bytes.

    Up to :data:`EXACT_MAX` vectors: exact search (full, then half, then 8-bit precision).
    Up to :data:`GRAPH_MAX`: an HNSW graph, then inverted lists with 8-bit codes. Beyond:
    inverted lists. Then product quantisation from 56 down to 16 bytes per vector, first
    after a PCA to 4 dimensions per code byte with a random rotation (``PCAR``, which spreads
    the variance evenly over the sub-quantisers, at no training cost), then plain.
    """
    nlist = ivf_lists(n)
    if n <= EXACT_MAX:
        families = ["Flat", "SQfp16", "SQ8"]
    elif n <= GRAPH_MAX:
        families = [f"HNSW{HNSW_M}", f"HNSW{HNSW_M},SQ8", f"IVF{nlist},Flat", f"IVF{nlist},SQ8"]
    else:
        families = [f"IVF{nlist},SQ8"]
    for m in (m for m in (56, 32, 16) if m <= dim):
        families.append(pq_family(m, dim, nlist))
        if dim % m == 0:
            families.append(f"IVF{nlist},PQ{m}")
    budget = math.inf if max_memory is None else max_memory / max(n, 1)
    fitting = [f for f in families if bytes_per_segment(f, dim) <= budget]
    if not fitting:
        cheapest = min(families, key=lambda f: bytes_per_segment(f, dim))
        raise ParameterError(f"no index fits {max_memory:.0f} bytes for {n} vectors of dim {dim} "
                             f"({budget:.1f} B each); the smallest, {cheapest}, needs "
                             f"{bytes_per_segment(cheapest, dim)} B per vector")
    return fitting


def pq_family(m: int, dim: int, nlist: int) -> str:
    """``m``-byte product quantisation after a rotating PCA to 4 dimensions per byte (fewer when
    ``dim`` is smaller), on ``nlist`` inverted lists."""
    reduced = 4 * m if 4 * m <= dim else m * (dim // m)
    return f"PCAR{reduced},IVF{nlist},PQ{m}"


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
    if hasattr(index, "set_search_params"):  # a refined index (.refine) sets k_factor and its own
        return index.set_search_params(params)
    if params:
        faiss.ParameterSpace().set_index_parameters(index, ",".join(f"{k}={v}" for k, v in params.items()))


def uses_id_map(factory: str) -> bool:
    """Inverted-list indexes store ids themselves; the rest are wrapped in an ``IndexIDMap``."""
    return "IVF" not in factory


def make_index(vectors: np.ndarray, ids: np.ndarray, factory: str, *, seed: int = 0,
               max_train: int | None = None) -> faiss.Index:
    """Train (when the factory needs it) and fill an index whose ids are ``ids``.

    Raises :class:`ParameterError` naming the factory when FAISS rejects it or there are too few
    vectors to train it.
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ParameterError(f"index {factory!r}: no vectors to index")
    index, _ = build(factory, x, [(ids, x)], seed=seed, max_train=max_train)
    apply_search_params(index, default_search_params(factory))
    return index


def build(factory: str, sample: np.ndarray, batches, *, seed: int = 0, max_train: int | None = None,
          reproducible: bool = True) -> tuple[faiss.Index, dict]:
    """An index trained on ``sample`` (when the factory needs training) and filled with
    ``batches`` of ``(ids, vectors)``; also ``n_train``, ``train_seconds`` and ``build_seconds``."""
    t0 = time.perf_counter()
    index = empty_index(factory, sample.shape[1])
    n_train = train(index, factory, sample, seed=seed, max_train=max_train) if not index.is_trained else 0
    t_train = time.perf_counter() - t0
    for ids, x in batches:
        add(index, factory, x, ids, reproducible=reproducible)
    return index, {"n_train": n_train, "train_seconds": round(t_train, 4),
                   "build_seconds": round(time.perf_counter() - t0, 4)}


def empty_index(factory: str, dim: int) -> faiss.Index:
    """An untrained, empty index for ``factory`` (ID-mapped unless it keeps ids itself)."""
    kind = faiss.METRIC_L2 if metric(factory) == "l2" else faiss.METRIC_INNER_PRODUCT
    try:
        base = faiss.index_factory(dim, factory, kind)
    except RuntimeError as exc:
        raise ParameterError(f"index factory {factory!r} rejected by FAISS for dim {dim}: "
                             f"{str(exc).strip().splitlines()[-1]}") from None
    return base if not uses_id_map(factory) else faiss.IndexIDMap(base)


def train(index: faiss.Index, factory: str, x: np.ndarray, *, seed: int = 0, max_train: int | None = None) -> int:
    """Train on (a seeded sample of) ``x``; returns the number of training vectors."""
    nlist = int(m.group(1)) if (m := re.search(r"IVF(\d+)", factory)) else 1
    if len(x) < nlist:
        raise ParameterError(f"index {factory!r} needs at least {nlist} vectors to train, have {len(x)}")
    limit = max_train or max(100_000, 64 * nlist)
    rng = np.random.default_rng(seed)
    sample = x if len(x) <= limit else x[np.sort(rng.choice(len(x), limit, replace=False))]
    # k-means in IVF/PQ training draws from FAISS's own RNG; fix its seed for reproducible indexes
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.cp.seed = seed
        ivf = faiss.downcast_index(ivf)
        if hasattr(ivf, "do_polysemous_training"):  # relabels PQ codes for a Hamming filter never used: ~30× the time
            ivf.do_polysemous_training = False
    try:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
    except RuntimeError as exc:
        raise ParameterError(f"index {factory!r} failed to train on {len(sample)} vectors: "
                             f"{str(exc).strip().splitlines()[-1]}") from None
    return len(sample)


def add(index: faiss.Index, factory: str, x: np.ndarray, ids: np.ndarray, *, reproducible: bool = True) -> None:
    """Add vectors with their ids. HNSW graphs depend on thread timing: ``reproducible`` builds them
    on one thread (libraries do; benchmarks that only measure may use every core)."""
    threads = faiss.omp_get_max_threads()
    if "HNSW" in factory and reproducible:
        faiss.omp_set_num_threads(1)
    try:
        index.add_with_ids(np.ascontiguousarray(x, dtype=np.float32), np.asarray(ids, dtype=np.int64))
    finally:
        faiss.omp_set_num_threads(threads)


def remove(index: faiss.Index, ids: np.ndarray) -> int:
    """Remove ``ids``; returns how many were removed. Raises :class:`ParameterError` when the
    index type cannot remove (HNSW graphs): such an index is rebuilt instead."""
    try:
        return int(index.remove_ids(np.asarray(ids, dtype=np.int64)))
    except RuntimeError as exc:
        raise ParameterError(f"this index type cannot remove vectors: {str(exc).strip().splitlines()[-1]}") from None
