"""Figures built from evaluation results (matplotlib, headless-safe). Each function saves PNG + SVG
next to the metrics and returns the PNG path.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _save(fig, out_dir, name: str) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=120)
    fig.savefig(out / f"{name}.svg")
    plt.close(fig)
    return out / f"{name}.png"


def precision_curve(metrics: dict, ks: list[int], out_dir, name: str = "precision_at_k") -> Path:
    """P@k for segment- and track-level retrieval, with the chance level."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for level in ("segment", "track"):
        ax.plot(ks, [metrics[f"{level}/P@{k}"] for k in ks], marker="o", label=f"{level} level")
    ax.axhline(metrics["chance/P"], ls="--", c="grey", label="chance")
    ax.set(xlabel="k", ylabel="precision@k", ylim=(0, 1), xticks=ks)
    ax.legend()
    return _save(fig, out_dir, name)


def latency_histogram(seconds: np.ndarray, out_dir, name: str = "latency") -> Path:
    ms = np.asarray(seconds) * 1000
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(ms, bins=30)
    for q, style in ((50, "-"), (95, "--"), (99, ":")):
        ax.axvline(np.percentile(ms, q), c="k", ls=style, label=f"p{q} {np.percentile(ms, q):.2f} ms")
    ax.set(xlabel="Library.search latency (ms)", ylabel="queries")
    ax.legend()
    return _save(fig, out_dir, name)


def per_class_precision(per_class: dict, out_dir, name: str = "per_class_precision", k: int = 10) -> Path:
    s = pd.Series(per_class).sort_values()
    fig, ax = plt.subplots(figsize=(5, 0.3 * len(s) + 1.2))
    ax.barh(s.index.astype(str), s.values)
    ax.set(xlabel=f"segment precision@{k}", xlim=(0, 1))
    return _save(fig, out_dir, name)


def sweep_comparison(summary: pd.DataFrame, out_dir, quality: str = "segment/P@10") -> list[Path]:
    """Quality vs latency (marker size: index bytes per segment), and quality per cell."""
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = 20 + 200 * summary["memory/index_bytes_per_segment"] / max(summary["memory/index_bytes_per_segment"].max(), 1)
    ax.scatter(summary["latency/p50_ms"], summary[quality], s=sizes)
    for _, row in summary.iterrows():
        ax.annotate(row["cell"], (row["latency/p50_ms"], row[quality]), fontsize=7, xytext=(4, 2),
                    textcoords="offset points")
    ax.margins(x=0.35)
    ax.set(xlabel="search latency p50 (ms)", ylabel=quality, ylim=(0, 1))
    ax.set_title("quality vs latency (marker area: index bytes per segment)", fontsize=9)
    first = _save(fig, out_dir, "quality_vs_latency")
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(summary) + 1.5))
    ax.barh(summary["cell"], summary[quality])
    ax.set(xlabel=quality, xlim=(0, 1))
    return [first, _save(fig, out_dir, "quality_by_cell")]


def k_sweep(sweep: pd.DataFrame, out_dir, name: str = "k_sweep") -> Path:
    """Silhouette (and purity / NMI when present) against KMeans k."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for col in ("silhouette", "purity", "nmi"):
        if col in sweep:
            ax.plot(sweep["k"], sweep[col], marker="o", ms=3, label=col)
    best = sweep.loc[sweep["silhouette"].idxmax()]
    ax.axvline(best["k"], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="k (KMeans)", ylabel="score", title=f"best silhouette {best['silhouette']:.3f} at k={int(best['k'])}")
    ax.legend(frameon=False)
    return _save(fig, out_dir, name)


def scatter_map(xy: np.ndarray, colour, out_dir, *, name: str = "map", flagged=None, title: str = "") -> Path:
    """2-D map of items coloured by a label (or cluster) column; flagged items (outliers) ringed."""
    fig, ax = plt.subplots(figsize=(6, 5))
    if colour is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.7)
    else:
        colour = pd.Series(colour).astype(str).to_numpy()
        cmap = plt.get_cmap("tab20")
        for i, value in enumerate(sorted(set(colour))):
            m = colour == value
            ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.7, color=cmap(i % 20), label=value)
        ax.legend(fontsize=6, markerscale=2, frameon=False, loc="best", ncol=2)
    if flagged is not None and np.asarray(flagged).any():
        f = np.asarray(flagged, bool)
        ax.scatter(xy[f, 0], xy[f, 1], s=30, facecolors="none", edgecolors="black", lw=0.6, label="outlier")
    ax.set(title=title, xticks=[], yticks=[])
    return _save(fig, out_dir, name)
