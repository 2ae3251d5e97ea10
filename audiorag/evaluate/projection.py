"""Supervised retrieval, measured out of fold: how much a projection learned from a few labels helps search.

For each group-disjoint fold (:func:`~audiorag.evaluate.probe.group_folds` over the ``cv_group``
column; default the track), a projection (:func:`~audiorag.library.derived.fit_projection`: ``lda``,
``nca`` or ``linear``) is fitted on the *other* folds' labelled segments only, every segment is
projected and L2-normalised, and each held-out segment queries all segments of other groups
(exact cosine ranking). ``method="none"`` ranks the raw vectors under the same protocol — the
baseline, equal to :func:`audiorag.evaluate.evaluate` with ``exclude_same=[cv_group]``.

Metrics are the retrieval ones (:mod:`.metrics`, segment level: P@k, R@k, nDCG@k, mAP, MRR, chance);
the record is an :class:`~audiorag.evaluate.EvaluationRecord` of kind ``"retrieval-supervised"``
with ``extra["supervised"]`` true and the method, folds and fitting times.

>>> rng = np.random.default_rng(0)
>>> y = np.repeat(["a", "b", "c"], 30)
>>> x = rng.standard_normal((90, 8)); x[:, 0] += 2.5 * (y == "a"); x[:, 1] += 2.5 * (y == "b")
>>> raw = projected_retrieval(x, y, np.arange(90) // 3, method="none")
>>> lda = projected_retrieval(x, y, np.arange(90) // 3, method="lda")
>>> lda["metrics"]["segment/P@10"] > raw["metrics"]["segment/P@10"]
True
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ..embedders import l2_normalise
from ..errors import ParameterError
from ..library.derived import METHODS, fit_projection
from ..library.order import content_order, track_keys
from . import metrics as M
from .probe import group_folds, item_groups
from .protocol import Protocol, exclusion_keys, segment_labels, subset_tracks
from .records import EvaluationRecord, provenance

#: ``none`` (raw vectors, the baseline) and the projections of :func:`~audiorag.library.derived.fit_projection`
CHOICES = ("none", *METHODS)


def projected_retrieval(x, y, groups, *, method: str = "lda", folds: int = 5, ks=(1, 5, 10), seed: int = 0,
                        exclude=(), depth: int = 1000) -> dict:
    """Out-of-fold retrieval of vectors ``x`` (labels ``y``) after a ``method`` projection fitted per fold.

    Queries: every item, in the fold that holds out its group; candidates: every item of another
    group (and not sharing any key of ``exclude``, integer arrays such as the track). Returns
    ``metrics``, ``ranked`` (per item, its ranked candidate rows), ``fold`` and ``fit_seconds``.
    """
    if method not in CHOICES:
        raise ParameterError(f"projection must be one of {', '.join(CHOICES)}, got {method!r}")
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y).astype(str)
    codes = pd.factorize(pd.Series(np.asarray(groups), dtype=object))[0]
    keys = [codes, *[np.asarray(k) for k in exclude]]
    ks = sorted(set(ks))
    depth = max(min(depth, len(y)), ks[-1])
    relevance = np.zeros((len(y), depth), dtype=bool)
    n_relevant = np.zeros(len(y))
    ranked: list = [None] * len(y)
    fold = np.full(len(y), -1)
    seconds = []
    for f, (train, test) in enumerate(group_folds(codes, folds, seed=seed)):
        t0 = time.perf_counter()
        if method == "none":
            z = l2_normalise(x)
        else:
            with threadpool_limits(1):  # small fits: more BLAS threads only contend
                W, b = fit_projection(method, x[train], y[train], seed=seed)
            z = l2_normalise(x @ W + b)
        seconds.append(round(time.perf_counter() - t0, 4))
        scores = z[test] @ z.T
        for qi, q in enumerate(test):
            allowed = np.ones(len(y), dtype=bool)
            for key in keys:
                allowed &= key != key[q]
            ids = np.flatnonzero(allowed)
            sc = scores[qi, ids]
            order = np.lexsort((-ids, -sc))[:depth]  # score descending, then row descending (as evaluate)
            ranked[q] = ids[order]
            relevance[q, : len(order)] = y[ids[order]] == y[q]
            n_relevant[q] = int((y[ids] == y[q]).sum())
            fold[q] = f
    metrics = {}
    for k in ks:
        metrics[f"segment/P@{k}"] = float(M.precision_at_k(relevance, k).mean())
        metrics[f"segment/R@{k}"] = float(M.recall_at_k(relevance, n_relevant, k).mean())
        metrics[f"segment/nDCG@{k}"] = float(M.ndcg_at_k(relevance, n_relevant, k).mean())
    metrics["segment/mAP"] = float(M.average_precision(relevance, n_relevant).mean())
    metrics["segment/MRR"] = float(M.reciprocal_rank(relevance).mean())
    share = pd.Series(y).value_counts(normalize=True)
    metrics["chance/P"] = float(share.loc[y].mean())
    return {"metrics": metrics, "ranked": ranked, "fold": fold, "fit_seconds": seconds,
            "per_query_P": M.precision_at_k(relevance, ks[-1])}


def evaluate_projected(lib, *, embedder=None, method: str = "lda", cv_group: str | None = None, folds: int = 5,
                       protocol: Protocol | None = None):
    """Out-of-fold supervised retrieval on ``lib`` (see the module doc); returns the
    :class:`~audiorag.evaluate.Evaluation`-like pair ``(record, per_query DataFrame)``.

    ``protocol`` gives the label, cut-offs, subset, ``exclude_same`` columns, depth and seed;
    ``cv_group`` (a track column; default the track) is added to its exclusions, so ``method="none"``
    reproduces :func:`~audiorag.evaluate.evaluate` with ``exclude_same=[cv_group]`` at segment level.

    >>> # record, per_query = evaluate_projected(lib, embedder="aisfx", method="lda", cv_group="artist")
    """
    protocol = (protocol or Protocol()).model_copy()
    if cv_group and cv_group not in protocol.exclude_same:
        protocol.exclude_same = [*protocol.exclude_same, cv_group]
    t0 = time.perf_counter()
    emb = lib.embedding(embedder)
    tracks, segments = lib.tracks, lib.segments
    labels = segment_labels(tracks, segments, protocol)
    keys = exclusion_keys(tracks, segments, protocol)
    in_subset = segments["track_id"].isin(tracks["track_id"][subset_tracks(tracks, protocol)]).to_numpy()
    valid = emb.valid_rows(segments["track_id"].to_numpy()) & in_subset
    valid &= np.array([v is not None for v in labels], dtype=bool)
    order = content_order(tracks, segments)  # the corpus's order and names: the same folds in every library
    rows = order[valid[order]]
    if not len(rows):
        raise ParameterError("evaluate_projected: no labelled segments")
    items = segments.iloc[rows].merge(tracks, on="track_id", how="left")
    groups = item_groups(items.assign(track_id=items["track_id"].map(track_keys(tracks))), cv_group)
    out = projected_retrieval(np.asarray(lib.vectors(emb.key))[rows], labels[rows], groups, method=method,
                              folds=folds, ks=protocol.ks, seed=protocol.seed, depth=protocol.depth,
                              exclude=[k[rows] for k in keys])
    record = EvaluationRecord(
        **provenance(lib, emb, [protocol.label, *protocol.exclude_same], n_tracks=len(tracks)),
        kind="retrieval-supervised", protocol=protocol, seed=protocol.seed, metrics=out["metrics"],
        timings={"evaluate_seconds": round(time.perf_counter() - t0, 3), "fit_seconds_per_fold": out["fit_seconds"],
                 "n_queries": int(len(rows))},
        extra={"supervised": method != "none", "projection": method, "cv_group": cv_group or "track",
               "folds": folds, "n_folds": int(out["fold"].max() + 1)})
    per_query = pd.DataFrame({"query": rows, "label": labels[rows], "fold": out["fold"],
                              f"segment/P@{protocol.ks[-1]}": out["per_query_P"]})
    return record, per_query


__all__ = ["projected_retrieval", "evaluate_projected", "CHOICES"]
