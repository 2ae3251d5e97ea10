"""Every figure the project writes, rendered on realistic inputs: no two texts overlap, nothing leaves the
figure, fonts stay readable, and drawing changes no global matplotlib state."""

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audiorag import plots

PACKAGE = Path(plots.__file__).resolve().parent


def sweep_summary(segmentations=((10.0, 2.0),)) -> pd.DataFrame:
    """What summarise() gives for the default sweep: 3 embedders × 2 indexes per segmentation."""
    rng = np.random.default_rng(0)
    rows = []
    for window, hop in segmentations:
        for emb, quality, cost in (("features45-6b0fdaa4", 0.51, 0.2), ("musicnn-mtt-0c1d2e3f", 0.77, 0.8),
                                   ("aisfx-9f8e7d6c", 0.69, 0.6)):
            for index, speed in (("Flat", 1.0), ("HNSW32", 0.2)):
                cell = f"{plots.short_embedder(emb)}-{index.lower()}-w{window:g}-h{hop:g}-genre-xartist"
                rows.append({"cell": cell, "embedder": emb, "index": index, "window": window, "hop": hop,
                             "protocol": "label=genre, exclude same artist",
                             "segment/P@10": quality - rng.random() / 50, "latency/p50_ms": cost * speed,
                             "chance/P": 0.125,
                             "memory/index_bytes_per_segment": 4.0 * 512 * (1 + speed)})
    return pd.DataFrame(rows)


def k_sweep_table() -> pd.DataFrame:
    ks = np.arange(2, 21)
    return pd.DataFrame({"k": ks, "silhouette": 0.3 - 0.01 * np.abs(ks - 8), "purity": 0.4 + 0.02 * ks,
                         "nmi": 0.3 + 0.01 * ks})


def figures():
    """(name, Figure) for every ``*_figure`` builder in audiorag.plots, on realistic inputs."""
    rng = np.random.default_rng(1)
    ks = [1, 5, 10]
    metrics = {**{f"segment/P@{k}": 0.6 - 0.01 * k for k in ks}, **{f"track/P@{k}": 0.7 - 0.02 * k for k in ks},
               "chance/P": 0.125, "chance/track_P": 0.118}
    genres = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "reggae"]
    many = [f"cluster {i}" for i in rng.integers(0, 40, 3000)]
    xy = rng.normal(size=(3000, 2))
    yield "precision_curve", plots.precision_curve_figure(metrics, ks)
    yield "latency_histogram", plots.latency_histogram_figure(rng.lognormal(-7, 0.4, 500))
    yield "per_class_precision", plots.per_class_precision_figure(dict(zip(genres, rng.random(8))), k=10)
    yield "per_class_precision (30 long names)", plots.per_class_precision_figure(
        {f"Electronic / Experimental sub-genre {i}": v for i, v in enumerate(rng.random(30))})
    yield "quality_vs_latency", plots.quality_vs_latency_figure(sweep_summary())
    yield "quality_vs_latency (2 segmentations)", plots.quality_vs_latency_figure(
        sweep_summary(((10.0, 2.0), (5.0, 1.0))))
    slow = sweep_summary()
    slow.loc[slow["embedder"].str.startswith("features45"), "latency/p50_ms"] *= 80   # a log latency axis
    yield "quality_vs_latency (log latency)", plots.quality_vs_latency_figure(slow)
    yield "quality_by_cell", plots.quality_by_cell_figure(sweep_summary())
    yield "quality_by_cell (2 segmentations)", plots.quality_by_cell_figure(sweep_summary(((10.0, 2.0), (5.0, 1.0))))
    yield "k_sweep", plots.k_sweep_figure(k_sweep_table())
    bench = Path(__file__).resolve().parents[1] / "experiments/results/index-bench"
    for name, record in (("3 dimensions", "index-n100000.json"), ("refine", "index-refine-n1000000.json")):
        yield f"index_bench ({name})", plots.index_bench_figure(json.loads((bench / record).read_text()))
    yield "recommend_tradeoff", plots.recommend_tradeoff_figure(pd.DataFrame(  # the default corpus' measured grid
        [("search", 0.478, 0.855, 0.573), ("caps only", 0.398, 0.860, 0.817), ("λ 1.0", 0.380, 0.850, 0.834),
         ("λ 0.7", 0.380, 0.855, 0.889), ("λ 0.4", 0.310, 0.868, 0.980), ("λ 0.1", 0.253, 0.893, 1.004),
         ("λ 0.7, discovery ≥ 0.34", 0.380, 0.855, 0.889), ("λ 0.7, discovery = 1.0", 0.310, 1.000, 0.901)],
        columns=["setting", "P@10", "discovery", "ILD"]))
    yield "scatter_map (8 genres, outliers)", plots.scatter_map_figure(
        xy, [genres[i % 8] for i in range(3000)], flagged=rng.random(3000) > 0.97, title="TSNE map")
    yield "scatter_map (40 clusters)", plots.scatter_map_figure(xy, many, title="PCA map")
    yield "scatter_map (no colour)", plots.scatter_map_figure(xy, None, flagged=rng.random(3000) > 0.99, title="UMAP")


