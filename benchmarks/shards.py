"""Fan-out latency vs shard count: the same vectors split into 1, 2, 4, 8 shards, searched as one.

    python benchmarks/shards.py                       # 200,000 × 128-D, Flat / HNSW32 / IVF*,Flat
    python benchmarks/shards.py --n 50000 --shards 1,2,4 --factories Flat

Vectors: clustered unit vectors (seeded Gaussian clusters, tracks of 15 consecutive windows), routed to
shards by a hash of the track as a sharded library routes files. Each shard gets its own FAISS index
(:func:`audiorag.index.factory.make_index`, default search parameters); :class:`audiorag.library.fanout.FanoutIndex`
searches them in threads and merges exactly — the code path of ``search()`` on a sharded library. For each
(factory, shard count): p50/p99 of single queries (k = 10, one after another) and recall@10 against exact
search over all the vectors (Flat shards: must be 1.0). ``IVF*`` sizes each shard's lists as 4·√n_shard.
Records the load average (``uptime``) beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from audiorag.index import Index
from audiorag.index.factory import make_index, metric
from audiorag.library.fanout import FanoutIndex


def vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors in 64 clusters; consecutive windows of one track stay close."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, dim)).astype(np.float32)
    track = np.arange(n) // 15
    x = centres[rng.integers(0, 64, track.max() + 1)[track]] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def shard_of(n: int, shards: int) -> np.ndarray:
    """The shard of every vector: a hash of its track (15 windows), as routing does per file."""
    track = (np.arange(n) // 15).astype(np.uint64)
    return ((track * np.uint64(2654435761)) % np.uint64(2 ** 32) % np.uint64(shards)).astype(np.int64)


def fanout(x: np.ndarray, factory: str, shards: int) -> FanoutIndex:
    where = shard_of(len(x), shards)
    parts, maps = [], []
    for s in range(shards):
        ids = np.flatnonzero(where == s)
        f = factory.replace("IVF*", f"IVF{max(16, int(4 * np.sqrt(len(ids))))}")
        parts.append(Index(make_index(x[ids], np.arange(len(ids)), f), {"factory": f, "metric": metric(f)}))
        maps.append(ids)
    return FanoutIndex(parts, maps, shards)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--shards", default="1,2,4,8")
    ap.add_argument("--factories", default="Flat;HNSW32;IVF*,Flat", help="';'-separated factory strings")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--out", default="experiments/results/shards-bench/fanout.json")
    args = ap.parse_args(argv)
    x = vectors(args.n, args.dim)
    q = x[np.random.default_rng(1).choice(args.n, args.queries, replace=False)]
    factories = args.factories.split(";")
    truth = fanout(x, "Flat", 1).search(q, 10)[1]  # exact (FAISS, not BLAS: its spinning threads skew timings)
    load = os.getloadavg()
    rows = []
    for factory in factories:
        for n_shards in [int(s) for s in args.shards.split(",")]:
            t0 = time.perf_counter()
            index = fanout(x, factory, n_shards)
            build = time.perf_counter() - t0
            times, found = [], []
            for _ in range(2):  # the first pass warms caches
                times.clear(), found.clear()
                for v in q:
                    t0 = time.perf_counter()
                    _, ids = index.search(v[None, :], 10)
                    times.append(time.perf_counter() - t0)
                    found.append(ids[0])
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))
            row = {"factory": factory, "shards": n_shards, "p50_ms": float(np.median(times) * 1000),
                   "p99_ms": float(np.percentile(times, 99) * 1000), "build_s": round(build, 2),
                   "recall@10": recall}
            rows.append(row)
            print(f"{factory:16s} {n_shards} shards: p50 {row['p50_ms']:.3f} ms, p99 {row['p99_ms']:.3f} ms, "
                  f"recall@10 {recall:.3f}", flush=True)
    record = {"n": args.n, "dim": args.dim, "queries": args.queries, "k": 10, "rows": rows,
              "loadavg_before": load, "loadavg_after": os.getloadavg(), "cores": os.cpu_count()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(f"load average before {load}, after {record['loadavg_after']}; written to {out}")


if __name__ == "__main__":
    main()
