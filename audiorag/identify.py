"""Identify the exact moment of a (degraded) clip: which track, where it starts, how stretched.

The clip's landmark hashes (:mod:`audiorag.descriptors.landmarks`) are looked up in the library's
postings (:mod:`audiorag.index.fingerprints`); each hit says "this query landmark at frame ``q`` is
track frame ``r``". A clip cut from a track at offset ``o`` and played ``s`` times slower gives
``r = o + q / s`` for its true hits, a straight line; chance hits scatter. Voting finds the line:

1. coarse: offsets computed at ``s = 1`` around the clip's centre, binned by one second of each track
   (a ±7 % stretch moves them by less than half a bin over a 10 s clip); the best bins are candidates;
2. fine: for each candidate, every stretch of a grid (0.5 % steps over ±7 %) votes on one-frame
   offsets; the best (stretch, offset) and the hits within ±1 frame of it are the inliers;
3. verification: a least-squares line through the inliers gives the stretch and offset precisely;
   the score is the number of distinct query landmarks on it, and it must also spread over the clip
   (``coverage``), not pile up at one instant.

A clip is a match when its score is at least ``min_score`` (12) and its ``confidence`` at least 0.15:
confidence = margin × coverage, where margin = (score − 1.5 × the best *other* candidate's score) / score
and coverage = the share of the clip's seconds holding aligned landmarks. On clips of tracks that are
not in the library (measured in ``benchmarks/identify.py``) chance alignments stay below both; such a
clip returns an empty table (``attrs["reason"]`` says why).

This is a module-level function like :func:`audiorag.search.search`: the library facade (layer 5)
must not import identification (layer 6).

>>> import tempfile, os, numpy as np, soundfile as sf
>>> from audiorag import Library
>>> from audiorag.datasets.synthetic import plan, render_track
>>> from audiorag.search import Query
>>> d = tempfile.mkdtemp(); y = render_track(plan(1, 3, duration=40)[0])
>>> sf.write(os.path.join(d, "a.wav"), y, 22050)
>>> lib = Library.create(os.path.join(d, "lib"))
>>> _ = lib.add(d, embedders=["features45"], fingerprint=True, workers=1, progress=False)
>>> hit = identify(lib, Query.audio(y[22050 * 12: 22050 * 22], sr=22050)).iloc[0]
>>> int(hit.track_id), round(float(hit.offset)), round(float(hit.stretch), 2)
(0, 12, 1.0)
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from .descriptors import landmarks
from .errors import ParameterError
from .index import fingerprints
from .library import conditioning
from .library.fanout import reports_missing
from .library.pershard import each_shard
from .library.shards import ShardedLibrary, global_id
from .search import Query, check_k

log = logging.getLogger(__name__)
COLUMNS = ["track_id", "uri", "offset", "stretch", "score", "confidence"]
STRETCHES = np.round(np.arange(0.93, 1.07 + 1e-9, 0.005), 4)
MIN_SCORE = 12
MIN_CONFIDENCE = 0.15
MIN_SECONDS = 1.0
STOP_FACTOR, STOP_MIN = 30, 100  # a hash with more postings than this × the mean (and STOP_MIN) is a stop word
CANDIDATES = 8  # coarse alignments fitted per clip


def postings(lib) -> fingerprints.Postings:
    """The library's landmark postings, memory-mapped (cached on the library object per generation)."""
    path = lib.data / fingerprints.DIR
    if not fingerprints.exists(path):
        raise ParameterError(f"{lib.path}: no fingerprints; build them with "
                             f"`audiorag build {lib.path} --fingerprint` (or lib.add(..., fingerprint=True))")
    cache = lib._tables()
    if "postings" not in cache:
        cache["postings"] = fingerprints.Postings(path)
    return cache["postings"]


def has_fingerprints(lib) -> bool:
    """Whether ``lib`` keeps landmark fingerprints (a sharded library: every shard holding tracks)."""
    libs = [s for s in lib.shards if len(s.tracks)] if isinstance(lib, ShardedLibrary) else [lib]
    return all(fingerprints.exists(one.data / fingerprints.DIR) for one in libs)


