"""Figures built from evaluation results, drawn for a paper: short labels, legends outside the data,
text readable at 100 % zoom.

Every figure has two functions: ``<name>_figure(...)`` builds a :class:`matplotlib.figure.Figure`
(matplotlib's object API: no pyplot, no backend switch, nothing global changes — safe inside a
Jupyter session), and ``<name>(..., out_dir)`` writes it as PNG + SVG and returns the PNG path.

>>> import tempfile
>>> summary = pd.DataFrame({"cell": ["a", "b"], "embedder": ["features45-6b0fdaa4", "musicnn-mtt-0c1d2e3f"],
...                         "index": ["Flat", "HNSW32"], "segment/P@10": [0.41, 0.58],
...                         "latency/p50_ms": [0.9, 0.2], "chance/P": [0.125, 0.125]})
>>> [p.name for p in sweep_comparison(summary, tempfile.mkdtemp())]
['quality_vs_latency.png', 'quality_by_cell.png']
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

#: figure resolution of the PNGs (the SVGs are vector)
DPI = 150
#: one colour per embedder / category (colour-blind-safe "tab10" first, then its light shades)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d",
           "#9edae5")
#: one marker per index family (order of first use); a filled shape for every family
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
#: fill styles that tell segmentations / protocols apart when a sweep has several
FILLS = ("full", "none", "left", "bottom", "right", "top")
#: at most this many categories get their own colour on a map; the rest are drawn grey as "other"
MAX_CATEGORIES = len(PALETTE)


def figure(width: float, height: float):
    """A new :class:`~matplotlib.figure.Figure` with constrained layout (legends outside the axes
    are given room), not registered with pyplot."""
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), layout="constrained")


def save(fig, out_dir, name: str) -> Path:
    """Write ``fig`` as ``<out_dir>/<name>.png`` and ``.svg``; return the PNG path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}.png", dpi=DPI)
    fig.savefig(out / f"{name}.svg")
    return out / f"{name}.png"


def short_embedder(key: str) -> str:
    """An embedding key without its parameter hash: ``"musicnn-mtt-0c1d2e3f"`` → ``"musicnn-mtt"``.

    >>> short_embedder("features45-6b0fdaa4"), short_embedder("features45")
    ('features45', 'features45')
    """
    return re.sub(r"-[0-9a-f]{8}$", "", str(key))


def _short_labels(keys) -> dict[str, str]:
    """Short embedder labels; keys sharing a name (different params) keep their hash."""
    keys = list(dict.fromkeys(map(str, keys)))
    names = [short_embedder(k) for k in keys]
    return {k: n if names.count(n) == 1 else k for k, n in zip(keys, names)}


def _legend_outside(fig, handles, title: str | None = None, **kw):
    """A legend to the right of the axes; a string among ``handles`` is a bold section header."""
    from matplotlib.lines import Line2D
    headers = {h for h in handles if isinstance(h, str)}
    handles = [Line2D([], [], ls="none", label=h) if isinstance(h, str) else h for h in handles]
    kw.setdefault("loc", "outside right upper")
    legend = fig.legend(handles=handles, frameon=False, title=title,
                        alignment="left", fontsize=8, title_fontsize=8, handletextpad=0.4, **kw)
    for text in legend.get_texts():
        if text.get_text() in headers:
            text.set_fontweight("bold")
    return legend


# -- evaluation of one cell -----------------------------------------------------------------------
def record_title(record) -> str:
    """What an evaluation figure shows, for its title: embedder, data and protocol of a record
    (an :class:`~audiorag.evaluate.EvaluationRecord` or its dict).

    >>> record_title({"embedder": {"key": "features45-6b0fdaa4"}, "dataset": {"id": "synthetic-v3-n16-s0"},
    ...               "protocol": {"label": "genre", "exclude_same": ["artist"]}})
    'features45 on synthetic-v3-n16-s0 · relevant: same genre, other artist'
    """
    d = record if isinstance(record, dict) else record.model_dump(mode="json")
    protocol = d.get("protocol") or {}
    relevant = f"same {protocol['label']}" if protocol.get("label") else ""
    if protocol.get("exclude_same"):
        relevant += ", other " + ", other ".join(protocol["exclude_same"])
    return (f"{short_embedder((d.get('embedder') or {}).get('key', '?'))} on {(d.get('dataset') or {}).get('id', '?')}"
            + (f" · relevant: {relevant}" if relevant else ""))