def drawn_texts(fig):
    """Every text the renderer draws (tick labels of ticks outside the view limits are not drawn)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    hidden = set()
    for ax in fig.axes:
        for axis, (lo, hi) in ((ax.xaxis, sorted(ax.get_xlim())), (ax.yaxis, sorted(ax.get_ylim()))):
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not lo - 1e-9 * abs(hi - lo) <= tick.get_loc() <= hi + 1e-9 * abs(hi - lo):
                    hidden.update({id(tick.label1), id(tick.label2)})
    texts = []
    for t in fig.findobj(Text):
        if id(t) in hidden or not t.get_visible() or not t.get_text().strip():
            continue
        texts.append((t, t.get_window_extent(renderer)))
    return texts, fig.bbox


@pytest.mark.parametrize("name,fig", list(figures()), ids=lambda v: v if isinstance(v, str) else "")
def test_no_text_overlaps_and_nothing_outside(name, fig):
    texts, frame = drawn_texts(fig)
    assert len(texts) >= 2, name
    for text, box in texts:
        assert box.x0 >= frame.x0 - 1 and box.y0 >= frame.y0 - 1 and box.x1 <= frame.x1 + 1 and \
            box.y1 <= frame.y1 + 1, f"{name}: {text.get_text()!r} falls outside the figure ({box} vs {frame})"
        assert text.get_fontsize() >= 7, f"{name}: {text.get_text()!r} is {text.get_fontsize()} pt"
    for i, (a, box_a) in enumerate(texts):
        for b, box_b in texts[i + 1:]:
            overlap_x = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
            overlap_y = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            assert overlap_x <= 0.5 or overlap_y <= 0.5, \
                f"{name}: {a.get_text()!r} overlaps {b.get_text()!r} ({overlap_x:.1f} x {overlap_y:.1f} px)"


def test_the_overlap_check_catches_overlapping_labels():
    """The check above is not vacuous: the old sweep plot's per-point annotations fail it."""
    fig = plots.figure(6, 4)
    ax = fig.subplots()
    summary = sweep_summary()
    for _, row in summary.iterrows():
        ax.annotate(row["cell"], (row["latency/p50_ms"], row["segment/P@10"]), fontsize=7)
    texts, _ = drawn_texts(fig)
    boxes = [b for t, b in texts if t.get_text() in set(summary["cell"])]
    assert any(min(a.x1, b.x1) > max(a.x0, b.x0) and min(a.y1, b.y1) > max(a.y0, b.y0)
               for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_every_written_figure_is_covered():
    """Figures are written only by audiorag.plots, and each writer has a ``*_figure`` builder tested above."""
    writers = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
                     if re.search(r"\.savefig\(|pyplot", p.read_text()))
    assert writers == ["plots.py"]
    builders = {n for n, f in inspect.getmembers(plots, inspect.isfunction) if n.endswith("_figure")}
    tested = {name.split(" ")[0] + "_figure" for name, _ in figures()}
    assert builders == tested
    for name in ("precision_curve", "latency_histogram", "per_class_precision", "k_sweep", "scatter_map"):
        assert f"{name}_figure" in builders and callable(getattr(plots, name))


