"""Hum queries: the hum's contour, the coarse FAISS stage on interval histograms, the fine alignment of
contours (:func:`audiorag.melody.align`), one hit per phrase. The method is described in
:mod:`audiorag.melody`.

On a sharded library the coarse stage is the fan-out over the shards' indexes (threads, or the shard
actors on Ray) and the candidates' contours are read from the shards' files by this process (the view's
:meth:`~audiorag.library.shards.ShardedEmbedding.tags`): the same candidates and alignments as one library.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..descriptors import melody as md
from ..errors import ParameterError
from ..library import conditioning
from ..melody import CANDIDATES, COARSE_WEIGHT, MAX_COST, align
from .context import context
from .hits import candidates as index_candidates
from .hits import drop_overlapping, per_track, with_metadata, with_ties
from .query import Query


def hum_contour(query: Query, conditioning=None) -> np.ndarray:
    """The pitch contour (cents at :func:`~audiorag.descriptors.melody.frame_rate`) of a hum query's clip;
    no melody → ParameterError.

    >>> hum_contour(Query.hum(np.zeros(16000, np.float32), sr=16000))
    Traceback (most recent call last):
    ...
    audiorag.errors.ParameterError: hum <array>: no melody found (0.00 s pitched in 0 notes; needs 1 s in 3 notes)
    """
    clip = query.clip(conditioning)
    cents = md.contour(clip.at(md.SR))
    md.check_melody(cents, what=f"hum {clip.name}")
    return cents


def hum_search(lib, query: Query, *, embedder=None, k: int = 10, index: str | None = None,
               filters: dict | None = None, by: str = "segment", candidates: int = CANDIDATES) -> pd.DataFrame:
    """Top-``k`` hits for a ``Query.hum``: ``rank, track_id, segment_id, start, end, score`` + track metadata.

    Called by :func:`audiorag.search.search` for hum queries (use that).
    """
    ctx = context(lib, embedder or melody_key(lib), index)
    emb = ctx.emb
    if emb.kind != "melody":
        raise ParameterError(f"hum queries need the melody embedding (lib.embed('melody')); {emb.key} is not one")
    cents = hum_contour(query, conditioning(lib))
    q = md.melody_vector(cents, md.frame_rate())
    lay = ctx.layout
    allowed = ctx.allowed(lib, filters)
    keep = None if allowed is None else (lambda ids: np.isin(lay.seg_track[ids], allowed))
    n = max(candidates, 4 * k)
    ids, coarse = index_candidates(ctx.index, q, n, keep)
    ids, coarse = with_ties(ids, coarse, n)  # equal histograms (repeated phrases) at the cut: all of them
    contours = np.asarray(emb.tags()[ids])  # memory-mapped: only the candidates' rows are read
    seconds = lay.ends[ids] - lay.starts[ids]
    points = contours.shape[1] / max(float(np.median(seconds)) if len(ids) else 1.0, 1e-3)  # per second
    hum = md.resample_contour(cents[cents > 0], max(8, int(round(np.count_nonzero(cents) / md.frame_rate() * points))))
    cost, a, b = align(hum, contours)
    step = seconds / contours.shape[1]
    score = 1.0 - cost / MAX_COST + COARSE_WEIGHT * coarse
    hits = drop_overlapping({"track_id": lay.seg_track[ids], "segment_id": ids, "start": lay.starts[ids] + a * step,
                             "end": lay.starts[ids] + b * step, "score": score})  # one hit per phrase
    hits["segment_id"] = hits["segment_id"].astype(np.int64)
    return with_metadata(ctx, per_track(hits, by, k))


def melody_key(lib) -> str:
    """The key of the library's melody embedding (hum queries need one; several: name it)."""
    found = [e.key for e in lib.embeddings() if e.kind == "melody"]
    if not found:
        raise ParameterError(f"{lib.path}: hum queries need the melody embedding; add it with lib.embed('melody') "
                             "or `audiorag build LIB --dataset <its dataset> --embedder melody`")
    if len(found) > 1:
        raise ParameterError(f"{lib.path}: several melody embeddings ({', '.join(found)}); name one with embedder=")
    return found[0]
