"""Exact search of one query: ``Flat`` against half-precision codes re-ranked exactly (``SQfp16,Refine``).

    python benchmarks/exact.py               # 10⁵ × 512: experiments/results/index-bench/exact-n100000.json
    python benchmarks/exact.py --n 100000 --dim 768

A single query's exact scan reads every stored vector once, so its time follows the bytes it
reads: ``Flat`` reads float32, ``SQfp16`` half of that. ``SQfp16,Refine``
(:mod:`audiorag.index.refine`) re-ranks the codes' candidates from the float32 vectors and widens
them until none left out can win, so it returns the exact neighbours; its ``k_factor`` is tuned as a build
tunes it (the fastest, on 200 other queries). The database is
:class:`mixture.Mixture` vectors fitted to a library's real embeddings (as ``benchmarks/index.py``).
The three are timed query by query, interleaved, in one run (FAISS on one thread, as a server
answering concurrent queries runs it): wall and CPU time per query, and, against ``Flat``, the
queries whose ten neighbours are the same (up to float32 ties) and how many needed wider candidates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from index import DEFAULT_FIT, fit  # noqa: E402

from audiorag import __version__  # noqa: E402
from audiorag.index import refine as R  # noqa: E402
from audiorag.index.factory import build  # noqa: E402

K = 10


def timed(search, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``search`` over each query alone: (ids ``[n, K]``, wall seconds, this thread's CPU seconds)."""
    ids, wall, cpu = [], [], []
    for q in queries:
        t0, c0 = time.perf_counter(), time.thread_time()
        ids.append(search(q[None, :])[0])
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    return np.asarray(ids), np.asarray(wall), np.asarray(cpu)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved passes over the queries; the figures are "
                    "the median over every pass")
    ap.add_argument("--fit", default=DEFAULT_FIT, help="library whose embeddings the mixture is fitted to")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if not Path(args.fit, "library.json").exists():
        sys.exit(f"{args.fit}: no library to fit the vectors to; run `make demo` first or pass --fit LIBRARY")
    faiss.omp_set_num_threads(1)
    mix = fit(args.fit, args.dim)
    x = mix.sample(args.n, dim=args.dim, seed=0)
    queries = mix.sample(args.queries, dim=args.dim, seed=12345)
    ids = np.arange(args.n)
    flat, _ = build("Flat", x, [(ids, x)])
    codes, _ = build("SQfp16", x, [(ids, x)])
    refined = R.RefinedIndex(codes, x, "SQfp16,Refine")
    tuning = mix.sample(200, dim=args.dim, seed=999)  # k_factor tuned as a build tunes it, on other queries
    R.tune(refined, "SQfp16,Refine", tuning, np.argsort(-(tuning @ x.T), axis=1)[:, :K], k=K)
    sims = queries.astype(np.float64) @ x.T.astype(np.float64)
    best = -np.sort(-sims, axis=1)[:, :K]
    rows = {name: {"wall": [], "cpu": []} for name in ("Flat", "SQfp16", "SQfp16,Refine")}
    searches = {"Flat": lambda q: flat.search(q, K)[1], "SQfp16": lambda q: codes.search(q, K)[1],
                "SQfp16,Refine": lambda q: refined.search(q, K)[1]}
    found = {}
    for _ in range(args.rounds):
        for name, search in searches.items():
            found[name], wall, cpu = timed(search, queries)
            rows[name]["wall"].append(wall)
            rows[name]["cpu"].append(cpu)
    widened = sum(refined.base.search(q[None, :], K * refined.k_factor)[0][0, -1] + R.half_precision_error(q)
                  >= np.sort(sims[i])[-K] for i, q in enumerate(queries))
    results = []
    for name, t in rows.items():
        wall, cpu = np.concatenate(t["wall"]) * 1e3, np.concatenate(t["cpu"]) * 1e3
        exact = np.abs(np.take_along_axis(sims, found[name], axis=1) - best).max(axis=1) <= 3e-7
        results.append({"index": name, "bytes_per_segment": {"Flat": 4, "SQfp16": 2, "SQfp16,Refine": 2}[name]
                        * args.dim, "latency_p50_ms": round(float(np.median(wall)), 3),
                        "latency_p99_ms": round(float(np.percentile(wall, 99)), 3),
                        "cpu_p50_ms": round(float(np.median(cpu)), 3), "exact_queries": int(exact.sum())})
        print(f"{name:14s} p50 {results[-1]['latency_p50_ms']:6.2f} ms  p99 {results[-1]['latency_p99_ms']:6.2f} ms  "
              f"CPU p50 {results[-1]['cpu_p50_ms']:6.2f} ms  exact {int(exact.sum())}/{len(queries)}", flush=True)
    out = Path(args.out or f"experiments/results/index-bench/exact-n{args.n}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": "exact", "n": args.n, "dim": args.dim, "queries": args.queries, "rounds": args.rounds,
              "k": K, "k_factor": refined.k_factor, "widened_queries": int(widened), "results": results,
              "mixture_source": mix.source, "audiorag_version": __version__, "faiss_version": faiss.__version__,
              "faiss_threads": 1, "load_1min": round(os.getloadavg()[0], 2),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}}
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
