"""Evaluate retrieval on a library: segment-level and track-level ranking metrics, moment
localisation, latency and memory, recorded in a :class:`EvaluationRecord`.

>>> from audiorag.evaluate import Protocol
>>> Protocol(ks=[10, 1]).ks
[1, 10]
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..analysis import clusters
from ..analysis.clusters import label_array
from ..errors import ParameterError
from ..library.fanout import open_index
from ..library.order import content_order
from ..search import Query, search
from . import metrics as M
from .protocol import Protocol, exclusion_keys, query_segments, segment_labels, subset_tracks
from .records import EvaluationRecord, provenance

log = logging.getLogger(__name__)
__all__ = ["evaluate", "Protocol", "EvaluationRecord", "Evaluation", "M"]


@dataclass
class Evaluation:
    """An evaluation's record plus the per-query details behind it (for figures and exports)."""

    record: EvaluationRecord
    queries: np.ndarray                      # query segment ids
    ranked: list                             # per query: ranked segment ids (after exclusion), length <= depth
    scores: list                             # per query: their scores
    qrels: list                              # per query: relevant segment ids (after exclusion)
    per_query: pd.DataFrame = field(default_factory=pd.DataFrame)
    latencies: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def export_run(self, path, run_name: str = "audiorag") -> None:
        """TREC run file: ``qid Q0 docid rank score run`` (segment level)."""
        with open(path, "w") as f:
            for q, ids, scores in zip(self.queries, self.ranked, self.scores):
                for rank, (d, s) in enumerate(zip(ids, scores), 1):
                    f.write(f"{_qid(q)} Q0 {_docid(d)} {rank} {float(s):.9g} {run_name}\n")

    def export_qrels(self, path) -> None:
        """TREC qrels file: ``qid 0 docid 1`` for every relevant (non-excluded) segment."""
        with open(path, "w") as f:
            for q, rel in zip(self.queries, self.qrels):
                for d in rel:
                    f.write(f"{_qid(q)} 0 {_docid(d)} 1\n")


def _qid(segment_id) -> str:
    return f"q{int(segment_id)}"


def _docid(segment_id) -> str:
    # zero-padded so trec_eval's tie-break (docno, descending) equals ours (segment id, descending)
    return f"{int(segment_id):010d}"


