"""Recommendations of moments from a listener's likes, listening history and context.

``recommend(lib, liked=[...], history=[...], k=10)`` (a module-level function like
:func:`audiorag.search.search`: the :class:`~audiorag.Library` facade sits below this layer and
has no ``recommend`` method):

1. **taste profile**: the liked moments' vectors, recency-weighted (the last like counts most; a
   like's weight halves every ``half_life`` likes), grouped into tastes by average-linkage
   clustering (cosine; likes closer than ``taste_threshold`` on average join one taste), so two
   tastes are not averaged into neither. Each taste is a weighted centroid and gets a share of the
   ``k`` results in proportion to its weight (at least one);
2. **candidates**: ``k × fan_out`` nearest moments of each taste centroid from the index, without the
   tracks in the history (and of the likes); factors against the taste's reference descriptors
   (mean harmony, median tempo, the likes' most common key) and the context's mood;
3. **selection** (:mod:`audiorag.rerank`): multi-factor score, MMR diversity, caps per track, per
   artist and per taste, and ``discovery``: at least that share of the results by artists absent from
   the history and the likes (when the candidates have them).

Context: ``mood=`` (one of :data:`audiorag.rerank.MOODS`: calm, energetic, dark, bright, happy, sad,
defined from loudness, tempo, mode and, where the library has a tagger, its tags) weighs
``mood_weight``; ``time_of_day=`` ("morning", ..., or an hour 0–23) maps to a mood prior through
:data:`TIME_OF_DAY` (override with ``times=``) at half that weight when no mood is given. With neither (and
``infer_mood=True``), the listener's mood is inferred from the liked moments and the played tracks
(:func:`listener_mood`: their estimated valence and arousal, :mod:`audiorag.descriptors.mood`) and used at
half the weight; the result's ``attrs["mood_inferred"]`` says what was inferred and from what.

>>> parse_moment("12@30.5"), parse_moment((3, 4))
((12, 30.5), (3, 4.0))
"""

from __future__ import annotations

import logging
import math
from collections import Counter

import numpy as np
import pandas as pd

from .descriptors.mood import words
from .embedders import l2_normalise
from .errors import ParameterError
from .library.fanout import reports_missing
from .rerank import MOODS, Rerank, score, select
from .search import Query, check_k, context, query_vectors
from .search.factors import candidate_table

log = logging.getLogger(__name__)

#: time of day → mood prior (hours: morning 5–11, afternoon 12–16, evening 17–21, night 22–4)
TIME_OF_DAY = {"morning": "bright", "afternoon": "energetic", "evening": "calm", "night": "dark"}
_HOURS = [("night", 0, 5), ("morning", 5, 12), ("afternoon", 12, 17), ("evening", 17, 22), ("night", 22, 24)]


def parse_moment(item) -> tuple[int, float]:
    """A moment as ``(track_id, seconds)`` from ``"TRACK@SECONDS"``, ``(track, seconds)`` or a track id
    (its start)."""
    if isinstance(item, str):
        track, _, at = item.partition("@")
        try:
            track_id, seconds = int(track), float(at or 0.0)
        except ValueError:
            raise ParameterError(f"expected TRACK@SECONDS (e.g. 12@30.5), got {item!r}") from None
        if not np.isfinite(seconds) or seconds < 0:  # "1@nan", "1@-5": no such moment
            raise ParameterError(f"expected TRACK@SECONDS with finite SECONDS >= 0, got {item!r}")
        return track_id, seconds
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return int(item[0]), float(item[1])
    if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
        return int(item), 0.0
    raise ParameterError(f"expected a moment TRACK@SECONDS or (track_id, seconds), got {item!r}")


def read_history(path) -> list[int]:
    """Track ids of a listening-history CSV (a ``track_id`` column; other columns are ignored)."""
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ParameterError(f"--history {path}: cannot read it as CSV ({exc})") from None
    if "track_id" not in table.columns:
        raise ParameterError(f"--history {path}: needs a track_id column, has {', '.join(table.columns)}")
    return [int(t) for t in table["track_id"].dropna()]


