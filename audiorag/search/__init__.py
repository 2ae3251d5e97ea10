"""Queries and search: audio clips, moments of indexed tracks, text, hybrids and hums; filters,
exclusion, sequence matching of long clips, re-ranking, late fusion and track-level aggregation
(a track's best moment, or per-track mean / max vectors).

A query clip longer than one library window is cut into windows with the library's
hop and matched as a *sequence*: for each track, the run of consecutive segments that
best aligns with the query windows (mean similarity, windows falling outside the track
count as 0), so a 30 s clip localises its 30 s in the track.

Text queries use the embedder's text tower when it has one (CLAP: text and audio share one
space); otherwise they are matched in a tagger's tag space. A *hybrid* query blends a text
and an audio query on normalised vectors, ``alpha·text + (1 − alpha)·audio``, renormalised.

The package, one module per step a query takes:

============ ==========================================================================================
``query``    :class:`Query` and its constructors; :func:`check_k`
``context``  what searches of one embedding share (layout, index, metadata), cached
``vectors``  a query's vectors (a clip's windows, a moment, a text tower, a hybrid blend)
``hits``     candidates from an index, aggregation per track, overlap removal, the hits table
``text``     text queries in a tagger's tag space
``factors``  re-ranking factors of hits from the library's descriptors; descriptor filters
``fusion``   late (score-level) fusion of several embeddings
``hum``      query by humming (the method: :mod:`audiorag.melody`)
``filters``  the ``where`` parser and track filters
============ ==========================================================================================

>>> Query.moment(3, at=12.5).kind, Query.moment(3, at=12.5).at
('moment', 12.5)
>>> Query.hybrid("warm analog bass", Query.moment(3, at=12.5), alpha=0.7).alpha
0.7
"""

from __future__ import annotations

import pandas as pd

from ..embedders import l2_normalise
from ..errors import ParameterError
from ..library.fanout import reports_missing
from ..library.shards import ShardedLibrary
from ..library.trackvectors import pool_query
from .context import Context, Layout, context
from .factors import descriptor_filters, rerank_hits
from .fusion import late_fusion
from .hits import (
    HIT_COLUMNS,
    aggregate,
    candidates,
    drop_overlapping,
    head,
    keeper,
    nearest,
    pooled_nearest,
    sequence,
    with_metadata,
)
from .hum import hum_contour, hum_search
from .query import Query, check_k
from .text import text_search
from .vectors import query_vectors

AGGREGATES = ("best", "mean", "max")


