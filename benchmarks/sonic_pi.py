"""Real-audio check: the Debian ``sonic-pi-samples`` corpus (166 CC0 FLAC one-shots and loops),
category = filename prefix (ambi_, bass_, bd_, drum_, elec_, ...).

    sudo apt-get install sonic-pi-samples
    python benchmarks/sonic_pi.py                       # features45, musicnn-mtt, aisfx
    python benchmarks/sonic_pi.py --out experiments/results/sonic-pi/sonic-pi.json   # the docs' record

For each embedder: a library of 3 s windows every 1.5 s (short samples keep one short
window), a Flat index, and ``audiorag eval``'s protocol with label = category, the query's
own sample excluded. Prints segment and track P@10 and mAP per embedder (chance = the mean
share of other samples in the query's category), then musicnn's top tags for a few named
samples, then runs the analysis notebook (``notebooks/04_clusters_anomalies.ipynb``, papermill)
per embedder: KMeans k-sweep 2–20 (best-k silhouette), KMeans with k = 14 categories and
HDBSCAN (silhouette, purity, NMI), injected outliers (5 noise bursts, 5 near-silent clips,
5 click trains) found by IsolationForest and kNN distance, leave-one-out kNN tagging, and a
t-SNE map — executed notebooks, metrics.json and figures under ``--figures``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from audiorag import Library
from audiorag.datasets.folder import FolderDataset
from audiorag.evaluate import evaluate
from audiorag.evaluate.protocol import Protocol

ROOT = Path("/usr/share/sonic-pi/samples")
NAMED = ["ambi_piano", "bass_voxy_c", "bd_haus", "drum_cymbal_open", "guit_e_fifths", "loop_amen",
         "tabla_tas1", "elec_blip", "vinyl_scratch", "ambi_choir"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(ROOT))
    ap.add_argument("--embedders", nargs="+", default=["features45", "musicnn-mtt", "aisfx"])
    ap.add_argument("--out", help="write the figures as JSON")
    ap.add_argument("--figures", default="experiments/results/sonic-pi", help="analysis notebooks and figures")
    args = ap.parse_args()
    if not Path(args.root).is_dir():
        raise SystemExit(f"{args.root} not found: sudo apt-get install sonic-pi-samples")
    tmp = tempfile.mkdtemp()
    results = {"metrics": {}, "tags": {}}
    try:
        lib = Library.create(f"{tmp}/lib", window=3.0, hop=1.5)
        lib.add(FolderDataset(args.root, label_regex=r"^([a-z]+)_"), embedders=args.embedders, progress=False)
        protocol = Protocol(label="label", queries="all", ks=[1, 5, 10], moment_queries=0)
        results.update(tracks=len(lib.tracks), segments=len(lib.segments), labels=int(lib.tracks["label"].nunique()),
                       window=3.0, hop=1.5, errors=len(lib.errors()))
        print(f"{len(lib.tracks)} samples, {len(lib.segments)} windows, "
              f"{lib.tracks['label'].nunique()} categories, {len(lib.errors())} errors")
        print(f"{'embedder':<14}{'seg P@10':>10}{'track P@10':>12}{'seg mAP':>10}{'chance':>9}")
        for name in args.embedders:
            lib.build_index(name)
            m = evaluate(lib, embedder=name, protocol=protocol).record.metrics
            results["metrics"][name] = m
            print(f"{name:<14}{m['segment/P@10']:>10.4f}{m['track/P@10']:>12.4f}{m['segment/mAP']:>10.4f}"
                  f"{m['chance/P']:>9.4f}")
        if "musicnn-mtt" in args.embedders:
            print("\nmusicnn-mtt top tags (mean over the sample's windows):")
            stems = lib.tracks["uri"].map(lambda u: Path(u).stem)
            for stem in NAMED:
                tid = lib.tracks.loc[stems == stem, "track_id"]
                if len(tid):
                    top = lib.tags(track_id=int(tid.iloc[0]), embedder="musicnn-mtt").iloc[0].nlargest(3)
                    results["tags"][stem] = {t: round(float(p), 3) for t, p in top.items()}
                    print(f"  {stem:<18}" + ", ".join(f"{t} {p:.2f}" for t, p in top.items()))
        print(f"\n{'embedder':<14}{'best k':>7}{'silh.':>7}{'k=14 silh.':>11}{'purity':>8}{'NMI':>6}"
              f"{'HDBSCAN NMI':>12}{'iforest P@N':>12}{'kNN P@N':>9}{'tag prec.':>10}{'coverage':>9}")
        for name in args.embedders:
            m = analysis_notebook(lib, name, Path(args.figures) / name)
            results["analysis"] = {**results.get("analysis", {}), name: m}
            print(f"{name:<14}{m['cluster/best_k']:>7.0f}{m['cluster/best_k_silhouette']:>7.3f}"
                  f"{m['cluster/kmeans:14/silhouette']:>11.3f}{m['cluster/kmeans:14/purity']:>8.3f}"
                  f"{m['cluster/kmeans:14/nmi']:>6.3f}{m['cluster/hdbscan/nmi']:>12.3f}"
                  f"{m['anomaly/iforest/precision@N']:>12.3f}{m['anomaly/knn/precision@N']:>9.3f}"
                  f"{m['tagging/precision']:>10.3f}{m['tagging/coverage']:>9.3f}")
    finally:
        shutil.rmtree(tmp)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2, default=float) + "\n")


def analysis_notebook(lib, embedder: str, out_dir: Path) -> dict:
    """Run notebooks/04_clusters_anomalies.ipynb on ``embedder``'s vectors; returns its metrics."""
    import papermill as pm

    from audiorag.evaluate import EvaluationRecord
    from audiorag.experiments import NOTEBOOKS
    out_dir.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(NOTEBOOKS / "04_clusters_anomalies.ipynb"), str(out_dir / "04_clusters_anomalies.ipynb"),
                        parameters={"library": str(lib.path), "embedder": lib.embedding(embedder).key,
                                    "label": "label", "clusters": ["kmeans:14", "hdbscan"], "maps": ["tsne"],
                                    "out_dir": str(out_dir)}, kernel_name="python3", progress_bar=False)
    return EvaluationRecord.read(out_dir / "metrics.json").metrics


if __name__ == "__main__":
    main()
