"""Every figure the five seed write-ups report, beside audiorag's measurement under the closest protocol.

The seeds (``../shared/seeds/``) describe systems that each did a slice of what audiorag does; their
numbers are claims made on their own data and hardware. :data:`CLAIMS` lists every quantitative claim
they make. Each one either names the audiorag measurement closest to it (a template over measurement
keys, filled from committed result records) and says how the protocols differ, or says in one line
why it cannot be compared — and which open issue will measure it, where one does.

The seeds are called S0–S4 everywhere in audiorag (:data:`SEEDS`):

>>> [(s, SEEDS[s][0]) for s in ("S0", "S4")]
[('S0', 'audio-rag-segment-recommendation.txt'), ('S4', 'mess-ai-math-pipeline.txt')]

Measurements come from two places: :func:`measure` (run by ``notebooks/05_reported_metrics.ipynb``) on
one library, written as a ``metrics.json`` record of kind ``reported``; and the benchmark records under
``experiments/results/`` (:func:`load_measurements` flattens them all into one dict of named numbers).
:func:`claims_table` fills the catalogue from that dict.
"""

from __future__ import annotations

import json
import string
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import Protocol, evaluate
from . import metrics as M
from .protocol import segment_labels
from .records import EvaluationRecord

SEEDS = {
    "S0": ("audio-rag-segment-recommendation.txt",
           "Audio RAG: segment-based music recommendation — wav2vec2 768-D, 10 s windows, 2,847 classical pieces"),
    "S1": ("audio-samples-semantic-search.txt",
           "Audio samples semantic search — 45-D hand-crafted features, ChromaDB, KMeans, IsolationForest, "
           "615 samples"),
    "S2": ("music-semantic-analyzer.txt",
           "music-semantic-analyzer — CLAP + TTMR++ embeddings, FAISS, LLM tags, Demucs stems, FMA"),
    "S3": ("clamp3-audio-semantic-search.txt",
           "CLaMP3 audio semantic search — MERT + CLaMP3, FAISS Flat L2, text/audio/hybrid queries, batch ingest"),
    "S4": ("mess-ai-math-pipeline.txt",
           "mess-ai mathematical pipeline — MERT-v1-95M 13 × 768 = 9,984-D per track, FAISS IndexFlatIP"),
}

# the cosine-distance bands of S1's "distance interpretation" table
DISTANCE_BANDS = ((0.0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 2.0))
S0_TRACKS, S0_HOURS, S0_SEGMENTS = 2847, 312, 47392
SWEEP = "sweep/{}-flat-w10-h2-genre-xartist/"          # a default-sweep cell's metrics
IB = "index-bench/100000/768/"                          # the 768-D families at 10^5 vectors


@dataclass(frozen=True)
class Claim:
    """One figure a seed reports. ``ours`` is a :meth:`str.format` template over the measurements
    (``{m[segment/P@10]:.3f}``); ``None`` when it cannot be compared, ``note`` then says why."""

    seed: str
    figure: str
    reported: str
    ours: str | None
    note: str
    issue: int | None = None

    def keys(self) -> list[str]:
        """The measurement keys the template reads."""
        if not self.ours:
            return []
        return [f[1][2:-1] for f in string.Formatter().parse(self.ours) if f[1] and f[1].startswith("m[")]


