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
from ..library.order import content_rows

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
    """``float32[n, samples]`` clips unlike music, each one different (so they do not form a
    tight group of their own): noise bursts (white to brown, −26 to −6 dBFS, covering 30–100 %
    of the clip), near-silence (−90 to −60 dBFS noise), or click trains (0.5–8 clicks/s)."""
    rng = np.random.default_rng([seed, KINDS.index(kind) if kind in KINDS else 99])
    length = int(seconds * sr)
    clips = np.zeros((n, length), np.float32)
    for row in clips:
        if kind == "noise":
            spec = np.fft.rfft(rng.standard_normal(length))
            spec /= np.maximum(np.arange(len(spec)), 1) ** (rng.uniform(0, 1))   # white … brown
            burst = np.fft.irfft(spec, length)
            span = int(length * rng.uniform(0.3, 1.0))
            at = rng.integers(0, length - span + 1)
            row[at:at + span] = burst[at:at + span] / (np.abs(burst).max() + 1e-12) * 10 ** (rng.uniform(-26, -6) / 20)
        elif kind == "silence":
            row[:] = rng.standard_normal(length) * 10 ** (rng.uniform(-90, -60) / 20)
        elif kind == "clicks":
            count = max(1, int(seconds * rng.uniform(0.5, 8)))
            row[rng.choice(length, size=min(count, length), replace=False)] = rng.uniform(0.3, 1.0, min(count, length))
        else:
            raise ParameterError(f"unknown outlier kind {kind!r}; use {', '.join(KINDS)}")
    return clips


def injected_check(lib, *, embedder=None, rounds: int = 5, kinds=KINDS, k: int = 10, seed: int = 0) -> dict:
    """Mix known outliers into the library's segment vectors and see whether each method ranks them on top.

    Each round injects one clip of each kind (embedded with the library's embedder and window),
    so outliers stay rare and never form a group of their own (identical injected clips would be
    a dense little cluster, which density-based detectors rightly call normal). Reports the
    precision over the top-N (N = clips injected per round), averaged over ``rounds``.
    """
    emb = lib.embedding(embedder)
    e = emb.embedder
    x = np.asarray(emb.vectors()[content_rows(lib, emb)])  # the corpus's order: the same in every library
    found = {"iforest": [], "knn": []}
    for r in range(rounds):
        fake = np.vstack([emb.postprocess(e.embed(outlier_clips(kind, 1, sr=e.sample_rate,
                                                                seconds=lib.segmentation.window, seed=seed + r)))
                          for kind in kinds])
        mixed = np.vstack([x, fake])
        injected = np.r_[np.zeros(len(x), bool), np.ones(len(fake), bool)]
        found["iforest"].append(precision_at_n(isolation_forest(mixed, seed=seed), injected))
        found["knn"].append(precision_at_n(knn_distance(mixed, k=min(k, len(mixed) - 1)), injected))
    return {"injected_per_round": len(kinds), "rounds": rounds, "n": len(x) + len(kinds),
            **{f"{m}/precision@N": float(np.mean(v)) for m, v in found.items()}}
