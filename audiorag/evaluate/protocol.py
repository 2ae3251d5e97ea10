"""Evaluation protocols: which items are relevant, which are excluded, which are queries.

A segment is relevant to a query when its label (``label`` column; for tracks with a
``sections`` column, the label of the section that covers most of the segment) equals
the query's. The query's own track is always excluded; ``exclude_same`` excludes more
(e.g. the same ``artist`` for artist-disjoint evaluation).

Tracks (or sections) with no value in the label column (None, NaN, empty text) are
*unlabelled*: they are neither queries nor candidates, so they count neither as relevant
nor as misses; the evaluation reports how many there were. ``subset`` keeps tracks whose
columns pass conditions compared by type (see :func:`audiorag.search.filters.track_mask`), e.g.
``{"split": "test"}`` or ``{"year": {"op": ">=", "value": 2001}}``.

>>> Protocol(label="genre", exclude_same=["artist"], queries="sample", n_queries=100).describe()
'label=genre; exclude same track+artist; queries=sample(100, seed 0)'
"""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, field_validator

from ..analysis.clusters import label_array
from ..errors import ParameterError
from ..library.order import content_order
from ..search.filters import track_mask


class Protocol(BaseModel):
    """What counts as relevant, what is excluded, and which segments are queries."""

    label: str = "genre"
    exclude_same: list[str] = Field(default_factory=list)
    # keep only tracks passing these column conditions, e.g. {"split": "test"}, {"year": {"op": ">=", "value": 2001}}
    subset: dict[str, str | float | dict | list[str | float | dict]] | None = None
    queries: Literal["all", "sample", "per-track"] = "all"
    n_queries: int | None = None
    seed: int = 0
    ks: list[int] = Field(default_factory=lambda: [1, 5, 10])
    depth: int = 1000
    sections_column: str | None = "sections"
    moment_queries: int = 100
    moment_tolerance: float | None = None  # seconds; None = the library's hop
    latency_queries: int = 200

    @field_validator("ks")
    @classmethod
    def _ks(cls, v):
        if not v or min(v) < 1:
            raise ValueError("ks must be a non-empty list of integers >= 1")
        return sorted(set(v))

    @field_validator("n_queries", "depth", "latency_queries")
    @classmethod
    def _positive(cls, v, info):
        if v is not None and v < 1:
            raise ValueError(f"{info.field_name} must be >= 1, got {v}")
        return v

    @field_validator("moment_queries")
    @classmethod
    def _non_negative(cls, v):
        if v < 0:
            raise ValueError(f"moment_queries must be >= 0, got {v}")
        return v

    @field_validator("moment_tolerance")
    @classmethod
    def _tolerance(cls, v):
        if v is not None and not (np.isfinite(v) and v >= 0):
            raise ValueError(f"moment_tolerance must be a finite number of seconds >= 0, got {v}")
        return v

    def describe(self) -> str:
        q = {"all": "all", "per-track": "one per track",
             "sample": f"sample({self.n_queries}, seed {self.seed})"}[self.queries]
        where = "" if not self.subset else "; only " + ", ".join(
            _describe_condition(k, v) for k, v in self.subset.items())
        return f"label={self.label}; exclude same {'+'.join(['track', *self.exclude_same])}; queries={q}{where}"


def _describe_condition(col: str, want) -> str:
    items = want if isinstance(want, list) else [want]
    return " & ".join(f"{col}{i['op']}{i['value']}" if isinstance(i, dict) else f"{col}={i}" for i in items)


def segment_labels(tracks: pd.DataFrame, segments: pd.DataFrame, protocol: Protocol) -> np.ndarray:
    """Label of every segment: its track's label, or the label of the section covering most of it;
    ``None`` for an unlabelled track (its sections do not label it) or section."""
    if protocol.label not in tracks.columns:
        raise ParameterError(f"protocol label {protocol.label!r} is not a track column; have {list(tracks.columns)}")
    track_label = pd.Series(label_array(tracks[protocol.label]), index=tracks["track_id"].to_numpy(), dtype=object)
    labels = label_array(segments["track_id"].map(track_label))
    col = protocol.sections_column
    if col and col in tracks.columns:
        for tid, raw in zip(tracks["track_id"], tracks[col]):
            sections = json.loads(raw) if isinstance(raw, str) and raw else None
            if not sections or len(sections) < 2 or track_label.get(tid) is None:
                continue
            rows = np.flatnonzero(segments["track_id"].to_numpy() == tid)
            for r in rows:
                s, e = segments["start"].iat[r], segments["end"].iat[r]
                overlap = [max(0.0, min(e, b) - max(s, a)) for a, b, _ in sections]
                labels[r] = label_array([sections[int(np.argmax(overlap))][2]])[0]
    return labels


def subset_tracks(tracks: pd.DataFrame, protocol: Protocol) -> np.ndarray:
    """Boolean mask over ``tracks`` of the tracks the protocol evaluates on (typed comparisons:
    ``year=2001`` matches a float column holding 2001.0)."""
    if not protocol.subset:
        return np.ones(len(tracks), dtype=bool)
    return track_mask(tracks, protocol.subset, what="protocol subset")


def exclusion_keys(tracks: pd.DataFrame, segments: pd.DataFrame, protocol: Protocol) -> list[np.ndarray]:
    """One integer-coded key array per exclusion (track, then each ``exclude_same`` column), per segment.

    Tracks with no value in an ``exclude_same`` column get a key of their own (a missing artist
    is not the same artist as another missing one).
    """
    keys = [segments["track_id"].to_numpy()]
    for col in protocol.exclude_same:
        if col not in tracks.columns:
            raise ParameterError(f"exclude_same column {col!r} is not a track column; have {list(tracks.columns)}")
        values = label_array(tracks[col])
        codes = pd.factorize(pd.Series(values, dtype=object))[0]
        missing = codes < 0
        codes[missing] = -1 - np.arange(int(missing.sum()))  # unique negative codes
        keys.append(segments["track_id"].map(pd.Series(codes, index=tracks["track_id"].to_numpy())).to_numpy())
    return keys


def query_segments(segments: pd.DataFrame, valid: np.ndarray, protocol: Protocol,
                   tracks: pd.DataFrame | None = None) -> np.ndarray:
    """Segment ids used as queries (only segments with real vectors). A sample is drawn in
    :func:`content_order` when ``tracks`` are given (the same queries in every library of the same files)."""
    ids = segments["segment_id"].to_numpy()[valid]
    if protocol.queries == "all":
        return ids
    if protocol.queries == "sample":
        if not protocol.n_queries:
            raise ParameterError("protocol queries='sample' needs n_queries")
        if tracks is not None:
            order = content_order(tracks, segments)
            ids = segments["segment_id"].to_numpy()[order[valid[order]]]
        rng = np.random.default_rng(protocol.seed)
        return np.sort(rng.choice(ids, min(protocol.n_queries, len(ids)), replace=False))
    seg = segments[valid]
    mid = (seg["start"] + seg["end"]) / 2
    centre = seg["track_id"].map(mid.groupby(seg["track_id"]).mean())
    return seg.assign(d=(mid - centre).abs()).sort_values(["track_id", "d", "segment_id"]) \
              .drop_duplicates("track_id")["segment_id"].to_numpy()
