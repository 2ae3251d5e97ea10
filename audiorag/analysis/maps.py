"""2D/3D maps of vectors: PCA, t-SNE (scikit-learn) and UMAP (``umap-learn``, the ``analysis`` extra).

>>> x = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
>>> project(x, "pca", dims=3).shape
(50, 3)
"""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError

METHODS = ("pca", "tsne", "umap")


def project(vectors, method: str = "pca", *, dims: int = 2, seed: int = 0) -> np.ndarray:
    """``float32[n, dims]`` coordinates; t-SNE and UMAP use cosine distances."""
    x = np.asarray(vectors, dtype=np.float32)
    if dims not in (2, 3):
        raise ParameterError(f"dims must be 2 or 3, got {dims}")
    if method == "pca":
        from sklearn.decomposition import PCA
        return PCA(n_components=dims, random_state=seed).fit_transform(x).astype(np.float32)
    if method == "tsne":
        from sklearn.manifold import TSNE
        perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
        return TSNE(n_components=dims, metric="cosine", init="pca", perplexity=perplexity,
                    random_state=seed).fit_transform(x).astype(np.float32)
    if method == "umap":
        try:
            import umap
        except ModuleNotFoundError:
            raise ParameterError("UMAP maps need umap-learn: pip install 'audiorag[analysis]'") from None
        return umap.UMAP(n_components=dims, metric="cosine", random_state=seed,
                         n_neighbors=min(15, len(x) - 1)).fit_transform(x).astype(np.float32)
    raise ParameterError(f"unknown projection {method!r}; use {', '.join(METHODS)}")