def context_mood(mood: str | None, time_of_day=None, *, times: dict | None = None) -> tuple[str | None, float]:
    """The mood to rank by and its weight factor: ``mood`` (1.0), else ``time_of_day``'s prior (0.5).

    >>> context_mood(None, 23), context_mood("calm", "morning")
    (('dark', 0.5), ('calm', 1.0))
    """
    if mood is not None:
        return mood, 1.0
    if time_of_day is None:
        return None, 0.0
    times = TIME_OF_DAY if times is None else times
    if isinstance(time_of_day, (int, np.integer)) and not isinstance(time_of_day, bool):
        if not 0 <= time_of_day <= 23:
            raise ParameterError(f"time_of_day: an hour is 0–23, got {time_of_day}")
        time_of_day = next(name for name, lo, hi in _HOURS if lo <= time_of_day < hi)
    if time_of_day not in times:
        raise ParameterError(f"time_of_day must be an hour or one of {', '.join(times)}, got {time_of_day!r}")
    return times[time_of_day], 0.5


def listener_mood(lib, liked_segments, liked_weights, history=(), *, moods: dict | None = None) -> dict | None:
    """The listener's mood from the estimated valence and arousal of the liked library moments (weighted as the
    likes are) and of the played tracks (each track's mean over its moments, half a like's mean weight):
    ``{"mood", "valence", "arousal", "confidence", "likes", "played"}``, or ``None`` when the library has no
    descriptors or the listener no library moment.

    >>> listener_mood(lib, [12, 40], [0.87, 1.0], history=[5])      # doctest: +SKIP
    {'mood': 'calm', 'valence': 0.61, 'arousal': 0.18, 'confidence': 0.52, 'likes': 2, 'played': 1}
    """
    from .library import descriptors as stored
    if not stored.present(lib):
        return None
    table = lib.descriptors()
    rows = [(s, w) for s, w in zip(liked_segments, liked_weights) if s is not None]
    points, weights = [], []
    for seg, w in rows:
        points.append(table.loc[seg, ["valence", "arousal"]].to_numpy(np.float64))
        weights.append(w)
    played_weight = 0.5 * (float(np.mean(weights)) if weights else 1.0)
    played = [int(t) for t in history]
    means = table[["valence", "arousal"]].groupby(lib.segments["track_id"].to_numpy()).mean() if played else None
    n_played = 0
    for t in played:
        mean = means.loc[t].to_numpy(np.float64) if t in means.index else np.full(2, np.nan)
        if np.isfinite(mean).all():
            points.append(mean)
            weights.append(played_weight)
            n_played += 1
    points, weights = np.array(points).reshape(-1, 2), np.array(weights, np.float64)
    ok = np.isfinite(points).all(axis=1)
    if not ok.any():
        return None
    v, a = (weights[ok] @ points[ok]) / weights[ok].sum()
    word, conf = words([v], [a])
    if moods is not None and str(word[0]) not in moods:
        return None
    return {"mood": str(word[0]), "valence": round(float(v), 3), "arousal": round(float(a), 3),
            "confidence": round(float(conf[0]), 3), "likes": int(ok[:len(rows)].sum()), "played": n_played}


def tastes(vectors: np.ndarray, weights: np.ndarray, *, threshold: float = 0.6,
           n_tastes: int | None = None) -> np.ndarray:
    """Taste of each liked vector (0, 1, ...): average-linkage clusters on cosine distance, cut at
    ``threshold`` (or into ``n_tastes``); numbered by decreasing total weight.

    >>> v = np.array([[1, 0], [0.95, 0.31], [0, 1]], dtype="float32")
    >>> tastes(v, np.ones(3)).tolist()
    [0, 0, 1]
    """
    if len(vectors) == 1:
        return np.zeros(1, dtype=int)
    from scipy.cluster.hierarchy import fcluster, linkage
    z = linkage(np.asarray(vectors, dtype=np.float64), method="average", metric="cosine")
    labels = (fcluster(z, n_tastes, "maxclust") if n_tastes else fcluster(z, threshold, "distance")) - 1
    totals = np.bincount(labels, weights=weights)
    order = np.argsort(-totals, kind="stable")
    return np.argsort(order)[labels]


