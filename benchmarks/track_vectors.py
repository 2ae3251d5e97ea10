"""Track-level search three ways: a track's best moment (``--aggregate best``, the default and the baseline),
its mean-pooled vector (S4's track vectors) and its max-pooled vector — track-level P@10 and latency, one run.

    python benchmarks/track_vectors.py                     # default corpus (synthetic:96) and sonic-pi, features45
    python benchmarks/track_vectors.py --corpus sonic-pi --embedder musicnn-mtt

Each corpus is built once (features45, a Flat index) in a temporary folder. Queries, own track excluded,
``k`` = 10 tracks, relevant = the same label (genre; a sonic-pi sample's category):

* ``moment``: each track's middle moment (``Query.moment``) — "tracks like this moment";
* ``track``: each track's whole file as an audio clip (``Query.audio``: decoded, embedded, then matched as a
  sequence for ``best`` or pooled like the tracks for ``mean`` / ``max``) — "tracks like this track".

Latency is end-to-end ``search()`` (warm: a first pass over the queries is not timed). The record goes to
``--out`` (experiments/results/track-vectors/track-vectors.json).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from audiorag import Library
from audiorag.analysis.records import git_commit, machine
from audiorag.audio import MIN_CLIP_SECONDS
from audiorag.datasets.folder import FolderDataset
from audiorag.evaluate.metrics import latency_summary, precision_at_k
from audiorag.search import AGGREGATES, Query, search

SONIC_PI = Path("/usr/share/sonic-pi/samples")
CORPORA = {"default": ("synthetic:96", 10.0, 2.0, "genre"), "sonic-pi": (str(SONIC_PI), 3.0, 1.5, "label")}


def build(corpus: str, embedder: str, root: Path) -> tuple[Library, str]:
    spec, window, hop, label = CORPORA[corpus]
    lib = Library.create(root / corpus, window=window, hop=hop)
    source = FolderDataset(spec, label_regex=r"^([a-z]+)_") if corpus == "sonic-pi" else spec
    lib.add(source, embedders=[embedder], progress=False)
    lib.build_index(embedder, "Flat")
    return lib, label


def queries(lib: Library, kind: str) -> list[tuple[int, Query]]:
    """One query per track: its middle moment, or its whole file (files shorter than a query clip's minimum,
    :data:`audiorag.audio.MIN_CLIP_SECONDS`, are left out)."""
    out = []
    for tid, uri, duration in lib.tracks[["track_id", "uri", "duration"]].itertuples(index=False):
        if kind == "moment":
            out.append((int(tid), Query.moment(int(tid), at=float(duration) / 2)))
        elif duration >= MIN_CLIP_SECONDS:
            out.append((int(tid), Query.audio(uri)))
    return out


def measure(lib: Library, embedder: str, label: str, kind: str, k: int = 10) -> dict:
    labels = dict(zip(lib.tracks["track_id"], lib.tracks[label]))
    qs = queries(lib, kind)
    out = {}
    for aggregate in AGGREGATES:
        for _, q in qs[:5]:  # warm: contexts, track indexes, the embedder
            search(lib, q, embedder=embedder, k=k, by="track", aggregate=aggregate, exclude_same_track=True)
        rel, times = np.zeros((len(qs), k)), []
        for i, (q_track, q) in enumerate(qs):
            t0 = time.perf_counter()
            hits = search(lib, q, embedder=embedder, k=k, by="track", aggregate=aggregate, exclude_same_track=True)
            times.append(time.perf_counter() - t0)
            found = [labels[t] == labels[q_track] for t in hits["track_id"]]
            rel[i, :len(found)] = found
        out[aggregate] = {"P@10": float(precision_at_k(rel, k).mean()), **latency_summary(times)}
    chance = np.mean([(sum(v == labels[t] for v in labels.values()) - 1) / (len(labels) - 1) for t in labels])
    return {"queries": len(qs), "chance/P": float(chance), "aggregates": out}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", nargs="+", default=list(CORPORA), choices=list(CORPORA))
    ap.add_argument("--embedder", default="features45")
    ap.add_argument("--kinds", nargs="+", default=["moment", "track"], choices=["moment", "track"])
    ap.add_argument("--out", default="experiments/results/track-vectors/track-vectors.json")
    args = ap.parse_args(argv)
    record = {"benchmark": "track-vectors", "git_commit": git_commit(), "machine": machine().model_dump(),
              "embedder": args.embedder, "k": 10, "corpora": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for corpus in args.corpus:
            if corpus == "sonic-pi" and not SONIC_PI.is_dir():
                print(f"{SONIC_PI} not found (sudo apt-get install sonic-pi-samples): sonic-pi skipped")
                continue
            lib, label = build(corpus, args.embedder, Path(tmp))
            entry = {"tracks": len(lib.tracks), "segments": len(lib.segments), "label": label, "kinds": {}}
            for kind in args.kinds:
                m = entry["kinds"][kind] = measure(lib, lib.embedding(args.embedder).key, label, kind)
                for aggregate, r in m["aggregates"].items():
                    print(f"{corpus:<9} {kind:<7} {aggregate:<5} P@10 {r['P@10']:.3f} (chance {m['chance/P']:.3f})  "
                          f"p50 {r['p50_ms']:.2f} ms  p95 {r['p95_ms']:.2f} ms")
            record["corpora"][corpus] = entry
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"record: {args.out}")


if __name__ == "__main__":
    main()
