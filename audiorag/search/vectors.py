"""A query's vectors in an embedding: a clip's windows embedded (the library's window and hop), a
moment's stored vector, a text tower's vector, or a hybrid's blend
``alpha·text + (1 − alpha)·mean(audio)``, renormalised.

A clip longer than one library window gives one vector per window (matched as a sequence by
:func:`audiorag.search.hits.sequence`).
"""

from __future__ import annotations

import os

import numpy as np

from ..embedders import l2_normalise
from ..io import decode_path
from ..library import conditioning
from .context import Layout


def clip_windows(length: float, segmentation) -> tuple[np.ndarray, np.ndarray]:
    """Window starts and ends (seconds) of a ``length`` s clip: one window up to the library's, else its
    windows every hop.

    >>> from types import SimpleNamespace
    >>> [w.tolist() for w in clip_windows(14.0, SimpleNamespace(window=10.0, hop=2.0))]
    [[0.0, 2.0, 4.0], [10.0, 12.0, 14.0]]
    """
    if length <= segmentation.window + 1e-6:
        return np.zeros(1), np.array([length])
    n = int(np.floor((length - segmentation.window) / segmentation.hop + 1e-9)) + 1
    starts = np.arange(n) * segmentation.hop
    return starts, starts + segmentation.window


def library_track(lib, path: str) -> int | None:
    """The library track whose file ``path`` is (its uri, or the same file by another path: a symlink, a
    relative folder), if any."""
    uris = lib.tracks["uri"]
    match = lib.tracks.loc[uris == path, "track_id"]
    if len(match):
        return int(match.iloc[0])
    real = os.path.realpath(path)
    same_name = lib.tracks[uris.str.endswith(os.path.basename(path)).fillna(False)]
    for track, uri in zip(same_name["track_id"], same_name["uri"]):
        if os.path.realpath(decode_path(uri)) == real:
            return int(track)
    return None


def query_vectors(lib, emb, query, *, ctx=None) -> tuple[np.ndarray, int | None]:
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
            lay, vectors = Layout(lib.segments, lib.tracks), emb.vectors()
        return np.asarray(vectors[lay.moment(query.track_id, query.at)])[None, :], query.track_id
    e = emb.embedder
    y = query.clip(conditioning(lib)).at(e.sample_rate)
    track = None if isinstance(query.source, np.ndarray) else library_track(lib, query.source)
    starts, ends = clip_windows(len(y) / e.sample_rate, lib.segmentation)
    return emb.postprocess(e.embed_track(y, starts, ends)), track
