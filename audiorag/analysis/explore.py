"""Exploring a library in JupyterLab: hits with inline players cued to each moment, and an
interactive map (plotly) where clicking a point plays its segment.

Everything degrades headless (papermill, CI): the functions build plain objects —
``IPython.display.Audio`` clips, a plotly ``FigureWidget`` — that render in JupyterLab and are
inert elsewhere.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..audio import load


def map_items(lib, embedder=None) -> tuple[pd.DataFrame, np.ndarray]:
    """The items a map shows: one row per live segment (its track's metadata joined) and the
    segments' vectors, row for row — the table :func:`audiorag.analysis.analyse` uses, so removed
    or failed tracks' segments are left out and row ``i`` of the table is point ``i`` of the map.

    Returns ``(items, vectors)``; ``items["segment_id"]`` maps rows back to segments (hits).
    """
    from . import items_table
    return items_table(lib, lib.embedding(embedder), "segment")


def rows_of(items: pd.DataFrame, segment_ids) -> np.ndarray:
    """Row positions in ``items`` of the given segment ids (e.g. a search's hits), in ``items`` order.

    >>> rows_of(pd.DataFrame({"segment_id": [4, 7, 9]}), [9, 4]).tolist()
    [0, 2]
    """
    return np.flatnonzero(np.isin(items["segment_id"].to_numpy(), np.asarray(segment_ids)))


def clip(uri: str, start: float, end: float, *, sr: int = 22050) -> np.ndarray:
    """The mono audio of ``uri`` between ``start`` and ``end`` seconds."""
    y, _ = load(uri, sr=sr, offset=float(start), duration=float(end) - float(start))
    return y


def players(hits: pd.DataFrame, *, sr: int = 22050, limit: int = 10, autoplay: bool = False) -> list:
    """One ``IPython.display.Audio`` per hit (its moment only), for the first ``limit`` hits;
    ``autoplay=True`` starts playing as soon as the player is shown (a click on the map)."""
    from IPython.display import Audio
    return [Audio(clip(h.uri, h.start, h.end, sr=sr), rate=sr, autoplay=autoplay)
            for h in hits.head(limit).itertuples()]


def show_hits(hits: pd.DataFrame, *, columns=("rank", "track_id", "start", "end", "score", "uri"), limit: int = 10):
    """Display the hits table and, under each row, a player cued to the hit's moment."""
    from IPython.display import HTML, display
    cols = [c for c in columns if c in hits.columns] + [c for c in ("genre", "label") if c in hits.columns]
    for row, player in zip(hits.head(limit).itertuples(), players(hits, limit=limit)):
        display(HTML("<b>" + " · ".join(f"{c}: {getattr(row, c)}" for c in cols) + "</b>"), player)


def interactive_map(xy: np.ndarray, items: pd.DataFrame, *, colour: str | None = None, highlight=None,
                    highlight_name: str = "hits", query=None):
    """A plotly ``FigureWidget`` of the map; hovering shows each point's track and moment, clicking
    plays it (in the returned ``ipywidgets.Output``). ``highlight``: item rows to ring (hits, outliers),
    named ``highlight_name`` in the legend; ``query``: one 2-D point drawn as a star.
    Returns ``ipywidgets.VBox([figure, output])``."""
    import ipywidgets as widgets
    import plotly.graph_objects as go
    from IPython.display import display
    text = [f"track {r.track_id} {getattr(r, 'start', 0):.1f}–{getattr(r, 'end', 0):.1f}s "
            f"{getattr(r, colour, '') if colour else ''}" for r in items.itertuples()]
    groups = items[colour].astype(str) if colour else pd.Series(["items"] * len(items))
    fig = go.FigureWidget(layout=go.Layout(height=500, margin=dict(l=0, r=0, t=30, b=0), hovermode="closest"))
    for value in sorted(groups.unique()):
        m = (groups == value).to_numpy()
        fig.add_scattergl(x=xy[m, 0], y=xy[m, 1], mode="markers", name=value, marker=dict(size=5),
                          text=np.asarray(text)[m], customdata=np.flatnonzero(m), hoverinfo="text")
    if highlight is not None and len(highlight):
        h = np.asarray(highlight)
        fig.add_scatter(x=xy[h, 0], y=xy[h, 1], mode="markers", name=highlight_name, text=np.asarray(text)[h],
                        customdata=h, hoverinfo="text",  # a ring is drawn over its point: clicking it plays too
                        marker=dict(size=12, color="rgba(0,0,0,0)", line=dict(width=2, color="black")))
    if query is not None:
        fig.add_scatter(x=[query[0]], y=[query[1]], mode="markers", name="query",
                        marker=dict(size=16, symbol="star", color="gold", line=dict(width=1, color="black")))
    out = widgets.Output()

    def play(trace, points, _state):
        if not points.point_inds:
            return
        row = items.iloc[int(trace.customdata[points.point_inds[0]])]
        with out:
            out.clear_output()
            print(f"track {row.track_id}, {row.get('start', 0):.1f}–{row.get('end', 0):.1f} s: {row.uri}")
            display(*players(pd.DataFrame([row]), limit=1, autoplay=True))

    for trace in fig.data:
        if trace.customdata is not None:
            trace.on_click(play)
    return widgets.VBox([fig, out])


def place(xy: np.ndarray, vectors: np.ndarray, q: np.ndarray, k: int = 5) -> np.ndarray:
    """Where a query vector falls on an existing map: the similarity-weighted mean of its ``k``
    nearest items' coordinates (t-SNE/UMAP cannot project new points exactly)."""
    sims = np.asarray(vectors) @ np.asarray(q)
    top = np.argsort(-sims)[:k]
    w = np.clip(sims[top], 1e-6, None)
    return (xy[top] * w[:, None]).sum(axis=0) / w.sum()