CLAIMS = [
    # S0: audio-rag-segment-recommendation
    Claim("S0", "segmentation", "10 s windows, 2 s hop (\"2-second overlap\"; code: overlap=8)",
          "{m[library/window_s]:g} s windows, {m[library/hop_s]:g} s hop",
          "the default segmentation; S0's prose (2 s overlap) and code (8 s overlap) disagree, its code is followed"),
    Claim("S0", "catalogue", "2,847 pieces, 312 h, 847 composers",
          "{m[library/tracks]:.0f} tracks, {m[library/hours]:.2f} h, {m[library/artists]:.0f} artists",
          "the embedded synthetic corpus; no licensed catalogue is reachable here (FMA recipes exist: "
          "[datasets](datasets.md))"),
    Claim("S0", "segments", "47,392 ten-second chunks", "{m[segmentation/s0_implied_segments]:,.0f} windows",
          "windows audiorag cuts from 2,847 tracks of 312 h / 2,847 = 394.5 s each at 10 s / 2 s: S0's count matches "
          "neither that nor non-overlapping windows (≈ 112 k); its figures are not mutually consistent"),
    Claim("S0", "vector database size", "36.2 GB (≈ 764 KB per segment)",
          "{m[" + IB + "Flat/bytes_per_segment]:,.0f} B per segment",
          "a 768-D Flat index (index benchmark, 10⁵ vectors): vectors + ids; S0's figure is 250× the size of "
          "its 768-D float32 vectors"),
    Claim("S0", "RAM", "0.76 GB for 47 K segments", "{m[derived/s0_flat768_mb]:.0f} MB",
          "47,392 × the 768-D Flat index's bytes per segment (index benchmark); indexes are memory-mapped, "
          "`audiorag info LIB --memory` measures the resident share"),
    Claim("S0", "precision@10", "0.73", "{m[segment/P@10]:.3f} (features45); artist-disjoint: "
          "{m[" + SWEEP.format("musicnn-mtt") + "segment/P@10]:.3f} (musicnn-mtt)",
          "S0: \"relevant within a limited classical dataset\", relevance undefined. Here: same genre, own track "
          "excluded, every segment a query (default corpus); artist-disjoint from the default sweep"),
    Claim("S0", "query response time", "156 ms average (\"sub-200 ms\")",
          "{m[latency/mean_ms]:.1f} ms mean, {m[latency/p99_ms]:.1f} ms p99 ({m[library/segments]:,.0f} segments)",
          "end-to-end `search()` of a moment, k = 10; S0: 47 K segments, hardware unstated"),
    Claim("S0", "query latency bound", "< 20,000 ms", "{m[moment/clip_query_ms]:.0f} ms",
          "a 10 s audio clip decoded, embedded (features45) and searched, in-process"),
    Claim("S0", "embedding", "wav2vec2-base, 768-D", "{m[embed/wav2vec2/ingest_clips_per_s]:.2f} clips/s",
          "`wav2vec2` is registered (768-D); no hub weights here, so its cost is measured at real size with random "
          "weights (embed benchmark, 10 s clips, 2 cores); its retrieval quality is not measured"),
    Claim("S0", "discovery rate", "34 % of recommendations from unknown composers",
          "{m[recommend/d0.3-a2/discovery]:.0%} unasked (P@10 {m[recommend/d0.3-a2/P@10]:.3f}), so a 34 % floor "
          "binds nothing; a 100 % floor: P@10 {m[recommend/d0.3-a2-disc1/P@10]:.3f}",
          "`audiorag recommend` (diversity 0.3, ≤ 2 per artist) for simulated listeners of the default corpus "
          "(likes of 1–2 genres, a history): share of moments by artists not in the history "
          "([recommend](recommend.md))", 16),
    Claim("S0", "users", "~5 concurrent, 57 interactions, drop-off after one session", None,
          "usage of a deployed web app, which cannot be measured here; audiorag's REST API and listening page "
          "(`audiorag serve`) are load-tested instead ([serve](serve.md))"),
    Claim("S0", "normalization", "volume levelling and noise reduction (no figure)",
          "a −30 dB copy finds its original first: {m[conditioning/levelling/none/found_first]:.0%} → "
          "{m[conditioning/levelling/loudness -23 LUFS/found_first]:.0%} levelled; noisy clips (SNR 5 dB) "
          "moment accuracy {m[conditioning/denoise/none/snr 5 dB/moment_accuracy]:.2f} → "
          "{m[conditioning/denoise/denoise/snr 5 dB/moment_accuracy]:.2f} with `--denoise` (clean clips "
          "{m[conditioning/denoise/none/clean/moment_accuracy]:.2f} → "
          "{m[conditioning/denoise/denoise/clean/moment_accuracy]:.2f})",
          "`build --loudness -23` (BS.1770, pyloudnorm) and `--denoise` (spectral gating), applied to tracks and "
          "query clips alike; default corpus, features45 ([levelling](levelling.md))"),
    Claim("S0", "mood detection", "context awareness: time of day, listening history, mood detection (no figure)",
          "arousal follows tempo (Spearman {m[describe/mood/controlled/spearman arousal~tempo]:.2f}) and valence "
          "the mode ({m[describe/mood/controlled/valence on the mode's side]:.0%} of "
          "{m[describe/mood/controlled/clips]:.0f} generated clips); sonic-pi drums vs ambient AUC "
          "{m[describe/mood/sonic-pi/AUC arousal, drums > ambient]:.2f}",
          "valence, arousal, a mood word and its confidence per moment from loudness, tempo, onset rate, "
          "brightness and mode (+ musicnn's mood tags); `search --where mood=calm`; `recommend` infers the "
          "listener's mood when `--mood` is not given. No mood-labelled audio here: agreement with listeners is "
          "not measured ([describe](describe.md#mood))"),
    Claim("S0", "musical characteristics: key", "\"major key progression\" in a moment's description (no figure)",
          "generated progressions {m[describe/keys/progressions/exact]:.0%}; default corpus "
          "{m[describe/keys/default corpus/audio/key signature: exact]:.2f} exact / "
          "{m[describe/keys/default corpus/audio/key signature: MIREX]:.2f} MIREX against the key signature",
          "the corpus's stated `key` is a scale root its music never establishes (its notes give 0.43 against "
          "it), so windows are scored against the key signature the notes support "
          "([describe](describe.md#key-accuracy-on-the-default-corpus-why-it-is-low))"),
    # S1: audio-samples-semantic-search
    Claim("S1", "feature vector", "45-D: 26 MFCC, 12 chroma, 3 spectral, 4 temporal",
          "{m[embedder/dim]:.0f}-D",
          "`features45` implements S1's layout (13 MFCC mean + 13 std, 12 chroma, 3 spectral, ZCR, RMS mean/std, "
          "tempo), z-scored on the library"),
    Claim("S1", "corpus", "615 samples, 12 genres", "{m[sonic-pi/tracks]:.0f} samples, {m[sonic-pi/labels]:.0f} "
          "categories", "the closest real corpus here: Debian's sonic-pi-samples (CC0 one-shots and loops)"),
    *[Claim("S1", f"accuracy at distance {lo:.1f}–{hi:.1f}" if hi < 2 else f"accuracy at distance ≥ {lo:.1f}",
            rep, f"{{m[distance/accuracy_{band}]:.2f}} ({{m[distance/share_{band}]:.1%}} of hits)",
            "share of top-10 hits in the band with the query's genre; distance = 1 − cosine; own track excluded. "
            "S1's distance is ChromaDB's on unnormalised 45-D vectors")
      for (lo, hi), rep, band in zip(DISTANCE_BANDS, ("92 %", "78 %", "61 %", "45 %"),
                                     ("0.0-0.1", "0.1-0.2", "0.2-0.3", "0.3-2.0"))],
    Claim("S1", "KMeans silhouette", "0.28–0.38 (k = 12)",
          "{m[cluster/silhouette_k12]:.3f}; sonic-pi: "
          "{m[sonic-pi/analysis/features45/cluster/kmeans:14/silhouette]:.3f}",
          "cosine silhouette of KMeans(12) on the segment vectors (features45, default corpus); sonic-pi: k = 14 "
          "categories, 3 s windows"),
    Claim("S1", "cluster purity", "65 % (62 of 95 in one cluster)",
          "{m[cluster/purity_k12]:.3f}; sonic-pi: {m[sonic-pi/analysis/features45/cluster/kmeans:14/purity]:.3f}",
          "S1 quotes one cluster's majority share; here purity over all KMeans(12) clusters against genre"),
    Claim("S1", "search response time", "< 500 ms", "{m[moment/clip_query_ms]:.0f} ms",
          "S1: a file uploaded to a REST API; here a 10 s clip decoded, embedded and searched in-process "
          "(the same upload through `POST /search/audio`: [serve](serve.md))"),
    Claim("S1", "anomaly detection rate", "~10 %", "{m[anomaly/knn/precision@N]:.2f} (kNN), "
          "{m[anomaly/iforest/precision@N]:.2f} (IsolationForest)",
          "S1's 10 % is its IsolationForest contamination setting (`analyse --anomalies 0.1` flags 10 % too). "
          "Measured instead: share of injected noise / silence / click clips ranked in the top N, 5 rounds"),
    Claim("S1", "anomaly scores", "−0.245, −0.223, −0.198", None,
          "IsolationForest scores depend on the data and the forest, not a quality measure; "
          "`audiorag analyse` writes ours per item (`items.csv`)"),
    Claim("S1", "container", "`docker-compose up -d` (backend, build script)", None,
          "`Dockerfile` + `compose.yaml` serve a library read-only (non-root, token from the environment, "
          "HEALTHCHECK on /health), linted by hadolint in `make lint`; a test builds the image and waits for "
          "it to be healthy where a Docker daemon answers — none does here, so it is not measured "
          "([serve](serve.md#container))"),
    # S2: music-semantic-analyzer
    Claim("S2", "deployment size", "all indexes and metadata < 100 MB", "{m[library/disk_mb]:.1f} MB",
          "the default-corpus library on disk (metadata, vectors and indexes of every embedding in it)"),
    Claim("S2", "corpus", "FMA small, ~8k tracks", None,
          "FMA is not reachable from this project's machines; `experiments/fma_small.yaml` reproduces the sweep "
          "where it is ([datasets](datasets.md))"),
    Claim("S2", "CLAP + TTMR++ dual embedding", "(no figure)", None,
          "`ttmr` (128-D, text and audio towers) loads the released TTMR++ checkpoint unchanged; `clap+ttmr` is "
          "searched by late fusion (default) or fused (`audiorag fuse`), text queries included. Quality awaits "
          "the real weights ([embedders](embedders.md))"),
    Claim("S2", "LLM tags, Demucs stems", "(no figure)", None,
          "no figure to compare; both exist: `audiorag describe` (key, tempo, tags, neighbours; `--llm URL` for "
          "an LLM's summary, [describe](describe.md)) and stem search (`build --stems hpss|demucs`)"),
    # S3: clamp3-audio-semantic-search
    Claim("S3", "ingest, sequential", "8–12 s per file (MERT + CLaMP3, Docker)",
          "{m[derived/mert_s_per_track]:.1f} s (mert), {m[derived/clap_s_per_track]:.1f} s (clap)",
          "full `Library.add` per 30 s track, 2 cores, real-size models with random weights (embed benchmark); "
          "`clamp3` is MERT plus CLaMP 3's encoder, so at least mert's time (its own rows: [benchmarks]"
          "(benchmarks.md#model-embedders))"),
    Claim("S3", "ingest, parallel", "1–2 s per file (16 workers, GPU VMs)",
          "{m[derived/aisfx_s_per_track]:.2f} s (aisfx), {m[derived/musicnn_s_per_track]:.2f} s (musicnn-mtt)",
          "the same benchmark, real weights; no GPU here. Multi-machine ingest: issue 22"),
    Claim("S3", "speed-up from loading the model once", "15–30×", "{m[load/speedup]:.1f}× ({m[load/embedder]})",
          "per-file time (30 s tracks) with the model loaded for every file / loaded once, interleaved; "
          "S3's figure also counts batching and 16 GPU workers"),
    Claim("S3", "model load vs inference", "seconds vs milliseconds",
          "{m[load/first_seconds]:.1f} s first load, {m[load/seconds]:.2f} s per reload, "
          "{m[load/per_file_loaded_s]:.2f} s per 30 s file",
          "the same measurement; the first load in a process also pays one-time costs (imports, hashing the weights)"),
    Claim("S3", "query time", "sub-second, typically < 100 ms",
          "{m[latency/p95_ms]:.1f} ms p95 + {m[embed/clap/text_query_ms]:.0f} ms CLAP text tower",
          "p95 of a moment query (default corpus, features45); a text query adds the text tower's time "
          "(embed benchmark, real size, random weights)"),
    Claim("S3", "scale", "tens of thousands of files",
          "{m[index-bench/max_n]:,.0f} segments",
          "index benchmark on synthetic vectors with real embeddings' structure; audio libraries built here: 96 "
          "tracks (default) and 165 samples (sonic-pi)"),
    Claim("S3", "CLaMP3 embedding", "768-D, text and audio", None,
          "`clamp3` (768-D, text and audio towers) loads the released SAAS checkpoint unchanged over MERT-v1-95M "
          "features (kept apart with `mert_cache=`); tested with tiny random checkpoints in its layout. Its retrieval "
          "quality awaits a machine that can download the weights ([embedders](embedders.md))"),
    Claim("S3", "hybrid blend", "α = 0.7 (70 % text)", None,
          "`--alpha 0.7` is the default; hybrid queries need a text tower (clap, clamp3, ttmr), whose weights are not "
          "here: α = 0 and 1 are tested to equal the audio and text queries"),
    Claim("S3", "accuracy", "\"high-quality matches validated by professional DJs\"", None,
          "no figure; embedder comparison beyond zero-shot retrieval is open", 23),
    # S4: mess-ai-math-pipeline
    Claim("S4", "segmentation", "5 s windows, 50 % overlap (120,000 samples at 24 kHz)", None,
          "`--window 5 --hop 2.5` gives the same windows (tests/test_segment.py); the default sweep uses 10 s / 2 s"),
    Claim("S4", "track vector", "13 × 768 = 9,984-D, mean over segments, IndexFlatIP",
          "track P@10 {m[track-vectors/default/track/mean/P@10]:.3f} (mean vector) vs "
          "{m[track-vectors/default/track/best/P@10]:.3f} (best moment)",
          "`search --by track --aggregate mean` searches per-track mean vectors (S4's method) in a flat IP index; "
          "whole tracks as queries, same genre relevant, default corpus, features45 ([tracks](tracks.md)); "
          "`mert:layer=all` gives S4's 9,984-D vectors, no MERT weights here to measure them"),
    Claim("S4", "bytes per track", "~39 KB (9,984 × 4 B)", "{m[library/vector_bytes_per_track]:,.0f} B",
          "the library's vectors per track (one per segment; the default corpus: 30 s tracks, 11 segments); "
          "one 9,984-D mert vector takes 39,936 B"),
    Claim("S4", "compression ratio", "~220:1 (2.2 M samples → 9,984 values)",
          "{m[library/compression]:,.0f}:1",
          "audio samples (mono, at each file's rate) per stored float of the library's vectors"),
    Claim("S4", "index size", "~2 MB for 50 tracks", "{m[library/index_bytes_per_track]:,.0f} B per track",
          "the library's Flat index divided by its tracks"),
    Claim("S4", "raw features per track", "~94 MB (all layers, every frame)", None,
          "audiorag stores pooled vectors only, not frame-level features"),
    Claim("S4", "flat search", "sub-millisecond", "{m[faiss/flat_p50_ms]:.3f} ms p50",
          "one FAISS Flat query over the library's vectors (k = 10)"),
    Claim("S4", "FAISS speed-up", "~50–100× via SIMD/cache", "{m[faiss/speedup_vs_numpy]:.1f}×",
          "FAISS Flat vs `vectors @ q` + argpartition in numpy, single queries; S4 does not say what it compares "
          "against"),
    Claim("S4", "similarity distribution", "concentrated around 0.6–0.8 for music",
          "p25 {m[similarity/p25]:.2f}, median {m[similarity/p50]:.2f}, p75 {m[similarity/p75]:.2f}",
          "cosine between random segment pairs from different tracks (features45 is z-scored, so centred near 0)"),
    Claim("S4", "score interpretation", "0.7–0.9: very similar (same genre, style)",
          "{m[similarity/same_label_0.7-0.9]:.2f} same genre (chance {m[similarity/same_label_all]:.2f})",
          "share of random different-track pairs with cosine in 0.7–0.9 that share a genre"),
]


