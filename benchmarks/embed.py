"""Model embedder throughput: pure model forward vs full ingest of the same audio, side by side.

    python benchmarks/embed.py                                  # musicnn-mtt and aisfx, 24 generated 30 s tracks
    python benchmarks/embed.py --embedders musicnn-mtt --tracks 48 --out embed.json
    python benchmarks/embed.py --embedders clap wav2vec2 mert --tracks 8
    python benchmarks/embed.py --embedders clamp3 ttmr --tracks 8

Hub models (clap, wav2vec2, hubert, mert, clamp3, ttmr) have no weights here: they run at their
real size with random weights (``tests/random_models.py``, saved as the released weights are —
``save_pretrained`` folders, CLaMP 3's and TTMR++'s ``.pth`` layouts — and loaded through the normal
path); a model's cost does not depend on its weights' values. mert runs with ``layer=all`` (every
hidden state is computed anyway); clamp3 includes its MERT-v1-95M stage (no feature cache).

The library is cut into non-overlapping ten-second windows, so "clips/s" is ten-second
clips per second. For each embedder, in one run:

* **forward** — the model alone on inputs prepared beforehand (front end excluded), in
  the batches the pipeline uses;
* **front end** — decode + resample + spectrogram/patching of every window, one thread;
* **ingest** — ``Library.add`` from the audio files: decode, hash, validation, front end
  in decode threads overlapped with the forward pass in the main thread, library writes.

The ratio ingest/forward is the pipeline's overhead over the model itself (target ≤ 1.3).
The record keeps the machine's load average at the start and end of the run: on a shared machine the
absolute rates drop with the load, so compare rows of one record (e.g. with ``clap`` as the baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from audiorag import Library
from audiorag.audio import load, resample
from audiorag.datasets.synthetic import SyntheticDataset
from audiorag.embedders import get_embedder
from audiorag.embedders.torchmodel import set_threads
from audiorag.segment import Segmentation

WINDOW = 10.0


HUB = {"clap": {}, "wav2vec2": {}, "hubert": {}, "mert": {"layer": "all"}, "clamp3": {}, "ttmr": {}}


def embedder(name: str, scratch: str):
    """The registered embedder, or for hub models a real-size random one saved under ``scratch``."""
    if name not in HUB:
        return get_embedder(name)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test fixture's random models
    from random_models import save_model
    path = save_model(name, f"{scratch}/{name}", size="base")
    params = dict(HUB[name])
    if name in ("clamp3", "ttmr"):  # their text towers read a tokenizer folder beside the checkpoint
        params["tokenizer"] = f"{path}.tokenizer"
    if name == "clamp3":
        params["mert"] = str(save_model("mert", f"{scratch}/mert", size="base"))
    return get_embedder(name, model=str(path), **params)


def measure(name: str, files: list[str], *, workers: int, scratch: str) -> dict:
    e = embedder(name, scratch)
    seg = Segmentation(WINDOW, WINDOW)
    set_threads()
    t0 = time.perf_counter()
    prepared, n_clips = [], 0
    for f in files:
        y, sr = load(f)
        y = resample(y, sr, e.sample_rate)
        starts, ends = seg.windows(len(y) / e.sample_rate)
        prepared += e.prepare_track(y, starts, ends)
        n_clips += len(starts)
    front = time.perf_counter() - t0
    e.run(prepared[: e.batch_windows])  # load + warm up
    t0 = time.perf_counter()
    e.run(prepared)
    forward = time.perf_counter() - t0
    tmp = tempfile.mkdtemp()
    try:
        lib = Library.create(f"{tmp}/lib", window=WINDOW, hop=WINDOW)
        t0 = time.perf_counter()
        fresh = get_embedder(e.name, **e.params)  # ingest includes loading the model, as a user's build does
        report = lib.add(files, embedders=[fresh], workers=workers, progress=False)
        ingest = time.perf_counter() - t0
        assert report.failed == 0 and len(lib.segments) == n_clips
    finally:
        shutil.rmtree(tmp)
    text_ms = None
    if e.has_text:
        e.embed_text(["warm up"])
        times = []
        for i in range(20):
            t0 = time.perf_counter()
            e.embed_text([f"query number {i}: slow piano with soft strings"])
            times.append(1000 * (time.perf_counter() - t0))
        text_ms = sorted(times)[len(times) // 2]
    return {"embedder": name, "clips": n_clips, "text_query_ms": text_ms, "forward_s": forward, "front_end_s": front,
            "ingest_s": ingest,
            "forward_clips_per_s": n_clips / forward, "ingest_clips_per_s": n_clips / ingest,
            "ingest_over_forward": ingest / forward}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embedders", nargs="+", default=["musicnn-mtt", "aisfx"])
    ap.add_argument("--tracks", type=int, default=24)
    ap.add_argument("--workers", type=int, default=2, help="cores: torch threads; decode threads = workers - 1")
    ap.add_argument("--out", help="write the figures as JSON")
    args = ap.parse_args()
    files = [s.uri for s in SyntheticDataset(args.tracks, seed=11).sources()]
    scratch = tempfile.mkdtemp()
    load = [round(os.getloadavg()[0], 2)]
    try:
        rows = [measure(name, files, workers=args.workers, scratch=scratch) for name in args.embedders]
    finally:
        shutil.rmtree(scratch)
    load.append(round(os.getloadavg()[0], 2))
    print(f"{'embedder':<14}{'clips':>6}{'forward clips/s':>17}{'ingest clips/s':>16}{'ingest/forward':>16}"
          f"{'front end s':>13}{'text ms':>9}")
    for r in rows:
        print(f"{r['embedder']:<14}{r['clips']:>6}{r['forward_clips_per_s']:>17.1f}{r['ingest_clips_per_s']:>16.1f}"
              f"{r['ingest_over_forward']:>16.2f}{r['front_end_s']:>13.2f}"
              f"{'' if r['text_query_ms'] is None else format(r['text_query_ms'], '.0f'):>9}")
    print(f"load average (1 min) at start and end: {load[0]}, {load[1]}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"machine": platform.processor() or platform.machine(), "load_average": load, "rows": rows},
                      fh, indent=2)


if __name__ == "__main__":
    main()
