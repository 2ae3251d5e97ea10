"""Query by humming: find the recording and the moment a hummed phrase comes from.

1. The hum's pitch is tracked (:func:`audiorag.descriptors.melody.contour`); a hum without a
   melody (silence, noise, too short) is a :class:`~audiorag.errors.ParameterError` saying
   "no melody found".
2. **Coarse**: its key- and tempo-invariant interval histograms
   (:func:`~audiorag.descriptors.melody.melody_vector`) are searched in the ``melody``
   embedding's FAISS index; the best :data:`CANDIDATES` segments go on.
3. **Fine**: each candidate's stored contour is aligned with the hum by subsequence DTW on
   voiced frames, relative pitch in semitones (the hum is shifted by the transpositions that
   best match the two pitch histograms, then by the median difference along the path), with
   steps (1,1), (1,2) and (2,1): the hum may be 0.5–2× the recording's tempo, and a note
   left out or added costs only its own frames (each frame's cost is capped at
   :data:`MAX_COST` semitones).

A hit is the segment, the moment where the hummed phrase starts (``start``) and ends
(``end``) in the track, and ``score`` = 1 − mean aligned cost / :data:`MAX_COST` (1: the hum
follows the melody exactly, in relative pitch) + :data:`COARSE_WEIGHT` × the coarse cosine
similarity (which breaks near-ties of the alignment; weight chosen on development hums).
Overlapping segments of one track find the same phrase; only the best of overlapping hits is kept.

>>> from audiorag.search import Query
>>> Query.hum("hum.wav").kind
'hum'
"""

from __future__ import annotations

import os

import numba
import numpy as np
import pandas as pd

from .audio import display_name, load, resample, valid_audio
from .descriptors import melody as md
from .errors import ParameterError
from .search import _aggregate, _candidates, _head, _with_metadata, context

#: segments re-ranked by alignment after the coarse FAISS stage
CANDIDATES = 200
#: a frame's alignment cost is capped (semitones): a wrong or missing note costs at most this
MAX_COST = 2.0
#: weight of the coarse (interval histogram) similarity in the score: it breaks near-ties of the alignment
COARSE_WEIGHT = 0.125
#: the cost (semitones) of a step that changes the tempo: a steady tempo is preferred to a wiggling one
WARP = 0.3


def hum_contour(source, *, sr: int | None = None, start: float | None = None, end: float | None = None) -> np.ndarray:
    """The pitch contour (cents at :func:`~audiorag.descriptors.melody.frame_rate`) of a hum: a file path
    (optionally its ``[start, end)`` span) or a mono array with ``sr``; no melody → ParameterError.

    >>> hum_contour(np.zeros(16000, np.float32), sr=16000)
    Traceback (most recent call last):
    ...
    audiorag.errors.ParameterError: hum <array>: no melody found (0.00 s pitched in 0 notes; needs 1 s in 3 notes)
    """
    if isinstance(source, np.ndarray):
        name = "<array>"
        valid_audio(source, item="hum")
        y = resample(source.astype(np.float32), sr, md.SR)
        a = int(round((start or 0) * md.SR))
        y = y[a:None if end is None else int(round(end * md.SR))]
    else:
        name = display_name(source)
        duration = None if end is None else end - (start or 0.0)
        y, _ = load(source, sr=md.SR, offset=start or 0.0, duration=duration)
    if len(y) == 0:
        raise ParameterError(f"hum {name}: no melody found (empty audio)")
    cents = md.contour(y)
    md.check_melody(cents, what=f"hum {name}")
    return cents