@reports_missing  # a sharded library served by Ray: attrs['missing_shards']
def recommend(lib, liked, *, history=(), k: int = 10, embedder=None, index: str | None = None,
              diversity: float = 0.3, max_per_track: int | None = 1, max_per_artist: int | None = 2,
              caps: dict | None = None, harmonic: float = 0.2, tempo: float = 0.1, key: float = 0.1,
              mood: str | None = None, time_of_day=None, mood_weight: float = 0.3, times: dict | None = None,
              moods: dict | None = None, infer_mood: bool = True, discovery: float | None = None,
              half_life: float = 5.0,
              taste_threshold: float = 0.6, n_tastes: int | None = None, exclude_liked: bool = True,
              artist_column: str = "artist", fan_out: int = 10) -> pd.DataFrame:
    """``k`` moments for a listener who liked ``liked`` (moments ``TRACK@SECONDS`` / ``(track, seconds)``,
    or :class:`~audiorag.search.Query` objects; oldest first) and played the tracks in ``history``.

    Returns a hits table (``rank, track_id, segment_id, start, end`` + metadata + descriptors) with
    ``taste``, ``new_artist``, the factors, ``contrib:*`` and ``score``; ``attrs`` holds the tastes
    found, the achieved discovery share, the ``mood`` ranked by and ``mood_inferred`` (:func:`listener_mood`'s
    answer when the mood was inferred, else ``None``).

    >>> # recommend(lib, liked=["3@12", "7@4"], history=[5, 9], k=10, mood="calm", discovery=0.34)
    """
    check_k(k, "recommend")
    if not liked:
        raise ParameterError("recommend: give at least one liked moment (TRACK@SECONDS)")
    if discovery is not None and not 0.0 <= discovery <= 1.0:
        raise ParameterError(f"recommend: discovery must be a share in [0, 1], got {discovery}")
    if half_life <= 0:
        raise ParameterError(f"recommend: half_life must be > 0 likes, got {half_life}")
    mood, factor = context_mood(mood, time_of_day, times=times)
    moods = MOODS if moods is None else moods
    if mood is not None and mood not in moods:
        raise ParameterError(f"recommend: mood must be one of {', '.join(moods)}, got {mood!r}")
    ctx = context(lib, embedder, index)
    queries = [q if isinstance(q, Query) else Query.moment(*parse_moment(q)) for q in liked]
    vecs, liked_tracks, liked_segments = [], set(), []
    for q in queries:
        qv, track = query_vectors(lib, ctx.emb, q, ctx=ctx)
        vecs.append(l2_normalise(qv.mean(axis=0)))
        if track is not None:
            liked_tracks.add(int(track))
        liked_segments.append(ctx.layout.moment(q.track_id, q.at) if q.kind == "moment" else None)
    vecs = np.stack(vecs)
    weights = 0.5 ** ((len(vecs) - 1 - np.arange(len(vecs))) / half_life)
    inferred = None
    if mood is None and infer_mood:
        inferred = listener_mood(lib, liked_segments, weights, history, moods=moods)
        if inferred is not None:
            mood, factor = inferred["mood"], 0.5
    taste = tastes(vecs, weights, threshold=taste_threshold, n_tastes=n_tastes)
    played = {int(t) for t in history} | (liked_tracks if exclude_liked else set())
    tracks = lib.tracks
    artists = tracks.set_index("track_id")[artist_column] if artist_column in tracks.columns else None
    known = set() if artists is None else {artists.get(t) for t in played | liked_tracks} - {None}

    options = Rerank(harmonic=harmonic, tempo=tempo, key=key, mood=mood, mood_weight=mood_weight * factor,
                     diversity=diversity, max_per_track=max_per_track, max_per_artist=max_per_artist,
                     caps=dict(caps or {}), fan_out=fan_out)
    n_taste = int(taste.max()) + 1
    totals = np.bincount(taste, weights=weights)
    quota = np.maximum(1, np.ceil(k * totals / totals.sum())).astype(int)
    tables = []
    for t in range(n_taste):
        members = taste == t
        centroid = l2_normalise((vecs[members] * weights[members, None]).sum(axis=0))
        cands = _candidates(ctx, centroid, k * fan_out, played)
        hits = {**cands, **ctx.metadata(cands["track_id"])}
        table = candidate_table(lib, hits, query=_reference(lib, liked_segments, members), mood=mood, moods=moods)
        table["taste"] = t
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    table = table.sort_values("similarity", ascending=False).drop_duplicates("segment_id").reset_index(drop=True)
    table["new_artist"] = ~table[artist_column].isin(known) if artist_column in table.columns else True
    table = score(table, options.weights())
    limits = options.all_caps()
    if n_taste > 1:
        limits["taste"] = {t: int(q) for t, q in enumerate(quota)}
    if discovery:  # known artists take at most k − ceil(discovery·k) places; new artists are never capped
        table["familiar"] = np.where(table["new_artist"], None, True)
        limits["familiar"] = k - math.ceil(discovery * k)
        if limits["familiar"] == 0:
            table = table[table["new_artist"]].reset_index(drop=True)
            del limits["familiar"]
    vectors = np.asarray(ctx.vectors[table["segment_id"].to_numpy()])
    chosen = select(table, vectors, k, lam=1.0 - options.diversity, caps=limits,
                    suppress_overlap=options.suppress_overlap)
    out = table.iloc[chosen].drop(columns=["familiar"], errors="ignore").reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    out.attrs.update({"tastes": n_taste, "taste_weights": (totals / totals.sum()).round(4).tolist(),
                      "discovery": float(out["new_artist"].mean()) if len(out) else 0.0,
                      "known_artists": sorted(map(str, known)), "mood": mood, "mood_inferred": inferred})
    return out


