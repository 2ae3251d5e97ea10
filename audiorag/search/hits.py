"""Candidates and hits: an index's candidates under a filter, hits aggregated per track, the best of
overlapping alignments, the first ``k``, and the hits table with its tracks' metadata.

Hits travel as a dict of equal-length columns (``track_id, segment_id, start, end, score``, ...) until
:func:`with_metadata` makes the table a search returns.

>>> hits = {"track_id": np.array([4, 4, 2]), "start": np.array([0.0, 2.0, 0.0]),
...         "end": np.array([10.0, 12.0, 10.0]), "score": np.array([.9, .8, .7])}
>>> drop_overlapping(hits)["track_id"].tolist()       # 2–12 s of track 4 overlaps its better 0–10 s
[4, 2]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

HIT_COLUMNS = ["rank", "track_id", "segment_id", "start", "end", "score"]


def keeper(layout, allowed: np.ndarray | None, moments: np.ndarray | None, excluded: int | None):
    """The candidate test of a search: segment ids → mask of those whose track is ``allowed``, whose
    moment passes the ``moments`` mask and whose track is not ``excluded``; None when nothing is filtered."""
    if allowed is None and excluded is None and moments is None:
        return None

    def keep(ids):
        t = layout.seg_track[ids]
        ok = np.ones(len(ids), dtype=bool) if allowed is None else np.isin(t, allowed)
        ok = ok if moments is None else ok & moments[ids]
        return ok if excluded is None else ok & (t != excluded)
    return keep


def candidates(index, q: np.ndarray, n_wanted: int, keep=None) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, scores)`` of up to ``n_wanted`` segments nearest to ``q`` passing ``keep``: the index is
    searched with growing depth until enough pass (or it is exhausted)."""
    depth = max(4 * n_wanted, 32)
    while True:
        depth = min(depth, index.ntotal)
        scores, ids = index.search(np.ascontiguousarray(q[None, :], dtype=np.float32), depth)
        scores, ids = scores[0], ids[0]
        ok = ids >= 0
        if keep is not None:
            ok &= keep(ids)
        if ok.sum() >= n_wanted or depth >= index.ntotal:
            return ids[ok], scores[ok]
        depth *= 4


def aggregate(hits: dict) -> dict:
    """One hit per track: its best-scoring moment, and how many of its segments matched.

    >>> aggregate({"track_id": np.array([4, 2, 4]), "score": np.array([.9, .8, .7])})["n_segments"].tolist()
    [2, 1]
    """
    order = np.argsort(-np.asarray(hits["score"]), kind="stable")
    tracks = np.asarray(hits["track_id"])[order]
    _, first, counts = np.unique(tracks, return_index=True, return_counts=True)
    best = np.argsort(first, kind="stable")
    rows = order[first[best]]
    return {**{c: np.asarray(v)[rows] for c, v in hits.items()}, "n_segments": counts[best]}


