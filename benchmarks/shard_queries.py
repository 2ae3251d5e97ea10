"""Query kinds on a sharded library against one library holding the same tracks, in one run: latency of
descriptor re-ranking, a descriptor filter, ``recommend`` (descriptor factors + inferred mood), hum and late
fusion, and the one-off cost of the view's gathered descriptor table.

    python benchmarks/shard_queries.py                      # 24 melodic tracks of 30 s, 4 shards
    python benchmarks/shard_queries.py --tracks 48 --shards 4 --out experiments/results/shards-bench/queries-48.json

The corpus: generated melodic tracks (``audiorag.datasets.melodic``, seed 3), window 10 s, hop 2 s, embedded
with features45 and melody, Flat indexes; one library (the baseline) and a sharded library of ``--shards``
shards (local fan-out: threads). Each query kind runs over every track's moment at 6 s (hum: one hummed phrase
per track), once to warm up, then measured, the two libraries taking turns query by query: p50 / p95 in
ms per query. Every sharded answer is checked equal to
the library's (tracks through their uri, scores to 1e-6). *gather*: ``reload()`` then ``descriptors()`` — the
view's concatenated descriptor table built again (a library reads its own table). Records the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from audiorag import Library
from audiorag.datasets.melodic import SR, MelodicDataset, melodies_of, synthesise_hum
from audiorag.embedders import get_embedder
from audiorag.library.shards import ShardedLibrary
from audiorag.recommend import recommend
from audiorag.rerank import Rerank
from audiorag.search import Query, search

EMBEDDERS = ("features45", "melody")


def kinds(hums: dict) -> dict:
    """Query kind → ``run(lib, track_id, uri)`` (track ids are the library's own)."""
    rerank = Rerank(harmonic=0.5, tempo=0.3, key=0.3, mood="calm", mood_weight=0.3, diversity=0.3)
    return {
        "rerank (harmony, tempo, key, mood)": lambda lib, t, u: search(lib, Query.moment(t, 6.0), k=10,
                                                                          embedder="features45", rerank=rerank),
        "filter mood=calm, tempo>=100": lambda lib, t, u: search(
            lib, Query.moment(t, 6.0), k=10, embedder="features45",
            filters={"mood": "calm", "tempo": {"op": ">=", "value": 100}}),
        "recommend (factors, inferred mood)": lambda lib, t, u: recommend(lib, [f"{t}@6"], k=10,
                                                                          embedder="features45"),
        "hum": lambda lib, t, u: search(lib, Query.hum(hums[u], sr=SR), k=10),
        "late fusion features45+melody": lambda lib, t, u: search(lib, Query.moment(t, 6.0), k=10,
                                                                   embedder="features45+melody", fusion="late"),
    }


def timed(run, libs: list, tracks: list) -> tuple[list, list]:
    """Per library: the times and answers of ``run`` over its ``tracks``, the libraries taking turns query by
    query (a load that changes during the run weighs on both alike), after one warm-up query each."""
    for lib, ts in zip(libs, tracks):
        run(lib, *ts[0])  # warm-up: contexts, the view's gathered tables
    times, answers = [[] for _ in libs], [[] for _ in libs]
    for i in range(len(tracks[0])):
        for j, lib in enumerate(libs):
            t0 = time.perf_counter()
            answers[j].append(run(lib, *tracks[j][i]))
            times[j].append(time.perf_counter() - t0)
    return times, answers


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=24)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--out", default="experiments/results/shards-bench/queries.json")
    args = ap.parse_args(argv)
    ds = MelodicDataset(args.tracks, seed=3, duration=30.0)
    ds.generate()
    root = Path(tempfile.mkdtemp(prefix="shard-queries-"))
    single = Library.create(root / "single", window=10, hop=2)
    single.add(ds, embedders=list(EMBEDDERS), workers=os.cpu_count(), progress=False)
    for name in EMBEDDERS:
        single.build_index(name, "Flat")
    sharded = ShardedLibrary.create(root / "sharded", args.shards, window=10, hop=2)
    sharded.add(ds, embedders=[get_embedder(n) for n in EMBEDDERS], workers=os.cpu_count())
    lib = ShardedLibrary.open(sharded.path)
    global_of = dict(zip(lib.tracks["uri"], lib.tracks["track_id"]))
    uris = single.tracks["uri"].tolist()
    hums = {u: synthesise_hum(melodies_of(u), np.random.default_rng(i), phrase=(10, 21), snr_db=25, edit=None)[0]
            for i, u in enumerate(uris)}
    load = os.getloadavg()
    rows = []
    for kind, run in kinds(hums).items():
        (a_times, b_times), (a, b) = timed(run, [single, lib], [list(zip(single.tracks["track_id"].tolist(), uris)),
                                                                [(int(global_of[u]), u) for u in uris]])
        for x, y in zip(a, b):  # the same hits as one library
            assert [global_of[u] for u in x["uri"]] == y["track_id"].tolist(), kind
            assert np.allclose(x["score"], y["score"], rtol=0, atol=1e-6), kind
        row = {"kind": kind, "queries": len(uris)}
        for name, times in (("library", a_times), ("sharded", b_times)):
            row[f"{name}_p50_ms"] = round(float(np.median(times) * 1000), 2)
            row[f"{name}_p95_ms"] = round(float(np.percentile(times, 95) * 1000), 2)
        rows.append(row)
        print(f"{kind:38s} library p50 {row['library_p50_ms']:8.2f} ms   sharded p50 {row['sharded_p50_ms']:8.2f} ms",
              flush=True)
    gathers = []
    for _ in range(5):
        lib.reload()
        t0 = time.perf_counter()
        lib.descriptors()
        gathers.append(time.perf_counter() - t0)
    record = {"tracks": args.tracks, "segments": len(single.segments), "shards": args.shards,
              "embedders": list(EMBEDDERS), "window": 10, "hop": 2, "k": 10, "rows": rows,
              "gather_descriptor_table_ms": round(float(np.median(gathers) * 1000), 2),
              "loadavg_before": load, "loadavg_after": os.getloadavg(), "cores": os.cpu_count()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(f"gathered descriptor table: {record['gather_descriptor_table_ms']} ms; load average before {load}, "
          f"after {record['loadavg_after']}; written to {out}")


if __name__ == "__main__":
    main()
