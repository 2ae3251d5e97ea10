"""Embedders compared the way MIR papers do: raw retrieval, out-of-fold projected retrieval, linear probes,
and early fusion — on real audio and on the default corpus (docs/compare.md).

    python benchmarks/compare.py sonic-pi --out experiments/results/compare/sonic-pi.json
    python benchmarks/compare.py lmms --out experiments/results/compare/lmms.json      # apt-get install lmms-common
    python benchmarks/compare.py synthetic --out experiments/results/compare/synthetic.json
    python benchmarks/compare.py synthetic --library LIB --latency-only --embedders musicnn-mtt aisfx --out …

Per embedder (and per early fusion ``E1+E2``, ``E1+E2+E3``, stored with :func:`audiorag.library.derived.fuse`):
segment P@10 of raw cosine retrieval and of LDA / NCA / linear projections fitted out of fold
(:func:`audiorag.evaluate.projection.evaluate_projected`: group-disjoint folds, each held-out group queries the
others), and a logistic probe's accuracy and macro-F1 (:func:`audiorag.evaluate.probe.probe`, same folds),
with the seconds each took and the machine's load. ``--library DIR`` reuses (or keeps) the library.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

from audiorag import Library
from audiorag.datasets.folder import FolderDataset
from audiorag.evaluate import Protocol
from audiorag.evaluate.probe import probe
from audiorag.evaluate.projection import evaluate_projected
from audiorag.library.derived import fuse

CORPORA = {  # dataset, segmentation, label, group
    "sonic-pi": (lambda: FolderDataset("/usr/share/sonic-pi/samples", label_regex=r"^([a-z]+)_"), 3.0, 1.5,
                 "label", None),
    "lmms": (lambda: FolderDataset("/usr/share/lmms/samples", label_from_folder=True), 3.0, 1.5, "label", None),
    "synthetic": (lambda: "synthetic:96", 10.0, 2.0, "genre", "artist"),
}
METHODS = ("none", "lda", "nca", "linear")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", choices=sorted(CORPORA))
    ap.add_argument("--library", help="library directory to reuse or create (default: a temporary one)")
    ap.add_argument("--embedders", nargs="+", default=["features45", "musicnn-mtt", "aisfx"])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--out", help="write the rows as JSON")
    ap.add_argument("--latency-only", action="store_true", help="only time early vs late fusion of the first two")
    args = ap.parse_args()
    source, window, hop, label, group = CORPORA[args.corpus]
    path = Path(args.library or tempfile.mkdtemp()) / ("" if args.library else "lib")
    lib = Library.create(path, window=window, hop=hop, exist_ok=True)
    t0 = time.perf_counter()
    lib.add(source(), embedders=args.embedders, progress=False)
    build = time.perf_counter() - t0
    keys = [lib.embedding(e).key for e in args.embedders]
    if args.latency_only:
        result = json.dumps(fusion_latency(lib, keys[:2]), indent=2) + "\n"
        print(result, end="")
        if args.out:
            Path(args.out).write_text(result)
        return
    for combo in [c for n in range(2, len(keys) + 1) for c in itertools.combinations(keys, n)]:
        fuse(lib, list(combo))
    protocol = Protocol(label=label, ks=[1, 5, 10], moment_queries=0, latency_queries=1)
    rows = []
    names = [e.key for e in lib.embeddings()]
    print(f"{args.corpus}: {len(lib.tracks)} tracks, {int((lib.segments['track_id'] >= 0).sum())} segments, "
          f"{lib.tracks[label].nunique()} classes, groups: {group or 'track'}, {args.folds} folds; "
          f"build {build:.0f}s; load {os.getloadavg()[0]:.2f}")
    print("| embedding | raw P@10 | LDA P@10 | NCA P@10 | linear P@10 | probe acc. | probe macro-F1 | "
          "chance P | s (raw/LDA/NCA/linear/probe) |\n|---|---|---|---|---|---|---|---|---|")
    for key in names:
        row = {"embedding": key, "load_before": os.getloadavg()[0]}
        for method in METHODS:
            t = time.perf_counter()
            record, _ = evaluate_projected(lib, embedder=key, method=method, cv_group=group, folds=args.folds,
                                           protocol=protocol)
            row[f"{method}/P@10"] = record.metrics["segment/P@10"]
            row[f"{method}/mAP"] = record.metrics["segment/mAP"]
            row[f"{method}/seconds"] = round(time.perf_counter() - t, 2)
            row["chance/P"] = record.metrics["chance/P"]
        t = time.perf_counter()
        m = probe(lib, embedder=key, label=label, group=group, folds=args.folds).record.metrics
        row.update({"probe/accuracy": m["probe/accuracy"], "probe/macro_f1": m["probe/macro_f1"],
                    "probe/chance_accuracy": m["chance/accuracy"], "probe/seconds": round(time.perf_counter() - t, 2),
                    "load_after": os.getloadavg()[0]})
        rows.append(row)
        print(f"| {key} | " + " | ".join(f"{row[f'{x}/P@10']:.3f}" for x in METHODS)
              + f" | {row['probe/accuracy']:.3f} | {row['probe/macro_f1']:.3f} | {row['chance/P']:.3f} | "
              + "/".join(f"{row[f'{x}/seconds']:.1f}" for x in (*METHODS, "probe")) + " |", flush=True)
    best_raw = max(r["none/P@10"] for r in rows if "+" not in r["embedding"])
    best = max((r[f"{x}/P@10"], r["embedding"], x) for r in rows for x in METHODS)
    print(f"best raw single embedder P@10 {best_raw:.3f}; best overall {best[0]:.3f} ({best[1]}, {best[2]}): "
          f"{best[0] - best_raw:+.3f} (target +0.15)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"corpus": args.corpus, "tracks": len(lib.tracks), "label": label,
                                              "group": group or "track", "folds": args.folds, "window": window,
                                              "hop": hop, "rows": rows, "best_raw": best_raw,
                                              "best": list(best)}, indent=2) + "\n")


def fusion_latency(lib, keys: list[str], n: int = 100) -> dict:
    """Median search() time of ``n`` moment queries (k = 10, Flat indexes): each source alone, the stored early
    fusion, and late fusion over the sources' indexes; and whether early and late return the same segments."""
    import numpy as np

    from audiorag.search import Query, search
    name = "+".join(lib.embedding(k).name for k in keys)
    fuse(lib, keys)
    segs = lib.segments[lib.segments["track_id"] >= 0].sample(n, random_state=0, replace=True)
    out, same = {}, []
    for label, kw in [*[(k, {"embedder": k}) for k in keys], ("early " + name, {"embedder": name}),
                      ("late " + name, {"embedder": name, "fusion": "late"})]:
        times, results = [], []
        for tid, start in zip(segs["track_id"], segs["start"]):
            t = time.perf_counter()
            hits = search(lib, Query.moment(int(tid), float(start)), k=10, **kw)
            times.append(time.perf_counter() - t)
            results.append(hits["segment_id"].tolist())
        out[label] = {"p50_ms": round(1000 * float(np.median(times)), 3)}
        same.append(results)
    out["early_equals_late"] = float(np.mean([a == b for a, b in zip(same[-2], same[-1])]))
    out["load"] = os.getloadavg()[0]
    return out


if __name__ == "__main__":
    main()