@reports_missing  # a sharded library served by Ray: attrs['missing_shards'] names shards that did not answer
def identify(lib, query, *, sr: int | None = None, start: float | None = None, end: float | None = None,
             k: int = 1, min_score: int = MIN_SCORE) -> pd.DataFrame:
    """The track and moment a clip was cut from, best first (at most ``k`` rows; empty: no match).

    ``query`` is a :class:`~audiorag.search.Query` (``Query.audio``), or what ``Query.audio`` takes: a path
    (read from ``start`` to ``end`` seconds) or a float array with its ``sr``.
    Columns: ``track_id, uri, offset`` (seconds into the track where the clip starts), ``stretch``
    (the clip's time scale: 1.05 = played 5 % slower), ``score`` (landmarks aligned), ``confidence``.
    ``attrs``: ``reason`` when empty, ``seconds`` (time spent), ``n_hashes``, ``clip_seconds``.
    A sharded library is searched shard by shard (:func:`match_shards`), through its shard actors when it
    was opened with a ``ray_address``; ``attrs["missing_shards"]`` names shards that did not answer.

    >>> import numpy as np
    >>> from audiorag import Library
    >>> lib = Library.create(__import__("tempfile").mkdtemp() + "/lib")
    >>> lib.add([], fingerprint=True, progress=False).added
    0
    >>> r = identify(lib, Query.audio(np.zeros(8000 * 3, np.float32), sr=8000))
    >>> len(r), r.attrs["reason"]
    (0, 'the clip has no landmarks (silent or too short: at least 1 s of sound is needed)')
    """
    t0 = time.perf_counter()
    check_k(k, "identify")
    if not isinstance(query, Query):
        query = Query.audio(query, sr=sr, start=start, end=end)
    elif query.kind != "audio" or (sr, start, end) != (None, None, None):
        raise ParameterError(f"identify: expected an audio query (the clip's sr/start/end in Query.audio), "
                             f"got a {query.kind} query" + (" and sr/start/end" if query.kind == "audio" else ""))
    clip = query.clip(conditioning(lib))
    y, sr = clip.y, clip.sr
    sharded = isinstance(lib, ShardedLibrary)
    post = None if sharded else postings(lib)
    q_hashes, q_frames = landmarks.fingerprint(y, sr)
    duration = len(y) / sr
    n_frames = duration / landmarks.FRAME_SECONDS
    found = (match_shards(lib, q_hashes, q_frames, n_frames, min_score=min_score) if sharded else
             match(post, q_hashes, q_frames, n_frames, min_score=min_score))[:k]
    uris = dict(zip(lib.tracks["track_id"], lib.tracks["uri"]))
    rows = [{**r, "uri": uris.get(r["track_id"])} for r in found if r["track_id"] in uris]
    out = pd.DataFrame(rows, columns=COLUMNS)
    if not rows:
        out.attrs["reason"] = (
            f"the clip has no landmarks (silent or too short: at least {MIN_SECONDS:g} s of sound is needed)"
            if len(q_hashes) == 0 or duration < MIN_SECONDS
            else f"no track aligns with enough of the clip's {len(q_hashes)} landmarks")
    out.attrs.update(seconds=time.perf_counter() - t0, n_hashes=int(len(q_hashes)), clip_seconds=duration)
    return out


def match(post: fingerprints.Postings, q_hashes: np.ndarray, q_frames: np.ndarray, n_frames: float, *,
          min_score: int = MIN_SCORE, candidates: int = CANDIDATES) -> list[dict]:
    """Matches of a clip's landmarks in ``post`` (plain arrays in): dicts with ``track_id, offset, stretch,
    score, confidence``, best first; ``n_frames`` is the clip's length in frames."""
    if len(q_hashes) == 0 or n_frames * landmarks.FRAME_SECONDS < MIN_SECONDS:
        return []
    stop = stop_words(post.counts(q_hashes), len(post.postings), len(post.offsets) - 1)
    return decide([fit for _, fit in aligned(post, q_hashes[~stop], q_frames[~stop], n_frames, candidates)],
                  min_score)


