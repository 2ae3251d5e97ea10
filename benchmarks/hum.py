"""Hum query latency (and accuracy) against library size, up to 10,000+ segments.

The libraries hold the same generated ``melodic`` tracks cut with 10 s windows at a shrinking
hop (2 s, 1 s, 0.4 s, 0.2 s: 11 to 101 segments per 30 s track), so the number of segments
grows while the music stays the same; every library gets the ``melody`` embedding and a flat
index. Each size answers the same seeded hums (``audiorag.evaluate.hum``, the reported seed);
latency is per query, end to end (pitch tracking of the hum, FAISS, alignment of the
candidates), as wall time and as the query's CPU time (the wall time on an idle machine; this
one is shared by several people, the load is recorded). Denser hops put more overlapping
segments of one track among the candidates, so MRR at small hops is not comparable with the
reported figure (2 s hop).

    .venv/bin/python benchmarks/hum.py --tracks 100 --hums 50 --out experiments/results/hum-bench
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from audiorag.datasets.melodic import REPORT_SEED, MelodicDataset
from audiorag.evaluate.hum import evaluate_hum
from audiorag.library import Library


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=100)
    ap.add_argument("--hums", type=int, default=50)
    ap.add_argument("--hops", default="2,1,0.4,0.2")
    ap.add_argument("--out", type=Path, default=Path("experiments/results/hum-bench"))
    args = ap.parse_args()
    ds = MelodicDataset(args.tracks, seed=0)
    rows = []
    for hop in [float(h) for h in args.hops.split(",")]:
        path = args.out / f"lib-hop{hop:g}"
        lib = Library.create(path, window=10, hop=hop, exist_ok=True)
        if not lib.embeddings():
            t0 = time.perf_counter()
            lib.add(ds, embedders=["melody"], progress=False)
            lib.build_index("melody")
            print(f"built {path}: {len(lib.segments)} segments in {time.perf_counter() - t0:.0f} s", flush=True)
        metrics, _ = evaluate_hum(lib, n_hums=args.hums, seed=REPORT_SEED)
        row = {"hop_s": hop, "segments": len(lib.segments), "hums": args.hums, "MRR": round(metrics["MRR"], 3),
               "top10": round(metrics["top10"], 3), "p50_ms": round(metrics["latency/p50_ms"], 1),
               "p99_ms": round(metrics["latency/p99_ms"], 1), "cpu_p50_ms": round(metrics["cpu/p50_ms"], 1),
               "cpu_p99_ms": round(metrics["cpu/p99_ms"], 1), "load_1min": os.getloadavg()[0]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latency.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| segments | hop (s) | p50 ms | p99 ms | CPU p50 ms | CPU p99 ms | MRR | top-10 | load (1 min) |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['segments']} | {r['hop_s']:g} | {r['p50_ms']} | {r['p99_ms']} | {r['cpu_p50_ms']} | "
              f"{r['cpu_p99_ms']} | {r['MRR']} | {r['top10']} | {r['load_1min']:.1f} |")


if __name__ == "__main__":
    main()