def precision_curve_figure(metrics: dict, ks: list[int], title: str = ""):
    """P@k for segment- and track-level retrieval against k, each with its chance level (a random
    ranking's precision at that level; records without ``chance/track_P`` show the segment one)."""
    fig = figure(5.8, 3.6)
    ax = fig.subplots()
    handles = []
    for level, marker, colour in (("segment", "o", PALETTE[0]), ("track", "s", PALETTE[1])):
        handles.append(ax.plot(ks, [metrics[f"{level}/P@{k}"] for k in ks], marker=marker, color=colour,
                               label=f"{level} level")[0])
        chance = metrics.get("chance/P" if level == "segment" else "chance/track_P")
        if chance is not None:
            handles.append(ax.axhline(chance, ls="--", lw=1, color=colour, label=f"chance, {level} ({chance:.3f})"))
    ax.set(xlabel="k (results looked at)", ylabel="precision@k", ylim=(0, 1), xticks=ks)
    if title:
        fig.suptitle(title, fontsize=9)
    _legend_outside(fig, handles)
    return fig


def precision_curve(metrics: dict, ks: list[int], out_dir, name: str = "precision_at_k", title: str = "") -> Path:
    """Write :func:`precision_curve_figure`; return the PNG path."""
    return save(precision_curve_figure(metrics, ks, title), out_dir, name)


def latency_histogram_figure(seconds: np.ndarray, title: str = ""):
    """Histogram of query latencies (ms) with p50 / p95 / p99 marked."""
    ms = np.asarray(seconds, dtype=float) * 1000
    fig = figure(5.8, 3.4)
    ax = fig.subplots()
    ax.hist(ms, bins=30, color=PALETTE[0])
    handles = []
    for q, style in ((50, "-"), (95, "--"), (99, ":")):
        handles.append(ax.axvline(np.percentile(ms, q), c="k", ls=style, label=f"p{q} {np.percentile(ms, q):.2f} ms"))
    ax.set(xlabel="search() latency of one query (ms)", ylabel="queries")
    if title:
        fig.suptitle(title, fontsize=9)
    _legend_outside(fig, handles)
    return fig


def latency_histogram(seconds: np.ndarray, out_dir, name: str = "latency", title: str = "") -> Path:
    """Write :func:`latency_histogram_figure`; return the PNG path."""
    return save(latency_histogram_figure(seconds, title), out_dir, name)