def hum_search(lib, query, *, embedder=None, k: int = 10, index: str | None = None, filters: dict | None = None,
               by: str = "segment", candidates: int = CANDIDATES) -> pd.DataFrame:
    """Top-``k`` hits for a ``Query.hum``: ``rank, track_id, segment_id, start, end, score`` + track metadata.

    Called by :func:`audiorag.search.search` for hum queries (use that).
    """
    ctx = context(lib, embedder or _melody_key(lib), index)
    emb = ctx.emb
    if emb.meta.get("tags_are") != "contour":
        raise ParameterError(f"hum queries need the melody embedding (lib.embed('melody')); {emb.key} is not one")
    cents = hum_contour(query.source, sr=query.sr, start=query.start, end=query.end)
    q = md.melody_vector(cents, md.frame_rate())
    lay = ctx.layout
    allowed = ctx.allowed(lib, filters)
    keep = None if allowed is None else (lambda ids: np.isin(lay.seg_track[ids], allowed))
    ids, coarse = _candidates(ctx.index, q, max(candidates, 4 * k), keep)
    ids, coarse = ids[:max(candidates, 4 * k)], coarse[:max(candidates, 4 * k)]
    contours = _contours(emb)[ids]
    seconds = lay.ends[ids] - lay.starts[ids]
    points = contours.shape[1] / max(float(np.median(seconds)) if len(ids) else 1.0, 1e-3)  # per second
    hum = md.resample_contour(cents[cents > 0], max(8, int(round(np.count_nonzero(cents) / md.frame_rate() * points))))
    cost, a, b = align(hum, contours)
    step = seconds / contours.shape[1]
    df = pd.DataFrame({"track_id": lay.seg_track[ids], "segment_id": ids, "start": lay.starts[ids] + a * step,
                       "end": lay.starts[ids] + b * step,
                       "score": 1.0 - cost / MAX_COST + COARSE_WEIGHT * coarse})
    df = df.sort_values(["score", "track_id", "start"], ascending=[False, True, True], kind="stable")
    kept, spans = [], {}
    for row in df.itertuples(index=False):  # one hit per phrase: overlapping segments align the same notes
        taken = spans.setdefault(row.track_id, [])
        if any(row.start < e and s < row.end for s, e in taken):
            continue
        taken.append((row.start, row.end))
        kept.append(row)
    hits = {c: np.asarray([getattr(r, c) for r in kept]) for c in df.columns}
    hits["segment_id"] = hits["segment_id"].astype(np.int64)
    return _with_metadata(ctx, _head(_aggregate(hits) if by == "track" else hits, k))


_CONTOURS: dict = {}


def _contours(emb) -> np.ndarray:
    """The stored contours of an embedding, memory-mapped once per file version."""
    path = emb.path / "tags.npy"
    key = (str(path), os.stat(path).st_mtime_ns)
    if key not in _CONTOURS:
        if len(_CONTOURS) > 8:
            _CONTOURS.clear()
        _CONTOURS[key] = emb.tags()
    return _CONTOURS[key]


def _melody_key(lib) -> str:
    """The key of the library's melody embedding (hum queries need one; several: name it)."""
    found = [e.key for e in lib.embeddings() if e.meta.get("tags_are") == "contour"]
    if not found:
        raise ParameterError(f"{lib.path}: hum queries need the melody embedding; add it with lib.embed('melody') "
                             "or `audiorag build LIB --dataset <its dataset> --embedder melody`")
    if len(found) > 1:
        raise ParameterError(f"{lib.path}: several melody embeddings ({', '.join(found)}); name one with embedder=")
    return found[0]