# ---------------------------------------------------------------------------------------------- measuring


def measure(lib, *, embedder=None, index: str | None = None, label: str = "genre", seed: int = 0,
            load_embedder: str | None = None, load_files: int = 6, inject_rounds: int = 5) -> EvaluationRecord:
    """Measure on ``lib`` every library-level quantity :data:`CLAIMS` reads; a record of kind ``reported``.

    ``load_embedder`` (default: the library's embedder) is the model timed loaded once vs loaded per file.
    """
    from ..analysis import anomalies, clusters
    emb = lib.embedding(embedder)
    protocol = Protocol(label=label, seed=seed)
    ev = evaluate(lib, embedder=emb.key, index=index, protocol=protocol)
    m = dict(ev.record.metrics)
    vectors = np.asarray(lib.vectors(emb.key))
    segments, tracks = lib.segments, lib.tracks
    valid = emb.valid_rows(segments["track_id"].to_numpy())
    labels = segment_labels(tracks, segments, protocol)

    x = vectors[valid]
    km = clusters.score(x, clusters.fit("kmeans", x, k=min(12, len(x) - 1), seed=seed), labels[valid], seed=seed)
    m["cluster/silhouette_k12"], m["cluster/purity_k12"] = km["silhouette"], km["purity"]
    m.update(distance_bands(labels, ev.queries, ev.ranked, ev.scores, k=10))
    m.update(similarity_distribution(x, segments["track_id"].to_numpy()[valid], labels[valid], seed=seed))
    if inject_rounds:
        check = anomalies.injected_check(lib, embedder=emb.key, rounds=inject_rounds, seed=seed)
        m.update({f"anomaly/{k}": float(v) for k, v in check.items()})
    m.update(library_sizes(lib, emb, ev.record.index))
    m.update(_flat_latency(x, seed))
    m["ingest/seconds_per_file"] = _ingest_seconds(lib, emb.embedder, load_files)
    m.update(_load_once(lib, load_embedder or emb.key, load_files))
    m["segmentation/s0_implied_segments"] = float(S0_TRACKS * len(
        lib.segmentation.windows(S0_HOURS * 3600 / S0_TRACKS)[0]))
    text = {"load/embedder": m.pop("load/embedder")}
    return ev.record.model_copy(update={"kind": "reported", "metrics": m, "extra": {**ev.record.extra, **text}})


