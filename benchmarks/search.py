"""What ``search()`` adds on top of the raw FAISS call, side by side in one run.

    python benchmarks/search.py                                   # the make-demo library, features45 (the docs' record)
    python benchmarks/search.py --library LIB --embedder aisfx --index auto

For each of ``--queries`` moments of the library (seeded), interleaved: the raw
``index.search`` of the moment's vector (k = 10) and ``search(lib, Query.moment(...),
k=10)`` (vector lookup, FAISS, filtering, hit table with track metadata), then the same
with ``by="track"`` and with a metadata filter. Overhead = p50(search) − p50(raw).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from audiorag import Library, Query
from audiorag.search import context, search

DEFAULT_LIBRARY = "experiments/results/default/libraries/synthetic-96-w10-h2"  # made by `make demo`


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--library", default=DEFAULT_LIBRARY)
    ap.add_argument("--embedder", default="features45")
    ap.add_argument("--index", default=None, help="index name (default: flat or the only one)")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--out", default="experiments/results/search-bench/overhead.json")
    args = ap.parse_args(argv)
    lib = Library.open(args.library)
    ctx = context(lib, args.embedder, args.index)
    segs = lib.segments[lib.segments["track_id"] >= 0]
    rows = np.random.default_rng(0).choice(len(segs), min(args.queries, len(segs)), replace=False)
    moments = [(int(segs["track_id"].iat[r]), float(segs["start"].iat[r]), int(segs["segment_id"].iat[r]))
               for r in rows]
    column = next((c for c in ("genre", "label", "category") if c in lib.tracks.columns), None)
    allowed = lib.tracks[column].dropna().unique()[:3].tolist() if column else None
    variants = {"segment": {}, "track": {"by": "track"}}
    if allowed:
        variants[f"filter {column}"] = {"filters": {column: allowed}}
    vectors = np.asarray(lib.vectors(ctx.emb.key))
    times: dict[str, list[float]] = {"raw": [], **{v: [] for v in variants}}
    for _ in range(2):  # the first pass warms caches, the second is measured
        for v in times.values():
            v.clear()
        for track, at, sid in moments:
            t0 = time.perf_counter()
            ctx.index.search(vectors[sid:sid + 1], 10)
            times["raw"].append(time.perf_counter() - t0)
            for name, kw in variants.items():
                t0 = time.perf_counter()
                search(lib, Query.moment(track, at), embedder=ctx.emb.key, index=args.index, k=10, **kw)
                times[name].append(time.perf_counter() - t0)
    p50 = {k: float(np.median(v) * 1000) for k, v in times.items()}
    record = {"library": args.library, "embedding": ctx.emb.key, "index": ctx.index.sidecar["factory"],
              "n_segments": int(ctx.index.ntotal), "queries": len(moments), "k": 10,
              "p50_ms": {k: round(v, 4) for k, v in p50.items()},
              "overhead_ms": {k: round(v - p50["raw"], 4) for k, v in p50.items() if k != "raw"}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(f"{record['embedding']} / {record['index']} over {record['n_segments']:,} segments, k=10, "
          f"{len(moments)} moment queries (p50 ms):")
    for name, value in p50.items():
        extra = "" if name == "raw" else f"  overhead {value - p50['raw']:.3f} ms"
        print(f"  {name:22s} {value:.3f}{extra}")


if __name__ == "__main__":
    main()
