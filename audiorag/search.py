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
from functools import lru_cache

import numpy as np
import pandas as pd

from .audio import load, resample, valid_audio
from .embedders import l2_normalise
from .errors import ParameterError
from .index import load_index

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
    audio_part: "Query | None" = None
    alpha: float | None = None

    @classmethod
    def audio(cls, source, *, sr: int | None = None, start: float | None = None, end: float | None = None) -> "Query":
        """A clip: a file path (optionally its ``[start, end)`` span) or a mono float array with ``sr``."""
        if isinstance(source, np.ndarray):
            if sr is None:
                raise ParameterError("Query.audio: an array query needs sr=")
            valid_audio(source)
        elif isinstance(source, (str, os.PathLike)):
            source = os.path.abspath(str(source))
        else:
            raise ParameterError(f"Query.audio: expected a path or numpy array, got {type(source).__name__}")
        if start is not None and end is not None and end <= start:
            raise ParameterError(f"Query.audio: end ({end}) must be after start ({start})")
        return cls("audio", source, sr, start, end)

    @classmethod
    def text(cls, text: str) -> "Query":
        """A description. Ranked in a tagger's tag space (see :mod:`audiorag.embedders.text`).

        >>> Query.text("gentle piano melody").kind
        'text'
        """
        if not isinstance(text, str) or not text.strip():
            raise ParameterError("Query.text: expected non-empty text")
        return cls("text", text.strip())

    @classmethod
    def hybrid(cls, text: str, audio, *, alpha: float = 0.7, sr: int | None = None,
               start: float | None = None, end: float | None = None) -> "Query":
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
    def moment(cls, track_id: int, at: float = 0.0) -> "Query":
        """The library's own segment of ``track_id`` that starts at (or just before) ``at`` seconds."""
        if at < 0:
            raise ParameterError(f"Query.moment: at must be >= 0, got {at}")
        return cls("moment", track_id=int(track_id), at=float(at))


class _Layout:
    """Where each track's segments sit in the vectors (segments are contiguous per track)."""

    def __init__(self, segments: pd.DataFrame):
        self.seg_track = segments["track_id"].to_numpy()
        self.starts = segments["start"].to_numpy()
        self.ends = segments["end"].to_numpy()
        first = segments.groupby("track_id", sort=False)["segment_id"].agg(["min", "size"])
        self.first = first["min"].to_dict()
        self.count = first["size"].to_dict()


@lru_cache(maxsize=8)
def _layout(path: str, n_segments: int, mtime: float) -> _Layout:
    return _Layout(pd.read_parquet(os.path.join(path, "segments.parquet")))


def layout(lib) -> _Layout:
    p = os.path.join(lib.path, "segments.parquet")
    return _layout(str(lib.path), len(lib.segments), os.path.getmtime(p))


def query_vectors(lib, emb, query: Query) -> tuple[np.ndarray, int | None]:
    """The query's vectors ``[m, dim]`` (one per window) and the library track it comes from, if any."""
    if query.kind in ("text", "hybrid"):
        text = emb.postprocess(emb.embedder.embed_text([query.source]))[0]
        if query.kind == "text":
            return text[None, :], None
        audio, track = query_vectors(lib, emb, query.audio_part)
        audio = l2_normalise(audio.mean(axis=0))
        return l2_normalise(query.alpha * text + (1.0 - query.alpha) * audio)[None, :], track
    if query.kind == "moment":
        segs = lib.segments
        own = segs[segs["track_id"] == query.track_id]
        if own.empty:
            raise ParameterError(f"Query.moment: track {query.track_id} is not in the library")
        before = own[own["start"] <= query.at + 1e-9]
        row = before.iloc[-1] if len(before) else own.iloc[0]
        return np.asarray(lib.vectors(emb.key)[int(row["segment_id"])])[None, :], query.track_id
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
    mask = np.ones(len(tracks), dtype=bool)
    for col, want in filters.items():
        if col not in tracks.columns:
            raise ParameterError(f"filter on unknown column {col!r}; track columns: {list(tracks.columns)}")
        values = want if isinstance(want, (list, tuple, set)) else [want]
        mask &= tracks[col].isin(values).to_numpy()
    return tracks["track_id"].to_numpy()[mask]


def _candidates(index, q: np.ndarray, n_wanted: int, keep) -> tuple[np.ndarray, np.ndarray]:
    """Search with growing depth until ``n_wanted`` candidates pass ``keep`` (or the index is exhausted)."""
    depth = max(4 * n_wanted, 32)
    while True:
        depth = min(depth, index.ntotal)
        scores, ids = index.search(np.ascontiguousarray(q[None, :], dtype=np.float32), depth)
        scores, ids = scores[0], ids[0]
        ok = (ids >= 0) & keep(ids)
        if ok.sum() >= n_wanted or depth >= index.ntotal:
            return ids[ok], scores[ok]
        depth *= 4


