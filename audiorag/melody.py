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
    shifts = _overlays(hist_h, [ref[v] for ref, v in zip(refs, voiced)])
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


def _overlays(hist_h: np.ndarray, refs: list[np.ndarray]) -> list[list[float]]:
    """Transpositions of the hum (relative to its median) onto each reference (voiced points, semitones), best
    first: where its pitch histogram best overlays the reference's (none for a reference of < 2 points). All
    references at once, on one semitone axis; a reference's transpositions run from its lowest semitone to 41
    above its highest, ties go to the lowest.

    >>> hist = np.zeros(41); hist[20] = 1  # a hum on one note
    >>> _overlays(hist, [np.array([60.2, 60.1, 64.0]), np.array([50.0])])
    [[60.0, 64.0, 61.0], []]
    """
    used = [k for k, r in enumerate(refs) if len(r) >= 2]
    out: list[list[float]] = [[] for _ in refs]
    if not used:
        return out
    lows = np.array([np.floor(refs[k].min()) for k in used], np.int64) - 20
    highs = np.array([np.ceil(refs[k].max()) for k in used], np.int64) + 21
    base, width = int(lows.min()), int(highs.max() - lows.min()) + 41
    bins = np.concatenate([np.floor(refs[k] + 0.5).astype(np.int64) - base + row * width for row, k in enumerate(used)])
    hist = np.bincount(bins, minlength=len(used) * width).reshape(len(used), width).astype(np.float64)
    corr = np.lib.stride_tricks.sliding_window_view(hist, 41, axis=1) @ hist_h  # [refs, position]
    pos = np.arange(corr.shape[1])
    corr[(pos < (lows - base)[:, None]) | (pos > (highs - base)[:, None])] = -np.inf  # outside its range
    best = np.argsort(-corr, axis=1, kind="stable")[:, :SHIFTS]
    # the hum's bin 20 (its median) lands on semitone position + base + 20
    for row, k in enumerate(used):
        out[k] = [float(p + base + 20) for p in best[row]]
    return out


def _dtw(h: np.ndarray, refs: list[np.ndarray], shifts: list[float], *, then=None, path: bool = False):
    """Subsequence DTW of ``h + shift`` (``+ then``, a second shift) in each reference (steps (1,1),
    (1,2), (2,1); a tempo change costs :data:`WARP`), all references at once: mean cost per hum point,
    first and last reference point of the best path, and (``path=True``) the median pitch difference
    along it. Row by row: two rows of costs live at a time (the cost of a point is computed when its row is
    reached), and with ``path`` one byte per point records the step that reached it."""
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
    far, zero = np.full((n_refs, 1), _FAR), np.zeros((n_refs, 1), np.int64)
    cost = np.empty((n_refs, m))
    prev2, prev = np.full((n_refs, m), _FAR), np.minimum(np.abs(hs[:, :1] - r), MAX_COST)  # rows i-2, i-1
    start2, start = np.zeros((n_refs, m), np.int64), np.broadcast_to(np.arange(m), (n_refs, m)).copy()
    steps = np.zeros((n_refs, n, m), np.int8) if path else None  # 0 (1,1), 1 (1,2): a reference point skipped, 2 (2,1)
    for i in range(1, n):
        np.minimum(np.abs(np.subtract(hs[:, i, None], r, out=cost), out=cost), MAX_COST, out=cost)
        ci = cost[:, 1:]
        best = prev[:, :-1] + ci
        fast = prev[:, :-2] + ci[:, 1:] + WARP  # the hum is faster here: two reference points
        take = fast < best[:, 1:]
        best[:, 1:] = np.where(take, fast, best[:, 1:])
        src = start[:, :-1].copy()
        src[:, 1:] = np.where(take, start[:, :-2], src[:, 1:])
        if path:
            steps[:, i, 2:][take] = 1
        if i >= 2:  # the hum is slower here: two hum points
            slow = prev2[:, :-1] + 2 * ci + WARP
            take = slow < best
            best = np.where(take, slow, best)
            src = np.where(take, start2[:, :-1], src)
            if path:
                steps[:, i, 1:][take] = 2
        prev2, prev = prev, np.concatenate([far, best], axis=1)
        start2, start = start, np.concatenate([zero, src], axis=1)
    last = np.where(np.arange(m)[None, :] < width[:, None], prev, np.inf)
    end = np.argmin(last, axis=1)
    rows = np.arange(n_refs)
    out = (last[rows, end] / n, start[rows, end], end)
    return out + (_path_differences(hs, r, steps, end),) if path else out


def _path_differences(hs, r, steps, end) -> np.ndarray:
    """Median of ``reference − hum`` pitch along each best path (followed back from ``end`` by ``steps``), to
    refine the transposition."""
    n_refs, n = hs.shape
    rows = np.arange(n_refs)
    diffs = np.zeros((n_refs, n))
    i, j = np.full(n_refs, n - 1), end.copy()
    live = np.ones(n_refs, bool)
    while live.any():
        k = rows[live]
        ik, jk = i[k], j[k]
        diffs[k, ik] = r[k, jk] - hs[k, ik]
        stop = (ik == 0) | (jk == 0)
        for kk, ii in zip(k[stop], ik[stop]):
            diffs[kk, :ii] = diffs[kk, ii]
        live[k[stop]] = False
        k, ik, jk = k[~stop], ik[~stop], jk[~stop]
        step = steps[k, ik, jk]
        slow = step == 2
        diffs[k[slow], ik[slow] - 1] = r[k[slow], jk[slow] - 1] - hs[k[slow], ik[slow] - 1]
        i[k] = ik - np.where(slow, 2, 1)
        j[k] = jk - np.where(step == 1, 2, 1)
        live[k[i[k] < 0]] = False
    return np.median(diffs, axis=1)