def evaluate(lib, *, embedder=None, index: str | None = None, protocol: Protocol | None = None,
             keep_details: bool = True, progress: bool = False) -> Evaluation:
    """Run ``protocol`` on ``lib``'s ``embedder`` vectors through its ``index``.

    Quality metrics are deterministic for a given library, index and protocol. Tracks with no
    value in the label column are left out (neither queries nor candidates); their number is
    in the metrics as ``n_unlabelled`` (tracks) and ``n_unlabelled_segments``. ``progress``: bars
    (tqdm) over the steps and the queries.
    """
    from tqdm.auto import tqdm
    protocol = protocol or Protocol()
    t_start = time.perf_counter()
    steps = tqdm(total=5, desc="evaluate", unit="step", disable=not progress, leave=False)
    steps.set_postfix_str("batch search")
    emb = lib.embedding(embedder)
    faiss_index = open_index(lib, emb, index)  # a sharded library: the fan-out over its shards
    sidecar = faiss_index.sidecar
    tracks, segments = lib.tracks, lib.segments
    labels = segment_labels(tracks, segments, protocol)
    keys = exclusion_keys(tracks, segments, protocol)
    chosen = subset_tracks(tracks, protocol)
    in_subset = segments["track_id"].isin(tracks["track_id"][chosen]).to_numpy()
    valid = emb.valid_rows(segments["track_id"].to_numpy()) & in_subset
    labelled = np.array([v is not None for v in labels], dtype=bool)
    n_unlabelled_segments = int((valid & ~labelled).sum())
    track_labels = label_array(tracks[protocol.label])
    n_unlabelled = int(sum(v is None for v in track_labels[chosen]))
    valid &= labelled
    if protocol.subset:
        tracks, track_labels = tracks[chosen], track_labels[chosen]
    if n_unlabelled:
        log.warning("evaluate: %d track(s) with no %r value left out (neither queries nor relevant)",
                    n_unlabelled, protocol.label)
    queries = query_segments(segments, valid, protocol, tracks)
    if len(queries) == 0:
        why = f" (every track in it lacks a {protocol.label!r} value)" if n_unlabelled and not labelled.any() else ""
        raise ParameterError(f"evaluate: no query segments{why}")
    vectors = np.asarray(lib.vectors(emb.key))
    codes, label_values = pd.factorize(pd.Series(labels, dtype=object))  # unlabelled: code -1
    depth = min(protocol.depth, int(valid.sum()))
    max_excluded = _max_excluded(keys, queries) + int((~valid).sum())
    fetch = min(faiss_index.ntotal, depth + max_excluded)

    t0 = time.perf_counter()
    scores_all, ids_all = faiss_index.search(np.ascontiguousarray(vectors[queries]), fetch)
    search_seconds = time.perf_counter() - t0

    relevance = np.zeros((len(queries), depth), dtype=bool)
    n_relevant = np.zeros(len(queries))
    ranked, ranked_scores, qrels = [], [], []
    track_rel, track_n, track_others = [], [], []
    seg_track = keys[0]
    valid_codes = np.where(valid, codes, -1)
    track_label = pd.Series(track_labels, index=tracks["track_id"].to_numpy(), dtype=object)
    other_labels = pd.Series(track_labels, index=tracks.index, dtype=object)
    steps.update()
    steps.set_postfix_str("ranking")
    for qi, q in enumerate(tqdm(queries, desc="evaluate: queries", unit="query", disable=not progress, leave=False)):
        ids, sc = ids_all[qi], scores_all[qi]
        keep = ids >= 0
        ids, sc = ids[keep], sc[keep]
        excluded_ids = np.zeros(len(ids), dtype=bool)
        excluded_all = np.zeros(len(codes), dtype=bool)
        for key in keys:
            excluded_ids |= key[ids] == key[q]
            excluded_all |= key == key[q]
        excluded_ids |= ~valid[ids]  # outside the protocol's subset, or a failed track's zero row
        ids, sc = ids[~excluded_ids], sc[~excluded_ids]
        order = np.lexsort((-ids, -sc))  # score descending, then segment id descending (trec_eval's tie-break)
        ids, sc = ids[order][:depth], sc[order][:depth]
        relevance[qi, : len(ids)] = codes[ids] == codes[q]
        rel_ids = np.flatnonzero((valid_codes == codes[q]) & ~excluded_all)
        n_relevant[qi] = len(rel_ids)
        if keep_details:
            ranked.append(ids)
            ranked_scores.append(sc)
            qrels.append(rel_ids)
        # track level: best moment per track, relevant when the track's label is the query's
        _, first = np.unique(seg_track[ids], return_index=True)
        best_tracks = seg_track[ids][np.sort(first)]
        track_rel.append(track_label.loc[best_tracks].to_numpy() == labels[q])
        other = tracks[~tracks["track_id"].isin(np.unique(seg_track[excluded_all]))]
        track_n.append(int((other_labels.loc[other.index] == labels[q]).sum()))
        track_others.append(max(1, int(other_labels.loc[other.index].notna().sum())))
    track_depth = max(len(r) for r in track_rel)
    track_relevance = np.zeros((len(queries), track_depth), dtype=bool)
    for qi, r in enumerate(track_rel):
        track_relevance[qi, : len(r)] = r

    result = {}
    per_query = pd.DataFrame({"query": queries, "label": labels[queries]})
    for level, rel, n in (("segment", relevance, n_relevant), ("track", track_relevance, np.asarray(track_n, float))):
        for k in protocol.ks:
            p = M.precision_at_k(rel, k)
            result[f"{level}/P@{k}"] = float(p.mean())
            result[f"{level}/R@{k}"] = float(M.recall_at_k(rel, n, k).mean())
            result[f"{level}/nDCG@{k}"] = float(M.ndcg_at_k(rel, n, k).mean())
            per_query[f"{level}/P@{k}"] = p
        result[f"{level}/mAP"] = float(M.average_precision(rel, n).mean())
        result[f"{level}/MRR"] = float(M.reciprocal_rank(rel).mean())
    chance = pd.Series(labels[valid]).value_counts(normalize=True)
    result["chance/P"] = float((chance.loc[labels[queries]]).mean())
    # a random ranking of the other tracks: the share of them with the query's label
    result["chance/track_P"] = float(np.mean(np.asarray(track_n) / np.asarray(track_others)))

    result["n_unlabelled"] = float(n_unlabelled)
    result["n_unlabelled_segments"] = float(n_unlabelled_segments)
    steps.update()
    steps.set_postfix_str("clusters by label")
    order = content_order(tracks, segments)  # KMeans' start depends on row order: the corpus's, not the ids'
    rows = order[valid[order]]
    result.update(_label_clusters(vectors[rows], labels[rows].astype(str), protocol.seed))
    steps.update()
    steps.set_postfix_str("moment localisation")
    moment, moment_seconds = _moment_accuracy(lib, emb, protocol, sidecar["name"])
    result.update(moment)
    steps.update()
    steps.set_postfix_str("latency")
    latencies = _latencies(lib, emb, queries, protocol, sidecar["name"])
    steps.update()
    steps.close()
    lat = M.latency_summary(latencies)
    result.update({f"latency/{k}": v for k, v in lat.items() if k != "n"})
    result["throughput/batch_qps"] = M.throughput(len(queries), search_seconds)
    index_bytes = sidecar.get("bytes") or 0
    result["memory/index_bytes_per_segment"] = M.memory_per_segment(index_bytes, faiss_index.ntotal)
    result["memory/vector_bytes_per_segment"] = float(vectors.shape[1] * 4)

    record = EvaluationRecord(
        **provenance(lib, emb, [protocol.label], n_tracks=len(tracks)),
        index={**{k: sidecar.get(k) for k in ("name", "factory", "search_params", "n", "build_seconds", "bytes")},
               "recall@10": (sidecar.get("quality") or {}).get("recall@10")},
        protocol=protocol, seed=protocol.seed,
        timings={"evaluate_seconds": round(time.perf_counter() - t_start, 3),
                 "batch_search_seconds": round(search_seconds, 4), "moment_seconds": round(moment_seconds, 3),
                 "n_queries": int(len(queries)), "depth": int(depth)},
        metrics=result,
        extra={"per_class_P@10": per_query.groupby("label")[f"segment/P@{protocol.ks[-1]}"].mean().round(6).to_dict(),
               "labels": [str(v) for v in label_values]})
    return Evaluation(record, queries, ranked, ranked_scores, qrels, per_query, latencies)


