"""Clusters of segment or track vectors: KMeans, DBSCAN, HDBSCAN, scored against labels.

>>> rng = np.random.default_rng(0)
>>> centres = np.eye(3, 8) * 10
>>> x = np.vstack([c + rng.normal(size=(20, 8)) * 0.1 for c in centres])
>>> truth = np.repeat(["a", "b", "c"], 20)
>>> pred = fit("kmeans", x, k=3)
>>> s = score(x, pred, truth)
>>> round(s["silhouette"], 2) > 0.9, s["purity"], s["nmi"]
(True, 1.0, 1.0)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ParameterError

METHODS = ("kmeans", "dbscan", "hdbscan")


def parse(spec: str) -> tuple[str, dict]:
    """``"kmeans:12"`` → ``("kmeans", {"k": 12})``; ``"dbscan:0.3"`` → eps; ``"hdbscan:10"`` → min_cluster_size.

    >>> parse("kmeans:12"), parse("hdbscan")
    (('kmeans', {'k': 12}), ('hdbscan', {}))
    """
    method, _, arg = spec.strip().partition(":")
    if method not in METHODS:
        raise ParameterError(f"unknown clustering {method!r}; use {', '.join(METHODS)}")
    if not arg:
        if method == "kmeans":
            raise ParameterError("kmeans needs k: kmeans:K")
        return method, {}
    try:
        value = {"kmeans": int, "dbscan": float, "hdbscan": int}[method](arg)
    except ValueError:
        raise ParameterError(f"{spec!r}: bad parameter {arg!r}") from None
    return method, {{"kmeans": "k", "dbscan": "eps", "hdbscan": "min_cluster_size"}[method]: value}


def fit(method: str, vectors, *, k: int | None = None, eps: float = 0.3, min_samples: int = 5,
        min_cluster_size: int = 5, seed: int = 0) -> np.ndarray:
    """Cluster ids per row (``-1``: noise, DBSCAN/HDBSCAN). Vectors are L2-normalised, so
    Euclidean distance orders pairs as cosine similarity does; DBSCAN's ``eps`` is a cosine distance."""
    from sklearn.cluster import DBSCAN, HDBSCAN, KMeans
    x = np.asarray(vectors, dtype=np.float32)
    if method == "kmeans":
        if not k or not 2 <= k < len(x):
            raise ParameterError(f"kmeans: need 2 <= k < n ({len(x)}), got k={k}")
        return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)
    if method == "dbscan":
        return DBSCAN(eps=eps, min_samples=min_samples, metric="cosine").fit_predict(x)
    if method == "hdbscan":
        return HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, copy=True).fit_predict(x)
    raise ParameterError(f"unknown clustering {method!r}; use {', '.join(METHODS)}")


def score(vectors, clusters, labels=None, *, sample_size: int = 5000, seed: int = 0) -> dict:
    """Silhouette (cosine; noise left out; sampled above ``sample_size`` items, the sample size
    recorded), number of clusters, noise share, and purity / NMI against ``labels`` if given."""
    c = np.asarray(clusters)
    kept = c >= 0
    out = {"n_clusters": int(len(np.unique(c[kept]))), "noise_share": float(1 - kept.mean())}
    if 2 <= out["n_clusters"] < kept.sum():
        s = silhouette(np.asarray(vectors)[kept], c[kept], sample_size=sample_size, seed=seed)
        out.update(silhouette=s["silhouette"], silhouette_sample=s["silhouette_sample"])
    else:
        out.update(silhouette=float("nan"), silhouette_sample=None)
    if labels is not None:
        lab = label_array(labels)
        known = np.array([v is not None for v in lab], dtype=bool)  # unlabelled items are not scored
        out["unlabelled"] = int((~known).sum())
        if known.any():
            out.update(purity=purity(lab[known].astype(str), c[known]), nmi=nmi(lab[known].astype(str), c[known]))
        else:
            out.update(purity=float("nan"), nmi=float("nan"))
    return out


