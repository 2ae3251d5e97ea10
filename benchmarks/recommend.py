"""Recommendation benchmark: what descriptors cost at build time, and the recommend trade-off.

    python benchmarks/recommend.py --out experiments/results/recommend           # the default corpus
    OMP_NUM_THREADS=1 python benchmarks/recommend.py --cost LIBRARY               # recommend vs search, ms

1. **build cost**: the same dataset built twice into fresh libraries (features45, Flat), once with the
   descriptors switched off and once with them, interleaved ``--rounds`` times; plus the per-track time
   of :func:`~audiorag.descriptors.tonal.describe` beside features45's ``embed_track`` in one process.
2. **key accuracy** on the corpus (synthetic only: its tracks carry their generated key; the dorian
   genres count as minor), per window of single-section tracks.
3. **trade-off**: :func:`~audiorag.evaluate.recommend.evaluate_recommend` on the built library
   (λ × caps × discovery vs plain search; P@10, discovery, ILD, ... and ms per call).

Writes ``build.json``, ``metrics.json``, ``tradeoff.csv``/``.md`` and ``recommend_tradeoff.png`` to
``--out``; the machine's load average is recorded with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from audiorag import Library
from audiorag.datasets import resolve
from audiorag.engines import job

_MODES = {"techno": 1, "house": 1, "drum_and_bass": 1, "ambient": 0, "hiphop": 1, "rock": 0, "classical": 0,
          "jazz": 1}


def _build(source, root: Path, *, window: float, hop: float, describe: bool) -> float:
    compute = job.describe_windows
    if not describe:  # the worker processes fork from here: they inherit the switch
        job.describe_windows = lambda y, sr, seg, duration: job.empty_descriptors(len(seg.windows(duration)[0]))
    try:
        t0 = time.perf_counter()
        lib = Library.create(root, window=window, hop=hop)
        lib.add(source, embedders=["features45"], progress=False)
        lib.build_index("features45", "Flat")
        return time.perf_counter() - t0
    finally:
        job.describe_windows = compute


def build_cost(source, *, window: float, hop: float, rounds: int) -> dict:
    """Wall seconds of building with and without descriptors, interleaved; and describe vs features45."""
    from audiorag.audio import load, resample
    from audiorag.descriptors.tonal import describe
    from audiorag.embedders import get_embedder
    from audiorag.segment import Segmentation
    tmp = Path(tempfile.mkdtemp())
    without, with_ = [], []
    if hasattr(source, "generate"):  # a generated corpus is made (and cached) before the clock starts
        source.generate()
    for r in range(rounds):
        without.append(_build(source, tmp / f"off{r}", window=window, hop=hop, describe=False))
        with_.append(_build(source, tmp / f"on{r}", window=window, hop=hop, describe=True))
    lib = Library.open(tmp / "on0")
    seg = Segmentation(window, hop)
    e = get_embedder("features45")
    files = lib.tracks["uri"].head(20).tolist()
    t_desc, t_feat = [], []
    for uri in files:
        y, sr = load(uri)
        starts, ends = seg.windows(len(y) / sr)
        t0 = time.perf_counter()
        describe(y, sr, starts, ends)
        t1 = time.perf_counter()
        e.embed_track(resample(y, sr, e.sample_rate), starts, ends)
        t_feat.append(time.perf_counter() - t1)
        t_desc.append(t1 - t0)
    out = {"tracks": int(len(lib.tracks)), "segments": int(len(lib.segments)),
           "build_s_without_descriptors": without, "build_s_with_descriptors": with_,
           "build_ratio": float(np.median(with_) / np.median(without)),
           "describe_ms_per_track": 1000 * float(np.mean(t_desc)),
           "features45_ms_per_track": 1000 * float(np.mean(t_feat)),
           "load_avg": os.getloadavg()}
    return out, tmp


def key_accuracy(lib) -> dict:
    """Share of windows of single-section synthetic tracks whose estimated key (and tonic) is the generated one."""
    tracks = lib.tracks
    if not {"key", "genre", "mixed"} <= set(tracks.columns):
        return {}
    desc = lib.descriptors()
    seg = lib.segments
    meta = tracks.set_index("track_id")
    rows = seg["track_id"].map(meta["mixed"]).astype(str).str.lower().eq("false").to_numpy()
    want_tonic = seg["track_id"].map(meta["key"]).to_numpy()[rows].astype(int)
    want_mode = seg["track_id"].map(meta["genre"].map(_MODES)).to_numpy()[rows]
    from audiorag.descriptors.tonal import parse_key
    got = np.array([parse_key(k) for k in desc["key"].to_numpy()[rows]])
    return {"key/accuracy": float(((got[:, 0] == want_tonic) & (got[:, 1] == want_mode)).mean()),
            "key/tonic_accuracy": float((got[:, 0] == want_tonic).mean()), "key/windows": int(rows.sum())}


def cost(lib, *, n: int = 30, seed: int = 1) -> dict:
    """Median ms of ``recommend`` (default settings), a plain moment ``search`` and a re-ranked ``search``
    (k = 10), interleaved per simulated listener."""
    from audiorag import Query
    from audiorag.evaluate.protocol import Protocol, segment_labels
    from audiorag.evaluate.recommend import listeners
    from audiorag.recommend import recommend
    from audiorag.rerank import Rerank
    from audiorag.search import search
    labels = segment_labels(lib.tracks, lib.segments, Protocol(label="genre"))
    people = listeners(lib.tracks, lib.segments, labels, n=n, seed=seed)
    rerank = Rerank(diversity=0.3, harmonic=0.2, tempo=0.1, key=0.1, max_per_artist=2)
    times: dict = {"recommend": [], "search": [], "search_rerank": []}
    recommend(lib, people[0]["liked"], history=people[0]["history"])  # warm the caches
    for p in people:
        moment = Query.moment(*p["liked"][-1])
        t0 = time.perf_counter()
        recommend(lib, p["liked"], history=p["history"], k=10)
        t1 = time.perf_counter()
        search(lib, moment, k=10, exclude_same_track=True)
        t2 = time.perf_counter()
        search(lib, moment, k=10, exclude_same_track=True, rerank=rerank)
        t3 = time.perf_counter()
        for name, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
            times[name].append(seconds)
    out = {f"{k}_ms": 1000 * float(np.median(v)) for k, v in times.items()}
    return {**out, "omp_threads": os.environ.get("OMP_NUM_THREADS", "default"), "load_avg": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="synthetic:96")
    ap.add_argument("--label-regex", default=None)
    ap.add_argument("--label", default="genre")
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--hop", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--listeners", type=int, default=40)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--cost", type=Path, metavar="LIBRARY", help="only time recommend vs search on LIBRARY")
    args = ap.parse_args()
    if args.cost:
        print(json.dumps(cost(Library.open(args.cost)), indent=2))
        return
    if args.out is None:
        ap.error("--out is required")
    from audiorag.evaluate.recommend import evaluate_recommend, markdown
    from audiorag.plots import recommend_tradeoff
    source = resolve(args.dataset, **({"label_regex": args.label_regex} if args.label_regex else {}))
    built, tmp = build_cost(source, window=args.window, hop=args.hop, rounds=args.rounds)
    lib = Library.open(tmp / "on0")
    built.update(key_accuracy(lib))
    print(json.dumps(built, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "build.json").write_text(json.dumps(built, indent=2) + "\n")
    label = args.label if args.label in lib.tracks.columns else "label"
    artist = "artist" if "artist" in lib.tracks.columns else label
    record, table = evaluate_recommend(lib, label=label, n_listeners=args.listeners, artist_column=artist)
    record = record.model_copy(update={"extra": {**record.extra, "build": built, "load_avg": os.getloadavg()}})
    record.write(args.out)
    table.to_csv(args.out / "tradeoff.csv", index=False)
    (args.out / "tradeoff.md").write_text(markdown(table))
    recommend_tradeoff(table, args.out)
    print(markdown(table))
    print("load average", os.getloadavg())
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