def _label_clusters(vectors: np.ndarray, labels: np.ndarray, seed: int) -> dict:
    """How well the vectors cluster by the label: KMeans with k = number of labels, cosine
    silhouette (sampled above 5,000 segments), purity and NMI against the labels."""
    k = len(np.unique(labels))
    if not 2 <= k < len(vectors):
        return {}
    s = clusters.score(vectors, clusters.fit("kmeans", vectors, k=k, seed=seed), labels, seed=seed)
    return {"cluster/silhouette": s["silhouette"], "cluster/purity": s["purity"], "cluster/nmi": s["nmi"]}


def _max_excluded(keys: list[np.ndarray], queries: np.ndarray) -> int:
    """Largest number of segments any query excludes (so over-fetching keeps ``depth`` results)."""
    if len(keys) == 1:
        return int(pd.Series(keys[0]).value_counts().max())
    combined = np.zeros(len(keys[0]), dtype=bool)
    worst = 0
    for q in np.unique(queries):
        combined[:] = False
        for key in keys:
            combined |= key == key[q]
        worst = max(worst, int(combined.sum()))
    return worst


def _moment_accuracy(lib, emb, protocol: Protocol, index_name: str) -> tuple[dict, float]:
    """Clips of one window cut at random (non-hop-aligned) times; is the top hit the same track, within tolerance?"""
    n = protocol.moment_queries
    if n <= 0:
        return {}, 0.0
    seg = lib.segmentation
    tol = protocol.moment_tolerance if protocol.moment_tolerance is not None else seg.hop
    rng = np.random.default_rng(protocol.seed + 1)
    tracks = lib.tracks.iloc[content_order(lib.tracks)]  # drawn in the corpus's order, not the ids'
    tracks = tracks[subset_tracks(tracks, protocol)]
    tracks = tracks[tracks["duration"] > seg.window]
    if tracks.empty:
        return {}, 0.0
    rows = tracks.iloc[rng.integers(0, len(tracks), n)]
    starts = rng.uniform(0, rows["duration"].to_numpy() - seg.window)
    found_t, found_s = [], []
    t0 = time.perf_counter()
    for uri, start in zip(rows["uri"], starts):
        hits = search(lib, Query.audio(uri, start=float(start), end=float(start) + seg.window), embedder=emb.key,
                      index=index_name, k=1)
        found_t.append(int(hits["track_id"].iat[0]))
        found_s.append(float(hits["start"].iat[0]))
    seconds = time.perf_counter() - t0
    acc = M.moment_accuracy(rows["track_id"].to_numpy(), starts, found_t, found_s, tol)
    track_acc = (np.asarray(found_t) == rows["track_id"].to_numpy()).mean()
    return {"moment/accuracy": float(acc.mean()), "moment/track_accuracy": float(track_acc),
            "moment/tolerance_s": float(tol), "moment/clip_query_ms": 1000 * seconds / n}, seconds


def _latencies(lib, emb, queries: np.ndarray, protocol: Protocol, index_name: str) -> np.ndarray:
    """End-to-end :func:`audiorag.search.search` time of single moment queries (k = largest k), seconds."""
    segs = lib.segments.set_index("segment_id")
    rng = np.random.default_rng(protocol.seed + 2)
    sample = rng.choice(queries, min(protocol.latency_queries, len(queries)), replace=False)
    out = []
    for q in sample:
        tid, start = int(segs.at[q, "track_id"]), float(segs.at[q, "start"])
        t0 = time.perf_counter()
        search(lib, Query.moment(tid, start), embedder=emb.key, index=index_name, k=protocol.ks[-1],
               exclude_same_track=True)
        out.append(time.perf_counter() - t0)
    return np.asarray(out)
