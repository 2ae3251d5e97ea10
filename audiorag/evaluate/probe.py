"""Probes: how much of a label an embedding holds, measured as MIR benchmarks do (HEAR, MARBLE).

A probe is a small supervised classifier — standardise, then a logistic regression or a one-hidden-
layer MLP, its regularisation chosen by an inner cross-validation on the training items only —
trained and tested on **group-disjoint folds**: the items of one group (a track, a kit, an artist,
an album) are never in the training and the test set of one fold. Predictions are out of fold;
the record holds accuracy, macro-F1, balanced accuracy, per-class recall, the confusion matrix,
and the same figures for a majority-class baseline fitted on each training fold.

:func:`probe_arrays` works on plain arrays; :func:`probe` runs it on a library's vectors (segment
or track level) and writes a ``metrics.json`` record of kind ``"probe"`` and a confusion-matrix figure.

>>> rng = np.random.default_rng(0)
>>> y = np.repeat(["a", "b"], 40)
>>> x = rng.standard_normal((80, 4)) + 3 * (y == "a")[:, None]
>>> out = probe_arrays(x, y, np.arange(80) // 4, folds=4)
>>> round(out["metrics"]["probe/accuracy"], 2)
1.0
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, field_validator

from ..analysis.clusters import label_array
from ..analysis.records import Record, provenance
from ..errors import ParameterError
from ..io import write_with
from ..library.order import track_keys
from ..search.filters import track_mask
from .protocol import Protocol, segment_labels

MODELS = ("logistic", "mlp")
#: the regularisation grid searched by the inner cross-validation of each model
GRIDS = {"logistic": {"clf__C": [0.01, 0.1, 1.0, 10.0]}, "mlp": {"clf__alpha": [1e-4, 1e-2, 1.0]}}


class ProbeProtocol(BaseModel):
    """What a probe predicts, from what, and how its folds are cut."""

    label: str = "genre"
    group: str | None = None  # items sharing this track column stay in one fold; None: the track
    model: Literal["logistic", "mlp"] = "logistic"
    folds: int = 5  # 0: leave one group out
    level: Literal["segment", "track"] = "segment"
    subset: dict | None = None
    seed: int = 0

    @field_validator("folds")
    @classmethod
    def _folds(cls, v):
        if v == 1 or v < 0:
            raise ValueError(f"folds must be 0 (leave one group out) or >= 2, got {v}")
        return v

    def describe(self) -> str:
        """One line for tables and logs.

        >>> ProbeProtocol(label="genre", group="artist").describe()
        'genre from segment vectors; logistic; 5 folds by artist'
        """
        folds = "leave one group out" if self.folds == 0 else f"{self.folds} folds"
        return f"{self.label} from {self.level} vectors; {self.model}; {folds} by {self.group or 'track'}"


class ProbeRecord(Record):
    """A probe run's ``metrics.json``: ``kind="probe"``, its :class:`ProbeProtocol`."""

    kind: str = "probe"
    protocol: ProbeProtocol


@dataclass
class Probe:
    """A probe's record, its out-of-fold predictions (one row per item) and confusion matrix."""

    record: ProbeRecord
    predictions: pd.DataFrame
    confusion: pd.DataFrame
    figures: list = field(default_factory=list)


