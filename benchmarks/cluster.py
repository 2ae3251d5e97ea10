"""Fan-out through Ray shard actors vs local threads: latency and throughput with 1, 2, 4 shards, one run.

    python benchmarks/cluster.py                      # 160 generated tracks, ≈6,200 moments
    python benchmarks/cluster.py --tracks 80 --shards 1,2 --queries 100

One generated corpus (noise shaped by random band gains, 20 s at 8 kHz; windows of 1 s every 0.5 s) is
built once per shard count into a sharded library with a cheap fixed-space embedder (log energies of
32 bands, registered here: the cost measured is the fan-out's, not a model's). A local Ray (2 CPUs,
started once, its start-up timed apart) hosts the shard actors (:mod:`audiorag.library.cluster`).
For each shard count the same moment queries go through

- ``local``: :class:`~audiorag.library.fanout.FanoutIndex`, the shards' indexes searched in threads
  of this process (the default of ``search()`` on a sharded library);
- ``ray``: :class:`~audiorag.library.fanout.RayFanoutIndex`, one Ray actor per shard
  (``ShardedLibrary.open(path, ray_address=...)``);

measured as the index's ``search(q, 10)`` (the fan-out and merge, query vector given) and as the
whole ``search()`` call: p50/p99 of single queries one after another (second pass), and throughput
with 4 client threads. The first Ray query (actors started, shards opened) is timed apart. Every Ray
answer is checked equal to the local one. Records the load average beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from audiorag.datasets import TrackSource
from audiorag.embedders import Embedder, register
from audiorag.engines.ray import connect
from audiorag.library.shards import ShardedLibrary
from audiorag.search import Query, context, search

SR = 8000


@register("bench-bands32")
class Bands32(Embedder):
    """Log energies of 32 equal frequency bands, centred per window: a fixed space that costs ≈ nothing."""

    name, sample_rate, dim = "bench-bands32", SR, 32

    def embed(self, batch):
        power = np.abs(np.fft.rfft(self.check_batch(batch), axis=1)) ** 2
        bands = np.log(np.stack([b.sum(axis=1) for b in np.array_split(power, self.dim, axis=1)], axis=1) + 1e-9)
        return (bands - bands.mean(axis=1, keepdims=True)).astype(np.float32)


def corpus(folder: Path, n: int, seconds: float = 20.0, seed: int = 0) -> list[TrackSource]:
    """``n`` tracks of noise through random band gains that drift over time (every window differs)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        spec = np.fft.rfft(rng.standard_normal(int(seconds * SR)))
        gains = np.repeat(rng.uniform(0.1, 1.0, 64), -(-len(spec) // 64))[: len(spec)]
        y = np.fft.irfft(spec * gains, int(seconds * SR))
        y *= 1 + 0.5 * np.sin(2 * np.pi * np.arange(len(y)) / SR / rng.uniform(2, 7))
        path = folder / f"t{i:04d}.wav"
        sf.write(path, (0.3 * y / np.abs(y).max()).astype(np.float32), SR)
        out.append(TrackSource(str(path), {"label": f"g{i % 8}"}))
    return out


def timed(fn, items, threads: int = 1) -> tuple[list[float], float]:
    """Per-item seconds of ``fn(item)`` (one thread) or the wall time of all items over ``threads``."""
    if threads == 1:
        times = []
        for it in items:
            t0 = time.perf_counter()
            fn(it)
            times.append(time.perf_counter() - t0)
        return times, sum(times)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, items))
    return [], time.perf_counter() - t0


def measure(lib, queries: list, vectors: np.ndarray, threads: int) -> dict:
    index = context(lib).index
    for _ in range(2):  # the first pass warms caches
        t_index, _ = timed(lambda v: index.search(v[None, :], 10), vectors)
    t_search, _ = timed(lambda q: search(lib, q, k=10), queries)
    _, wall = timed(lambda v: index.search(v[None, :], 10), list(vectors) * 2, threads)
    return {"index_p50_ms": float(np.median(t_index) * 1e3), "index_p99_ms": float(np.percentile(t_index, 99) * 1e3),
            "search_p50_ms": float(np.median(t_search) * 1e3),
            "search_p99_ms": float(np.percentile(t_search, 99) * 1e3),
            f"throughput_qps_{threads}_threads": round(2 * len(vectors) / wall, 1)}


def start_ray(attempts: int = 3) -> None:
    """A local Ray with 2 CPUs; again when its raylet misses Ray's fixed 30 s start-up deadline (loaded machine)."""
    import ray
    for attempt in range(1, attempts + 1):
        try:
            connect(None, 2)
            return
        except Exception:
            ray.shutdown()
            if attempt == attempts:
                raise


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=160)
    ap.add_argument("--shards", default="1,2,4")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--out", default="experiments/results/shards-bench/cluster.json")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    try:
        load = os.getloadavg()
        sources = corpus(root / "audio", args.tracks)
        t0 = time.perf_counter()
        start_ray()
        ray_start = time.perf_counter() - t0
        rows = []
        for n in [int(s) for s in args.shards.split(",")]:
            t0 = time.perf_counter()
            lib = ShardedLibrary.create(root / f"lib{n}", n, window=1.0, hop=0.5)
            lib.add(sources, embedders=[Bands32()], workers=2, parallel=False)
            build = time.perf_counter() - t0
            local = ShardedLibrary.open(lib.path)
            tracks = local.tracks["track_id"].to_numpy()
            rng = np.random.default_rng(1)
            queries = [Query.moment(int(t), float(rng.uniform(0, 19))) for t in rng.choice(tracks, args.queries)]
            layout = context(local).layout
            vectors = np.asarray(local.embedding().vectors()[np.array([layout.moment(q.track_id, q.at)
                                                                        for q in queries])])
            remote = ShardedLibrary.open(lib.path, ray_address="local")
            t0 = time.perf_counter()
            first = search(remote, queries[0], k=10)
            actors_up = time.perf_counter() - t0
            for q in queries[:20]:  # the same answers
                a, b = search(remote, q, k=10), search(local, q, k=10)
                assert a["segment_id"].tolist() == b["segment_id"].tolist() and a.attrs["missing_shards"] == []
            row = {"shards": n, "segments": len(local.segments), "build_s": round(build, 1),
                   "first_ray_query_s": round(actors_up, 2), "hits": len(first),
                   "local": measure(local, queries, vectors, args.threads),
                   "ray": measure(remote, queries, vectors, args.threads)}
            remote.cluster.stop()
            rows.append(row)
            print(json.dumps(row), flush=True)
        record = {"tracks": args.tracks, "queries": args.queries, "k": 10, "threads": args.threads,
                  "ray_start_s": round(ray_start, 1), "rows": rows, "loadavg_before": load,
                  "loadavg_after": os.getloadavg(), "cores": os.cpu_count(), "python": sys.version.split()[0]}
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2))
        print(f"ray start {ray_start:.1f} s; load average before {load}, after {record['loadavg_after']}; "
              f"written to {out}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