def with_ties(ids: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` of candidates sorted by score, and those tied with the ``n``-th: the same set whatever
    order an index gives equal scores (one FAISS index, or the fan-out over shards, which breaks ties by id).

    >>> with_ties(np.array([4, 7, 2, 9]), np.array([.9, .5, .5, .1]), 2)[0].tolist()
    [4, 7, 2]
    """
    if len(ids) <= n:
        return ids, scores
    keep = scores >= scores[n - 1]  # sorted: a prefix
    return ids[keep], scores[keep]


def head(hits: dict, k: int) -> dict:
    """The first ``k`` hits.

    >>> head({"score": np.arange(5)}, 2)["score"].tolist()
    [0, 1]
    """
    return {c: v[:k] for c, v in hits.items()}


def per_track(hits: dict, by: str, k: int) -> dict:
    """The first ``k`` hits, aggregated to one per track first when ``by="track"``."""
    return head(aggregate(hits) if by == "track" else hits, k)


def drop_overlapping(hits: dict, limit: int | None = None) -> dict:
    """Hits by score (then track, then start), keeping only the best of those overlapping in time on one
    track (overlapping windows find the same moment); at most ``limit`` kept."""
    df = pd.DataFrame(hits).sort_values(["score", "track_id", "start"], ascending=[False, True, True],
                                        kind="stable")
    kept, spans = [], {}
    for row in df.itertuples(index=False):
        taken = spans.setdefault(row.track_id, [])
        if any(row.start < e and s < row.end for s, e in taken):
            continue
        taken.append((row.start, row.end))
        kept.append(row)
        if limit is not None and len(kept) >= limit:
            break
    return {c: np.asarray([getattr(r, c) for r in kept]) for c in df.columns}


def with_metadata(ctx, cols: dict) -> pd.DataFrame:
    """``rank``, the hit columns, then the hit's track columns from the search context ``ctx``."""
    n = len(cols["track_id"])
    out = {"rank": np.arange(1, n + 1), **cols, "segment_id": np.asarray(cols["segment_id"], dtype=np.int64)}
    out.update(ctx.metadata(np.asarray(cols["track_id"])))
    return pd.DataFrame(out)


def nearest(index, q: np.ndarray, k: int, keep, layout, by: str) -> dict:
    """Top-``k`` hits of one query vector (``by="track"``: one per track, searching deeper as needed)."""
    wanted = k if by == "segment" else 8 * k
    while True:
        ids, scores = candidates(index, q, wanted, keep)
        if by == "segment":
            return layout.hits(ids[:k], scores[:k])
        tracks = aggregate(layout.hits(ids, scores))
        if len(tracks["track_id"]) >= k or len(ids) >= index.ntotal or wanted >= index.ntotal:
            return head(tracks, k)
        wanted *= 4


def pooled_nearest(tindex, q: np.ndarray, k: int, layout, vectors, allowed: np.ndarray | None,
                   excluded: int | None) -> dict:
    """Top-``k`` tracks of a pooled query vector ``q`` in a track index (``tindex``:
    :class:`audiorag.library.trackvectors.TrackIndex`), among ``allowed`` tracks but ``excluded``. The score
    is the cosine to the track's pooled vector; the moment is the track's segment nearest to ``q`` (where
    to listen), ``n_segments`` the track's number of segments."""
    tids = tindex.track_ids
    keep = None
    if allowed is not None or excluded is not None:
        def keep(rows):
            ok = np.ones(len(rows), dtype=bool) if allowed is None else np.isin(tids[rows], allowed)
            return ok if excluded is None else ok & (tids[rows] != excluded)
    rows, scores = candidates(tindex, q, k, keep)
    tracks = tids[rows[:k]]
    firsts = np.array([layout.first[t] for t in tracks.tolist()], dtype=np.int64)
    counts = np.array([layout.count[t] for t in tracks.tolist()], dtype=np.int64)
    best = np.array([f + int(np.argmax(np.asarray(vectors[f:f + n]) @ q)) for f, n in zip(firsts, counts)],
                    dtype=np.int64)
    return {**layout.hits(best, scores[:k]), "n_segments": counts}


def sequence(lib, ctx, qv: np.ndarray, k: int, keep, by: str) -> dict:
    """Top-``k`` alignments of a multi-window query ``qv`` ``[m, dim]``: for each track, runs of ``m``
    consecutive segments scored by mean similarity (windows outside the track count as 0)."""
    m, lay, vectors = len(qv), ctx.layout, lib.vectors(ctx.emb.key)  # checked: covers every segment
    valid = ctx.emb.valid_rows(lay.seg_track)
    alignments: set[tuple[int, int]] = set()
    for i, q in enumerate(qv):
        ids, _ = candidates(ctx.index, q, max(4 * k, 50), keep)
        for sid in ids.tolist():
            t = int(lay.seg_track[sid])
            alignments.add((t, sid - lay.first[t] - i))
    rows = []
    for t, off in alignments:
        n_t, first = lay.count[t], lay.first[t]
        pos = np.arange(off, off + m)
        inside = (pos >= 0) & (pos < n_t)
        sids = first + pos[inside]
        sims = np.einsum("ij,ij->i", qv[inside], np.asarray(vectors[sids])) * valid[sids]
        lo, hi = first + max(off, 0), first + min(off + m, n_t) - 1
        rows.append((t, lo, lay.starts[lo], lay.ends[hi], float(sims.sum() / m)))
    df = pd.DataFrame(rows, columns=["track_id", "segment_id", "start", "end", "score"])
    out = drop_overlapping({c: df[c].to_numpy() for c in df.columns}, limit=k if by == "segment" else 4 * k)
    return per_track(out, by, k)
