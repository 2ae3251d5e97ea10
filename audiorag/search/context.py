"""What every search of one (library, embedding, index) needs, built once and kept between queries:
the segment layout, the open index, the vectors, the hits' metadata columns, the filters' track sets.

>>> import pandas as pd
>>> segs = pd.DataFrame({"segment_id": [0, 1, 2], "track_id": [7, 7, 9], "start": [0.0, 2.0, 0.0],
...                      "end": [10.0, 12.0, 10.0]})
>>> Layout(segs).moment(7, at=3.0)
1
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..errors import ParameterError
from ..library.fanout import open_index
from ..library.trackvectors import track_index
from .filters import track_mask

#: track columns never shown in hits
HIDDEN_TRACK_COLUMNS = ("sample_rate", "channels", "content_hash")


class Layout:
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

    def hits(self, ids: np.ndarray, scores: np.ndarray) -> dict:
        """Hit columns (``track_id, segment_id, start, end, score``) of segments ``ids``."""
        return {"track_id": self.seg_track[ids], "segment_id": ids, "start": self.starts[ids], "end": self.ends[ids],
                "score": scores}


class Context:
    """The embedding, its open index (none for tag-space text search), the layout and the metadata."""

    def __init__(self, lib, emb, index_name: str | None, *, with_index: bool = True):
        self.emb = emb
        self.index = open_index(lib, emb, index_name) if with_index else None  # a sharded library: fan-out
        self.layout = Layout(lib.segments, lib.tracks)
        self.vectors = emb.vectors()
        meta = lib.tracks.drop(columns=[c for c in HIDDEN_TRACK_COLUMNS if c in lib.tracks.columns])
        meta = meta.rename(columns={"duration": "track_duration"}).drop(columns="track_id")
        self.track_rows = pd.Index(lib.tracks["track_id"].to_numpy())
        self.meta_columns = {c: meta[c].array for c in meta.columns}
        self.stamp = (mtime(emb.path), mtime(emb.path / "embedder.json"))
        self._allowed: dict = {}
        self._track_indexes: dict = {}

    def track_index(self, lib, pooling: str):
        """The embedding's ``pooling`` track index (:mod:`audiorag.library.trackvectors`), opened once."""
        if pooling not in self._track_indexes:
            self._track_indexes[pooling] = track_index(lib, self.emb, pooling)
        return self._track_indexes[pooling]

    def allowed(self, lib, filters: dict | None) -> np.ndarray | None:
        """The track ids passing ``filters`` (remembered per filter set)."""
        if not filters:
            return None
        key = repr(sorted((k, sorted(map(str, v)) if isinstance(v, (list, tuple, set)) else str(v))
                          for k, v in filters.items()))
        if key not in self._allowed:
            self._allowed[key] = allowed_tracks(lib, filters)
        return self._allowed[key]

    def metadata(self, track_ids: np.ndarray) -> dict:
        """Track columns for each of ``track_ids`` (one entry per hit)."""
        pos = self.track_rows.get_indexer(track_ids)
        return {c: a.take(pos, allow_fill=True) for c, a in self.meta_columns.items()}


_CONTEXTS: dict = {}
_RESOLVED: dict = {}  # (generation, embedder as asked, text, stamps) → the embedding key it names


def mtime(path) -> int:
    """A file's modification time (ns), 0 when it does not exist."""
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return 0


def context(lib, embedder=None, index: str | None = None, *, text: bool = False) -> Context:
    """The cached search context; rebuilt when the library's tables, embeddings or indexes change
    (checked by file modification times, a few ``stat`` calls per query)."""
    root = str(lib.data)  # the generation read: a commit changes it
    stamps = tuple(mtime(os.path.join(root, f)) for f in ("tracks.parquet", "segments.parquet", "embeddings"))
    asked = (root, str(embedder), text, stamps)
    # one context per embedding, however it was named (None for the default, its name or its key): a model
    # embedder is loaded once per process whichever way queries name it
    resolved = _RESOLVED.get(asked)
    emb = None
    if resolved is None:
        emb = text_embedding(lib, embedder) if text else lib.embedding(embedder)
        resolved = _RESOLVED[asked] = emb.key
    key = (root, resolved, index, text, stamps)
    ctx = _CONTEXTS.get(key)
    if ctx is not None and ctx.stamp == (mtime(ctx.emb.path), mtime(ctx.emb.path / "embedder.json")):
        return ctx
    emb = emb or (text_embedding(lib, embedder) if text else lib.embedding(embedder))
    ctx = Context(lib, emb, index, with_index=emb.has_text or not text)
    if len(_CONTEXTS) > 16:
        _CONTEXTS.clear()
        _RESOLVED.clear()
    _CONTEXTS[key] = ctx
    return ctx


def allowed_tracks(lib, filters: dict | None) -> np.ndarray | None:
    """The ids of the library's tracks passing ``filters`` (None: no filter)."""
    if not filters:
        return None
    tracks = lib.tracks
    return tracks["track_id"].to_numpy()[track_mask(tracks, filters)]


def text_embedding(lib, embedder):
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
