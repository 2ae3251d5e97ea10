"""Ingest benchmark: decode only, decode + features45 alone, and full ingest (decode + features45 + the windows'
descriptors + library writes), side by side.

    python benchmarks/ingest.py                      # the generated corpus (FLAC, 22.05 kHz mono)
    python benchmarks/ingest.py --as mp3             # the same audio as 44.1 kHz stereo MP3 (FMA-like)
    python benchmarks/ingest.py --folder ~/music     # real files
    python benchmarks/ingest.py --out experiments/results/ingest-bench/flac.json   # the docs' record
    python benchmarks/ingest.py --as mp3 --out experiments/results/ingest-bench/mp3.json

All passes use the same number of worker processes and see the same files from a warm page cache. Order:
decode only; decode + the magnitude STFT (the floor of anything pooled from that spectrogram); decode + features45
(the embedder's own cost: one STFT per track, pooled per window, nothing written); naive per-window features;
full ingest. The embedder is constructed (librosa initialised, ≈1.5 s once per process) before the timed passes.
Prints real-time factors (audio seconds per wall second) and their ratios; ``--out FILE`` writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from audiorag import Library, engines
from audiorag.analysis.records import git_commit
from audiorag.audio import AUDIO_EXTENSIONS, load_with_hash, resample
from audiorag.datasets.synthetic import SyntheticDataset
from audiorag.descriptors.spectrum import stft_magnitude

SR = 22050  # features45's rate: every pass decodes and resamples to it, as ingest does


def _decoded(uri: str):
    """The file decoded (and hashed, as ingest reads it) at :data:`SR`."""
    y, sr, _, _ = load_with_hash(uri)
    return resample(y, sr, SR)


def _decode(uri: str) -> float:
    return len(_decoded(uri)) / SR


def _stft(uri: str) -> float:
    """Decode + the one magnitude STFT features45 computes: the floor of any feature built on that spectrogram."""
    e = _EMBEDDER[0]
    y = _decoded(uri)
    stft_magnitude(y, e.n_fft, e.hop_length, periodic=True)
    return len(y) / SR


def _features(uri: str) -> float:
    """Decode + features45 of every window, as ingest computes them, and nothing else."""
    e, segmentation = _EMBEDDER
    y = _decoded(uri)
    e.embed_track(y, *segmentation.windows(len(y) / SR))
    return len(y) / SR


def _naive(uri: str) -> float:
    """The per-window recomputation this project avoids: every window gets its own STFT."""
    e, segmentation = _EMBEDDER
    y = _decoded(uri)
    for a, b in zip(*segmentation.windows(len(y) / SR)):
        e.embed(y[int(a * SR):int(b * SR)][None])
    return len(y) / SR


_EMBEDDER: list = []  # (features45, segmentation), set before the pools fork


def _as_mp3(files: list[str], out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in files:
        y, sr = sf.read(f, dtype="float32")
        stereo = np.stack([y, np.roll(y, 11)], axis=1)
        p = out / (Path(f).stem + ".mp3")
        if not p.exists():
            sf.write(p, resample(stereo.T, sr, 44100).T, 44100, format="MP3")
        paths.append(str(p))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, help="real audio files (default: the generated corpus)")
    ap.add_argument("--tracks", type=int, default=48, help="generated tracks (30 s each)")
    ap.add_argument("--as", dest="fmt", choices=["flac", "mp3"], default="flac", help="format of generated audio")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--hop", type=float, default=2.0)
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args()

    if args.folder:
        files = sorted(str(p) for p in args.folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    else:
        ds = SyntheticDataset(args.tracks, seed=0)
        files = [s.uri for s in ds.sources()]
        if args.fmt == "mp3":
            files = _as_mp3(files, ds.root.parent / f"{ds.id}-mp3")
    for f in files:  # warm the page cache so both passes read from memory
        Path(f).read_bytes()

    t0 = time.perf_counter()
    seconds = sum(engines.map_pool(_decode, files, workers=args.workers, desc="decode", progress=False))
    decode = time.perf_counter() - t0

    from audiorag.embedders import get_embedder
    from audiorag.segment import Segmentation
    _EMBEDDER[:] = [get_embedder("features45"), Segmentation(args.window, args.hop)]
    t0 = time.perf_counter()
    sum(engines.map_pool(_stft, files, workers=args.workers, desc="stft", progress=False))
    stft = time.perf_counter() - t0
    t0 = time.perf_counter()
    sum(engines.map_pool(_features, files, workers=args.workers, desc="features", progress=False))
    features = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive_seconds = sum(engines.map_pool(_naive, files, workers=args.workers, desc="naive", progress=False))
    naive = time.perf_counter() - t0

    tmp = Path(tempfile.mkdtemp())
    try:
        lib = Library.create(tmp / "lib", window=args.window, hop=args.hop)
        t0 = time.perf_counter()
        report = lib.add(files, embedders=["features45"], workers=args.workers, progress=False)
        ingest = time.perf_counter() - t0
        n_segments = len(lib.segments)
    finally:
        shutil.rmtree(tmp)

    result = {"files": len(files), "failed": report.failed, "audio_seconds": round(seconds, 1),
              "segments": n_segments, "window": args.window, "hop": args.hop, "workers": args.workers,
              "decode_seconds": round(decode, 3), "ingest_seconds": round(ingest, 3),
              "decode_rtf": round(seconds / decode, 1), "ingest_rtf": round(seconds / ingest, 1),
              "ingest_over_decode": round(ingest / decode, 2),
              "stft_seconds": round(stft, 3), "stft_over_decode": round(stft / decode, 2),
              "features_seconds": round(features, 3), "features_rtf": round(seconds / features, 1),
              "features_over_decode": round(features / decode, 2),
              "naive_per_window_seconds": round(naive, 3), "naive_rtf": round(naive_seconds / naive, 1),
              "speedup_over_naive": round(naive / ingest, 2),
              "source": str(args.folder) if args.folder else f"generated:{args.tracks}:{args.fmt}",
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "load_1min": round(os.getloadavg()[0], 1), "git_commit": git_commit()}
    print(f"{result['files']} files, {seconds / 60:.1f} min of audio, {n_segments} segments "
          f"({args.window:g} s / {args.hop:g} s hop), {args.workers} workers")
    print(f"decode only : {decode:7.2f} s  = {result['decode_rtf']:7.1f}x real time")
    print(f"decode+STFT : {stft:7.2f} s  = {seconds / stft:7.1f}x real time (the spectrogram features45 pools)")
    print(f"features45  : {features:7.2f} s  = {result['features_rtf']:7.1f}x real time (decode + features45 only)")
    print(f"full ingest : {ingest:7.2f} s  = {result['ingest_rtf']:7.1f}x real time (features45)")
    print(f"naive       : {naive:7.2f} s  = {result['naive_rtf']:7.1f}x real time (features per window, no library)")
    print(f"ingest / decode time ratio: {result['ingest_over_decode']:.2f}; "
          f"ingest is {result['speedup_over_naive']:.1f}x faster than naive")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