def distance_bands(labels, queries, ranked, scores, *, k: int = 10, bands=DISTANCE_BANDS) -> dict:
    """For each cosine-distance band: the share of top-``k`` hits in it and how many of those share the
    query's label.

    >>> labels = np.array(["a", "a", "b", "b"])
    >>> out = distance_bands(labels, [0], [np.array([1, 2])], [np.array([0.95, 0.5])], k=10)
    >>> out["distance/accuracy_0.0-0.1"], out["distance/accuracy_0.3-2.0"], out["distance/share_0.0-0.1"]
    (1.0, 0.0, 0.5)
    """
    same, dist = [], []
    for q, ids, sc in zip(queries, ranked, scores):
        same.append(labels[ids[:k]] == labels[q])
        dist.append(1.0 - np.asarray(sc[:k], dtype=np.float64))
    same, dist = np.concatenate(same), np.concatenate(dist)
    out = {}
    for lo, hi in bands:
        band = f"{lo:.1f}-{hi:.1f}"
        inside = (dist >= lo) & (dist < hi)
        out[f"distance/share_{band}"] = float(inside.mean()) if len(dist) else float("nan")
        out[f"distance/accuracy_{band}"] = float(same[inside].mean()) if inside.any() else float("nan")
    return out


def similarity_distribution(vectors, groups, labels, *, pairs: int = 20000, seed: int = 0) -> dict:
    """Cosine between random pairs of rows from different ``groups`` (tracks): quartiles, and the share of
    same-label pairs overall and among pairs with cosine in [0.7, 0.9)."""
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(vectors), (2, pairs))
    keep = groups[i] != groups[j]
    i, j = i[keep], j[keep]
    cos = np.einsum("ij,ij->i", vectors[i], vectors[j])
    same = labels[i] == labels[j]
    band = (cos >= 0.7) & (cos < 0.9)
    q25, q50, q75 = np.percentile(cos, [25, 50, 75])
    return {"similarity/p25": float(q25), "similarity/p50": float(q50), "similarity/p75": float(q75),
            "similarity/same_label_all": float(same.mean()),
            "similarity/same_label_0.7-0.9": float(same[band].mean()) if band.any() else float("nan"),
            "similarity/share_0.7-0.9": float(band.mean())}


