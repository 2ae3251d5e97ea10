"""Tags from nearest neighbours (seed S2's "tag a new upload"): similarity-weighted votes of the
k most similar tracks' labels, a confidence per tag, and an abstain threshold.

>>> votes(np.array([["rock", "rock", "jazz"]]), np.array([[0.9, 0.8, 0.3]]))[0]
{'rock': 0.85, 'jazz': 0.15}
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ParameterError


def votes(neighbour_labels, sims) -> list[dict]:
    """Per query: label → confidence (its share of the neighbours' positive similarity), best first."""
    out = []
    for labels, s in zip(np.asarray(neighbour_labels), np.clip(np.asarray(sims, np.float64), 0, None)):
        total = s.sum()
        conf: dict = {}
        for lab, w in zip(labels.tolist(), s):
            conf[lab] = conf.get(lab, 0.0) + (w / total if total > 0 else 1.0 / len(s))
        out.append({k: round(float(v), 6) for k, v in sorted(conf.items(), key=lambda kv: -kv[1])})
    return out


def decide(confidences: list[dict], abstain: float) -> list:
    """The top tag of each query when its confidence reaches ``abstain``, else ``None``."""
    out = []
    for conf in confidences:
        top, c = next(iter(conf.items())) if conf else (None, 0.0)
        out.append(top if c >= abstain else None)
    return out


class TrackSpace:
    """Track vectors and a label column of a library: the neighbours tags come from."""

    def __init__(self, lib, *, embedder=None, label: str = "genre"):
        from .clusters import label_array, track_vectors
        if label not in lib.tracks.columns:
            raise ParameterError(f"no track column {label!r}; columns: {list(lib.tracks.columns)}")
        ids, vectors = track_vectors(lib, embedder)
        labels = label_array(lib.tracks.set_index("track_id")[label].reindex(ids))
        known = np.array([v is not None for v in labels], dtype=bool)  # unlabelled tracks give no tags
        self.n_unlabelled = int((~known).sum())
        self.track_ids, self.vectors, self.labels = ids[known], vectors[known], labels[known]
        self.emb = lib.embedding(embedder)

    def neighbours(self, q: np.ndarray, k: int, exclude: np.ndarray | None = None):
        sims = np.asarray(q, np.float32) @ self.vectors.T
        if exclude is not None:
            sims[np.arange(len(sims)), exclude] = -np.inf
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(sims, order, axis=1)

    def tag(self, q: np.ndarray, *, k: int = 10, abstain: float = 0.5) -> pd.DataFrame:
        """Tags for query vectors ``[n, dim]`` (e.g. ``emb.postprocess(embedder.embed(clips))`` averaged)."""
        order, sims = self.neighbours(np.atleast_2d(q), k)
        conf = votes(self.labels[order], sims)
        return pd.DataFrame({"tag": decide(conf, abstain), "confidence": [next(iter(c.values())) for c in conf],
                             "votes": conf})


def leave_one_out(lib, *, embedder=None, label: str = "genre", k: int = 10, abstain: float = 0.5) -> dict:
    """Tag every labelled track from the other labelled tracks: precision (correct / answered; NaN
    when nothing is answered), recall (correct / all), coverage (answered / all), accuracy without
    abstaining, and how many tracks had no label (left out)."""
    space = TrackSpace(lib, embedder=embedder, label=label)
    n = len(space.track_ids)
    if n <= k:
        raise ParameterError(f"leave_one_out: need more than k={k} tracks, have {n}")
    order, sims = space.neighbours(space.vectors, k, exclude=np.arange(n))
    conf = votes(space.labels[order], sims)
    guess = np.array(decide(conf, abstain), dtype=object)
    top = np.array(decide(conf, 0.0), dtype=object)
    answered = guess != None  # noqa: E711  (element-wise)
    correct = answered & (guess == space.labels)
    return {"tagging/precision": float(correct.sum() / answered.sum()) if answered.any() else float("nan"),
            "tagging/recall": float(correct.mean()), "tagging/coverage": float(answered.mean()),
            "tagging/accuracy": float((top == space.labels).mean()), "tagging/k": k, "tagging/abstain": abstain,
            "tagging/unlabelled": space.n_unlabelled}
