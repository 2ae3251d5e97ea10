"""Queries and search: audio clips, moments of indexed tracks; filters, exclusion,
sequence matching of long clips, and track-level aggregation.

A query clip longer than one library window is cut into windows with the library's
hop and matched as a *sequence*: for each track, the run of consecutive segments that
best aligns with the query windows (mean similarity, windows falling outside the track
count as 0), so a 30 s clip localises its 30 s in the track.

Text queries use the embedder's text tower when it has one (CLAP: text and audio share one
space); otherwise they are matched in a tagger's tag space. A *hybrid* query blends a text
and an audio query on normalised vectors, ``alpha·text + (1 − alpha)·audio``, renormalised.

>>> Query.moment(3, at=12.5).kind, Query.moment(3, at=12.5).at
('moment', 12.5)
>>> Query.hybrid("warm analog bass", Query.moment(3, at=12.5), alpha=0.7).alpha
0.7
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..audio import load, resample, valid_audio
from ..embedders import l2_normalise
from ..errors import ParameterError
from ..library.fanout import check_query, open_index
from .filters import track_mask

HIT_COLUMNS = ["rank", "track_id", "segment_id", "start", "end", "score"]
_HIDDEN_TRACK_COLUMNS = ("sample_rate", "channels", "content_hash")


@dataclass(frozen=True)
class Query:
    """What to search for. Build with :meth:`audio` or :meth:`moment`."""

    kind: str
    source: object = None
    sr: int | None = None
    start: float | None = None
    end: float | None = None
    track_id: int | None = None
    at: float | None = None
    #: hybrid queries: the audio part (an audio or moment Query) and the text weight
    audio_part: Query | None = None
    alpha: float | None = None

    @classmethod
    def audio(cls, source, *, sr: int | None = None, start: float | None = None, end: float | None = None) -> Query:
        """A clip: a file path (optionally its ``[start, end)`` span) or a mono float array with ``sr``."""
        if isinstance(source, np.ndarray):
            if sr is None:
                raise ParameterError("Query.audio: an array query needs sr=")
            valid_audio(source)
        elif isinstance(source, (str, os.PathLike)):
            source = os.path.abspath(str(source))
        else:
            raise ParameterError(f"Query.audio: expected a path or numpy array, got {type(source).__name__}")
        for name, value in (("start", start), ("end", end)):
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise ParameterError(f"Query.audio: {name} must be a finite time >= 0 (seconds), got {value}")
        if start is not None and end is not None and end <= start:
            raise ParameterError(f"Query.audio: end ({end}) must be after start ({start})")
        return cls("audio", source, sr, start, end)

    @classmethod
    def text(cls, text: str) -> Query:
        """A description. Ranked in a tagger's tag space (see :mod:`audiorag.embedders.text`).

        >>> Query.text("gentle piano melody").kind
        'text'
        """
        if not isinstance(text, str) or not text.strip():
            raise ParameterError("Query.text: expected non-empty text")
        return cls("text", text.strip())

    @classmethod
    def hybrid(cls, text: str, audio, *, alpha: float = 0.7, sr: int | None = None,
               start: float | None = None, end: float | None = None) -> Query:
        """``alpha``·text + (1 − ``alpha``)·audio, for embedders with a text tower (CLAP).

        ``audio`` is a path or array (as :meth:`audio`, with ``sr``/``start``/``end``) or a
        ``Query.audio`` / ``Query.moment``; a multi-window clip contributes its mean vector.
        """
        if not 0.0 <= alpha <= 1.0:
            raise ParameterError(f"Query.hybrid: alpha must be in [0, 1], got {alpha}")
        part = audio if isinstance(audio, Query) else cls.audio(audio, sr=sr, start=start, end=end)
        if part.kind not in ("audio", "moment"):
            raise ParameterError(f"Query.hybrid: the audio part must be an audio or moment query, got {part.kind}")
        return cls("hybrid", cls.text(text).source, audio_part=part, alpha=float(alpha))

    @classmethod
    def hum(cls, source, *, sr: int | None = None, start: float | None = None, end: float | None = None) -> Query:
        """A hummed (sung, whistled) phrase: a path or mono array with ``sr``, optionally its ``[start, end)``;
        matched by melody in the ``melody`` embedding (see :mod:`audiorag.melody`).

        >>> Query.hum("hum.wav", start=1.0).kind
        'hum'
        """
        clip = cls.audio(source, sr=sr, start=start, end=end)
        return cls("hum", clip.source, clip.sr, clip.start, clip.end)

    @classmethod
    def moment(cls, track_id: int, at: float = 0.0) -> Query:
        """The library's own segment of ``track_id`` that starts at (or just before) ``at`` seconds."""
        if not (np.isfinite(at) and at >= 0):
            raise ParameterError(f"Query.moment: at must be a finite time >= 0 (seconds), got {at}")
        return cls("moment", track_id=int(track_id), at=float(at))


