"""identify on a sharded library vs one library holding the same files: the same answers, and what the
per-shard lookups cost (docs/shards.md#identify).

    python benchmarks/shard_identify.py --tracks 10 --shards 3 --out experiments/results/shards-bench/identify.json

Generated music that never repeats (``audiorag.evaluate.identify.music``, 120 s tracks) is built, with
fingerprints, into one library and into a sharded library (local fan-out). The same clips — 3, 5 and 10 s,
cut at random offsets, under every degradation of :data:`audiorag.evaluate.identify.DEGRADATIONS` — are
identified on both, alternately (one library first, then the shards, per clip), with ``k = 3``. Recorded:
how many answers are identical (track, offset, stretch, score; confidence to 1e-9), moment@1 (±0.5 s) of
each, and the latency p50/p99 of each (the baseline, one library, measured in the same run), with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22050


def run(args) -> dict:
    from audiorag import Library
    from audiorag.evaluate.identify import DEGRADATIONS, TOLERANCE, degrade, music
    from audiorag.identify import identify
    from audiorag.library.shards import ShardedLibrary
    root = Path(args.workdir or tempfile.mkdtemp())
    (root / "in").mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(args.tracks):
        path = root / "in" / f"m{i:03d}.flac"
        if not path.exists():
            sf.write(path, music(120, SR, seed=i), SR)
        files.append(path)
    load_before = [round(x, 2) for x in os.getloadavg()]
    single = Library.create(root / "single", exist_ok=True)
    single.add(f"folder:{root / 'in'}", fingerprint=True, progress=False)
    sharded = ShardedLibrary.create(root / "sharded", args.shards, exist_ok=True)
    sharded.add(f"folder:{root / 'in'}", fingerprint=True)
    sharded = ShardedLibrary.open(root / "sharded")
    rng = np.random.default_rng(args.seed)
    same, found, times = 0, {"single": 0, "sharded": 0}, {"single": [], "sharded": []}
    n = 0
    for c in range(args.clips):
        path = files[int(rng.integers(0, len(files)))]
        at = float(rng.uniform(0, 100))
        y, _ = sf.read(path, dtype="float32")
        for seconds in (3.0, 5.0, 10.0):
            for kind in DEGRADATIONS:
                clip = degrade(y[int(at * SR): int((at + seconds) * SR)], SR, kind,
                               rng=np.random.default_rng([c, int(seconds)]))
                answers = {}
                for name, lib in (("single", single), ("sharded", sharded)):
                    t0 = time.perf_counter()
                    answers[name] = identify(lib, clip, sr=SR, k=3)
                    times[name].append(time.perf_counter() - t0)
                    top = answers[name]
                    found[name] += bool(len(top)) and Path(str(top["uri"].iloc[0])).name == path.name \
                        and abs(float(top["offset"].iloc[0]) - at) <= TOLERANCE
                a, b = answers["single"], answers["sharded"]
                same += (a["uri"].tolist() == b["uri"].tolist()
                         and a[["offset", "stretch", "score"]].values.tolist()
                         == b[["offset", "stretch", "score"]].values.tolist()
                         and np.allclose(a["confidence"].astype(float), b["confidence"].astype(float),
                                         rtol=0, atol=1e-9))
                n += 1

    def ms(name, q):
        return round(1000 * float(np.percentile(times[name], q)), 2)
    return {"tracks": args.tracks, "shards": args.shards, "clips": n, "identical_answers": same,
            "moment@1": {k: v / n for k, v in found.items()},
            "latency_ms": {k: {"p50": ms(k, 50), "p99": ms(k, 99)} for k in times},
            "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=10)
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--clips", type=int, default=12, help="clip positions (each × 3 lengths × every degradation)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir", help="keep the generated audio and libraries here (default: a temporary folder)")
    ap.add_argument("--out", help="write the result as JSON")
    args = ap.parse_args()
    result = run(args)
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