def library_sizes(lib, emb, index: dict | None) -> dict:
    """Sizes of the library S2 and S4 compare with: on disk, per track, and audio samples per stored float."""
    tracks = lib.tracks
    n_tracks = max(len(tracks), 1)
    n_vectors = int(emb.valid_rows(lib.segments["track_id"].to_numpy()).sum())
    floats = n_vectors * emb.dim
    samples = float((tracks["duration"] * tracks["sample_rate"]).sum())
    # what a deployment copies: the committed generation and the library's own files (an older generation a
    # reader still pins shares most files with it by hard links, and is not part of it)
    committed, root = Path(lib.data), Path(lib.path)
    if committed.is_dir():
        disk = sum(p.stat().st_size for p in committed.rglob("*") if p.is_file()) \
            + sum(p.stat().st_size for p in root.iterdir() if p.is_file())
    else:  # a sharded library: every shard's folder
        disk = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    seg = lib.segmentation
    out = {"library/tracks": float(len(tracks)), "library/segments": float(n_vectors),
           "library/hours": float(tracks["duration"].sum() / 3600), "library/window_s": seg.window,
           "library/hop_s": seg.hop, "library/disk_mb": disk / 1e6, "embedder/dim": float(emb.dim),
           "library/vector_bytes_per_track": 4.0 * floats / n_tracks,
           "library/compression": samples / max(floats, 1),
           "library/index_bytes_per_track": float((index or {}).get("bytes") or 0) / n_tracks}
    if "artist" in tracks.columns:
        out["library/artists"] = float(tracks["artist"].nunique())
    return out