def match_shards(lib, q_hashes: np.ndarray, q_frames: np.ndarray, n_frames: float, *,
                 min_score: int = MIN_SCORE, candidates: int = CANDIDATES) -> list[dict]:
    """:func:`match` on a sharded library (:class:`~audiorag.library.shards.ShardedLibrary`), global track ids.

    The steps of one library's :func:`match`, with what it computes over all the postings merged from the
    shards: the stop words from the query hashes' posting counts and the postings summed over the shards
    (:func:`shard_counts`); each shard's ``candidates`` best coarse bins, fitted where the shard is
    (:func:`shard_aligned`, a shard actor on Ray), then the best ``candidates`` bins over every shard by
    their votes and tie-breaks (:func:`aligned`: any of them is among its own shard's best), and
    :func:`decide` on those: rivals and confidences over the whole corpus. The same matches, offsets,
    stretches, scores and confidences as one library holding every track (tested). Two calls to each
    shard, the second one with the clip's landmarks that are not stop words.
    """
    if len(q_hashes) == 0 or n_frames * landmarks.FRAME_SECONDS < MIN_SECONDS:
        return []
    filled = [s for s, shard in enumerate(lib.shards) if len(shard.tracks)]
    counts = each_shard(lib, shard_counts, q_hashes, shards=filled)
    lacking = [s for s, c in counts.items() if c is None]
    if lacking:
        raise ParameterError(f"{lib.path}: shard(s) {', '.join(map(str, lacking))} have no fingerprints; build them "
                             f"with `audiorag build {lib.path} --fingerprint` (or lib.add(..., fingerprint=True))")
    if not counts:
        return []
    stop = stop_words(sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values()),
                      next(iter(counts.values()))[2])
    bins = each_shard(lib, shard_aligned, q_hashes[~stop], q_frames[~stop], n_frames, candidates,
                      shards=list(counts))
    ranked = sorted(((-votes, first, place, s, fit) for s, found in bins.items()
                     for (votes, first, place), fit in found), key=lambda b: b[:4])[:candidates]
    return decide([fit and {**fit, "track_id": int(global_id(fit["track_id"], s, lib.n))}
                   for *_, s, fit in ranked], min_score)


