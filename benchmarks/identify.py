"""Landmark identification measured (docs/identify.md): robustness, ingest speed, size and scale.

    python benchmarks/identify.py robustness --hours 1 --clips 40 --out experiments/results/identify/robustness.json
    python benchmarks/identify.py ingest --hours 1 --out experiments/results/identify/ingest.json
    python benchmarks/identify.py scale --hours 10 30 100 --out experiments/results/identify/scale.json

``robustness``: a library of generated music (``audiorag.evaluate.identify.music``: never repeats, so every
moment has one right answer) built through ``Library.add(fingerprint=True)``; moment@1 (±0.5 s), track@1,
stretch error and latency per degradation × clip length, false positives on 40 unindexed tracks.
``ingest``: × real time on 2 worker processes of (a) the decode floor (read + decode each file, nothing
else), (b) decode + landmarks, both through the build's own pool in the same run, and (c) a whole
``Library.add(fingerprint=True)`` (tables, commits, postings merge; no embedder).
``scale``: postings grown to each size (tracks of 5 min, fingerprinted at 8 kHz in 2 processes); at each:
bytes per hour of audio, merge time, identification latency p50/p99 and moment@1 of clean and 10 dB-noise
10 s clips, false positives. Every figure is recorded with the machine's load (``os.getloadavg``).
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


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _corpus(folder: Path, hours: float, seconds: float, *, first_seed: int = 0) -> list[Path]:
    from audiorag.evaluate.identify import music
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(int(round(hours * 3600 / seconds))):
        p = folder / f"m{first_seed + i:05d}.flac"
        if not p.exists():
            sf.write(p, music(seconds, SR, seed=first_seed + i), SR)
        paths.append(p)
    return paths


def robustness(args) -> dict:
    from audiorag import Library
    from audiorag.evaluate.identify import run
    root = Path(args.workdir or tempfile.mkdtemp())
    files = _corpus(root / "in", args.hours, 120)
    unindexed = _corpus(root / "out", 40 * 60 / 3600, 60, first_seed=10 ** 6)
    lib_path = root / "lib"
    lib = Library.open(lib_path) if (lib_path / "library.json").exists() else Library.create(lib_path)
    lib.add(files, fingerprint=True, progress=False)
    t0 = time.perf_counter()
    table = run(lib, clips=args.clips, unindexed=[str(p) for p in unindexed], seed=1, progress=True)
    out = {"hours": args.hours, "tracks": len(lib.tracks), "clips": args.clips, "seconds": time.perf_counter() - t0,
           "load": _load(), "rows": table.to_dict("records")}
    cols = ["degradation", "seconds", "n", "moment@1", "track@1", "stretch_error", "false_positive_rate",
            "latency_p50_ms", "latency_p99_ms"]
    print(table[[c for c in cols if c in table]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return out


def _decode(path):
    from audiorag.audio import load_with_hash
    y, sr, _, _ = load_with_hash(path)
    return len(y) / sr


def _decode_and_fingerprint(path):
    from audiorag.audio import load_with_hash
    from audiorag.engines.job import file_landmarks
    y, sr, _, _ = load_with_hash(path)
    file_landmarks(y, sr)
    return len(y) / sr


def ingest(args) -> dict:
    from audiorag import Library
    from audiorag.engines import map_pool
    root = Path(args.workdir or tempfile.mkdtemp())
    files = [str(p) for p in _corpus(root / "in", args.hours, 120)]
    out = {"hours": args.hours, "files": len(files), "workers": 2}
    for name, func in (("decode", _decode), ("decode+landmarks", _decode_and_fingerprint)):
        load0, t0 = _load(), time.perf_counter()
        audio = sum(map_pool(func, files, workers=2, desc=name, progress=False))
        out[name] = {"x_realtime": audio / (time.perf_counter() - t0), "load": [load0, _load()]}
    lib = Library.create(Path(tempfile.mkdtemp()) / "lib")
    load0, t0 = _load(), time.perf_counter()
    lib.add(files, fingerprint=True, workers=2, progress=False)
    out["library.add"] = {"x_realtime": args.hours * 3600 / (time.perf_counter() - t0), "load": [load0, _load()]}
    print(json.dumps(out, indent=2))
    return out


def _fingerprint_seed(task):
    from audiorag.descriptors import landmarks
    from audiorag.evaluate.identify import music
    seed, seconds = task
    y = music(seconds, landmarks.SR, seed=seed)
    h, f = landmarks.fingerprint(y, landmarks.SR)
    return seed, (h, f, int(np.ceil(seconds / landmarks.FRAME_SECONDS)))


def scale(args) -> dict:
    from audiorag.descriptors import landmarks
    from audiorag.engines import map_pool
    from audiorag.evaluate.identify import degrade, music
    from audiorag.identify import match
    from audiorag.index import fingerprints
    seconds = 300.0
    d = Path(args.workdir or tempfile.mkdtemp()) / "fp"
    fingerprints.create(d)
    done, rows = 0, []
    rng = np.random.default_rng(0)
    for hours in args.hours + ([args.pad_to] if args.pad_to else []):
        n = int(hours * 3600 / seconds)
        t0, load0 = time.perf_counter(), _load()
        real = range(done, n)
        if hours == args.pad_to:
            _pad(d, n - done, seconds, rng)
            real = range(0)
        batch = []
        for seed, prints in map_pool(_fingerprint_seed, [(s, seconds) for s in real], workers=2,
                                     desc=f"{hours} h", progress=True):
            batch.append((seed, prints))
            if len(batch) >= 200:
                fingerprints.write_part(d, f"s{batch[0][0]:06d}", [b[0] for b in batch], [b[1] for b in batch])
                batch = []
        if batch:
            fingerprints.write_part(d, f"s{batch[0][0]:06d}", [b[0] for b in batch], [b[1] for b in batch])
        fp_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        fingerprints.consolidate(d)
        merge = time.perf_counter() - t1
        done = done if hours == args.pad_to else n
        post = fingerprints.Postings(d)
        size = sum(os.path.getsize(d / f) for f in ("postings.npy", "offsets.npy", "tracks.npy"))
        row = {"hours": hours, "tracks": n, "postings": len(post.postings), "bytes": size,
               "padded": bool(hours == args.pad_to),
               "MB_per_hour": size / 1e6 / hours, "postings_bytes_per_hour": 4 * len(post.postings) / hours,
               "fingerprint_x_realtime_new": (n - rows[-1]["tracks"] if rows else n) * seconds / fp_seconds,
               "merge_seconds": merge, "load_build": [load0, _load()]}
        load1 = _load()
        for kind in ("clean", "noise-10dB"):
            lat, ok = [], 0
            for _ in range(args.clips):
                seed = int(rng.integers(done if hours == args.pad_to else n))
                at = float(rng.uniform(0, seconds - 11))
                y = music(seconds, landmarks.SR, seed=seed)[int(at * landmarks.SR): int((at + 10) * landmarks.SR)]
                y = degrade(y, landmarks.SR, kind)
                t = time.perf_counter()
                h, f = landmarks.fingerprint(y, landmarks.SR)
                found = match(post, h, f, 10 / landmarks.FRAME_SECONDS)
                lat.append(time.perf_counter() - t)
                ok += bool(found) and found[0]["track_id"] == seed and abs(found[0]["offset"] - at) <= 0.5
            row[kind] = {"moment@1": ok / args.clips, "p50_ms": 1000 * float(np.percentile(lat, 50)),
                         "p99_ms": 1000 * float(np.percentile(lat, 99))}
        fp = 0
        for i in range(args.clips):
            y = music(30, landmarks.SR, seed=10 ** 7 + i)[: 10 * landmarks.SR]
            h, f = landmarks.fingerprint(y, landmarks.SR)
            fp += bool(match(post, h, f, 10 / landmarks.FRAME_SECONDS))
        row["false_positive_rate"] = fp / args.clips
        row["load_query"] = [load1, _load()]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"rows": rows}


def _pad(d: Path, tracks: int, seconds: float, rng) -> None:
    """Stage ``tracks`` tracks of *padding* postings for a size and latency point beyond what can be generated
    in time: hashes drawn from the real postings' hash distribution, at random frames (ids from 10**8 on).
    Their hits are realistic in number but never align, so moment@1 there is an upper bound."""
    from audiorag.descriptors import landmarks
    from audiorag.index import fingerprints
    post = fingerprints.Postings(d)
    counts = np.diff(post.offsets.astype(np.int64))
    per_track = int(len(post.postings) / max(1, len(post.tracks)))
    n_frames = int(np.ceil(seconds / landmarks.FRAME_SECONDS))
    for lo in range(0, tracks, 200):
        ids = list(range(10 ** 8 + lo, 10 ** 8 + min(tracks, lo + 200)))
        prints = [(rng.choice(len(counts), per_track, p=counts / counts.sum()).astype(np.uint32),
                   np.sort(rng.integers(0, n_frames, per_track)).astype(np.uint32), n_frames) for _ in ids]
        fingerprints.write_part(d, f"pad{lo:06d}", ids, prints)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["robustness", "ingest", "scale"])
    ap.add_argument("--hours", type=float, nargs="+", default=None)
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--pad-to", type=float, help="scale: last, a point of this many hours padded with postings "
                                                   "drawn from the real ones' hash distribution (see _pad)")
    ap.add_argument("--workdir", help="keep generated audio / postings here (default: a temporary folder)")
    ap.add_argument("--out", help="write the result as JSON")
    args = ap.parse_args()
    if args.hours is None:
        args.hours = [10.0, 30.0, 100.0] if args.what == "scale" else [1.0]
    if args.what != "scale":
        args.hours = args.hours[0]
    result = {"robustness": robustness, "ingest": ingest, "scale": scale}[args.what](args)
    result.update(command=f"python benchmarks/identify.py {args.what}", load_end=_load(),
                  created=time.strftime("%Y-%m-%dT%H:%M:%S"))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
