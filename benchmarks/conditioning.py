"""What levelling (``build --loudness``) and noise reduction (``build --denoise``) change, measured in one run.

    python benchmarks/conditioning.py                 # 48 tracks of the default corpus, features45
    python benchmarks/conditioning.py --tracks 96 --embedder musicnn-mtt

* **Levelling** — the first ``--tracks`` tracks of the default corpus (synthetic:96) and a copy of each
  30 dB quieter (16-bit, as a quiet export would be), in a library without conditioning (the baseline) and
  one levelled to −23 LUFS. For each pair, each one's middle moment is a query (``by="track"``, own track
  excluded): the share of queries whose first track is the other one of the pair, and the mean cosine of
  the pair's moments.
* **Noise reduction** — the same tracks (no copies) in a library without conditioning and one with
  ``denoise``. Queries: a 10 s clip of each track at a seeded random start, with white noise at a given SNR
  (to the clip's RMS); moment accuracy = the first hit is the clip's track and starts within ± the hop.
  Without noise too (what denoising costs clean clips).

The record goes to ``--out`` (experiments/results/conditioning/conditioning.json).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from audiorag import Library
from audiorag.analysis.records import git_commit, machine
from audiorag.audio import load
from audiorag.datasets import resolve
from audiorag.descriptors.conditioning import Conditioning
from audiorag.evaluate.metrics import moment_accuracy
from audiorag.search import Query, search

WINDOW, HOP, CLIP = 10.0, 2.0, 10.0


def build(path: Path, files: list, embedder: str, conditioning: Conditioning | None) -> tuple[Library, float]:
    t0 = time.perf_counter()
    lib = Library.create(path, window=WINDOW, hop=HOP, conditioning=conditioning)
    lib.add(files, embedders=[embedder], progress=False)
    lib.build_index(embedder, "Flat")
    return lib, time.perf_counter() - t0


def levelling(files: list, root: Path, embedder: str) -> dict:
    quiet = []
    for f in files:
        y, sr = load(f.uri)
        quiet.append(root / f"quiet-{Path(f.uri).stem}.wav")
        sf.write(quiet[-1], y * np.float32(10 ** (-30 / 20)), sr, subtype="PCM_16")
    out = {}
    for name, cond in (("none", None), ("loudness -23 LUFS", Conditioning(loudness=-23.0))):
        lib, seconds = build(root / f"level-{name.split()[0]}", [f.uri for f in files] + [str(q) for q in quiet],
                             embedder, cond)
        by_uri = dict(zip(lib.tracks["uri"], lib.tracks["track_id"]))
        durations = dict(zip(lib.tracks["track_id"], lib.tracks["duration"]))
        first, cosines = [], []
        vectors, seg = np.asarray(lib.vectors(embedder)), lib.segments
        for f, q in zip(files, quiet):
            a, b = by_uri[f.uri], by_uri[str(q)]
            for x, y in ((a, b), (b, a)):
                hit = search(lib, Query.moment(x, at=durations[x] / 2), embedder=embedder, k=1, by="track",
                             exclude_same_track=True)
                first.append(int(hit["track_id"].iloc[0] == y))
            rows = [seg.index[(seg["track_id"] == t) & (seg["start"] <= durations[a] / 2)][-1] for t in (a, b)]
            cosines.append(float(vectors[rows[0]] @ vectors[rows[1]]))
        out[name] = {"found_first": float(np.mean(first)), "pair_cosine": float(np.mean(cosines)),
                     "queries": len(first), "build_seconds": seconds}
    return out


def noisy_clip(y: np.ndarray, snr_db: float | None, rng) -> np.ndarray:
    if snr_db is None:
        return y
    noise = rng.standard_normal(len(y)).astype(np.float32)
    noise *= np.sqrt(np.mean(y ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
    return (y + noise).astype(np.float32)


def denoising(files: list, root: Path, embedder: str, snrs: list) -> dict:
    rng = np.random.default_rng(0)
    clips = []
    for f in files:
        y, sr = load(f.uri)
        start = float(rng.integers(0, int((len(y) / sr - CLIP) / HOP) + 1) * HOP)
        clips.append((f.uri, start, y[int(start * sr): int((start + CLIP) * sr)], sr))
    out = {}
    for name, cond in (("none", None), ("denoise", Conditioning(denoise=True))):
        lib, seconds = build(root / f"noise-{name}", [f.uri for f in files], embedder, cond)
        by_uri = dict(zip(lib.tracks["uri"], lib.tracks["track_id"]))
        out[name] = {"build_seconds": seconds}
        for snr in snrs:
            noise_rng = np.random.default_rng(1)
            true_t, true_s, found_t, found_s, times = [], [], [], [], []
            for uri, start, y, sr in clips:
                t0 = time.perf_counter()
                hit = search(lib, Query.audio(noisy_clip(y, snr, noise_rng), sr=sr), embedder=embedder, k=1)
                times.append(time.perf_counter() - t0)
                true_t.append(by_uri[uri])
                true_s.append(start)
                found_t.append(int(hit["track_id"].iloc[0]))
                found_s.append(float(hit["start"].iloc[0]))
            acc = moment_accuracy(true_t, true_s, found_t, found_s, HOP)
            track = np.mean(np.asarray(true_t) == np.asarray(found_t))
            out[name]["clean" if snr is None else f"snr {snr:g} dB"] = {
                "moment_accuracy": float(acc.mean()), "track_accuracy": float(track),
                "query_ms_p50": float(np.median(times) * 1000)}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=48)
    ap.add_argument("--embedder", default="features45")
    ap.add_argument("--snr", type=float, nargs="+", default=[20.0, 10.0, 5.0, 0.0])
    ap.add_argument("--out", default="experiments/results/conditioning/conditioning.json")
    args = ap.parse_args(argv)
    files = list(resolve("synthetic:96").sources())[: args.tracks]
    record = {"benchmark": "conditioning", "git_commit": git_commit(), "machine": machine().model_dump(),
              "embedder": args.embedder, "tracks": len(files), "window": WINDOW, "hop": HOP}
    with tempfile.TemporaryDirectory() as tmp:
        record["levelling"] = levelling(files, Path(tmp), args.embedder)
        for name, r in record["levelling"].items():
            print(f"levelling {name:<18} pair found first {r['found_first']:.3f}  pair cosine {r['pair_cosine']:.3f}")
        record["denoise"] = denoising(files, Path(tmp), args.embedder, [None] + args.snr)
        for name, r in record["denoise"].items():
            print(f"denoise {name:<8} " + "  ".join(f"{k}: {v['moment_accuracy']:.3f} (track {v['track_accuracy']:.3f})"
                                                    for k, v in r.items() if k != "build_seconds")
                  + f"  build {r['build_seconds']:.0f}s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"record: {args.out}")


if __name__ == "__main__":
    main()