def shard_counts(shard, q_hashes: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """One shard's part of the stop words: ``(postings of each query hash, postings, possible hashes)``,
    None when the shard keeps no fingerprints (runs where the shard is: :func:`match_shards`)."""
    if not fingerprints.exists(shard.data / fingerprints.DIR):
        return None
    post = postings(shard)
    return post.counts(q_hashes), len(post.postings), len(post.offsets) - 1


def shard_aligned(shard, q_hashes: np.ndarray, q_frames: np.ndarray, n_frames: float,
                  candidates: int) -> list[tuple[tuple[int, int, int], dict | None]]:
    """One shard's best coarse alignments, fitted (:func:`aligned`; shard-local track ids)."""
    return aligned(postings(shard), q_hashes, q_frames, n_frames, candidates)


def stop_words(counts: np.ndarray, n_postings: int, n_hashes: int) -> np.ndarray:
    """Which query hashes are stop words, from their posting ``counts`` among ``n_postings`` spread over
    ``n_hashes`` possible hashes: the commonest (tonal music piles up near-zero band differences) carry
    little information but most of the hits — at 100 h, 46 % of the postings sit in 0.9 % of the hashes.

    >>> stop_words(np.array([5, 400, 90]), 1000, 100).tolist()
    [False, True, False]
    """
    return np.asarray(counts) > max(STOP_MIN, STOP_FACTOR * n_postings / n_hashes)


def aligned(post: fingerprints.Postings, q_hashes: np.ndarray, q_frames: np.ndarray, n_frames: float,
            candidates: int = CANDIDATES) -> list[tuple[tuple[int, int, int], dict | None]]:
    """The ``candidates`` best coarse alignments of the clip's (non-stop) landmarks in ``post``, best first
    (steps 1 and 2 of the module doc): ``((votes of the bin and its neighbour, the first query landmark in
    the bin, the bin in its track), the fitted line's dict or None)``.

    The bins are laid on each track's own frames, not on the library's frame counter, and ties are broken
    by the query landmarks and the bin's place in its track: what is chosen depends on the tracks' audio
    only, not on where a library put them (another library, or a shard, holding them chooses the same)."""
    which, ref = post.lookup(q_hashes)
    if len(which) == 0:
        return []
    q = q_frames[which].astype(np.float64) - n_frames / 2  # query frames around the clip's centre
    row = np.clip(np.searchsorted(post.tracks[:, 1], ref, side="right") - 1, 0, None)
    ref = ref.astype(np.float64)
    in_track = np.floor((ref - post.tracks[row, 1] - q) / 32).astype(np.int64) + (1 << 26)
    coarse = row.astype(np.int64) * (1 << 28) + in_track  # a bin: (track, 32 frames of alignment in it)
    keys, inverse, counts = np.unique(coarse, return_inverse=True, return_counts=True)
    first = np.full(len(keys), len(q_hashes), np.int64)
    np.minimum.at(first, inverse, which)
    nxt = np.searchsorted(keys, keys + 1)
    pair = counts + np.where(nxt < len(keys), counts[np.minimum(nxt, len(keys) - 1)], 0) * (
        keys[np.minimum(nxt, len(keys) - 1)] == keys + 1)
    out = []
    for i in np.lexsort((keys, keys % (1 << 28), first, -pair))[:candidates]:
        sel = (coarse >= keys[i] - 1) & (coarse <= keys[i] + 2)
        rank = (int(pair[i]), int(first[i]), int(keys[i] % (1 << 28)))
        out.append((rank, _fit(post, which[sel], q[sel], ref[sel], n_frames)))
    return out


def decide(found: list, min_score: int = MIN_SCORE) -> list[dict]:
    """The fitted candidates (best coarse bins first; None: no line) → the matches: one per moment (a
    candidate near a better one is the same alignment), each with its confidence against its best rival,
    those reaching ``min_score`` and :data:`MIN_CONFIDENCE`, best first (step 3 of the module doc).

    >>> fit = {"track_id": 3, "offset": 12.0, "stretch": 1.0, "score": 40, "coverage": 0.9, "confidence": 0.0}
    >>> # margin (40 - 1.5 × 6) / 40 = 0.775 against the rival, times the coverage 0.9; the rival scores too low
    >>> rival = {**fit, "track_id": 5, "score": 6}
    >>> [(f["track_id"], round(f["confidence"], 3)) for f in decide([rival, None, fit])]
    [(3, 0.697)]
    """
    found = sorted((dict(f) for f in found if f is not None), key=lambda f: -f["score"])
    out = []
    for f in found:
        if any(f["track_id"] == o["track_id"] and abs(f["offset"] - o["offset"]) < 1.0 for o in out):
            continue
        out.append(f)
    for i, f in enumerate(out):
        rival = max([o["score"] for j, o in enumerate(out) if j != i] + [2])
        margin = np.clip((f["score"] - 1.5 * rival) / (f["score"] + 1e-9), 0, 1)
        f["confidence"] = float(margin * f.pop("coverage"))
    return [f for f in out if f["score"] >= min_score and f["confidence"] >= MIN_CONFIDENCE]


def _fit(post, which, q, ref, n_frames) -> dict | None:
    """The best line ``ref = centre + q / s`` through these hits; its inliers' least-squares fit."""
    centre = ref[None, :] - q[None, :] / STRETCHES[:, None]  # [n_stretches, n_hits]
    lo = np.floor(centre.min())
    cell = np.rint(centre - lo).astype(np.int64)
    width = int(cell.max()) + 3
    votes = np.zeros((len(STRETCHES), width), np.int64)
    np.add.at(votes, (np.repeat(np.arange(len(STRETCHES)), centre.shape[1]), cell.ravel() + 1), 1)
    smooth = votes[:, :-2] + votes[:, 1:-1] + votes[:, 2:]
    si, ci = np.unravel_index(np.argmax(smooth), smooth.shape)
    inliers = np.abs(centre[si] - (lo + ci)) <= 1.5
    if inliers.sum() < 3:
        return None
    q_in, r_in, w_in = q[inliers], ref[inliers], which[inliers]
    slope, intercept = (np.polyfit(q_in, r_in, 1) if np.ptp(q_in) > 0 else (1 / STRETCHES[si], r_in.mean()))
    if not 0.9 < slope < 1.1:
        slope, intercept = 1 / STRETCHES[si], lo + ci
    resid = np.abs(r_in - (intercept + slope * q_in))
    good = resid <= 1.5
    score = len(np.unique(w_in[good]))
    # verification: the aligned landmarks must spread over the clip (a share of its seconds), not pile up
    seconds = np.unique(((q_in[good] + n_frames / 2) * landmarks.FRAME_SECONDS).astype(np.int64))
    coverage = len(seconds) / max(1.0, np.ceil(n_frames * landmarks.FRAME_SECONDS))
    track, local = post.locate(np.array([int(round(intercept))]))  # the clip's centre
    offset = float(local[0] - slope * n_frames / 2) * landmarks.FRAME_SECONDS
    return {"track_id": int(track[0]), "offset": round(max(0.0, offset), 3), "stretch": round(float(1 / slope), 4),
            "score": int(score), "coverage": float(coverage), "confidence": 0.0}
