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

The alignment is vectorised over candidates with numpy (no compile step: the first hum query of a fresh
install answers as fast as the next ones). The query side (the hum's clip, the coarse stage, the hits) is
:mod:`audiorag.search.hum`.

>>> ref = np.repeat(np.array([0, 6000, 6200, 6400, 6500, 6700, 0], np.float32), 10)
>>> cost, a, b = align(ref[ref > 0] - 300, ref[None, :])      # 3 semitones lower: a perfect fit, points 10-60
>>> round(float(cost[0]), 3), int(a[0]), int(b[0])
(0.0, 10, 60)
>>> round(float(align(ref[ref > 0][::2] - 300, ref[None, :])[0][0]), 3)  # twice as fast: the warps cost
0.18
"""

from __future__ import annotations

import numpy as np

#: segments re-ranked by alignment after the coarse FAISS stage
CANDIDATES = 200
#: a frame's alignment cost is capped (semitones): a wrong or missing note costs at most this
MAX_COST = 2.0
#: weight of the coarse (interval histogram) similarity in the score: it breaks near-ties of the alignment
COARSE_WEIGHT = 0.125
#: the cost (semitones) of a step that changes the tempo: a steady tempo is preferred to a wiggling one
WARP = 0.3
#: transpositions tried per candidate (the best overlays of the hum's pitch histogram on the reference's),
#: and how many candidates get them all plus a refinement (the others: the best overlay only)
SHIFTS, FULL = 3, 40
_FAR = 1e18  # an unreachable alignment cost


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
    refs = np.ascontiguousarray(refs, dtype=np.float64) / 100
    costs = np.full(len(refs), MAX_COST)
    starts = np.zeros(len(refs), np.int64)
    ends = np.zeros(len(refs), np.int64)
    if len(h) < 2:
        return costs, starts, ends
    hist_h = np.bincount(np.clip(np.floor(h + 20.5).astype(np.int64), 0, 40), minlength=41).astype(np.float64)
    voiced = [np.flatnonzero(ref > 0) for ref in refs]
    shifts = [_overlays(hist_h, ref[v]) if len(v) >= 2 else [] for ref, v in zip(refs, voiced)]
    first = [i for i, s in enumerate(shifts) if len(s)]  # a first pass: the best overlay only
    found = _dtw(h, [refs[i][voiced[i]] for i in first], [shifts[i][0] for i in first])
    _keep(costs, starts, ends, voiced, first, found)
    full = [int(i) for i in np.argsort(costs, kind="stable")[:FULL] if len(shifts[i])]
    jobs = [(i, s) for i in full for s in shifts[i][:SHIFTS]]  # the most promising: several overlays, refined
    rs = [refs[i][voiced[i]] for i, _ in jobs]
    cost, a, b, diff = _dtw(h, rs, [s for _, s in jobs], path=True)
    cost2, a2, b2 = _dtw(h, rs, [s for _, s in jobs], then=diff)  # shifted by the median difference on the path
    better = cost2 < cost
    cost, a, b = np.where(better, cost2, cost), np.where(better, a2, a), np.where(better, b2, b)
    for i in full:
        costs[i] = _FAR
    for j, (i, _) in enumerate(jobs):  # overlays in order of histogram fit; a later one must be strictly better
        if cost[j] < costs[i]:
            costs[i], starts[i], ends[i] = cost[j], voiced[i][a[j]], voiced[i][b[j]] + 1
    return costs, starts, ends


def _keep(costs, starts, ends, voiced, rows, found) -> None:
    cost, a, b = found
    for j, i in enumerate(rows):
        costs[i], starts[i], ends[i] = cost[j], voiced[i][a[j]], voiced[i][b[j]] + 1


def _overlays(hist_h: np.ndarray, r: np.ndarray) -> list[float]:
    """Transpositions of the hum (relative to its median) onto reference ``r`` (semitones), best first:
    where its pitch histogram best overlays the reference's."""
    lo = int(np.floor(r.min())) - 20
    hist_r = np.zeros(int(np.ceil(r.max())) + 21 - lo + 41)
    np.add.at(hist_r, np.floor(r + 0.5).astype(np.int64) - lo, 1)
    corr = np.lib.stride_tricks.sliding_window_view(hist_r, 41) @ hist_h
    # the hum's bin 20 (its median) lands on reference semitone p + lo + 20
    return [p + lo + 20.0 for p in np.argsort(-corr, kind="stable")[:SHIFTS]]


def _dtw(h: np.ndarray, refs: list[np.ndarray], shifts: list[float], *, then=None, path: bool = False):
    """Subsequence DTW of ``h + shift`` (``+ then``, a second shift) in each reference (steps (1,1),
    (1,2), (2,1); a tempo change costs :data:`WARP`), all references at once: mean cost per hum point,
    first and last reference point of the best path, and (``path=True``) the median pitch difference
    along it."""
    n_refs, n = len(refs), len(h)
    if n_refs == 0:
        return (np.zeros(0),) * 3 + ((np.zeros(0),) if path else ())
    m = max(len(r) for r in refs)
    r = np.zeros((n_refs, m))
    width = np.array([len(x) for x in refs])
    for k, x in enumerate(refs):
        r[k, :len(x)] = x
    hs = h[None, :] + np.asarray(shifts, np.float64)[:, None]  # [refs, n]
    if then is not None:
        hs = hs + np.asarray(then, np.float64)[:, None]
    c = np.minimum(np.abs(hs[:, :, None] - r[:, None, :]), MAX_COST)  # [refs, n, m]
    d = np.full((n_refs, n if path else 3, m), _FAR)  # costs: every row to trace paths back, else the last 3
    s = np.zeros((n_refs, 3, m), np.int64)  # where the best path to each point started (the last 3 rows)
    d[:, 0], s[:, 0] = c[:, 0], np.arange(m)
    for i in range(1, n):
        ci = c[:, i, 1:]
        up, src_up = d[:, _row(i - 1, path)], s[:, (i - 1) % 3]
        best = up[:, :-1] + ci
        take = up[:, :-2] + ci[:, 1:] + WARP < best[:, 1:]  # the hum is faster here: two reference points
        best[:, 1:] = np.where(take, up[:, :-2] + ci[:, 1:] + WARP, best[:, 1:])
        src = src_up[:, :-1].copy()
        src[:, 1:] = np.where(take, src_up[:, :-2], src[:, 1:])
        if i >= 2:  # the hum is slower here: two hum points
            slow = d[:, _row(i - 2, path), :-1] + 2 * ci + WARP
            take = slow < best
            best = np.where(take, slow, best)
            src = np.where(take, s[:, (i - 2) % 3, :-1], src)
        d[:, _row(i, path)] = np.concatenate([np.full((n_refs, 1), _FAR), best], axis=1)
        s[:, i % 3] = np.concatenate([np.zeros((n_refs, 1), np.int64), src], axis=1)
    last = np.where(np.arange(m)[None, :] < width[:, None], d[:, _row(n - 1, path)], np.inf)
    end = np.argmin(last, axis=1)
    rows = np.arange(n_refs)
    out = (last[rows, end] / n, s[rows, (n - 1) % 3, end], end)
    return out + (_path_differences(hs, r, c, d, end),) if path else out


def _row(i: int, path: bool) -> int:
    """Where row ``i`` of the cost matrix is kept."""
    return i if path else i % 3


def _path_differences(hs, r, c, d, end) -> np.ndarray:
    """Median of ``reference − hum`` pitch along each best path (traced back from ``end``), to refine the
    transposition."""
    n_refs, n = hs.shape
    rows = np.arange(n_refs)
    diffs = np.zeros((n_refs, n))
    i, j = np.full(n_refs, n - 1), end.copy()
    live = np.ones(n_refs, bool)
    while live.any():
        k, ik, jk = rows[live], i[live], j[live]
        diffs[k, ik] = r[k, jk] - hs[k, ik]
        stop = (ik == 0) | (jk == 0)
        for kk, ii in zip(k[stop], ik[stop]):
            diffs[kk, :ii] = diffs[kk, ii]
        go = ~stop
        k, ik, jk = k[go], ik[go], jk[go]
        cost = c[k, ik, jk]
        here = d[k, ik, jk]
        diag = np.abs(here - (d[k, ik - 1, jk - 1] + cost)) < 1e-9
        skip = ~diag & (jk >= 2) & (np.abs(here - (d[k, ik - 1, np.maximum(jk - 2, 0)] + cost + WARP)) < 1e-9)
        slow = ~diag & ~skip
        diffs[k[slow], ik[slow] - 1] = r[k[slow], jk[slow] - 1] - hs[k[slow], ik[slow] - 1]
        i[k] = ik - np.where(slow, 2, 1)
        j[k] = jk - np.where(diag | slow, 1, 2)
        live[rows[live][stop]] = False
        live[k[i[k] < 0]] = False
    return np.median(diffs, axis=1)