def test_sweep_comparison_writes_png_and_svg(tmp_path):
    paths = plots.sweep_comparison(sweep_summary(), tmp_path)
    assert [p.name for p in paths] == ["quality_vs_latency.png", "quality_by_cell.png"]
    for p in paths:
        assert p.stat().st_size > 10_000 and p.with_suffix(".svg").exists()
    legend = plots.quality_vs_latency_figure(sweep_summary()).legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[:4] == ["embedder", "features45", "musicnn-mtt", "aisfx"] and "HNSW32" in labels


def test_wide_latency_range_gets_a_log_axis_with_plain_numbers():
    summary = sweep_summary()
    summary.loc[summary["embedder"].str.startswith("features45"), "latency/p50_ms"] *= 80
    ax = plots.quality_vs_latency_figure(summary).axes[0]
    texts, _ = drawn_texts(ax.figure)
    assert ax.get_xscale() == "log"
    assert not any("10^" in t.get_text() or "$" in t.get_text() for t, _ in texts)


def test_pareto_front():
    x, y = np.array([0.2, 1.0, 0.1, 0.8]), np.array([0.5, 0.7, 0.5, 0.6])
    assert plots._pareto(x, y).tolist() == [2, 3, 1]


def test_importing_and_drawing_leave_matplotlib_state_alone(tmp_path):
    """The user's backend (here: svg, as a Jupyter session would have its inline one) stays; no pyplot."""
    code = ("import sys, pandas as pd; from audiorag import plots; "
            "plots.k_sweep(pd.DataFrame({'k': [2, 3], 'silhouette': [0.1, 0.2]}), sys.argv[1]); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'; "
            "import matplotlib; assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, env={**os.environ, "MPLBACKEND": "svg"})
    assert (tmp_path / "k_sweep.png").exists()


def test_k_sweep_ticks_are_whole_numbers_and_precision_has_a_chance_line_per_level():
    fig = plots.k_sweep_figure(k_sweep_table().iloc[:4])  # k 2..5: matplotlib alone would tick 2.5
    fig.canvas.draw()
    ticks = fig.axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks)
    metrics = {**{f"{lv}/P@{k}": 0.5 for lv in ("segment", "track") for k in (1, 10)},
               "chance/P": 0.125, "chance/track_P": 0.1}
    labels = [t.get_text() for t in plots.precision_curve_figure(metrics, [1, 10], title="x").legends[0].get_texts()]
    assert "chance, segment (0.125)" in labels and "chance, track (0.100)" in labels


def test_index_bench_has_a_size_key_and_a_refined_index_is_more_than_one_point_on_a_linear_or_wide_axis():
    bench = Path(__file__).resolve().parents[1] / "experiments/results/index-bench"
    record = json.loads((bench / "index-refine-n1000000.json").read_text())
    fig = plots.index_bench_figure(record)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "marker area: bytes/segment" in labels and any(t.endswith(" B") for t in labels)
    ax = fig.axes[0]
    assert len(ax.collections) + sum(len(line.get_xdata()) for line in ax.lines) > 3
    lo, hi = ax.get_xlim()
    assert ax.get_xscale() == "linear" or hi / lo > 20


def test_evaluation_figures_say_which_embedder_and_data():
    record = {"embedder": {"key": "musicnn-mtt-0c1d2e3f"}, "dataset": {"id": "synthetic-v3-n96-s0"},
              "protocol": {"label": "genre", "exclude_same": ["artist"]}}
    fig = plots.per_class_precision_figure({"a": 0.5, "b": 0.2}, title=plots.record_title(record))
    assert fig.get_suptitle() == "musicnn-mtt on synthetic-v3-n96-s0 · relevant: same genre, other artist"