def k_sweep(vectors, ks, labels=None, *, seed: int = 0, sample_size: int = 5000) -> pd.DataFrame:
    """KMeans for each k: silhouette (and purity/NMI with labels) — pick k at the silhouette peak."""
    rows = [{"k": k, **score(vectors, fit("kmeans", vectors, k=k, seed=seed), labels,
                             sample_size=sample_size, seed=seed)} for k in ks if 2 <= k < len(vectors)]
    return pd.DataFrame(rows)


def composition(clusters, labels) -> pd.DataFrame:
    """Label counts per cluster (rows: clusters, ``-1`` = noise; columns: labels), largest cluster first."""
    table = pd.crosstab(pd.Series(np.asarray(clusters), name="cluster"), pd.Series(np.asarray(labels), name="label"))
    return table.loc[table.sum(axis=1).sort_values(ascending=False, kind="stable").index]


def track_vectors(lib, embedder=None) -> tuple[np.ndarray, np.ndarray]:
    """One vector per embedded track: the normalised mean of its segments' vectors."""
    from ..embedders import l2_normalise
    emb = lib.embedding(embedder)
    seg = lib.segments.iloc[: emb.n_segments]
    valid = emb.valid_rows(seg["track_id"].to_numpy())
    x = np.asarray(emb.vectors())[valid]
    tracks = seg["track_id"].to_numpy()[valid]
    ids, inverse = np.unique(tracks, return_inverse=True)
    sums = np.zeros((len(ids), x.shape[1]), np.float64)
    np.add.at(sums, inverse, x)
    return ids, l2_normalise(sums)


def label_array(values) -> np.ndarray:
    """Labels as an object array of strings, ``None`` where there is no label (None, NaN, empty text).

    >>> label_array(pd.Series(["rock", None, float("nan"), "", 3.0])).tolist()
    ['rock', None, None, None, '3.0']
    """
    return np.array([None if _missing(v) else str(v) for v in pd.Series(values).astype(object)], dtype=object)


def _missing(value) -> bool:
    """No label: None, NaN, or empty text."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


# -- cluster metrics: pure functions on arrays (evaluation uses them too) -------------------------

def purity(labels_true, labels_pred) -> float:
    """Fraction of items whose cluster's majority label is their own label.

    >>> purity(["a", "a", "b", "b"], [0, 0, 0, 1])
    0.75
    """
    t, p = np.asarray(labels_true), np.asarray(labels_pred)
    if t.shape != p.shape or t.size == 0:
        raise ParameterError("purity: label arrays must be non-empty and of equal length")
    total = 0
    for c in np.unique(p):
        _, counts = np.unique(t[p == c], return_counts=True)
        total += counts.max()
    return float(total / t.size)


def nmi(labels_true, labels_pred) -> float:
    """Normalised mutual information (scikit-learn's, arithmetic normalisation).

    >>> nmi(["a", "a", "b", "b"], [1, 1, 0, 0])
    1.0
    """
    from sklearn.metrics import normalized_mutual_info_score
    return float(normalized_mutual_info_score(labels_true, labels_pred))


def silhouette(vectors, labels, *, metric: str = "cosine", sample_size: int | None = 5000, seed: int = 0) -> dict:
    """Silhouette coefficient (scikit-learn's), on a seeded sample when there are more than ``sample_size`` items.

    Returns the score and the sample size used (``None`` when every item was used).

    >>> x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]])
    >>> round(silhouette(x, [0, 0, 1, 1])["silhouette"], 2)
    0.99
    """
    from sklearn.metrics import silhouette_score
    x, lab = np.asarray(vectors), np.asarray(labels)
    n_labels = len(np.unique(lab))
    if not 2 <= n_labels < len(lab):
        raise ParameterError(f"silhouette needs 2 <= n_labels < n_items, got {n_labels} labels for {len(lab)} items")
    used = sample_size if sample_size is not None and len(x) > sample_size else None
    score = silhouette_score(x, lab, metric=metric, sample_size=used, random_state=seed)
    return {"silhouette": float(score), "silhouette_sample": used}
