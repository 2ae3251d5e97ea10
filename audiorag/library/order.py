"""The corpus's own row order: tracks by content hash (then uri), segments by their track's place in that
order, then start — the same in every library holding the same files, sharded or not, whatever ids each
gave them. What is drawn at random (samples of queries, clips, listeners), clustered (KMeans' start) or
folded (group k-fold) in this order is the same in each, so their figures are (a sharded library numbers
its tracks by shard: its own row order differs from one library's).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def content_order(tracks: pd.DataFrame, segments: pd.DataFrame | None = None) -> np.ndarray:
    """Rows in an order set by the corpus, not by a library's ids: the tracks' rows by content hash (then
    uri), or with ``segments`` the segments' rows by their track's place in that order, then start.
    Samples and clusterings drawn in this order are the same in every library holding the same files,
    sharded or not (a sharded library numbers its tracks otherwise).

    >>> t = pd.DataFrame({"track_id": [0, 1], "content_hash": ["b", "a"], "uri": ["x", "y"]})
    >>> content_order(t).tolist(), content_order(t, pd.DataFrame({"track_id": [0, 0, 1], "start": [0, 5, 0]})).tolist()
    ([1, 0], [2, 0, 1])
    """
    tracks_order = np.lexsort((tracks["uri"].astype(str).to_numpy(), tracks["content_hash"].astype(str).to_numpy()))
    if segments is None:
        return tracks_order
    place = pd.Series(np.arange(len(tracks)), index=tracks["track_id"].to_numpy()[tracks_order])
    rank = segments["track_id"].map(place).fillna(len(tracks)).to_numpy()
    return np.lexsort((segments["start"].to_numpy(), rank))


def content_rows(lib, emb) -> np.ndarray:
    """The rows of ``lib``'s segments holding vectors of ``emb`` (valid ones only), in :func:`content_order`."""
    seg = lib.segments.iloc[: emb.n_segments]
    order = content_order(lib.tracks, seg)
    return order[emb.valid_rows(seg["track_id"].to_numpy())[order]]


def track_keys(tracks: pd.DataFrame) -> pd.Series:
    """Each track's name in the corpus, by ``track_id``: its content hash (its uri when it has none).

    >>> track_keys(pd.DataFrame({"track_id": [4], "content_hash": ["sha256:ab"], "uri": ["x"]})).to_dict()
    {4: 'sha256:ab'}
    """
    keys = tracks["content_hash"].where(tracks["content_hash"].notna(), tracks["uri"]).astype(str)
    return pd.Series(keys.to_numpy(), index=tracks["track_id"].to_numpy())
