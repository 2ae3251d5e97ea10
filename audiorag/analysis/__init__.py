"""Analysis of a library's vectors: clusters, anomalies, 2D/3D maps, nearest-neighbour tags.

Each module works on plain arrays first (testable with constructed data) and offers a
library-level function on top. The cluster metrics (silhouette, purity, NMI) are pure functions
in :mod:`audiorag.analysis.clusters` and the run records in :mod:`audiorag.analysis.records`;
evaluation builds on both (never the reverse). Items with no value in the label column are
clustered and mapped but not scored against the labels; their count is in the metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import write_with
from .clusters import label_array


@dataclass
class Analysis:
    """What :func:`analyse` found; ``record`` is the validated ``metrics.json``."""

    record: object
    clusters: dict = field(default_factory=dict)        # spec -> cluster id per item
    k_sweep: pd.DataFrame | None = None
    compositions: dict = field(default_factory=dict)    # spec -> DataFrame (clusters × labels)
    outliers: pd.DataFrame | None = None
    maps: dict = field(default_factory=dict)            # method -> float32[n, 2]
    items: pd.DataFrame | None = None                   # one row per analysed item (segment or track)
    figures: list = field(default_factory=list)


def analyse(lib, *, embedder=None, level: str = "segment", label: str | None = "genre",
            clusters=("kmeans:8", "hdbscan"), ks=range(2, 21), contamination: float = 0.1,
            inject_rounds: int = 5, maps=("pca", "tsne"), tag_k: int = 10, abstain: float = 0.5,
            sample_size: int = 5000, seed: int = 0, out_dir=None, write_column: str | None = None,
            progress: bool = False) -> Analysis:
    """Clusters (+ k-sweep, composition), anomalies (+ injected-outlier check), maps and
    leave-one-out tagging of one embedding; writes metrics.json, CSVs and figures to ``out_dir``.

    ``level="track"`` analyses one mean vector per track instead of segments;
    ``write_column`` stores the first clustering's track-level ids as that track column;
    ``progress``: a bar (tqdm) over the steps, naming the running one.
    """
    from tqdm.auto import tqdm

    from .. import plots
    from ..errors import ParameterError
    from ..library.shardedits import set_track_column  # a sharded library: each shard its tracks' values
    from . import anomalies, tagging
    from . import clusters as C
    from . import maps as P
    from .records import Record, provenance
    if level not in ("segment", "track"):
        raise ParameterError(f"level must be 'segment' or 'track', got {level!r}")
    t0 = time.perf_counter()
    emb = lib.embedding(embedder)
    items, x = items_table(lib, emb, level)
    if label and label not in items.columns:
        raise ParameterError(f"no track column {label!r}; columns: {list(lib.tracks.columns)}")
    truth = label_array(items[label]) if label else None
    out = Analysis(record=None, items=items)
    metrics: dict[str, float] = {"items": float(len(x))}
    if truth is not None:
        metrics["n_unlabelled"] = float(sum(v is None for v in truth))
    steps = tqdm(total=len(clusters) + bool(ks) + bool(contamination) + bool(contamination and inject_rounds)
                 + len(maps) + bool(truth is not None and tag_k), desc="analyse", unit="step",
                 disable=not progress, leave=False)

    named: list[str] = []

    def step(name: str) -> None:
        if named:  # the step named before this one is done
            steps.update()
        named.append(name)
        steps.set_postfix_str(name)
    for spec in clusters:
        step(f"clusters {spec}")
        method, params = C.parse(spec)
        ids = C.fit(method, x, seed=seed, **params)
        out.clusters[spec] = ids
        s = C.score(x, ids, truth, sample_size=sample_size, seed=seed)
        metrics.update({f"cluster/{spec}/{k}": v for k, v in s.items()
                        if isinstance(v, (int, float)) and v is not None})
        if truth is not None:
            out.compositions[spec] = C.composition(ids, truth)
        items[f"cluster:{spec}"] = ids
    if ks:
        step(f"k-sweep {min(ks)}–{max(ks)}")
        out.k_sweep = C.k_sweep(x, ks, truth, seed=seed, sample_size=sample_size)
        best = out.k_sweep.loc[out.k_sweep["silhouette"].idxmax()]
        metrics.update({"cluster/best_k": float(best["k"]), "cluster/best_k_silhouette": float(best["silhouette"])})
    if contamination:
        step("anomalies")
        scores = {"iforest": anomalies.isolation_forest(x, seed=seed),
                  "knn": anomalies.knn_distance(x, k=min(10, len(x) - 1))}
        for name, sc in scores.items():
            items[f"anomaly:{name}"] = sc
        items["outlier"] = anomalies.flagged(scores["iforest"], contamination)
        out.outliers = items.sort_values("anomaly:iforest", ascending=False).head(max(10, int(items["outlier"].sum())))
        if inject_rounds:
            step(f"injected outliers ×{inject_rounds}")
            check = anomalies.injected_check(lib, embedder=emb.key, rounds=inject_rounds, seed=seed)
            metrics.update({f"anomaly/{k}": float(v) for k, v in check.items()})
    for method in maps:
        step(f"map {method}")
        out.maps[method] = P.project(x, method, seed=seed)
    if truth is not None and tag_k:
        step("kNN tagging")
        metrics.update(tagging.leave_one_out(lib, embedder=emb.key, label=label, k=tag_k, abstain=abstain))
    steps.update(bool(named))
    steps.close()
    if write_column and clusters and level == "track":
        set_track_column(lib, write_column, dict(zip(items["track_id"], out.clusters[clusters[0]].tolist())))
    out.record = Record(
        kind="analysis", **provenance(lib, emb, [label] if label else [], n_tracks=len(lib.tracks), level=level),
        protocol={"label": label or "genre", "seed": seed}, seed=seed,
        timings={"analyse_seconds": round(time.perf_counter() - t0, 3)},
        metrics={k: float(v) for k, v in metrics.items() if v == v},
        extra={"clusters": list(clusters), "contamination": contamination, "maps": list(maps),
               "silhouette_sample_size": sample_size})
    if out_dir is not None:
        _write(out, out_dir, label, plots)
    return out


def items_table(lib, emb, level: str) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per analysed item (track metadata joined) and the items' vectors, row for row, in the corpus's
    order (:mod:`audiorag.library.order`): a sharded library, or any library of the same files, analyses
    the same rows in the same order (clusterings, samples and maps depend on it)."""
    from ..library.order import content_order, content_rows
    from .clusters import track_vectors
    meta = lib.tracks.drop(columns=[c for c in ("sample_rate", "channels", "content_hash") if c in lib.tracks])
    if level == "track":
        ids, x = track_vectors(lib, emb.key)
        tracks = lib.tracks.set_index("track_id").loc[ids].reset_index()
        order = content_order(tracks)
        df, x = pd.DataFrame({"track_id": ids[order]}), x[order]
    else:
        rows = content_rows(lib, emb)
        df = lib.segments.iloc[rows][["segment_id", "track_id", "start", "end"]]
        x = emb.vectors()[rows]
    return df.merge(meta, on="track_id", how="left", sort=False), np.ascontiguousarray(x, dtype=np.float32)


def _write(out: Analysis, out_dir, label, plots) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out.record.write(out_dir)
    write_with(out_dir / "items.csv", lambda f: out.items.to_csv(f, index=False))
    if out.k_sweep is not None:
        write_with(out_dir / "k_sweep.csv", lambda f: out.k_sweep.to_csv(f, index=False))
        out.figures.append(plots.k_sweep(out.k_sweep, out_dir))
    for spec, table in out.compositions.items():
        write_with(out_dir / f"composition-{spec.replace(':', '')}.csv", table.to_csv)
    if out.outliers is not None:
        write_with(out_dir / "outliers.csv", lambda f: out.outliers.to_csv(f, index=False))
    colour = pd.Series(label_array(out.items[label])).fillna("(unlabelled)") if label else None
    for method, xy in out.maps.items():
        out.figures.append(plots.scatter_map(xy, colour, out_dir, name=f"map-{method}",
                                             flagged=out.items.get("outlier"), title=f"{method.upper()} map"))
