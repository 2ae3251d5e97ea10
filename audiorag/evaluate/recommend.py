"""Evaluate recommendations with simulated listeners built from labels.

A listener likes moments of one or two labels (``label`` column, e.g. genre; a share of listeners
has two tastes) by a few artists of each: ``likes_per_artist`` moments of each artist's tracks
whose (section) label is the taste's. The listener's **history** holds the liked tracks, half of
those artists' other tracks and two random tracks of other artists; the history's artists are the
listener's known artists, and history tracks are never recommended. **Relevant**: any other moment
whose label is one of the listener's.

Per setting of :func:`audiorag.recommend.recommend` (a grid over diversity λ, caps, discovery),
averaged over listeners, with ``k`` = 10:

- ``P@10``, ``nDCG@10`` (binary gains; the ideal ranks min(relevant, 10) relevant moments);
- ``discovery``: share of recommended moments by artists not in the listener's history (seed S0
  reports 34 % "from previously unknown composers"). ``known_artist_candidates`` says how much room
  it has: the share of recommendable moments (not in the history) by known artists — 0 when each
  artist has one track (e.g. ``synthetic:16``), and then every list has discovery 1.0 by construction;
- ``ILD``: intra-list diversity, mean pairwise cosine distance (1 − cos) of the recommended moments:
  from 0 to 2, above 1 when moments point away from each other (standardised vectors such as
  features45's have negative cosines), so an ILD above 1 is a very diverse list, not an error;
- ``artist_coverage``: distinct artists per list / list length;
- ``catalogue_coverage``: share of the catalogue's tracks recommended to at least one listener;
- ``novelty``: mean −log2 p(track), p = share of listeners whose history holds the track (+1 smoothing);
- ``two_tastes``: share of two-taste listeners whose list holds moments of both tastes;
- ``ms``: mean wall time of one ``recommend`` call; ``search_ms``: one plain moment ``search`` (k = 10,
  own track excluded) timed beside it.

The ``search`` setting is the plain nearest moments of the likes' mean vector (history excluded,
no re-ranking, no caps): the baseline the others are compared with.

>>> s = settings_grid()
>>> [x["name"] for x in s]
['search', 'caps-a2', 'd0.0-a2', 'd0.3-a2', 'd0.6-a2', 'd0.9-a2', 'd0.3-a2-disc0.34', 'd0.3-a2-disc1']
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from ..analysis.records import Record, provenance
from ..errors import ParameterError
from ..library.order import content_order
from ..recommend import recommend
from ..search import Query, search
from . import metrics as M
from .protocol import Protocol, segment_labels

log = logging.getLogger(__name__)
K = 10


def settings_grid(diversities=(0.0, 0.3, 0.6, 0.9), artist_caps=(2,), discovery=(0.34, 1.0)) -> list[dict]:
    """The plain-search baseline; the caps alone (no descriptor factors, λ = 1); every (diversity, per-artist
    cap) with the default factors; then each ``discovery`` floor at diversity 0.3 and the first cap."""
    plain = {"harmonic": 0.0, "tempo": 0.0, "key": 0.0}
    out = [{"name": "search", "diversity": 0.0, "max_per_track": None, "max_per_artist": None, "n_tastes": 1,
            "discovery": None, **plain},
           {"name": f"caps-a{artist_caps[0]}", "diversity": 0.0, "max_per_artist": artist_caps[0], "discovery": None,
            **plain}]
    for cap in artist_caps:
        for d in diversities:
            out.append({"name": f"d{d:.1f}-a{cap if cap else 'all'}", "diversity": d, "max_per_artist": cap,
                        "discovery": None})
    for disc in discovery:
        if disc:
            out.append({"name": f"d0.3-a{artist_caps[0]}-disc{disc:g}", "diversity": 0.3,
                        "max_per_artist": artist_caps[0], "discovery": disc})
    return out


def listeners(tracks: pd.DataFrame, segments: pd.DataFrame, labels: np.ndarray, *, n: int = 40, seed: int = 0,
              artist_column: str = "artist", two_taste_share: float = 0.5, artists_per_taste: int = 2,
              likes_per_artist: int = 2, background: int = 2) -> list[dict]:
    """Simulated listeners: ``labels`` (their tastes), ``liked`` moments ``(track, seconds)`` (oldest
    first), ``history`` (track ids: the liked tracks, half of their artists' other tracks and
    ``background`` random tracks of other artists), ``artists`` (the history's: known artists)."""
    if artist_column not in tracks.columns:
        raise ParameterError(f"recommend protocol: needs an {artist_column!r} track column")
    rng = np.random.default_rng(seed)
    seg_track = segments["track_id"].to_numpy()
    artist_of = tracks.set_index("track_id")[artist_column]
    seg_artist = pd.Series(seg_track).map(artist_of).to_numpy(dtype=object)
    valid = (seg_track >= 0) & np.array([v is not None for v in labels])
    by_label = {lab: np.flatnonzero(valid & (labels == lab)) for lab in pd.unique(labels[valid])}
    by_label = {lab: rows for lab, rows in by_label.items() if len(set(seg_artist[rows])) >= 2}
    if not by_label:
        raise ParameterError("recommend protocol: no label has moments by two or more artists")
    names = sorted(by_label)
    out = []
    for _ in range(n):
        n_tastes = 2 if rng.random() < two_taste_share and len(names) >= 2 else 1
        chosen = list(rng.choice(names, n_tastes, replace=False))
        liked, artists = [], set()
        for lab in chosen:
            rows = by_label[lab]
            pool = sorted(set(seg_artist[rows]))
            for a in rng.choice(pool, min(artists_per_taste, len(pool) - 1), replace=False):
                artists.add(a)
                mine = rows[seg_artist[rows] == a]
                for r in rng.choice(mine, min(likes_per_artist, len(mine)), replace=False):
                    liked.append((int(seg_track[r]), float(segments["start"].iat[r])))
        order = rng.permutation(len(liked))
        liked_tracks = {t for t, _ in liked}
        theirs = tracks.loc[tracks[artist_column].isin(artists) & ~tracks["track_id"].isin(liked_tracks), "track_id"]
        played = set(rng.choice(theirs.to_numpy(), len(theirs) // 2, replace=False).tolist()) if len(theirs) else set()
        others = tracks.loc[~tracks[artist_column].isin(artists), "track_id"].to_numpy()
        played |= set(rng.choice(others, min(background, len(others)), replace=False).tolist())
        history = sorted(int(t) for t in liked_tracks | played)
        known = set(artist_of.loc[history])
        out.append({"labels": [str(c) for c in chosen], "liked": [liked[i] for i in order], "history": history,
                    "artists": sorted(map(str, known))})
    return out


def evaluate_recommend(lib, *, embedder=None, index: str | None = None, label: str = "genre", n_listeners: int = 40,
                       seed: int = 0, settings: list[dict] | None = None, artist_column: str = "artist",
                       **fixed) -> tuple[Record, pd.DataFrame]:
    """Run every setting for the same simulated listeners; returns the record (kind ``recommend``,
    metrics ``<setting>/<metric>``) and the trade-off table (one row per setting)."""
    settings = settings or settings_grid()
    ctx_emb = lib.embedding(embedder)
    tracks, segments = lib.tracks, lib.segments
    labels = segment_labels(tracks, segments, Protocol(label=label))
    # drawn in the corpus's order: every library of the same files (sharded or not) gets the same listeners
    t_order, s_order = content_order(tracks), content_order(tracks, segments)
    people = listeners(tracks.iloc[t_order], segments.iloc[s_order], labels[s_order], n=n_listeners, seed=seed,
                       artist_column=artist_column)
    vectors = np.asarray(lib.vectors(ctx_emb.key))
    artist_of = tracks.set_index("track_id")[artist_column]
    seen = pd.Series([t for p in people for t in set(p["history"])]).value_counts()
    popularity = (tracks["track_id"].map(seen).fillna(0).to_numpy() + 1) / (len(people) + 1)
    novelty_of = dict(zip(tracks["track_id"], -np.log2(popularity)))
    seg_tracks = segments["track_id"].to_numpy()
    seg_artists = segments["track_id"].map(artist_of).astype(str).to_numpy()
    known_share = [float(np.isin(seg_artists[cand], p["artists"]).mean()) if cand.any() else 0.0
                   for p in people for cand in [(seg_tracks >= 0) & ~np.isin(seg_tracks, p["history"])]]
    if people and max(known_share) == 0:
        log.warning("recommend evaluation: no recommendable moment is by an artist a listener knows (one track "
                    "per artist?), so every list has discovery 1.0 by construction; use a corpus with several "
                    "tracks per artist to measure discovery")
    # warm the search context once so the first timed call does not pay for it
    recommend(lib, people[0]["liked"], history=people[0]["history"], k=K, embedder=ctx_emb.key, index=index,
              artist_column=artist_column, **fixed)
    rows = []
    for s in settings:
        params = {**fixed, **{k: v for k, v in s.items() if k != "name"}}
        rel, n_rel, disc, ild, art, nov, both, ms, search_ms = [], [], [], [], [], [], [], [], []
        recommended = set()
        for p in people:
            t0 = time.perf_counter()
            out = recommend(lib, p["liked"], history=p["history"], k=K, embedder=ctx_emb.key, index=index,
                            artist_column=artist_column, **params)
            ms.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            search(lib, Query.moment(*p["liked"][-1]), embedder=ctx_emb.key, index=index, k=K,
                   exclude_same_track=True)
            search_ms.append(time.perf_counter() - t0)
            sids = out["segment_id"].to_numpy()
            got = np.isin(labels[sids].astype(object), p["labels"])
            row = np.zeros(K, bool)
            row[: len(got)] = got
            rel.append(row)
            history = set(p["history"])
            candidates = (segments["track_id"].to_numpy() >= 0) & ~segments["track_id"].isin(history).to_numpy()
            n_rel.append(int((candidates & np.isin(labels.astype(object), p["labels"])).sum()))
            disc.append(float((~out["track_id"].map(artist_of).isin(p["artists"])).mean()) if len(out) else 0.0)
            v = vectors[sids]
            sim = v @ v.T
            ild.append(float((1 - sim[np.triu_indices(len(v), 1)]).mean()) if len(v) > 1 else 0.0)
            art.append(out["track_id"].map(artist_of).nunique() / max(len(out), 1))
            nov.append(float(np.mean([novelty_of[t] for t in out["track_id"]])) if len(out) else 0.0)
            if len(p["labels"]) == 2:
                both.append(set(p["labels"]) <= set(labels[sids].astype(object)))
            recommended |= set(out["track_id"].tolist())
        rel = np.asarray(rel)
        rows.append({"setting": s["name"], "diversity": s.get("diversity", 0.0),
                     "max_per_artist": s.get("max_per_artist"), "discovery_target": s.get("discovery"),
                     "P@10": float(M.precision_at_k(rel, K).mean()),
                     "nDCG@10": float(M.ndcg_at_k(rel, np.maximum(n_rel, rel.sum(axis=1)), K).mean()),
                     "discovery": float(np.mean(disc)), "ILD": float(np.mean(ild)),
                     "artist_coverage": float(np.mean(art)),
                     "catalogue_coverage": len(recommended) / max(len(tracks), 1),
                     "novelty": float(np.mean(nov)), "two_tastes": float(np.mean(both)) if both else float("nan"),
                     "ms": 1000 * float(np.mean(ms)), "search_ms": 1000 * float(np.mean(search_ms))})
    table = pd.DataFrame(rows)
    metrics = {f"{r['setting']}/{m}": float(r[m]) for r in rows for m in
               ("P@10", "nDCG@10", "discovery", "ILD", "artist_coverage", "catalogue_coverage", "novelty",
                "two_tastes", "ms", "search_ms")}
    metrics.update({"listeners": float(len(people)), "known_artist_candidates": float(np.mean(known_share)),
                    "listeners_two_tastes": float(sum(len(p["labels"]) == 2 for p in people))})
    record = Record(kind="recommend", **provenance(lib, ctx_emb, [label, artist_column], n_tracks=len(tracks)),
                    protocol={"label": label, "n_listeners": n_listeners, "k": K, "artist_column": artist_column,
                              "settings": settings, "fixed": fixed},
                    seed=seed, metrics=metrics, extra={"table": rows})
    return record, table


TABLE_COLUMNS = ["setting", "P@10", "nDCG@10", "discovery", "ILD", "artist_coverage", "catalogue_coverage",
                 "novelty", "two_tastes", "ms", "search_ms"]


def markdown(table: pd.DataFrame, columns=TABLE_COLUMNS) -> str:
    """The trade-off table as Markdown (3 decimals; ms with 1).

    >>> print(markdown(pd.DataFrame({"setting": ["search"], "P@10": [0.5]}), ["setting", "P@10"]), end="")
    | setting | P@10 |
    |---|---|
    | search | 0.500 |
    """
    def cell(c, v):
        if isinstance(v, float):
            return "–" if v != v else f"{v:.1f}" if c.endswith("ms") else f"{v:.3f}"
        return str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c, r[c]) for c in columns) + " |" for _, r in table.iterrows()]
    return "\n".join(lines) + "\n"
