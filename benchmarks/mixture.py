"""Synthetic embedding vectors with the structure of real ones, for index benchmarks at any n.

A :class:`Mixture` is fitted to a library's real, L2-normalised vectors: PCA keeps the
``latent`` strongest directions, a full-covariance Gaussian mixture models the vectors in
that subspace (clusters: genres, instruments, recording conditions), and the rest is
per-dimension residual noise with the residual variance measured on the real vectors.
Windows come in tracks, as in a library: a track stays in one mixture component and its
consecutive windows follow an AR(1) walk whose lag-1 correlations (latent and residual)
are those of consecutive real windows, so the marginal distribution is the mixture and
neighbouring moments of a track are as close as in the real library. Without that,
isotropic residual noise would make every nearest neighbour a near-tie, which real
embeddings are not. Samples are L2-normalised like every stored vector. For a dimension other than the
fitted one, the latent subspace and residual spectrum are carried into the new space by
a random orthonormal map (the cluster geometry is kept; the extra dimensions get the
mean residual variance).

Sampling is streamed in seeded chunks, so 10⁷ × 768 vectors (30 GB as float32) never need
to exist at once, and chunk ``i`` is the same whichever process draws it.

>>> rng = np.random.default_rng(0)
>>> real = rng.standard_normal((600, 40)) + 3 * rng.integers(0, 2, (600, 1))
>>> mix = Mixture.fit(real / np.linalg.norm(real, axis=1, keepdims=True), np.arange(600) // 10,
...                   latent=8, components=4)
>>> x = mix.sample(1000, dim=64, seed=1)
>>> x.shape, bool(np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5))
((1000, 64), True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

CHUNK_WINDOWS = 262_144  # windows per chunk, rounded up to whole tracks


def _lag1(a: np.ndarray, pairs: np.ndarray) -> float:
    """Pooled lag-1 correlation of rows ``pairs`` and ``pairs + 1`` (0 when there are no pairs)."""
    if not len(pairs):
        return 0.0
    return float(np.clip((a[pairs] * a[pairs + 1]).sum() / (a[pairs] ** 2).sum(), 0.0, 0.999))


@dataclass
class Mixture:
    mean: np.ndarray          # [dim0] mean of the real vectors
    basis: np.ndarray         # [latent, dim0] PCA directions
    weights: np.ndarray       # [components]
    means: np.ndarray         # [components, latent]
    chol: np.ndarray          # [components, latent, latent] Cholesky factors of the covariances
    residual_std: np.ndarray  # [dim0] per-dimension std of what PCA leaves
    rho_latent: float         # lag-1 correlation of consecutive windows of a track, latent part
    rho_residual: float       # the same for the residual
    track_length: int         # windows per track
    source: str = ""

    @classmethod
    def fit(cls, vectors: np.ndarray, track_ids: np.ndarray, *, latent: int = 32, components: int = 16,
            seed: int = 0, source: str = "") -> Mixture:
        """Fit to ``vectors`` whose rows are consecutive windows of the tracks ``track_ids``."""
        x = np.asarray(vectors, dtype=np.float64)
        track_ids = np.asarray(track_ids)
        latent = min(latent, x.shape[1], len(x) - 1)
        pca = PCA(latent, random_state=seed).fit(x)
        z = pca.transform(x)
        gmm = GaussianMixture(min(components, len(x) // (2 * latent) or 1), covariance_type="full",
                              reg_covar=1e-6, random_state=seed).fit(z)
        residual = x - pca.inverse_transform(z)
        pairs = np.flatnonzero(track_ids[1:] == track_ids[:-1])
        lengths = np.unique(track_ids, return_counts=True)[1]
        return cls(pca.mean_, pca.components_, gmm.weights_, gmm.means_, np.linalg.cholesky(gmm.covariances_),
                   residual.std(axis=0), _lag1(z - z.mean(0), pairs), _lag1(residual - residual.mean(0), pairs),
                   max(1, int(round(lengths.mean()))), source)

    def explained(self) -> float:
        """Share of the real vectors' variance in the latent subspace."""
        mean = self.weights @ self.means
        latent = float(np.einsum("kij,kij,k->", self.chol, self.chol, self.weights)
                       + (self.weights @ (self.means ** 2).sum(1)) - mean @ mean)
        return latent / (latent + float((self.residual_std ** 2).sum()))

    def _lift(self, dim: int):
        """Mean, basis and residual std carried into ``dim`` dimensions."""
        dim0 = len(self.mean)
        if dim == dim0:
            return self.mean, self.basis, self.residual_std
        q, _ = np.linalg.qr(np.random.default_rng(dim).standard_normal((max(dim, dim0), min(dim, dim0))))
        lift = q if dim > dim0 else q.T          # [dim, dim0] orthonormal columns, or a projection
        resid = np.full(dim, np.sqrt(np.mean(self.residual_std ** 2) * dim0 / dim))
        return lift @ self.mean, self.basis @ lift.T, resid

    def sample(self, n: int, *, dim: int | None = None, seed: int = 0, first: int = 0) -> np.ndarray:
        """Vectors ``first … first + n`` of the stream with ``seed``, ``float32[n, dim]``, unit norm."""
        dim = dim or len(self.mean)
        mean, basis, resid = self._lift(dim)
        out = np.empty((n, dim), np.float32)
        chunk_rows = self.chunk_rows
        pos = first
        while pos < first + n:
            c, lo = divmod(pos, chunk_rows)
            take = min(chunk_rows - lo, first + n - pos)
            chunk = self._chunk(seed, c, mean, basis, resid)[lo:lo + take]
            out[pos - first:pos - first + take] = chunk
            pos += take
        return out

    def chunks(self, n: int, *, dim: int | None = None, seed: int = 0):
        """Yield ``(first, vectors)`` covering ``0 … n`` chunk by chunk."""
        for first in range(0, n, self.chunk_rows):
            yield first, self.sample(min(self.chunk_rows, n - first), dim=dim, seed=seed, first=first)

    @property
    def chunk_rows(self) -> int:
        return -(-CHUNK_WINDOWS // self.track_length) * self.track_length

    def _chunk(self, seed: int, c: int, mean, basis, resid) -> np.ndarray:
        """Chunk ``c``: whole tracks, windows in time order, each track in one component."""
        rng = np.random.default_rng([seed, c])
        n_tracks, length = self.chunk_rows // self.track_length, self.track_length
        comp = rng.choice(len(self.weights), n_tracks, p=self.weights / self.weights.sum())
        ar_z, ar_r = _ar1(self.rho_latent), _ar1(self.rho_residual)
        x = np.empty((n_tracks, length, len(mean)), np.float32)
        z = r = None
        for t in range(length):
            eps = rng.standard_normal((n_tracks, self.means.shape[1]))
            for k in np.unique(comp):
                rows = comp == k
                eps[rows] = eps[rows] @ self.chol[k].T
            z = eps if z is None else ar_z[0] * z + ar_z[1] * eps
            noise = rng.standard_normal((n_tracks, len(resid)), dtype=np.float32)
            r = noise if r is None else ar_r[0] * r + ar_r[1] * noise
            x[:, t] = (mean + (self.means[comp] + z) @ basis).astype(np.float32) + resid.astype(np.float32) * r
        x = x.reshape(-1, len(mean))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x


def _ar1(rho: float) -> tuple[float, float]:
    """Weights (previous, innovation) of a unit-variance AR(1) step."""
    return rho, float(np.sqrt(1.0 - rho ** 2))