def group_folds(groups, folds: int = 5, *, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, test)`` index arrays whose groups never meet: ``folds`` group k-fold splits (shuffled
    with ``seed``), or leave-one-group-out when ``folds`` is 0 or at least the number of groups.

    >>> [test.tolist() for _, test in group_folds(["a", "a", "b", "c"], 0)]
    [[0, 1], [2], [3]]
    """
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut
    groups = np.asarray(groups)
    n_groups = len(pd.unique(groups))
    if n_groups < 2:
        raise ParameterError(f"group-disjoint folds need at least 2 groups, got {n_groups}")
    splitter = LeaveOneGroupOut() if folds == 0 or folds >= n_groups else \
        GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in splitter.split(np.zeros(len(groups)), groups=groups)]


def _classifier(model: str, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    clf = LogisticRegression(max_iter=2000) if model == "logistic" else \
        MLPClassifier(hidden_layer_sizes=(128,), max_iter=300, random_state=seed)
    return Pipeline([("scale", StandardScaler()), ("clf", clf)])


def fit_probe(x, y, groups, *, model: str = "logistic", seed: int = 0):
    """The probe fitted on ``x, y``, its regularisation chosen by a 3-fold group-disjoint inner CV
    (macro-F1) on these items only; returns ``(fitted pipeline, chosen parameters)``."""
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, GroupKFold
    if model not in MODELS:
        raise ParameterError(f"probe model must be one of {', '.join(MODELS)}, got {model!r}")
    inner = min(3, len(pd.unique(np.asarray(groups))))
    if inner < 2 or len(np.unique(y)) < 2:
        return clone(_classifier(model, seed)).fit(x, y), {}
    search = GridSearchCV(_classifier(model, seed), GRIDS[model], scoring="f1_macro",
                          cv=GroupKFold(n_splits=inner, shuffle=True, random_state=seed))
    search.fit(x, y, groups=groups)
    return search.best_estimator_, search.best_params_


def probe_arrays(x, y, groups, *, model: str = "logistic", folds: int = 5, seed: int = 0) -> dict:
    """Out-of-fold predictions and scores of a probe of labels ``y`` from vectors ``x`` on folds that
    keep ``groups`` apart (:func:`group_folds`).

    Returns ``pred`` (per item), ``fold`` (the fold that tested it), ``classes``, ``confusion``
    (rows: truth, columns: prediction), ``metrics`` (``probe/accuracy``, ``probe/macro_f1``,
    ``probe/balanced_accuracy`` and the ``chance/…`` of a per-fold majority-class baseline),
    ``per_class_recall``, ``params`` (chosen per fold) and ``fit_seconds`` (per fold).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, recall_score
    from threadpoolctl import threadpool_limits
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).astype(str)
    groups = np.asarray(groups)
    if not (len(x) == len(y) == len(groups)) or x.ndim != 2:
        raise ParameterError(f"probe: x [n, dim], y [n] and groups [n] must agree, got {x.shape}, {len(y)}, "
                             f"{len(groups)}")
    classes = np.unique(y)
    if len(classes) < 2:
        raise ParameterError(f"probe: need at least 2 labels, got {classes.tolist()}")
    pred = np.empty(len(y), dtype=object)
    base = np.empty(len(y), dtype=object)
    fold = np.full(len(y), -1)
    params, seconds = [], []
    # one BLAS thread: the fits are small, and more threads only contend (15× slower on a busy machine)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*(least populated class|ill-defined|members).*")
        for f, (tr, te) in enumerate(group_folds(groups, folds, seed=seed)):
            t0 = time.perf_counter()
            fitted, chosen = fit_probe(x[tr], y[tr], groups[tr], model=model, seed=seed)
            pred[te] = fitted.predict(x[te])
            seconds.append(round(time.perf_counter() - t0, 4))
            params.append({k.removeprefix("clf__"): v for k, v in chosen.items()})
            base[te] = pd.Series(y[tr]).value_counts().index[0]
            fold[te] = f
    pred, base = pred.astype(str), base.astype(str)

    def scores(p, prefix):
        return {f"{prefix}/accuracy": float((p == y).mean()),
                f"{prefix}/macro_f1": float(f1_score(y, p, labels=classes, average="macro", zero_division=0)),
                f"{prefix}/balanced_accuracy": float(balanced_accuracy_score(y, p))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = {**scores(pred, "probe"), **scores(base, "chance")}
    metrics.update({"probe/n_items": float(len(y)), "probe/n_classes": float(len(classes)),
                    "probe/n_groups": float(len(pd.unique(groups))), "probe/n_folds": float(fold.max() + 1)})
    recall = recall_score(y, pred, labels=classes, average=None, zero_division=0)
    return {"pred": pred, "fold": fold, "classes": classes.tolist(), "metrics": metrics,
            "confusion": confusion_matrix(y, pred, labels=classes),
            "per_class_recall": {c: round(float(r), 6) for c, r in zip(classes, recall)},
            "params": params, "fit_seconds": seconds}


def probe(lib, *, embedder=None, label: str = "genre", group: str | None = None, model: str = "logistic",
          folds: int = 5, level: str = "segment", subset: dict | None = None, seed: int = 0,
          out_dir=None) -> Probe:
    """Probe ``label`` from ``lib``'s ``embedder`` vectors with group-disjoint folds (by ``group``, default
    the track; tracks without a group value are groups of their own). Unlabelled items are left out
    and counted (``probe/n_unlabelled``). ``out_dir`` receives ``metrics.json``, ``predictions.csv``
    and ``confusion.png/.svg``.

    >>> # probe(lib, embedder="aisfx", label="genre", group="artist").record.metrics["probe/macro_f1"]
    """
    from ..analysis import items_table
    protocol = ProbeProtocol(label=label, group=group, model=model, folds=folds, level=level, subset=subset,
                             seed=seed)
    t0 = time.perf_counter()
    emb = lib.embedding(embedder)
    tracks = lib.tracks
    for col in filter(None, (label, group)):
        if col not in tracks.columns:
            raise ParameterError(f"probe: {col!r} is not a track column; have {list(tracks.columns)}")
    items, x = items_table(lib, emb, level)
    if level == "segment":
        labels = segment_labels(tracks, lib.segments, Protocol(label=label))[items["segment_id"].to_numpy()]
    else:
        labels = label_array(items[label])
    keep = np.array([v is not None for v in labels], dtype=bool)
    n_unlabelled = int((~keep).sum())
    if subset:
        keep &= items["track_id"].isin(tracks["track_id"][track_mask(tracks, subset, what="probe subset")]).to_numpy()
    items, x, labels = items[keep].reset_index(drop=True), x[keep], labels[keep]
    groups = item_groups(items, group)
    # folds drawn over the tracks' names in the corpus (not their ids): the same folds in every library of the files
    named = item_groups(items.assign(track_id=items["track_id"].map(track_keys(tracks))), group)
    out = probe_arrays(x, labels, named, model=model, folds=folds, seed=seed)
    metrics = {**out["metrics"], "probe/n_unlabelled": float(n_unlabelled)}
    record = ProbeRecord(**provenance(lib, emb, [label, *([group] if group else [])], n_tracks=len(tracks)),
                         protocol=protocol, seed=seed, metrics=metrics,
                         timings={"probe_seconds": round(time.perf_counter() - t0, 3),
                                  "fit_seconds_per_fold": out["fit_seconds"]},
                         extra={"per_class_recall": out["per_class_recall"], "classes": out["classes"],
                                "confusion": out["confusion"].tolist(), "chosen_params": out["params"]})
    id_col = "segment_id" if level == "segment" else "track_id"
    predictions = pd.DataFrame({id_col: items[id_col], "group": groups, "fold": out["fold"], "label": labels,
                                "predicted": out["pred"]})
    confusion = pd.DataFrame(out["confusion"], index=pd.Index(out["classes"], name="true"), columns=out["classes"])
    result = Probe(record, predictions, confusion)
    if out_dir is not None:
        from .. import plots
        record.write(out_dir)
        write_with(f"{out_dir}/predictions.csv", lambda f: predictions.to_csv(f, index=False))
        result.figures.append(plots.save(confusion_figure(confusion, title=f"{emb.name}: {protocol.describe()}"),
                                         out_dir, "confusion"))
    return result


def item_groups(items: pd.DataFrame, group: str | None) -> np.ndarray:
    """Each item's group: the ``group`` column's value, or its track (also when the value is missing).

    >>> items = pd.DataFrame({"track_id": [0, 1, 2], "album": ["x", None, "x"]})
    >>> item_groups(items, "album").tolist(), item_groups(items, None).tolist()
    (['x', 'track:1', 'x'], ['track:0', 'track:1', 'track:2'])
    """
    track = np.array([f"track:{t}" for t in items["track_id"]], dtype=object)
    if group is None:
        return track
    values = label_array(items[group])
    return np.where(pd.isna(pd.Series(values, dtype=object)).to_numpy(), track, values)


def confusion_figure(confusion: pd.DataFrame, *, title: str = ""):
    """The confusion matrix as row-normalised shares (each row: a true class; the diagonal: its recall),
    counts written in the cells when there are at most 20 classes."""
    from .. import plots
    counts = confusion.to_numpy()
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(confusion)
    fig = plots.figure(min(2.5 + 0.45 * n, 12), min(2.2 + 0.4 * n, 11))
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), [plots._clip(str(c), 14) for c in confusion.columns], rotation=60, ha="right",
                  fontsize=8)
    ax.set_yticks(range(n), [plots._clip(str(c), 14) for c in confusion.index], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.6 else "black")
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    if title:
        ax.set_title(title, fontsize=9)
    return fig


__all__ = ["probe", "probe_arrays", "fit_probe", "group_folds", "ProbeProtocol", "ProbeRecord", "Probe",
           "confusion_figure", "MODELS"]