def per_class_precision_figure(per_class: dict, k: int = 10, title: str = ""):
    """Segment precision@k per class, sorted, one bar per class."""
    s = pd.Series(per_class, dtype=float).sort_values()
    fig = figure(5, 0.26 * len(s) + 1.1)
    ax = fig.subplots()
    ax.barh(s.index.astype(str), s.to_numpy(), color=PALETTE[0])
    ax.set(xlabel=f"segment precision@{k}", xlim=(0, 1))
    ax.tick_params(axis="y", labelsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def per_class_precision(per_class: dict, out_dir, name: str = "per_class_precision", k: int = 10,
                        title: str = "") -> Path:
    """Write :func:`per_class_precision_figure`; return the PNG path."""
    return save(per_class_precision_figure(per_class, k, title), out_dir, name)


# -- a sweep's cells side by side -------------------------------------------------------------------
def _variants(summary: pd.DataFrame) -> pd.Series:
    """What tells cells with the same embedder and index apart (segmentation, protocol), as a label."""
    parts = []
    if {"window", "hop"} <= set(summary.columns) and summary[["window", "hop"]].drop_duplicates().shape[0] > 1:
        parts.append("w" + summary["window"].map("{:g}".format) + " h" + summary["hop"].map("{:g}".format))
    if "protocol" in summary.columns and summary["protocol"].nunique() > 1:
        parts.append(summary["protocol"].astype(str).str.slice(0, 24))
    if not parts:
        return pd.Series([""] * len(summary), index=summary.index)
    out = parts[0]
    for p in parts[1:]:
        out = out + ", " + p
    return out


def _pareto(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both lower ``x`` and higher ``y``, by ``x``.

    >>> _pareto(np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.4, 0.9])).tolist()
    [0, 2]
    """
    order = np.lexsort((-y, x))
    front, best = [], -np.inf
    for i in order:
        if y[i] > best:
            front.append(int(i))
            best = y[i]
    return np.asarray(front, dtype=int)


def quality_vs_latency_figure(summary: pd.DataFrame, quality: str = "segment/P@10"):
    """Quality against search latency, one point per cell: colour = embedder, marker = index,
    fill = segmentation / protocol (when a sweep has several); the grey line joins the cells no
    other cell beats on both axes (the Pareto front)."""
    from matplotlib.lines import Line2D
    df = summary.dropna(subset=[quality, "latency/p50_ms"]).reset_index(drop=True)
    labels = _short_labels(df["embedder"])
    colours = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(labels)}
    indexes = list(dict.fromkeys(df["index"].astype(str)))
    markers = {ix: MARKERS[i % len(MARKERS)] for i, ix in enumerate(indexes)}
    variants = _variants(df)
    fills = {v: FILLS[i % len(FILLS)] for i, v in enumerate(dict.fromkeys(variants))}
    fig = figure(6.4, 3.8)
    ax = fig.subplots()
    x, y = df["latency/p50_ms"].to_numpy(float), df[quality].to_numpy(float)
    front = _pareto(x, y)
    if len(front) > 1:
        ax.plot(x[front], y[front], c="0.6", lw=1, zorder=1)
    for i, row in df.iterrows():  # translucent: cells at the same point (Flat and a near-exact index) both show
        c = colours[str(row["embedder"])]
        ax.plot(x[i], y[i], ls="none", marker=markers[str(row["index"])], ms=8, color=c, mec=c, alpha=0.75,
                fillstyle=fills[variants.iloc[i]], mew=1.4, zorder=3)
    if "chance/P" in df.columns and quality.split("/")[-1].startswith("P@") and df["chance/P"].notna().any():
        ax.axhline(float(df["chance/P"].mean()), ls="--", lw=0.8, c="grey", zorder=0)
        ax.annotate("chance", (0.01, float(df["chance/P"].mean())), xycoords=("axes fraction", "data"),
                    xytext=(0, 2), textcoords="offset points", fontsize=8, color="grey", va="bottom")
    if len(x) and x.min() > 0 and x.max() / x.min() > 20:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.5, 1, 2, 5, 10: not 10^0
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="search latency, p50 (ms)", ylabel=quality.replace("/", " "), ylim=(0, 1))
    ax.margins(x=0.1)
    handles = ["embedder"]
    handles += [Line2D([], [], ls="none", marker="o", ms=7, color=c, label=labels[k]) for k, c in colours.items()]
    handles += ["index"]
    handles += [Line2D([], [], ls="none", marker=m, ms=7, color="k", label=ix) for ix, m in markers.items()]
    if len(fills) > 1:
        handles += ["segmentation, protocol"]
        handles += [Line2D([], [], ls="none", marker="o", ms=7, color="k", fillstyle=f, label=v or "—")
                    for v, f in fills.items()]
    if len(front) > 1:
        handles += [Line2D([], [], c="0.6", lw=1, label="Pareto front")]
    _legend_outside(fig, handles)
    return fig


def quality_by_cell_figure(summary: pd.DataFrame, quality: str = "segment/P@10"):
    """One bar per cell (best first), coloured by embedder, labelled ``embedder · index [variant]``."""
    df = summary.dropna(subset=[quality]).reset_index(drop=True)
    labels = _short_labels(df["embedder"])
    colours = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(labels)}
    variants = _variants(df)
    names = [f"{labels[str(e)]} · {ix}" + (f" · {v}" if v else "")
             for e, ix, v in zip(df["embedder"], df["index"].astype(str), variants)]
    order = np.argsort(df[quality].to_numpy(float), kind="stable")
    fig = figure(6.4, 0.28 * len(df) + 1.2)
    ax = fig.subplots()
    values = df[quality].to_numpy(float)[order]
    bars = ax.barh([names[i] for i in order], values, color=[colours[str(df["embedder"].iloc[i])] for i in order])
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], padding=3, fontsize=8)
    if "chance/P" in df.columns and quality.split("/")[-1].startswith("P@") and df["chance/P"].notna().any():
        chance = float(df["chance/P"].mean())
        ax.axvline(chance, ls="--", lw=0.8, c="grey")
        ax.annotate("chance", (chance, 1), xycoords=("data", "axes fraction"), xytext=(2, 2),
                    textcoords="offset points", fontsize=8, color="grey", va="bottom")
    ax.set(xlabel=quality.replace("/", " "), xlim=(0, 1))
    ax.tick_params(axis="y", labelsize=8)
    return fig


def sweep_comparison(summary: pd.DataFrame, out_dir, quality: str = "segment/P@10") -> list[Path]:
    """Write :func:`quality_vs_latency_figure` and :func:`quality_by_cell_figure`; return the PNG paths."""
    return [save(quality_vs_latency_figure(summary, quality), out_dir, "quality_vs_latency"),
            save(quality_by_cell_figure(summary, quality), out_dir, "quality_by_cell")]


# -- recommendations --------------------------------------------------------------------------------
def recommend_tradeoff_figure(table: pd.DataFrame):
    """P@10 against discovery and against intra-list diversity (ILD), one marker per re-ranking setting
    (``table``: columns setting, P@10, discovery, ILD), named in the legend: what relevance buys."""
    fig = figure(9.0, 3.6)
    axes = fig.subplots(1, 2, sharey=True)
    handles = []
    for i, (_, r) in enumerate(table.iterrows()):
        style = dict(marker=MARKERS[i % len(MARKERS)], color=PALETTE[i % len(PALETTE)], ls="none", ms=6)
        handles.append(axes[0].plot(r["discovery"], r["P@10"], label=str(r["setting"]), **style)[0])
        axes[1].plot(r["ILD"], r["P@10"], **style)
    axes[0].set(xlabel="discovery (share by new artists)", ylabel="P@10")
    axes[1].set(xlabel="intra-list diversity (ILD: mean 1 − cos, 0–2)")
    for ax in axes:
        ax.grid(alpha=0.3)
    _legend_outside(fig, handles, title="setting")
    return fig


def recommend_tradeoff(table: pd.DataFrame, out_dir, name: str = "recommend_tradeoff") -> Path:
    """Write :func:`recommend_tradeoff_figure`; return the PNG path."""
    return save(recommend_tradeoff_figure(table), out_dir, name)


# -- benchmarks -------------------------------------------------------------------------------------
def index_bench_figure(record: dict):
    """Recall@10 against p99 single-query latency of a ``benchmarks/index.py`` record, one panel per
    dimension: one colour and marker per index (named in the legend with its bytes per segment), marker
    area ∝ bytes per segment (a size key below the legend), the search settings tried while tuning as dots, and
    for refined indexes the unrefined codes, warm and cold page cache as their own points. The latency
    axis is logarithmic only when the points span more than 20×."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter
    dims = sorted({r["dim"] for r in record["results"]})
    fig = figure(4.6 * len(dims) + 3.2, 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(dims), sharey=True))
    handles, sizes = [], [r["bytes_per_segment"] for r in record["results"]]
    area = lambda b: 20 + 180 * (b / max(sizes)) ** 0.5  # noqa: E731 - one formula, used for points and key
    for ax, dim in zip(axes, dims):
        xs = []
        for i, r in enumerate(r for r in record["results"] if r["dim"] == dim):
            style = dict(color=PALETTE[i % len(PALETTE)], marker=MARKERS[i % len(MARKERS)])
            ax.scatter(r["latency_p99_ms"], r["recall@10"], s=area(r["bytes_per_segment"]), edgecolor="k",
                       linewidth=0.4, zorder=3, **style)
            xs.append(r["latency_p99_ms"])
            curve = sorted((c for c in r.get("curve") or [] if "p99_ms" in c), key=lambda c: c["p99_ms"])
            if len(curve) > 1:
                ax.plot([c["p99_ms"] for c in curve], [c["recall@10"] for c in curve], ls="none", alpha=0.6,
                        marker=".", ms=5, color=style["color"])
                xs += [c["p99_ms"] for c in curve]
            for extra, fill in (("unrefined", "none"), ("warm", "full"), ("cold", "none")):
                e = r.get(extra)
                if isinstance(e, dict) and "latency_p99_ms" in e:
                    ax.plot(e["latency_p99_ms"], e["recall@10"], ls="none", ms=7, fillstyle=fill, marker="*"
                            if extra != "unrefined" else "X", color=style["color"])
                    ax.annotate(extra, (e["latency_p99_ms"], e["recall@10"]), xytext=(4, -10),
                                textcoords="offset points", fontsize=8)
                    xs.append(e["latency_p99_ms"])
            if len(dims) == 1 or ax is axes[0]:
                handles.append(Line2D([], [], ls="none", markersize=7, label=f"{r['factory']} "
                                      f"({r['bytes_per_segment']:.0f} B/seg)", **style))
        if max(xs) > 20 * min(xs):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # 2×10⁰, 3×10⁰ … overlap at this size
        ax.set(xlabel="p99 latency of one query (ms)", title=f"{dim}-D", ylim=(min(0.5, ax.get_ylim()[0]), 1.01))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("recall@10 (vs exact search)")
    key = [float(np.percentile(sizes, q)) for q in (0, 50, 100)]
    handles += [Line2D([], [], ls="none", marker=".", ms=5, color="grey", label="settings tried in tuning"),
                "marker area: bytes/segment"] + [
        Line2D([], [], ls="none", marker="o", color="grey", markersize=area(b) ** 0.5, label=f"{b:.0f} B")
        for b in dict.fromkeys(round(b) for b in key)]
    fig.suptitle(f"FAISS indexes over {record['n']:,} vectors: recall@10 against p99 latency", fontsize=10)
    _legend_outside(fig, handles, labelspacing=1.0, loc="outside right center")
    return fig