def search(lib, query: Query, *, embedder=None, k: int = 10, index: str | None = None,
           exclude_same_track: bool = False, filters: dict | None = None, by: str = "segment") -> pd.DataFrame:
    """Top-``k`` hits for ``query``: ``rank, track_id, segment_id, start, end, score`` + track metadata.

    ``by="track"`` aggregates to one row per track (its best moment, ``n_segments`` matched).
    ``filters`` maps a track column to a value or list of accepted values.
    """
    if k < 1:
        raise ParameterError(f"search: k must be >= 1, got {k}")
    if by not in ("segment", "track"):
        raise ParameterError(f"search: by must be 'segment' or 'track', got {by!r}")
    if not isinstance(query, Query):
        raise ParameterError(f"search: expected a Query, got {type(query).__name__} "
                             "(use Query.audio / .moment / .text / .hybrid)")
    emb = _text_embedding(lib, embedder) if query.kind in ("text", "hybrid") else lib.embedding(embedder)
    if query.kind == "text" and not emb.has_text:
        return _text_search(lib, query.source, embedder=emb.key, k=k, filters=filters, by=by)
    if query.kind == "hybrid" and not emb.has_text:
        raise ParameterError(f"hybrid queries need an embedder with a text tower (e.g. clap); {emb.key} has none")
    faiss_index = load_index(lib, emb, index)
    lay = layout(lib)
    qv, own_track = query_vectors(lib, emb, query)
    allowed = _allowed_tracks(lib, filters)
    excluded = own_track if exclude_same_track else None

    def keep(ids):
        t = lay.seg_track[ids]
        ok = np.ones(len(ids), dtype=bool) if allowed is None else np.isin(t, allowed)
        return ok if excluded is None else ok & (t != excluded)

    if len(qv) == 1:
        hits = _single(faiss_index, qv[0], k, keep, lay, by)
    else:
        hits = _sequence(lib, emb, faiss_index, qv, k, keep, lay, by)
    return _with_metadata(lib, hits, by)


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
    if not any(e.tag_names for e in lib.embeddings()):
        raise ParameterError(f"{lib.path}: text queries need an embedding with a text tower (clap) or a tagger "
                             f"(musicnn-mtt); this library has {', '.join(e.key for e in lib.embeddings()) or 'none'}")
    return lib.tagger()


def _text_search(lib, text: str, *, embedder, k: int, filters, by: str) -> pd.DataFrame:
    """Rank segments by their tag probabilities against the tags ``text`` matches.

    The matched tags and weights are in ``hits.attrs["matched_tags"]``, and each hit
    carries its probability for every matched tag (``tag:<name>`` columns).
    """
    from .embedders.text import score_segments, tag_query
    emb = lib.tagger(embedder)
    matched = tag_query(text, emb.tag_names)
    cols = [emb.tag_names.index(t) for t in matched]
    tags = lib.tags(embedder=emb.key).to_numpy()[:, cols]
    scores = score_segments(tags, np.array(list(matched.values())))
    lay = layout(lib)
    allowed = _allowed_tracks(lib, filters)
    ok = emb.valid_rows(lay.seg_track) & (True if allowed is None else np.isin(lay.seg_track, allowed))
    ids = np.flatnonzero(ok)
    ids = ids[np.lexsort((ids, -scores[ids]))]  # score descending, then segment order
    df = pd.DataFrame({"track_id": lay.seg_track[ids], "segment_id": ids, "start": lay.starts[ids],
                       "end": lay.ends[ids], "score": scores[ids]})
    df = (_aggregate(df) if by == "track" else df).head(k)
    for t, c in zip(matched, range(len(cols))):
        df[f"tag:{t}"] = tags[df["segment_id"].to_numpy(), c]
    out = _with_metadata(lib, df, by)
    out.attrs["matched_tags"] = matched
    return out


def _single(index, q, k, keep, lay, by) -> pd.DataFrame:
    wanted = k if by == "segment" else 8 * k
    while True:
        ids, scores = _candidates(index, q, wanted, keep)
        df = pd.DataFrame({"track_id": lay.seg_track[ids], "segment_id": ids, "start": lay.starts[ids],
                           "end": lay.ends[ids], "score": scores})
        if by == "segment":
            return df.head(k)
        tracks = _aggregate(df)
        if len(tracks) >= k or len(ids) >= index.ntotal or wanted >= index.ntotal:
            return tracks.head(k)
        wanted *= 4


def _aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """One row per track: its best-scoring moment, and how many of its segments matched."""
    df = df.sort_values("score", ascending=False, kind="stable")
    n = df.groupby("track_id", sort=False).size()
    best = df.drop_duplicates("track_id").copy()
    best["n_segments"] = best["track_id"].map(n).to_numpy()
    return best.reset_index(drop=True)


def _sequence(lib, emb, index, qv, k, keep, lay, by) -> pd.DataFrame:
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
    out = pd.DataFrame(kept, columns=df.columns)
    return (_aggregate(out) if by == "track" else out).head(k)


def _with_metadata(lib, hits: pd.DataFrame, by: str) -> pd.DataFrame:
    hits = hits.reset_index(drop=True)
    hits.insert(0, "rank", np.arange(1, len(hits) + 1))
    meta = lib.tracks.drop(columns=[c for c in _HIDDEN_TRACK_COLUMNS if c in lib.tracks.columns])
    meta = meta.rename(columns={"duration": "track_duration"})
    out = hits.merge(meta, on="track_id", how="left", sort=False)
    out["segment_id"] = out["segment_id"].astype(np.int64)
    return out