class _Layout:
    """Where each track's segments sit in the vectors (segments are contiguous per track)."""

    def __init__(self, segments: pd.DataFrame, tracks: pd.DataFrame | None = None):
        self.duration = ({} if tracks is None or "duration" not in tracks.columns
                         else dict(zip(tracks["track_id"].tolist(), tracks["duration"].tolist())))
        self.seg_track = segments["track_id"].to_numpy()
        self.starts = segments["start"].to_numpy()
        self.ends = segments["end"].to_numpy()
        live = segments[segments["track_id"] >= 0]
        first = live.groupby("track_id", sort=False)["segment_id"].agg(["min", "size"])
        self.first = first["min"].to_dict()
        self.count = first["size"].to_dict()

    def moment(self, track_id: int, at: float) -> int:
        """The segment of ``track_id`` starting at or just before ``at`` (its first one before it starts)."""
        if track_id not in self.first:
            raise ParameterError(f"Query.moment: track {track_id} is not in the library")
        first, n = self.first[track_id], self.count[track_id]
        end = max(float(self.ends[first + n - 1]), float(self.duration.get(track_id) or 0.0))
        if at > end:
            raise ParameterError(f"Query.moment: at={at:g}s is beyond the end of track {track_id} ({end:g}s)")
        return first + max(0, int(np.searchsorted(self.starts[first:first + n], at + 1e-9, side="right")) - 1)


class _Context:
    """What every search of one (library, embedding, index) needs, kept between queries:
    the embedding, the open index (none for tag-space text search), the segment layout, and
    the hit metadata columns."""

    def __init__(self, lib, emb, index_name: str | None, *, with_index: bool = True):
        self.emb = emb
        self.index = open_index(lib, emb, index_name) if with_index else None  # a sharded library: fan-out
        self.layout = _Layout(lib.segments, lib.tracks)
        self.vectors = emb.vectors()
        meta = lib.tracks.drop(columns=[c for c in _HIDDEN_TRACK_COLUMNS if c in lib.tracks.columns])
        meta = meta.rename(columns={"duration": "track_duration"}).drop(columns="track_id")
        self.track_rows = pd.Index(lib.tracks["track_id"].to_numpy())
        self.meta_columns = {c: meta[c].array for c in meta.columns}
        self.stamp = (_mtime(emb.path), _mtime(emb.path / "embedder.json"))
        self._allowed: dict = {}

    def allowed(self, lib, filters: dict | None) -> np.ndarray | None:
        """The track ids passing ``filters`` (remembered per filter set)."""
        if not filters:
            return None
        key = repr(sorted((k, sorted(map(str, v)) if isinstance(v, (list, tuple, set)) else str(v))
                          for k, v in filters.items()))
        if key not in self._allowed:
            self._allowed[key] = _allowed_tracks(lib, filters)
        return self._allowed[key]

    def metadata(self, track_ids: np.ndarray) -> dict:
        """Track columns for each of ``track_ids`` (one entry per hit)."""
        pos = self.track_rows.get_indexer(track_ids)
        return {c: a.take(pos, allow_fill=True) for c, a in self.meta_columns.items()}