# -- analysis ---------------------------------------------------------------------------------------
def k_sweep_figure(sweep: pd.DataFrame):
    """Silhouette (and purity / NMI when present) against KMeans k; the best silhouette is marked."""
    from matplotlib.ticker import MaxNLocator
    fig = figure(5.8, 3.4)
    ax = fig.subplots()
    handles = [ax.plot(sweep["k"], sweep[col], marker=marker, ms=3, label=col)[0]
               for col, marker in (("silhouette", "o"), ("purity", "s"), ("nmi", "^")) if col in sweep]
    best = sweep.loc[sweep["silhouette"].idxmax()]
    ax.axvline(best["k"], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="k (KMeans)", ylabel="score")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # k is a count: no 2.5 clusters
    ax.set_title(f"best silhouette {best['silhouette']:.3f} at k={int(best['k'])}", fontsize=9)
    _legend_outside(fig, handles)
    return fig


def k_sweep(sweep: pd.DataFrame, out_dir, name: str = "k_sweep") -> Path:
    """Write :func:`k_sweep_figure`; return the PNG path."""
    return save(k_sweep_figure(sweep), out_dir, name)


def scatter_map_figure(xy: np.ndarray, colour=None, *, flagged=None, title: str = ""):
    """2-D map of items coloured by a label (or cluster) column; flagged items (outliers, hits)
    ringed. The :data:`MAX_CATEGORIES` - 1 most frequent values get a colour each, the rest are
    drawn light grey as one "other" entry, so the legend stays readable with many clusters."""
    from matplotlib.lines import Line2D
    xy = np.asarray(xy, dtype=float)
    fig = figure(6.4, 4.6)
    ax = fig.subplots()
    handles = []
    if colour is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.7, color=PALETTE[0], lw=0)
    else:
        values = pd.Series(colour).astype(str).to_numpy()
        counts = pd.Series(values).value_counts(sort=True)
        keep = counts.index[: MAX_CATEGORIES - 1] if len(counts) > MAX_CATEGORIES else counts.index
        other = ~np.isin(values, keep)
        if other.any():
            ax.scatter(xy[other, 0], xy[other, 1], s=5, color="0.8", lw=0)
        for i, value in enumerate(sorted(keep, key=_natural)):
            m = values == value
            ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.8, color=PALETTE[i % len(PALETTE)], lw=0)
            handles.append(Line2D([], [], ls="none", marker="o", ms=5, color=PALETTE[i % len(PALETTE)],
                                  label=_clip(value)))
        if other.any():
            handles.append(Line2D([], [], ls="none", marker="o", ms=5, color="0.8",
                                  label=f"other ({len(counts) - len(keep)} values)"))
    if flagged is not None and np.asarray(flagged, bool).any():
        f = np.asarray(flagged, bool)
        ax.scatter(xy[f, 0], xy[f, 1], s=30, facecolors="none", edgecolors="black", lw=0.6)
        handles.append(Line2D([], [], ls="none", marker="o", ms=6, mfc="none", mec="black", label="flagged"))
    ax.set(xticks=[], yticks=[])
    if title:
        ax.set_title(title, fontsize=9)
    if handles:
        _legend_outside(fig, handles, ncols=1 if len(handles) <= 12 else 2)
    return fig


def scatter_map(xy: np.ndarray, colour, out_dir, *, name: str = "map", flagged=None, title: str = "") -> Path:
    """Write :func:`scatter_map_figure`; return the PNG path."""
    return save(scatter_map_figure(xy, colour, flagged=flagged, title=title), out_dir, name)


def _natural(value: str):
    """Sort key putting ``"cluster 2"`` before ``"cluster 10"``.

    >>> sorted(["cluster 10", "cluster 2", "-1", "jazz"], key=_natural)
    ['-1', 'cluster 2', 'cluster 10', 'jazz']
    """
    return [(0, int(p), "") if re.fullmatch(r"-?\d+", p) else (1, 0, p) for p in re.split(r"(-?\d+)", value) if p]


def _clip(text: str, n: int = 22) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