def _flat_latency(vectors: np.ndarray, seed: int, n: int = 200) -> dict:
    """Single-query p50 of a FAISS Flat index and of numpy's ``vectors @ q`` + argpartition (k = 10)."""
    import faiss
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    k = min(10, len(x) - 1)
    faiss_t, numpy_t = [], []
    for q in np.random.default_rng(seed).integers(0, len(x), n):
        t0 = time.perf_counter()
        index.search(x[q:q + 1], k)
        t1 = time.perf_counter()
        s = x @ x[q]
        top = np.argpartition(-s, k)[:k]
        top[np.argsort(-s[top])]
        t2 = time.perf_counter()
        faiss_t.append(t1 - t0)
        numpy_t.append(t2 - t1)
    f, npy = M.latency_summary(faiss_t)["p50_ms"], M.latency_summary(numpy_t)["p50_ms"]
    return {"faiss/flat_p50_ms": f, "numpy/flat_p50_ms": npy, "faiss/speedup_vs_numpy": npy / f}


def _decoded(lib, n: int) -> list:
    from ..audio import load
    return [load(uri) for uri in lib.tracks["uri"].head(n)]


def _embed_all(e, decoded, seg) -> None:
    from ..audio import resample
    for y, sr in decoded:
        starts, ends = seg.windows(len(y) / sr)
        e.embed_track(resample(y, sr, e.sample_rate), starts, ends)