def align(hum: np.ndarray, refs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best alignment of a hum contour inside each reference contour (cents, 0 = unvoiced):
    mean cost per hum point (semitones, each capped at :data:`MAX_COST`) and the reference
    points ``[a, b)`` it spans, one per row of ``refs``. Transposition-invariant; tempo 0.5–2×.

    >>> ref = np.repeat(np.array([0, 6000, 6200, 6400, 6500, 6700, 0], np.float32), 10)
    >>> hum = np.repeat(np.array([5500, 5700, 5900, 6000, 0, 6200], np.float32), 10)  # 5 semitones lower
    >>> cost, a, b = align(hum, ref[None, :])
    >>> round(float(cost[0]), 3), int(a[0]), int(b[0])
    (0.0, 10, 60)
    """
    h = np.asarray(hum, np.float64)
    h = h[h > 0] / 100
    h = h - np.median(h) if len(h) else h
    return _align_many(h, np.ascontiguousarray(refs, dtype=np.float64) / 100, MAX_COST, SHIFTS, FULL)


#: transpositions tried per candidate (the best overlays of the hum's pitch histogram on the reference's),
#: and how many candidates get them all plus a refinement (the others: the best overlay only)
SHIFTS, FULL = 3, 40


@numba.njit(cache=True)
def _align_many(h, refs, cap, n_shifts, n_full):  # pragma: no cover  (compiled)
    n_refs = len(refs)
    costs = np.full(n_refs, cap)
    starts = np.zeros(n_refs, np.int64)
    ends = np.zeros(n_refs, np.int64)
    if len(h) < 2:
        return costs, starts, ends
    hist_h = np.zeros(41)  # the hum relative to its median: −20…+20 semitones
    for v in h:
        hist_h[min(max(int(np.floor(v + 20.5)), 0), 40)] += 1
    for k in range(n_refs):  # a first pass: the best overlay only
        costs[k], starts[k], ends[k] = _align_one(h, hist_h, refs[k], cap, 1, False)
    for k in np.argsort(costs)[:n_full]:  # the most promising: several overlays, refined
        costs[k], starts[k], ends[k] = _align_one(h, hist_h, refs[k], cap, n_shifts, True)
    return costs, starts, ends


@numba.njit(cache=True)
def _align_one(h, hist_h, ref, cap, n_shifts, refine):  # pragma: no cover  (compiled)
    voiced = np.flatnonzero(ref > 0)
    if len(voiced) < 2:
        return cap, 0, 0
    r = ref[voiced]
    lo = int(np.floor(r.min())) - 20
    hist_r = np.zeros(int(np.ceil(r.max())) + 21 - lo + 41)
    for v in r:
        hist_r[int(np.floor(v + 0.5)) - lo] += 1
    n_pos = len(hist_r) - 41 + 1
    corr = np.zeros(n_pos)
    for p in range(n_pos):
        corr[p] = np.dot(hist_r[p:p + 41], hist_h)
    best, best_a, best_b = 1e18, 0, 0
    for p in np.argsort(-corr)[:n_shifts]:
        shift = p + lo + 20.0  # hum bin 20 (its median) lands on reference semitone p + lo + 20
        cost, a, b, diff = _dtw(h + shift, r, cap)
        if refine:
            cost2, a2, b2, _ = _dtw(h + shift + diff, r, cap)  # by the median difference on the path
            if cost2 < cost:
                cost, a, b = cost2, a2, b2
        if cost < best:
            best, best_a, best_b = cost, voiced[a], voiced[b] + 1
    return best, best_a, best_b


@numba.njit(cache=True)
def _dtw(h, r, cap):  # pragma: no cover  (compiled)
    n, m = len(h), len(r)
    inf = 1e18
    d = np.full((n, m), inf)
    s = np.zeros((n, m), np.int64)
    for j in range(m):
        d[0, j] = min(abs(h[0] - r[j]), cap)
        s[0, j] = j
    for i in range(1, n):
        for j in range(1, m):
            c = min(abs(h[i] - r[j]), cap)
            best, src = d[i - 1, j - 1] + c, s[i - 1, j - 1]
            if j >= 2 and d[i - 1, j - 2] + c + WARP < best:  # the hum is faster here: two reference points
                best, src = d[i - 1, j - 2] + c + WARP, s[i - 1, j - 2]
            if i >= 2 and d[i - 2, j - 1] + 2 * c + WARP < best:  # the hum is slower here: two hum points
                best, src = d[i - 2, j - 1] + 2 * c + WARP, s[i - 2, j - 1]
            d[i, j] = best
            s[i, j] = src
    end = 0
    for j in range(m):
        if d[n - 1, j] < d[n - 1, end]:
            end = j
    diffs = np.empty(n)  # pitch difference along the path, to refine the transposition
    i, j = n - 1, end
    while i >= 0:
        diffs[i] = r[j] - h[i]
        if i == 0 or j == 0:
            diffs[:i] = diffs[i]
            break
        c = min(abs(h[i] - r[j]), cap)
        if abs(d[i, j] - (d[i - 1, j - 1] + c)) < 1e-9:
            i, j = i - 1, j - 1
        elif j >= 2 and abs(d[i, j] - (d[i - 1, j - 2] + c + WARP)) < 1e-9:
            i, j = i - 1, j - 2
        else:
            diffs[i - 1] = r[j - 1] - h[i - 1]
            i, j = i - 2, j - 1
    return d[n - 1, end] / n, s[n - 1, end], end, np.median(diffs)
