"""Stem search: on generated loops whose drum pattern and harmony vary independently (4 patterns × 4
progressions × SEEDS, ``tests/test_stems.py``), P@10 of "same drum pattern" searching the percussive stem vs
the full mix, and of "same harmony" searching the harmonic stem vs the full mix (moments of other tracks).

``--cost SOURCE``: the cost of a stem source instead — seconds of separation per 10 s of audio, and one
track's stems embedded with one separation per track (``shared_separation``, what the build does) vs one
separation per stem embedder, side by side. For ``demucs`` a full-size HTDemucs (the published htdemucs
architecture, random weights: the same compute) is saved in demucs' format and loaded through the offline path.

    python benchmarks/stems.py [--embedder features45] [--seeds 2]     # prints JSON with the load average
    python benchmarks/stems.py --cost demucs|hpss [--seconds 20] [--reps 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_stems import HARMONIES, PATTERNS, SR, drum_harmony_track, save_demucs  # noqa: E402

from audiorag import Library, Query  # noqa: E402
from audiorag.search import search  # noqa: E402


def stem_cost(source: str, embedder: str, seconds: float, reps: int = 1) -> dict:
    """Separation seconds per 10 s of audio (Demucs: a full-size HTDemucs) and one track's stems embedded with
    one separation vs one per stem embedder."""
    import torch

    from audiorag.embedders import get_embedder
    from audiorag.embedders.stems import shared_separation, with_stems
    from audiorag.embedders.torchmodel import set_threads
    threads = set_threads()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        if source == "demucs":
            save_demucs(Path(tmp), "htdemucs", size="full")
        t0 = time.perf_counter()
        stems = with_stems([get_embedder(embedder)], source, **({"repo": Path(tmp)} if source == "demucs" else {}))
        loaded = time.perf_counter() - t0
    stems = stems[1:]
    sep = stems[0].source
    timed = []
    real = sep.separate
    sep.separate = lambda y, sr: timed.append(_timed(real, y, sr)) or timed[-1][2]
    y = drum_harmony_track(2, 1, 7, seconds=seconds)
    starts = np.arange(0, seconds - 4 + 1e-9, 2.0)
    runs = {}
    for way in ("one separation per stem embedder", "one separation per track") * reps:  # alternating; the best
        timed.clear()
        t0 = time.perf_counter()
        if way == "one separation per track":
            with shared_separation(y, SR):
                vectors = [e.embed_track(y, starts, starts + 4) for e in stems]
        else:
            vectors = [e.embed_track(y, starts, starts + 4) for e in stems]
        run = {"seconds": round(time.perf_counter() - t0, 2), "separations": len(timed),
               "separation_seconds": round(sum(t for t, _, _ in timed), 2),
               "separation_cpu_seconds": round(sum(c for _, c, _ in timed), 2),
               "vectors": " ".join(f"{a}x{b}" for a, b in (v.shape for v in vectors))}
        if way not in runs or run["seconds"] < runs[way]["seconds"]:
            runs[way] = run
    shared = runs["one separation per track"]
    per_10s = shared["separation_seconds"] / shared["separations"] / (seconds / 10)
    cpu_per_10s = shared["separation_cpu_seconds"] / shared["separations"] / (seconds / 10)
    model = {}
    if source == "demucs":
        model = {"model": "htdemucs architecture, random weights", "sample_rate": sep.sample_rate,
                 "parameters_M": round(sum(p.numel() for p in sep.model.parameters()) / 1e6, 1),
                 "segment_s": float(sep.model.models[0].segment)}
    return {"source": source, **model, "load_seconds": round(loaded, 1), "track_seconds": seconds,
            "embedder": embedder,
            "separation_seconds_per_10s_audio": round(per_10s, 1),
            "separation_cpu_seconds_per_10s_audio": round(cpu_per_10s, 1), **runs,
            "per-stem / per-track": round(runs["one separation per stem embedder"]["seconds"] / shared["seconds"], 2),
            "torch_threads": threads, "torch": torch.__version__, "load_before": load,
            "load_after": os.getloadavg()}


def _timed(func, *args):
    """Wall and CPU (all threads) seconds of ``func(*args)``, and its result."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = func(*args)
    return time.perf_counter() - t0, time.process_time() - c0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="features45")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--cost", choices=("hpss", "demucs"), help="measure that stem source's cost instead")
    ap.add_argument("--seconds", type=float, default=20.0, help="--cost: length of the generated track")
    ap.add_argument("--reps", type=int, default=1, help="--cost: alternating repetitions (the best is kept)")
    args = ap.parse_args()
    if args.cost:
        print(json.dumps(stem_cost(args.cost, args.embedder, args.seconds, args.reps), indent=1, default=str))
        return
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        labels = {}
        for p in range(len(PATTERNS)):
            for h in range(len(HARMONIES)):
                for s in range(args.seeds):
                    name = f"d{p}h{h}s{s}.wav"
                    sf.write(root / name, drum_harmony_track(p, h, 100 * s + 10 * p + h), SR)
                    labels[name] = (p, h)
        lib = Library.create(root / "lib", window=4, hop=2)
        t0 = time.perf_counter()
        e = args.embedder
        lib.add(sorted(root.glob("*.wav")), embedders=[e, f"{e}@harmonic", f"{e}@percussive"], progress=False)
        built = time.perf_counter() - t0
        for key in (e, f"{e}@harmonic", f"{e}@percussive"):
            lib.build_index(key, "Flat")
        truth = {int(t): labels[Path(u).name] for t, u in zip(lib.tracks["track_id"], lib.tracks["uri"])}
        out = {}
        for what, column in (("same drum pattern", 0), ("same harmony", 1)):
            for emb in (e, f"{e}@{'percussive' if column == 0 else 'harmonic'}"):
                precision = []
                for tid in truth:
                    hits = search(lib, Query.moment(tid, 2.0), embedder=emb, k=10, exclude_same_track=True)
                    precision.append(np.mean([truth[int(t)][column] == truth[tid][column] for t in hits["track_id"]]))
                out[f"{what}: P@10 {emb}"] = round(float(np.mean(precision)), 3)
    print(json.dumps({**out, "tracks": len(truth), "chance": round((args.seeds * len(HARMONIES) - 1) /
                                                                   (len(truth) - 1), 3),
                      "build_seconds": round(built, 1), "load": round(load, 1)}, indent=1))


if __name__ == "__main__":
    main()
