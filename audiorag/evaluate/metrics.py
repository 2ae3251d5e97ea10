"""Evaluation metrics as pure functions on arrays (mir_eval style).

Ranking metrics take ``relevance``: a boolean or graded array ``[n_queries, depth]``
(the judged relevance of each ranked result, best first) and, where the metric needs
it, ``n_relevant``: the number of relevant items per query in the whole collection.
They return one value per query; average them for the usual means (P@k, mAP, ...).
Definitions follow trec_eval (AP divides by all relevant items; nDCG uses log2(rank+1)
discounts and the ideal ranking of ``n_relevant`` binary gains).

>>> rel = np.array([[1, 0, 1, 0], [0, 0, 0, 1]], dtype=bool)
>>> precision_at_k(rel, 2).tolist()
[0.5, 0.0]
>>> average_precision(rel, [2, 1]).round(4).tolist()
[0.8333, 0.25]
>>> reciprocal_rank(rel).tolist()
[1.0, 0.25]
"""

from __future__ import annotations

import numpy as np

# cluster metrics are analysis' pure functions; evaluation uses them, and they are part of this API
from ..analysis.clusters import nmi, purity, silhouette  # noqa: F401
from ..errors import ParameterError


def validate(relevance, n_relevant=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Check shapes and values; returns float arrays. Raises :class:`ParameterError`."""
    rel = np.asarray(relevance, dtype=np.float64)
    if rel.ndim != 2:
        raise ParameterError(f"relevance must be [n_queries, depth], got shape {rel.shape}")
    if (rel < 0).any() or not np.isfinite(rel).all():
        raise ParameterError("relevance must be finite and >= 0")
    if n_relevant is None:
        return rel, None
    n = np.asarray(n_relevant, dtype=np.float64)
    if n.shape != (rel.shape[0],):
        raise ParameterError(f"n_relevant must have one value per query ({rel.shape[0]}), got shape {n.shape}")
    if ((rel > 0).sum(axis=1) > n).any():
        raise ParameterError("a query has more relevant results than n_relevant says exist")
    return rel, n


def _check_k(k: int, rel: np.ndarray) -> int:
    if k < 1:
        raise ParameterError(f"k must be >= 1, got {k}")
    return k


def precision_at_k(relevance, k: int) -> np.ndarray:
    """Fraction of the top ``k`` that is relevant (missing ranks count as non-relevant)."""
    rel, _ = validate(relevance)
    k = _check_k(k, rel)
    return (rel[:, :k] > 0).sum(axis=1) / k


def recall_at_k(relevance, n_relevant, k: int) -> np.ndarray:
    """Fraction of all relevant items found in the top ``k`` (0 when a query has none)."""
    rel, n = validate(relevance, n_relevant)
    k = _check_k(k, rel)
    found = (rel[:, :k] > 0).sum(axis=1)
    return np.divide(found, n, out=np.zeros_like(n), where=n > 0)


def average_precision(relevance, n_relevant) -> np.ndarray:
    """Mean of P@i over the ranks i of relevant results, divided by all relevant items."""
    rel, n = validate(relevance, n_relevant)
    hits = rel > 0
    precision = np.cumsum(hits, axis=1) / np.arange(1, rel.shape[1] + 1)
    total = (precision * hits).sum(axis=1)
    return np.divide(total, n, out=np.zeros_like(n), where=n > 0)


def ndcg_at_k(relevance, n_relevant, k: int) -> np.ndarray:
    """Normalised discounted cumulative gain of the top ``k`` (gains = relevance values)."""
    rel, n = validate(relevance, n_relevant)
    k = _check_k(k, rel)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    top = rel[:, :k]
    dcg = (top * discounts[: top.shape[1]]).sum(axis=1)
    ideal_hits = np.minimum(n, k).astype(int)
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[ideal_hits]
    return np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)


def reciprocal_rank(relevance) -> np.ndarray:
    """1 / rank of the first relevant result (0 when none is ranked)."""
    rel, _ = validate(relevance)
    hits = rel > 0
    first = hits.argmax(axis=1)
    return np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)


def moment_accuracy(true_tracks, true_starts, found_tracks, found_starts, tolerance: float) -> np.ndarray:
    """1 where the found moment is in the right track and starts within ±``tolerance`` seconds.

    >>> moment_accuracy([1, 1], [10.0, 10.0], [1, 2], [11.5, 10.0], 2.0).tolist()
    [1.0, 0.0]
    """
    if tolerance < 0:
        raise ParameterError(f"tolerance must be >= 0, got {tolerance}")
    tt, ft = np.asarray(true_tracks), np.asarray(found_tracks)
    ts, fs = np.asarray(true_starts, float), np.asarray(found_starts, float)
    if not (tt.shape == ft.shape == ts.shape == fs.shape):
        raise ParameterError("moment_accuracy: all inputs need the same shape")
    return ((tt == ft) & (np.abs(ts - fs) <= tolerance + 1e-9)).astype(float)


def latency_summary(seconds) -> dict:
    """p50 / p95 / p99 / mean latency in milliseconds.

    >>> latency_summary([0.001, 0.002, 0.003])["p50_ms"]
    2.0
    """
    s = np.asarray(seconds, dtype=float) * 1000
    if s.size == 0:
        raise ParameterError("latency_summary: no timings")
    p50, p95, p99 = np.percentile(s, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "mean_ms": float(s.mean()),
            "n": int(s.size)}


def throughput(n_items: int, seconds: float) -> float:
    """Items per second."""
    if seconds <= 0:
        raise ParameterError(f"throughput: seconds must be > 0, got {seconds}")
    return n_items / seconds


def memory_per_segment(n_bytes: int, n_segments: int) -> float:
    """Bytes per indexed segment."""
    if n_segments <= 0:
        raise ParameterError("memory_per_segment: no segments")
    return n_bytes / n_segments
