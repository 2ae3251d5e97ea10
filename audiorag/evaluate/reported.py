"""The figures the seed write-ups report, beside what audiorag measures under the closest protocol.

The seeds' numbers are claims made on their own data and hardware; this table puts each one next to
a measurement of the same quantity on the chosen library, and says how the protocols differ.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from . import Protocol, evaluate
from . import metrics as M

CLAIMS = [
    ("S0 audio-rag-segment-recommendation", "precision@10", "0.73", "segment/P@10",
     "S0: 'relevant within a limited classical dataset', relevance and exclusions undefined, wav2vec2 768-D. "
     "Here: same-label segments, own track excluded, every segment a query."),
    ("S0 audio-rag-segment-recommendation", "query response time", "156 ms average", "latency/mean_ms",
     "S0: end-to-end on 47 K segments, hardware unstated. Here: Library.search of a moment, k=10."),
    ("S1 audio-samples-semantic-search", "KMeans k=12 silhouette", "0.28-0.38", "cluster/silhouette_k12",
     "S1: 615 one-shot samples, 45-D features. Here: KMeans(12, seed) on the segment vectors, cosine silhouette."),
    ("S1 audio-samples-semantic-search", "search response time", "< 500 ms", "moment/clip_query_ms",
     "S1: upload of a file through a REST API. Here: a 10 s clip decoded, embedded and searched in-process."),
    ("S3 clamp3-audio-semantic-search", "query time", "< 100 ms (typically)", "latency/p95_ms",
     "S3: CLaMP3 text/audio query incl. the text encoder. Here: p95 of a moment query (no encoder)."),
    ("S3 clamp3-audio-semantic-search", "ingest time per file", "1-2 s per file (16 workers, GPU VMs)",
     "ingest/seconds_per_file", "S3: CLaMP3 + MERT on GPUs. Here: decode + embed per 30 s track, one process on this CPU."),
    ("S4 mess-ai-math-pipeline", "flat search", "< 1 ms (sub-millisecond)", "faiss/flat_p50_ms",
     "S4: 50 tracks, MERT 9,984-D. Here: one FAISS query on the library's Flat index, its own vectors."),
]


def reported_metrics(lib, *, embedder=None, index: str | None = None, label: str = "genre", seed: int = 0,
                     ingest_files: int = 8) -> tuple[pd.DataFrame, dict]:
    """The side-by-side table and the measurements behind it."""
    emb = lib.embedding(embedder)
    ev = evaluate(lib, embedder=emb.key, index=index, protocol=Protocol(label=label, seed=seed))
    measured = dict(ev.record.metrics)
    measured.update(_kmeans_silhouette(np.asarray(lib.vectors(emb.key)), seed))
    measured["ingest/seconds_per_file"] = _ingest_seconds(lib, emb, ingest_files)
    measured["faiss/flat_p50_ms"] = _flat_latency(lib, emb, seed)
    rows = [{"seed": s, "figure": what, "reported": claim, "audiorag": round(measured[key], 4), "metric": key,
             "how the protocols differ": diff} for s, what, claim, key, diff in CLAIMS]
    return pd.DataFrame(rows), {"record": ev.record, "measured": measured}


def _kmeans_silhouette(x: np.ndarray, seed: int) -> dict:
    from ..analysis import clusters
    s = clusters.score(x, clusters.fit("kmeans", x, k=min(12, len(x) - 1), seed=seed), seed=seed)
    return {"cluster/silhouette_k12": s["silhouette"]}


def _ingest_seconds(lib, emb, n: int) -> float:
    """Wall seconds per file to decode and embed ``n`` library tracks in one process."""
    from ..audio import load_with_hash, resample
    e = emb.embedder
    rows = lib.tracks.head(n)
    t0 = time.perf_counter()
    for uri, duration in zip(rows["uri"], rows["duration"]):
        y, sr, _, _ = load_with_hash(uri)
        starts, ends = lib.segmentation.windows(len(y) / sr)
        e.embed_track(resample(y, sr, e.sample_rate), starts, ends)
    return (time.perf_counter() - t0) / max(len(rows), 1)


def _flat_latency(lib, emb, seed: int, n: int = 200) -> float:
    from ..index import make_index
    vectors = np.asarray(lib.vectors(emb.key))
    index = make_index(vectors, np.arange(len(vectors)), "Flat")
    rng = np.random.default_rng(seed)
    times = []
    for q in rng.integers(0, len(vectors), n):
        t0 = time.perf_counter()
        index.search(vectors[q:q + 1], 10)
        times.append(time.perf_counter() - t0)
    return M.latency_summary(times)["p50_ms"]