_CONTEXTS: dict = {}


def _mtime(path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return 0


def context(lib, embedder=None, index: str | None = None, *, text: bool = False) -> _Context:
    """The cached search context; rebuilt when the library's tables, embeddings or indexes change
    (checked by file modification times, a few ``stat`` calls per query)."""
    root = str(lib.data)  # the generation read: a commit changes it
    key = (root, str(embedder), index, text, *(_mtime(os.path.join(root, f)) for f in
                                               ("tracks.parquet", "segments.parquet", "embeddings")))
    ctx = _CONTEXTS.get(key)
    if ctx is not None and ctx.stamp == (_mtime(ctx.emb.path), _mtime(ctx.emb.path / "embedder.json")):
        return ctx
    emb = _text_embedding(lib, embedder) if text else lib.embedding(embedder)
    ctx = _Context(lib, emb, index, with_index=emb.has_text or not text)
    if len(_CONTEXTS) > 16:
        _CONTEXTS.clear()
    _CONTEXTS[key] = ctx
    return ctx


def query_vectors(lib, emb, query: Query, *, ctx: _Context | None = None) -> tuple[np.ndarray, int | None]:
    """The query's vectors ``[m, dim]`` (one per window) and the library track it comes from, if any.
    ``ctx`` (the search's cached context) saves re-reading the segment table."""
    if query.kind in ("text", "hybrid"):
        text = emb.postprocess(emb.embedder.embed_text([query.source]))[0]
        if query.kind == "text":
            return text[None, :], None
        audio, track = query_vectors(lib, emb, query.audio_part, ctx=ctx)
        audio = l2_normalise(audio.mean(axis=0))
        return l2_normalise(query.alpha * text + (1.0 - query.alpha) * audio)[None, :], track
    if query.kind == "moment":
        if ctx is not None:
            lay, vectors = ctx.layout, ctx.vectors
        else:
            lay, vectors = _Layout(lib.segments, lib.tracks), emb.vectors()
        return np.asarray(vectors[lay.moment(query.track_id, query.at)])[None, :], query.track_id
    e = emb.embedder
    if isinstance(query.source, np.ndarray):
        y = resample(query.source.astype(np.float32), query.sr, e.sample_rate)
        a = int(round((query.start or 0) * e.sample_rate))
        b = None if query.end is None else int(round(query.end * e.sample_rate))
        y, track = y[a:b], None
    else:
        duration = None if query.end is None else query.end - (query.start or 0.0)
        y, _ = load(query.source, sr=e.sample_rate, offset=query.start or 0.0, duration=duration)
        match = lib.tracks.loc[lib.tracks["uri"] == query.source, "track_id"]
        track = int(match.iloc[0]) if len(match) else None
    valid_audio(y, item=str(query.source) if not isinstance(query.source, np.ndarray) else "<query>")
    length = len(y) / e.sample_rate
    seg = lib.segmentation
    if length <= seg.window + 1e-6:
        starts, ends = np.zeros(1), np.array([length])
    else:
        n = int(np.floor((length - seg.window) / seg.hop + 1e-9)) + 1
        starts = np.arange(n) * seg.hop
        ends = starts + seg.window
    return emb.postprocess(e.embed_track(y, starts, ends)), track


def _allowed_tracks(lib, filters: dict | None) -> np.ndarray | None:
    if not filters:
        return None
    tracks = lib.tracks
    return tracks["track_id"].to_numpy()[track_mask(tracks, filters)]


def _candidates(index, q: np.ndarray, n_wanted: int, keep) -> tuple[np.ndarray, np.ndarray]:
    """Search with growing depth until ``n_wanted`` candidates pass ``keep`` (or the index is exhausted)."""
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


def search(lib, query: Query, *, embedder=None, k: int = 10, index: str | None = None,
           exclude_same_track: bool = False, filters: dict | None = None, by: str = "segment",
           rerank=None, fusion: str = "early", weights=None) -> pd.DataFrame:
    """Top-``k`` hits for ``query``: ``rank, track_id, segment_id, start, end, score`` + track metadata.

    ``by="track"`` aggregates to one row per track (its best moment, ``n_segments`` matched).
    ``filters`` maps a track column to a value or list of accepted values; the segments' descriptor
    columns (``key``, ``mode``, ``tempo``, ``loudness_db``, ``key_confidence``) filter moments
    (a track column of the same name is then ``track.<name>``).
    ``rerank`` (an :class:`audiorag.rerank.Rerank`) re-ranks ``k × fan_out`` candidates: multi-factor
    score with ``contrib:`` columns, MMR diversity, caps, overlapping windows counted once.
    ``fusion="late"`` with ``embedder="E1+E2"``: score-level fusion, ``Σ wᵢ·cosᵢ`` (``weights``, default
    equal) over the union of each embedding's own index candidates (early fusion: the stored ``E1+E2``).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ParameterError(f"search: k must be an integer >= 1, got {k!r}")
    if by not in ("segment", "track"):
        raise ParameterError(f"search: by must be 'segment' or 'track', got {by!r}")
    if not isinstance(query, Query):
        raise ParameterError(f"search: expected a Query, got {type(query).__name__} "
                             "(use Query.audio / .moment / .text / .hybrid / .hum)")
    check_query(lib, query, rerank=rerank, fusion=fusion, filters=filters)  # a sharded library: what it can merge
    if rerank is not None and (fusion != "early" or query.kind == "hum"):
        raise ParameterError("search: rerank= re-ranks audio, moment, text-tower and hybrid queries (early fusion)")
    if query.kind == "hum":  # melody: interval histograms, then alignment of contours (see audiorag.melody)
        if fusion != "early":
            raise ParameterError("search: a hum query searches the melody embedding; fusion does not apply")
        from ..melody import hum_search
        return hum_search(lib, query, embedder=embedder, k=k, index=index, filters=filters, by=by)
    if fusion != "early":
        return _late_fusion(lib, query, embedder, weights, fusion=fusion, k=k, index=index,
                            exclude_same_track=exclude_same_track, filters=filters, by=by)
    ctx = context(lib, embedder, index, text=query.kind in ("text", "hybrid"))
    emb = ctx.emb
    if query.kind == "text" and not emb.has_text:
        if rerank is not None:
            raise ParameterError("search: rerank= needs a vector query; a tag-space text query has none")
        return _text_search(lib, ctx, query.source, k=k, filters=filters, by=by)
    if query.kind == "hybrid" and not emb.has_text:
        raise ParameterError(f"hybrid queries need an embedder with a text tower (e.g. clap); {emb.key} has none")
    lay = ctx.layout
    qv, own_track = query_vectors(lib, emb, query, ctx=ctx)
    from ..rerank import descriptor_filters, rerank_hits
    filters, moments = descriptor_filters(lib, filters)
    allowed = ctx.allowed(lib, filters)
    excluded = own_track if exclude_same_track else None

    def keep(ids):
        t = lay.seg_track[ids]
        ok = np.ones(len(ids), dtype=bool) if allowed is None else np.isin(t, allowed)
        ok = ok if moments is None else ok & moments[ids]
        return ok if excluded is None else ok & (t != excluded)

    if allowed is None and excluded is None and moments is None:
        keep = None
    if rerank is not None:  # k × fan_out candidates for the mean query vector, re-ranked (audiorag.rerank)
        if by != "segment":
            raise ParameterError("search: re-ranking returns moments (by='segment'); one per track: max_per_track=1")
        cands = _single(ctx.index, l2_normalise(qv.mean(axis=0)), k * rerank.fan_out, keep, lay, "segment")
        return rerank_hits(lib, ctx, query, _with_metadata(ctx, cands), k=k, options=rerank)

    if len(qv) == 1:
        hits = _single(ctx.index, qv[0], k, keep, lay, by)
    else:
        hits = _sequence(lib, emb, ctx.index, qv, k, keep, lay, by)
    return _with_metadata(ctx, hits)


def _text_embedding(lib, embedder):
    """The embedding a text query runs on: ``embedder``, else the only one with a text tower,
    else the tagger (whose tag space takes text through :mod:`audiorag.embedders.text`)."""
    if embedder is not None:
        return lib.embedding(embedder)
    towers = [e for e in lib.embeddings() if e.has_text]
    if len(towers) > 1:
        raise ParameterError(f"{lib.path}: several embeddings with a text tower "
                             f"({', '.join(e.key for e in towers)}); name one with embedder=")
    if towers:
        return towers[0]
    if not any(e.is_tagger for e in lib.embeddings()):
        raise ParameterError(f"{lib.path}: text queries need an embedding with a text tower (clap) or a tagger "
                             f"(musicnn-mtt); this library has {', '.join(e.key for e in lib.embeddings()) or 'none'}")
    return lib.tagger()


def _text_search(lib, ctx: _Context, text: str, *, k: int, filters, by: str) -> pd.DataFrame:
    """Rank segments by their tag probabilities against the tags ``text`` matches.

    The matched tags and weights are in ``hits.attrs["matched_tags"]``, and each hit
    carries its probability for every matched tag (``tag:<name>`` columns).
    """
    from ..embedders.text import score_segments, tag_query
    emb = lib.tagger(ctx.emb.key)
    matched = tag_query(text, emb.tag_names)
    cols = [emb.tag_names.index(t) for t in matched]
    tags = lib.tags(embedder=emb.key).to_numpy()[:, cols]
    scores = score_segments(tags, np.array(list(matched.values())))
    lay = ctx.layout
    allowed = _allowed_tracks(lib, filters)
    ok = emb.valid_rows(lay.seg_track) & (True if allowed is None else np.isin(lay.seg_track, allowed))
    ids = np.flatnonzero(ok)
    ids = ids[np.lexsort((ids, -scores[ids]))]  # score descending, then segment order
    hits = {"track_id": lay.seg_track[ids], "segment_id": ids, "start": lay.starts[ids],
            "end": lay.ends[ids], "score": scores[ids]}
    hits = _head(_aggregate(hits) if by == "track" else hits, k)
    for t, c in zip(matched, range(len(cols))):
        hits[f"tag:{t}"] = tags[hits["segment_id"], c]
    out = _with_metadata(ctx, hits)
    out.attrs["matched_tags"] = matched
    return out


def _single(index, q, k, keep, lay, by) -> dict:
    wanted = k if by == "segment" else 8 * k
    while True:
        ids, scores = _candidates(index, q, wanted, keep)
        if by == "segment":
            ids, scores = ids[:k], scores[:k]
        hits = {"track_id": lay.seg_track[ids], "segment_id": ids, "start": lay.starts[ids], "end": lay.ends[ids],
                "score": scores}
        if by == "segment":
            return hits
        tracks = _aggregate(hits)
        if len(tracks["track_id"]) >= k or len(ids) >= index.ntotal or wanted >= index.ntotal:
            return _head(tracks, k)
        wanted *= 4


def _aggregate(hits: dict) -> dict:
    """One hit per track: its best-scoring moment, and how many of its segments matched.

    >>> _aggregate({"track_id": np.array([4, 2, 4]), "score": np.array([.9, .8, .7])})["n_segments"].tolist()
    [2, 1]
    """
    order = np.argsort(-np.asarray(hits["score"]), kind="stable")
    tracks = np.asarray(hits["track_id"])[order]
    _, first, counts = np.unique(tracks, return_index=True, return_counts=True)
    best = np.argsort(first, kind="stable")
    rows = order[first[best]]
    return {**{c: np.asarray(v)[rows] for c, v in hits.items()}, "n_segments": counts[best]}


def _head(hits: dict, k: int) -> dict:
    return {c: v[:k] for c, v in hits.items()}


def _sequence(lib, emb, index, qv, k, keep, lay, by) -> dict:
    m = len(qv)
    vectors = lib.vectors(emb.key)
    valid = emb.valid_rows(lay.seg_track)
    alignments: set[tuple[int, int]] = set()
    for i, q in enumerate(qv):
        ids, _ = _candidates(index, q, max(4 * k, 50), keep)
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
    df = df.sort_values(["score", "track_id", "start"], ascending=[False, True, True], kind="stable")
    kept, spans = [], {}
    for row in df.itertuples(index=False):  # keep the best of overlapping alignments on one track
        taken = spans.setdefault(row.track_id, [])
        if any(row.start < e and s < row.end for s, e in taken):
            continue
        taken.append((row.start, row.end))
        kept.append(row)
        if len(kept) >= (k if by == "segment" else 4 * k):
            break
    out = {c: np.asarray([getattr(r, c) for r in kept]) for c in df.columns}
    return _head(_aggregate(out) if by == "track" else out, k)


def _with_metadata(ctx: _Context, cols: dict) -> pd.DataFrame:
    """``rank``, the hit columns, then the hit's track columns (one column-wise take per column)."""
    n = len(cols["track_id"])
    out = {"rank": np.arange(1, n + 1), **cols, "segment_id": np.asarray(cols["segment_id"], dtype=np.int64)}
    out.update(ctx.metadata(np.asarray(cols["track_id"])))
    return pd.DataFrame(out)


def _late_fusion(lib, query: Query, embedder, weights, *, fusion: str, k: int, index, exclude_same_track: bool,
                 filters, by: str) -> pd.DataFrame:
    """Score-level fusion of the embeddings named ``E1+E2+…``: each one's index proposes candidates, every
    candidate is scored ``Σ wᵢ·cosᵢ`` from the stored vectors (single-window queries)."""
    names = str(embedder or "").split("+")
    if fusion != "late" or len(names) < 2:
        raise ParameterError(f"search: fusion='late' needs embedder='E1+E2[+…]', got fusion={fusion!r}, "
                             f"embedder={embedder!r}")
    w = np.ones(len(names)) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (len(names),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ParameterError(f"search: late fusion needs {len(names)} weights >= 0, got {weights}")
    ctxs = [context(lib, name, index) for name in names]
    qvs = [query_vectors(lib, c.emb, query, ctx=c) for c in ctxs]
    if any(len(qv) != 1 for qv, _ in qvs):
        raise ParameterError("search: late fusion takes one-window queries (a moment, or a clip up to one window)")
    sizes = {c.emb.key: len(c.vectors) for c in ctxs}
    if len(set(sizes.values())) > 1:
        raise ParameterError(f"search: late fusion needs embeddings of the same segments; they cover "
                             f"{sizes} (finish the embedding with `audiorag build LIB --embedder NAME`)")
    from ..rerank import descriptor_filters
    filters, moments = descriptor_filters(lib, filters)
    lay, allowed = ctxs[0].layout, ctxs[0].allowed(lib, filters)
    excluded = qvs[0][1] if exclude_same_track else None

    def keep(ids):
        t = lay.seg_track[ids]
        ok = np.ones(len(ids), dtype=bool) if allowed is None else np.isin(t, allowed)
        ok = ok if moments is None else ok & moments[ids]
        return ok if excluded is None else ok & (t != excluded)
    wanted = 4 * (k if by == "segment" else 8 * k)
    ids = np.unique(np.concatenate([_candidates(c.index, qv[0], wanted, keep)[0] for c, (qv, _) in zip(ctxs, qvs)]))
    scores = sum(wi / w.sum() * (np.asarray(c.vectors[ids]) @ qv[0]) for wi, c, (qv, _) in zip(w, ctxs, qvs))
    order = np.lexsort((ids, -scores))
    ids, scores = ids[order], np.asarray(scores, dtype=np.float32)[order]
    hits = {"track_id": lay.seg_track[ids], "segment_id": ids, "start": lay.starts[ids], "end": lay.ends[ids],
            "score": scores}
    return _with_metadata(ctxs[0], _head(_aggregate(hits) if by == "track" else hits, k))