def _ingest_seconds(lib, e, n: int) -> float:
    """Wall seconds per file to decode and embed ``n`` library tracks in one process."""
    t0 = time.perf_counter()
    decoded = _decoded(lib, n)
    _embed_all(e, decoded, lib.segmentation)
    return (time.perf_counter() - t0) / max(len(decoded), 1)


def _load_once(lib, name: str, n: int) -> dict:
    """Seconds per file (decoded beforehand) with ``name``'s model loaded for every file vs loaded once.

    One warm-up first (imports, weight hashing); then, file by file and interleaved so that load on the
    machine hits both alike, a fresh embedder (model loaded on first use) and the warm one embed it.
    """
    from ..embedders import get_embedder
    from ..errors import AudioragError
    try:  # an embedding of the library: its name and params; otherwise a registry name
        meta = lib.embedding(name).meta
        base, params = meta["name"], dict(meta.get("params") or {})
    except AudioragError:
        base, params = name, {}
    decoded = _decoded(lib, n)
    t0 = time.perf_counter()
    warm = get_embedder(base, **params)
    _embed_all(warm, decoded[:1], lib.segmentation)
    first = time.perf_counter() - t0
    fresh_t, warm_t = [], []
    for i in range(len(decoded)):
        t0 = time.perf_counter()
        _embed_all(get_embedder(base, **params), decoded[i:i + 1], lib.segmentation)
        t1 = time.perf_counter()
        _embed_all(warm, decoded[i:i + 1], lib.segmentation)
        t2 = time.perf_counter()
        fresh_t.append(t1 - t0)
        warm_t.append(t2 - t1)
    fresh, loaded = float(np.mean(fresh_t)), float(np.mean(warm_t))
    return {"load/embedder": base, "load/seconds": max(fresh - loaded, 0.0), "load/first_seconds": first - warm_t[0],
            "load/per_file_fresh_s": fresh,
            "load/per_file_loaded_s": loaded, "load/speedup": fresh / loaded}


# ---------------------------------------------------------------------------------------------- records


def load_measurements(root="experiments/results", *, reported: EvaluationRecord | None = None) -> dict:
    """Every committed record under ``root`` flattened into one dict of named measurements.

    ``reported/metrics.json`` (or the ``reported`` record given) → its metric names as they are;
    ``index-bench/*.json`` → ``index-bench/<n>/<dim>/<factory>/<field>``; ``embed-bench/*.json`` →
    ``embed/<embedder>/<field>`` (from the record taken at the lowest load average);
    ``default-sweep/<cell>.json`` → ``sweep/<cell>/<metric>``;
    ``sonic-pi/sonic-pi.json`` → ``sonic-pi/...``; ``recommend/metrics.json`` → ``recommend/<setting>/<metric>``;
    ``track-vectors/track-vectors.json`` → ``track-vectors/<corpus>/<query kind>/<aggregate>/<metric>``;
    ``conditioning/conditioning.json`` → ``conditioning/levelling/<setting>/...``, ``conditioning/denoise/...``;
    ``describe/{mood,keys}.json`` → ``describe/mood/...``, ``describe/keys/...`` (their nested names);
    then the few derived numbers the claims quote.
    Missing records leave their keys out.
    """
    root = Path(root)
    m: dict = {}
    path = root / "reported" / "metrics.json"
    if reported is None and path.exists():
        reported = EvaluationRecord.read(path)
    if reported is not None:
        m.update(reported.metrics)
        m.update({k: v for k, v in reported.extra.items() if k.startswith("load/")})
    ns = []
    for p in sorted(root.glob("index-bench/index-n*.json")):
        rec = json.loads(p.read_text())
        ns.append(rec["n"])
        for r in rec["results"]:
            for k, v in r.items():
                if isinstance(v, (int, float)):
                    m[f"index-bench/{rec['n']}/{r['dim']}/{r['factory']}/{k}"] = v
    if ns:
        m["index-bench/max_n"] = max(ns)
    quietest: dict = {}  # an embedder measured in several records: the one taken on the least loaded machine
    for p in sorted(root.glob("embed-bench/*.json")):
        rec = json.loads(p.read_text())
        load = max(rec.get("load_average") or [0.0])
        for r in rec["rows"]:
            if quietest.setdefault(r["embedder"], load) < load:
                continue
            quietest[r["embedder"]] = load
            for k, v in r.items():
                if isinstance(v, (int, float)) and v is not None:
                    m[f"embed/{r['embedder']}/{k}"] = v
    for p in sorted(root.glob("default-sweep/*.json")):
        for k, v in EvaluationRecord.read(p).metrics.items():
            m[f"sweep/{p.stem}/{k}"] = v
    path = root / "recommend" / "metrics.json"  # the recommend benchmark (benchmarks/recommend.py)
    if path.exists():
        m.update({f"recommend/{k}": v for k, v in json.loads(path.read_text())["metrics"].items()})
    path = root / "sonic-pi" / "sonic-pi.json"
    if path.exists():
        rec = json.loads(path.read_text())
        for key in ("tracks", "segments", "labels"):
            if key in rec:
                m[f"sonic-pi/{key}"] = rec[key]
        for name, metrics in rec.get("metrics", {}).items():
            m.update({f"sonic-pi/{name}/{k}": v for k, v in metrics.items()})
        for name, metrics in rec.get("analysis", {}).items():
            m.update({f"sonic-pi/analysis/{name}/{k}": v for k, v in metrics.items()})
    path = root / "track-vectors" / "track-vectors.json"  # benchmarks/track_vectors.py
    if path.exists():
        for corpus, entry in json.loads(path.read_text())["corpora"].items():
            for kind, r in entry["kinds"].items():
                for aggregate, metrics in r["aggregates"].items():
                    m.update({f"track-vectors/{corpus}/{kind}/{aggregate}/{k}": v for k, v in metrics.items()})
    path = root / "conditioning" / "conditioning.json"  # benchmarks/conditioning.py
    if path.exists():
        rec = json.loads(path.read_text())
        for name, r in rec.get("levelling", {}).items():
            m.update({f"conditioning/levelling/{name}/{k}": v for k, v in r.items()})
        for name, r in rec.get("denoise", {}).items():
            for cond, metrics in r.items():
                if isinstance(metrics, dict):
                    m.update({f"conditioning/denoise/{name}/{cond}/{k}": v for k, v in metrics.items()})
    for name in ("mood", "keys"):  # benchmarks/describe.py --mood / --keys
        path = root / "describe" / f"{name}.json"
        if path.exists():
            m.update(_flat(f"describe/{name}", json.loads(path.read_text())))
    m.update(_derived(m))
    return m


