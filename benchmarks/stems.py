"""Stem search: on generated loops whose drum pattern and harmony vary independently (4 patterns × 4
progressions × SEEDS, ``tests/test_stems.py``), P@10 of "same drum pattern" searching the percussive stem vs
the full mix, and of "same harmony" searching the harmonic stem vs the full mix (moments of other tracks).

    python benchmarks/stems.py [--embedder features45] [--seeds 2]     # prints JSON with the load average
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
from test_stems import HARMONIES, PATTERNS, SR, drum_harmony_track  # noqa: E402

from audiorag import Library, Query  # noqa: E402
from audiorag.search import search  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="features45")
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
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