def check_aggregate(lib, query: Query, aggregate: str, *, by: str, rerank=None, fusion: str = "early") -> None:
    """Refuse, in one line, a track aggregation that cannot apply (see :func:`search`).

    >>> check_aggregate(None, Query.moment(0), "mean", by="segment")
    Traceback (most recent call last):
    ...
    audiorag.errors.ParameterError: search: aggregate='mean' ranks tracks; it needs by='track'
    """
    if aggregate not in AGGREGATES:
        raise ParameterError(f"search: aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
    if aggregate == "best":
        return
    if by != "track":
        raise ParameterError(f"search: aggregate={aggregate!r} ranks tracks; it needs by='track'")
    if rerank is not None or fusion != "early" or query.kind in ("hum", "text"):
        what = ("re-ranking" if rerank is not None else "late fusion" if fusion != "early" else f"a {query.kind} query")
        raise ParameterError(f"search: aggregate={aggregate!r} searches per-track vectors of one embedding with an "
                             f"audio, moment or hybrid query; {what} needs aggregate='best'")
    if isinstance(lib, ShardedLibrary):
        raise ParameterError(f"{lib.path} is a sharded library: aggregate={aggregate!r} is not merged across "
                             f"shards; search one shard ({lib.paths[0]} …) for it")


@reports_missing  # a sharded library served by Ray: attrs['missing_shards'] names shards that did not answer
def search(lib, query: Query, *, embedder=None, k: int = 10, index: str | None = None,
           exclude_same_track: bool = False, filters: dict | None = None, by: str = "segment",
           rerank=None, fusion: str = "early", weights=None, aggregate: str = "best") -> pd.DataFrame:
    """Top-``k`` hits for ``query``: ``rank, track_id, segment_id, start, end, score`` + track metadata.

    ``by="track"`` aggregates to one row per track (its best moment, ``n_segments`` matched).
    ``filters`` maps a track column to a value or list of accepted values; the segments' descriptor
    columns (``key``, ``mode``, ``tempo``, ``loudness_db``, ``key_confidence``) filter moments
    (a track column of the same name is then ``track.<name>``).
    ``rerank`` (an :class:`audiorag.rerank.Rerank`) re-ranks ``k × fan_out`` candidates: multi-factor
    score with ``contrib:`` columns, MMR diversity, caps, overlapping windows counted once.
    ``fusion="late"`` with ``embedder="E1+E2"``: score-level fusion, ``Σ wᵢ·cosᵢ`` (``weights``, default
    equal) over the union of each embedding's own index candidates (early fusion: the stored ``E1+E2``).
    ``aggregate`` (with ``by="track"``): ``"best"`` ranks tracks by their best moment; ``"mean"`` / ``"max"``
    rank them by the cosine of the query's pooled vector to each track's mean / max-pooled vector in the
    track index of :mod:`audiorag.library.trackvectors` (S4's track similarity; a multi-window clip is
    pooled the same way), each hit showing the track's moment nearest to the query.
    """
    _check(query, k, by)
    check_aggregate(lib, query, aggregate, by=by, rerank=rerank, fusion=fusion)
    if rerank is not None and (fusion != "early" or query.kind == "hum"):
        raise ParameterError("search: rerank= re-ranks audio, moment, text-tower and hybrid queries (early fusion)")
    if query.kind == "hum":  # melody: interval histograms, then alignment of contours (see audiorag.melody)
        if fusion != "early":
            raise ParameterError("search: a hum query searches the melody embedding; fusion does not apply")
        return hum_search(lib, query, embedder=embedder, k=k, index=index, filters=filters, by=by)
    if fusion != "early":
        return late_fusion(lib, query, embedder, weights, fusion=fusion, k=k, index=index,
                           exclude_same_track=exclude_same_track, filters=filters, by=by)
    ctx = context(lib, embedder, index, text=query.kind in ("text", "hybrid"))
    emb = ctx.emb
    if query.kind == "text" and not emb.has_text:
        if rerank is not None:
            raise ParameterError("search: rerank= needs a vector query; a tag-space text query has none")
        return text_search(lib, ctx, query.source, k=k, filters=filters, by=by)
    if rerank is None and aggregate == "best":
        return with_metadata(*hit_columns(lib, query, embedder=embedder, k=k, index=index,
                                          exclude_same_track=exclude_same_track, filters=filters, by=by))
    if query.kind == "hybrid" and not emb.has_text:
        raise ParameterError(f"hybrid queries need an embedder with a text tower (e.g. clap); {emb.key} has none")
    qv, own_track = query_vectors(lib, emb, query, ctx=ctx)
    filters, moments = descriptor_filters(lib, filters)
    if aggregate != "best":
        if moments is not None:
            raise ParameterError(f"search: aggregate={aggregate!r} ranks whole tracks; filters on the moments' "
                                 "descriptors need aggregate='best'")
        hits = pooled_nearest(ctx.track_index(lib, aggregate), pool_query(qv, aggregate), k, ctx.layout,
                              ctx.vectors, ctx.allowed(lib, filters), own_track if exclude_same_track else None)
        return with_metadata(ctx, hits)
    keep = keeper(ctx.layout, ctx.allowed(lib, filters), moments, own_track if exclude_same_track else None)
    # re-ranked: k × fan_out candidates for the mean query vector (audiorag.rerank)
    if by != "segment":
        raise ParameterError("search: re-ranking returns moments (by='segment'); one per track: max_per_track=1")
    cands = nearest(ctx.index, l2_normalise(qv.mean(axis=0)), k * rerank.fan_out, keep, ctx.layout, "segment")
    return rerank_hits(lib, ctx, query, with_metadata(ctx, cands), k=k, options=rerank)


def hit_columns(lib, query: Query, *, embedder=None, k: int = 10, index: str | None = None,
                exclude_same_track: bool = False, filters: dict | None = None, by: str = "segment"):
    """``(context, columns)``: the hits of an audio, moment, text-tower or hybrid query before the tracks'
    metadata is joined, ``search(...)`` being ``with_metadata(*hit_columns(...))`` (without re-ranking). For a
    caller that joins track rows of its own: the table costs ~0.2 ms of a ~0.25 ms moment search, which the
    REST server, answering thousands of moments a second, saves (:mod:`audiorag.serve.answers`).

    Columns: ``track_id, segment_id, start, end, score`` (arrays, best first), and ``n_segments`` with
    ``by="track"``. On a sharded library the shards that did not answer are reported by :func:`search` only.

    >>> hit_columns(None, Query.moment(3, at=12.0), by="album")
    Traceback (most recent call last):
    ...
    audiorag.errors.ParameterError: search: by must be 'segment' or 'track', got 'album'
    """
    _check(query, k, by)
    if query.kind == "hum":
        raise ParameterError("hit_columns: a hum query is answered by search(); here: audio, moment, text (a "
                             "text tower) or hybrid")
    ctx = context(lib, embedder, index, text=query.kind in ("text", "hybrid"))
    if query.kind in ("text", "hybrid") and not ctx.emb.has_text:
        raise ParameterError(f"{query.kind} queries need an embedder with a text tower (e.g. clap); {ctx.emb.key} "
                             "has none")
    qv, own_track = query_vectors(lib, ctx.emb, query, ctx=ctx)
    filters, moments = descriptor_filters(lib, filters)
    keep = keeper(ctx.layout, ctx.allowed(lib, filters), moments, own_track if exclude_same_track else None)
    if len(qv) == 1:
        return ctx, nearest(ctx.index, qv[0], k, keep, ctx.layout, by)
    return ctx, sequence(lib, ctx, qv, k, keep, by)


def _check(query: Query, k: int, by: str) -> None:
    check_k(k, "search")
    if by not in ("segment", "track"):
        raise ParameterError(f"search: by must be 'segment' or 'track', got {by!r}")
    if not isinstance(query, Query):
        raise ParameterError(f"search: expected a Query, got {type(query).__name__} "
                             "(use Query.audio / .moment / .text / .hybrid / .hum)")


__all__ = ["Query", "search", "hit_columns", "check_k", "check_aggregate", "AGGREGATES",
           "context", "Context", "Layout", "query_vectors", "HIT_COLUMNS",
           "candidates", "aggregate", "head", "with_metadata", "drop_overlapping", "hum_contour", "hum_search"]