def _flat(prefix: str, tree: dict) -> dict:
    """The numbers of a nested record as ``prefix/key/subkey`` names.

    >>> _flat("a", {"b": {"c": 1, "d": "x"}, "e": 2.5})
    {'a/b/c': 1, 'a/e': 2.5}
    """
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(f"{prefix}/{k}", v))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}/{k}"] = v
    return out


def _derived(m: dict) -> dict:
    out = {}
    flat = m.get(IB + "Flat/bytes_per_segment")
    if flat:
        out["derived/s0_flat768_mb"] = S0_SEGMENTS * flat / 1e6
    # the embed benchmark cuts 30 s tracks into three 10 s clips
    for name, short in (("mert", "mert"), ("clap", "clap"), ("aisfx", "aisfx"), ("musicnn-mtt", "musicnn")):
        rate = m.get(f"embed/{name}/ingest_clips_per_s")
        if rate:
            out[f"derived/{short}_s_per_track"] = 3 / rate
    return out


def claims_table(measurements: dict, claims=CLAIMS) -> pd.DataFrame:
    """One row per claim: seed, figure, what the seed reports, audiorag's number ("–" when it cannot be
    compared, "no record" when a record it needs is missing) and how the protocols differ or why not."""
    rows = []
    counters: dict[str, int] = {}
    for c in claims:
        counters[c.seed] = counters.get(c.seed, 0) + 1
        if c.ours is None:
            ours = "–"
        elif missing := [k for k in c.keys() if k not in measurements]:
            ours = "no record (" + ", ".join(missing) + ")"
        else:
            ours = c.ours.format(m={k: _Undefined() if _nan(v) else v for k, v in measurements.items()})
        note = c.note + (f" (issue {c.issue})" if c.issue else "")
        rows.append({"id": f"{c.seed}.{counters[c.seed]}", "figure": c.figure, "reported": c.reported,
                     "audiorag": ours, "closest protocol / why not comparable": note})
    return pd.DataFrame(rows)


def _nan(v) -> bool:
    return isinstance(v, float) and v != v


class _Undefined:
    """A measurement that is undefined on this library (e.g. no hit in a distance band): shown as "–"."""

    def __format__(self, spec: str) -> str:
        return "–"


def seeds_table() -> pd.DataFrame:
    """S0–S4: the seed write-ups' file names and what each describes."""
    return pd.DataFrame([{"seed": s, "file": f"`{f}`", "what it describes": what} for s, (f, what) in SEEDS.items()])


def reported_metrics(lib, *, records="experiments/results", **kw) -> tuple[pd.DataFrame, EvaluationRecord]:
    """Measure ``lib`` (:func:`measure`) and fill the claims table with it and the benchmark records under
    ``records``."""
    record = measure(lib, **kw)
    return claims_table(load_measurements(records, reported=record)), record