def _candidates(ctx, centroid: np.ndarray, n: int, played: set) -> dict:
    """The ``n`` nearest moments of ``centroid`` outside the played tracks (deepening the search)."""
    lay = ctx.layout
    banned = np.fromiter(played, dtype=np.int64) if played else None
    depth = min(max(n * 2, 64), ctx.index.ntotal)
    while True:
        scores, ids = ctx.index.search(np.ascontiguousarray(centroid[None, :], dtype=np.float32), depth)
        ok = ids[0] >= 0
        ids, scores = ids[0][ok], scores[0][ok]
        tr = lay.seg_track[ids]
        keep = tr >= 0
        if banned is not None:
            keep &= ~np.isin(tr, banned)
        if keep.sum() >= n or depth >= ctx.index.ntotal:
            ids, scores = ids[keep][:n], scores[keep][:n]
            return {"track_id": lay.seg_track[ids], "segment_id": ids, "start": lay.starts[ids],
                    "end": lay.ends[ids], "score": scores}
        depth = min(depth * 4, ctx.index.ntotal)


def _reference(lib, liked_segments: list, members: np.ndarray) -> dict | None:
    """A taste's reference descriptors: mean harmony, median tempo and most common key of its liked
    moments (library moments only)."""
    from .library import descriptors as stored
    rows = [s for s, m in zip(liked_segments, members) if m and s is not None]
    if not rows or not stored.present(lib):
        return None
    z = stored.arrays(lib)
    harmony = z["harmony"][rows].mean(axis=0)
    keys = Counter((int(t), int(m)) for t, m in zip(z["tonic"][rows], z["mode"][rows]) if t >= 0)
    tonic, mode = keys.most_common(1)[0][0] if keys else (-1, -1)
    tempi = z["tempo"][rows]
    tempo = float(np.nanmedian(tempi)) if np.isfinite(tempi).any() else None
    return {"tonic": tonic, "mode": mode, "tempo": tempo,
            "harmony": harmony / max(float(np.linalg.norm(harmony)), 1e-9)}
