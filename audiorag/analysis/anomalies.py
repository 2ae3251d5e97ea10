"""Outliers among vectors: IsolationForest and distance to the k-th nearest neighbour,
checked by injecting known outliers (noise bursts, near-silence, click trains).

Scores are "higher = more anomalous" for both methods.

>>> rng = np.random.default_rng(0)
>>> x = np.vstack([rng.normal(size=(200, 4)) * 0.1 + [1, 0, 0, 0], [[0, 0, 0, 1.0], [0, 0, 1.0, 0]]])
>>> injected = np.r_[np.zeros(200, bool), True, True]
>>> precision_at_n(knn_distance(x, k=5), injected), precision_at_n(isolation_forest(x), injected)
(1.0, 1.0)
"""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError

KINDS = ("noise", "silence", "clicks")


def isolation_forest(vectors, *, contamination: float | str = "auto", seed: int = 0) -> np.ndarray:
    """IsolationForest anomaly scores (scikit-learn's ``-score_samples``)."""
    from sklearn.ensemble import IsolationForest
    model = IsolationForest(contamination=contamination, random_state=seed, n_estimators=200)
    x = np.asarray(vectors, dtype=np.float32)
    return -model.fit(x).score_samples(x)


def knn_distance(vectors, *, k: int = 10) -> np.ndarray:
    """Cosine distance from each (L2-normalised) row to its k-th nearest other row (exact, FAISS)."""
    import faiss
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if not 1 <= k < len(x):
        raise ParameterError(f"knn_distance: need 1 <= k < n ({len(x)}), got {k}")
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sims, _ = index.search(x, k + 1)  # the first neighbour is the row itself
    return 1.0 - sims[:, k]


def flagged(scores, contamination: float) -> np.ndarray:
    """Boolean mask of the ``contamination`` share of highest scores (at least one)."""
    if not 0 < contamination < 0.5:
        raise ParameterError(f"contamination must be in (0, 0.5), got {contamination}")
    scores = np.asarray(scores)
    n = max(1, int(round(contamination * len(scores))))
    mask = np.zeros(len(scores), bool)
    mask[np.argsort(-scores, kind="stable")[:n]] = True
    return mask


def precision_at_n(scores, injected, n: int | None = None) -> float:
    """Share of known outliers among the ``n`` highest scores (``n`` = number of known outliers)."""
    injected = np.asarray(injected, bool)
    n = int(injected.sum()) if n is None else n
    if n < 1:
        raise ParameterError("precision_at_n: no injected outliers")
    return float(injected[np.argsort(-np.asarray(scores), kind="stable")[:n]].mean())


def outlier_clips(kind: str, n: int, *, sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    """``float32[n, samples]`` clips unlike music: white-noise bursts, near-silence (−80 dBFS
    noise), or sparse click trains."""
    rng = np.random.default_rng([seed, KINDS.index(kind) if kind in KINDS else -1])
    size = (n, int(seconds * sr))
    if kind == "noise":
        return (0.3 * rng.standard_normal(size)).astype(np.float32)
    if kind == "silence":
        return (1e-4 * rng.standard_normal(size)).astype(np.float32)
    if kind == "clicks":
        clips = np.zeros(size, np.float32)
        for row in clips:
            row[rng.choice(size[1], size=max(1, int(seconds * 3)), replace=False)] = 0.9
        return clips
    raise ParameterError(f"unknown outlier kind {kind!r}; use {', '.join(KINDS)}")


def injected_check(lib, *, embedder=None, n_per_kind: int = 5, kinds=KINDS, k: int = 10,
                   seed: int = 0) -> dict:
    """Embed known outliers with the library's embedder and window, mix them into its segment
    vectors, and report each method's precision over the top-N (N = outliers injected)."""
    emb = lib.embedding(embedder)
    e = emb.embedder
    seg = lib.segments.iloc[: emb.n_segments]
    x = np.asarray(emb.vectors())[emb.valid_rows(seg["track_id"].to_numpy())]
    fake = [emb.postprocess(e.embed(outlier_clips(kind, n_per_kind, sr=e.sample_rate,
                                                  seconds=lib.segmentation.window, seed=seed))) for kind in kinds]
    mixed = np.vstack([x, *fake])
    injected = np.r_[np.zeros(len(x), bool), np.ones(len(mixed) - len(x), bool)]
    return {"injected": int(injected.sum()), "n": len(mixed),
            "iforest/precision@N": precision_at_n(isolation_forest(mixed, seed=seed), injected),
            "knn/precision@N": precision_at_n(knn_distance(mixed, k=k), injected)}
