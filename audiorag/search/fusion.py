"""Late (score-level) fusion of the embeddings named ``E1+E2+…``: each embedding's index proposes
candidates, and every candidate of the union is scored ``Σ wᵢ·cosᵢ`` (weights normalised to sum 1)
from the stored vectors. Single-window queries (a moment, or a clip up to one window). Early fusion is
the stored ``E1+E2`` embedding (:mod:`audiorag.library.derived`), searched like any other.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ParameterError
from .context import context
from .factors import descriptor_filters
from .hits import candidates, keeper, per_track, with_metadata
from .vectors import query_vectors


def fusion_weights(names: list[str], weights) -> np.ndarray:
    """The weights of ``names`` (default equal): finite, >= 0, not all 0.

    >>> fusion_weights(["a", "b"], None).tolist()
    [1.0, 1.0]
    """
    w = np.ones(len(names)) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (len(names),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ParameterError(f"search: late fusion needs {len(names)} weights >= 0, got {weights}")
    return w


def late_fusion(lib, query, embedder, weights, *, fusion: str, k: int, index, exclude_same_track: bool,
                filters, by: str) -> pd.DataFrame:
    """Top-``k`` hits of ``query`` by late fusion of the embeddings ``embedder`` names (``"E1+E2"``)."""
    names = str(embedder or "").split("+")
    if fusion != "late" or len(names) < 2:
        raise ParameterError(f"search: fusion='late' needs embedder='E1+E2[+…]', got fusion={fusion!r}, "
                             f"embedder={embedder!r}")
    w = fusion_weights(names, weights)
    ctxs = [context(lib, name, index) for name in names]
    qvs = [query_vectors(lib, c.emb, query, ctx=c) for c in ctxs]
    if any(len(qv) != 1 for qv, _ in qvs):
        raise ParameterError("search: late fusion takes one-window queries (a moment, or a clip up to one window)")
    sizes = {c.emb.key: len(c.vectors) for c in ctxs}
    if len(set(sizes.values())) > 1:
        raise ParameterError(f"search: late fusion needs embeddings of the same segments; they cover "
                             f"{sizes} (finish the embedding with `audiorag build LIB --embedder NAME`)")
    filters, moments = descriptor_filters(lib, filters)
    lay, allowed = ctxs[0].layout, ctxs[0].allowed(lib, filters)
    keep = keeper(lay, allowed, moments, qvs[0][1] if exclude_same_track else None)
    wanted = 4 * (k if by == "segment" else 8 * k)
    ids = np.unique(np.concatenate([candidates(c.index, qv[0], wanted, keep)[0] for c, (qv, _) in zip(ctxs, qvs)]))
    scores = sum(wi / w.sum() * (np.asarray(c.vectors[ids]) @ qv[0]) for wi, c, (qv, _) in zip(w, ctxs, qvs))
    order = np.lexsort((ids, -scores))
    ids, scores = ids[order], np.asarray(scores, dtype=np.float32)[order]
    return with_metadata(ctxs[0], per_track(lay.hits(ids, scores), by, k))
