"""Derived embeddings: vectors computed from other embeddings of the same library, stored like any other.

Two kinds, each an ``embeddings/<key>/`` folder with ``embedder.json`` (``derived``: kind, sources, and
the state of the sources it was computed from), ``raw.npy``, ``vectors.npy`` and indexes:

* **fusion** (:func:`fuse`) — early fusion of embeddings ``E1 … En`` with weights ``w``: per segment,
  ``l2(concat(w1·v1, …, wn·vn))`` of the sources' L2-normalised vectors. Named ``E1+E2`` (so
  ``embedder="E1+E2"`` finds it); the cosine of two fused vectors is ``Σ wᵢ²·cosᵢ / Σ wᵢ²``. When every
  source has a text tower (``clap+ttmr``) the fusion has one too: a text is embedded by each and combined alike.
* **projection** (:func:`project`) — a supervised linear map (:func:`fit_projection`: LDA, NCA or a
  linear classifier's decision space) fitted on labelled segments, applied to every segment;
  ``projection.npz`` holds the map, ``embedder.json`` what it was trained on (tracks, label
  counts, method, seed, source state). Named ``<source>-<method>-<label>``.

Derived embeddings follow the library: :func:`follow` runs inside every consolidation (tracks
added, replaced) and recomputes what its sources changed, in the same commit; a removal leaves
every row in place and updates the indexes like any other embedding's. An audio query is embedded
by each source and combined the same way (:class:`DerivedEmbedder`).

>>> import numpy as np
>>> x = np.random.default_rng(0).standard_normal((60, 5)).astype("float32")
>>> y = np.repeat(["a", "b", "c"], 20)
>>> x[:, 0] += 4 * (y == "a")
>>> W, b = fit_projection("lda", x, y)
>>> W.shape, b.shape
((5, 2), (2,))
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings

import numpy as np
import pandas as pd

from .. import io
from ..errors import ParameterError
from . import trackvectors
from .embedding import DerivedEmbedder, Embedding, combine, sources
from .order import content_rows
from .store import write_npz

log = logging.getLogger(__name__)
METHODS = ("lda", "nca", "linear")
#: NCA's cost grows with the square of its training items: at most this many (a seeded sample) are used
NCA_MAX_ITEMS = 1500


def is_derived(emb: Embedding) -> bool:
    """Whether ``emb`` is computed from other embeddings of its library."""
    return "derived" in emb.meta


# -- fitting --------------------------------------------------------------------------------------
def fit_projection(method: str, x: np.ndarray, y, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fit a supervised linear projection on vectors ``x`` with labels ``y``; returns ``(W, b)`` such that
    the projected vectors are ``x @ W + b`` (compare them by cosine after L2 normalisation).

    ``lda``: linear discriminant analysis (shrinkage chosen by Ledoit-Wolf), ``n_classes - 1`` dimensions.
    ``nca``: neighbourhood components analysis started from LDA, ``n_classes - 1`` dimensions (at most
    :data:`NCA_MAX_ITEMS` training items, a seeded sample). ``linear``: standardise, then a multinomial
    logistic regression's class scores (one dimension per class).
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import NeighborhoodComponentsAnalysis
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    if method not in METHODS:
        raise ParameterError(f"projection method must be one of {', '.join(METHODS)}, got {method!r}")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).astype(str)
    if len(np.unique(y)) < 2:
        raise ParameterError(f"a {method} projection needs at least 2 labels among its {len(y)} training items")
    if method == "lda":
        model = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto")
    elif method == "nca":
        if len(x) > NCA_MAX_ITEMS:
            keep = np.sort(np.random.default_rng(seed).choice(len(x), NCA_MAX_ITEMS, replace=False))
            x, y = x[keep], y[keep]
        model = NeighborhoodComponentsAnalysis(n_components=min(x.shape[1], len(np.unique(y)) - 1), init="lda",
                                               max_iter=50, random_state=seed)
    else:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    apply = model.decision_function if method == "linear" else model.transform
    # every method is affine: read the map off the images of the origin and the unit vectors
    origin = np.asarray(apply(np.zeros((1, x.shape[1]))), dtype=np.float64).reshape(1, -1)
    W = np.asarray(apply(np.eye(x.shape[1])), dtype=np.float64).reshape(x.shape[1], -1) - origin
    return W.astype(np.float32), origin[0].astype(np.float32)


# -- creating ----------------------------------------------------------------------------------------
def fuse(lib, embedders, *, weights=None, indexes=("Flat",)) -> str:
    """Store the early fusion of ``embedders`` (names or keys, at least two) and index it; returns its key.

    ``weights`` (default equal) scale each source's unit vectors before concatenation.

    >>> # lib.add("synthetic:16", embedders=["features45", "aisfx"]); fuse(lib, ["features45", "aisfx"])
    """
    sources = [lib.embedding(e) for e in embedders]
    if len(sources) < 2 or len({s.key for s in sources}) < len(sources):
        raise ParameterError(f"fuse needs at least two different embeddings, got {list(embedders)}")
    w = _weights(weights, len(sources))
    params = {"sources": [s.key for s in sources], "weights": w}
    name = "+".join(s.name for s in sources)
    meta = {"name": name, "params": params, "dim": int(sum(s.dim for s in sources)),
            "has_text": all(s.has_text for s in sources),  # text is fused like audio (each tower, then combine)
            "derived": {"kind": "fusion", "sources": params["sources"], "weights": w}}
    return store(lib, meta, indexes)


def project(lib, embedder, *, label: str, method: str = "lda", train_tracks=None, seed: int = 0,
            provenance: dict | None = None, indexes=("Flat",)) -> str:
    """Fit a ``method`` projection of ``embedder`` on the labelled segments of ``train_tracks`` (default:
    every track with a ``label`` value) and store every segment's projection; returns its key.

    ``provenance`` (e.g. ``{"where": "split=train"}``) is kept with the training record. Evaluate a
    stored projection only on tracks it was not fitted on (``audiorag eval --only``), or use the
    out-of-fold protocol of :mod:`audiorag.evaluate.projection`.
    """
    meta, W, b = fit(lib, embedder, label=label, method=method, train_tracks=train_tracks, seed=seed,
                     provenance=provenance)
    return store(lib, meta, indexes, projection=(W, b))


def fit(lib, embedder, *, label: str, method: str = "lda", train_tracks=None, seed: int = 0,
        provenance: dict | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """The fitting half of :func:`project`: ``(the derived embedding's meta, W, b)``, fitted on the labelled
    segments in the corpus's order (:mod:`audiorag.library.order`). ``lib`` may be any view with tracks,
    segments and vectors (a sharded library's: :mod:`audiorag.library.shardedits` stores it in each shard)."""
    source = lib.embedding(embedder)
    if label not in lib.tracks.columns:
        raise ParameterError(f"project: {label!r} is not a track column; have {list(lib.tracks.columns)}")
    tracks = lib.tracks
    chosen = tracks["track_id"].isin(tracks["track_id"] if train_tracks is None else list(train_tracks))
    labels = tracks[label].astype(object).where(tracks[label].notna(), None)
    labels = labels.map(lambda v: None if v is None or not str(v).strip() else str(v))
    train = tracks[chosen & labels.notna()]
    seg = lib.segments.iloc[: source.n_segments]
    rows = content_rows(lib, source)  # NCA samples its items: from the same rows in every library of the files
    rows = rows[seg["track_id"].iloc[rows].isin(train["track_id"]).to_numpy()]
    if not len(rows):
        raise ParameterError(f"project: no labelled segments of {source.key} to fit on")
    y = seg["track_id"].iloc[rows].map(dict(zip(train["track_id"], labels[train.index]))).to_numpy()
    t0 = time.perf_counter()
    W, b = fit_projection(method, np.asarray(lib.vectors(source.key)[rows]), y, seed=seed)
    ids = sorted(int(t) for t in train["track_id"])
    trained = {"n_tracks": len(ids), "n_segments": int(len(rows)), "label": label, "method": method, "seed": seed,
               "track_ids_sha256": hashlib.sha256(json.dumps(ids).encode()).hexdigest(),
               "label_counts": {str(k): int(v) for k, v in pd.Series(y).value_counts().sort_index().items()},
               "fit_seconds": round(time.perf_counter() - t0, 3), "fitted": time.strftime("%Y-%m-%dT%H:%M:%S"),
               **(provenance or {})}
    params = {"source": source.key, "method": method, "label": label, "seed": seed,
              "train": trained["track_ids_sha256"][:16]}
    meta = {"name": f"{source.name}-{method}-{label}", "params": params, "dim": int(W.shape[1]),
            "derived": {"kind": "projection", "sources": [source.key], "trained_on": trained}}
    return meta, W, b


def _weights(weights, n: int) -> list[float]:
    w = [1.0] * n if weights is None else [float(v) for v in weights]
    if len(w) != n or not all(np.isfinite(w)) or min(w) < 0 or sum(w) <= 0:
        raise ParameterError(f"weights: need {n} finite numbers >= 0, not all 0; got {weights}")
    return [v / sum(w) for v in w]


def store(lib, meta: dict, indexes, projection=None) -> str:
    """Write a derived embedding (vectors computed now; a ``projection``'s ``(W, b)`` kept beside them) and
    build its indexes, in one commit; returns its key (from its name and params)."""
    from ..index.factory import index_name
    from .indexes import build_index
    blob = json.dumps({"name": meta["name"], "params": meta["params"]}, sort_keys=True)
    key = f"{meta['name']}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"
    with lib.store.transaction():
        path = lib.data / "embeddings" / key
        old = {s["name"]: s["factory"] for s in _sidecars(path)}
        io.remove(path)
        io.make_dirs(path)
        if projection is not None:
            write_npz(path / "projection.npz", W=projection[0], b=projection[1])
        emb = Embedding(path)
        emb.__dict__["meta"] = {**meta, "key": key, "standardise": False, "tag_names": [],
                                "has_text": meta.get("has_text", False),
                                "segmentation": lib.segmentation.to_dict(), "sample_rate": None, "window": None,
                                "weights": None, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _compute(lib, emb)
        for factory in dict.fromkeys([*old.values(), *indexes]):
            build_index(lib, emb.reload(), factory, name=next((n for n, f in old.items() if f == factory),
                                                              index_name(factory)))
    log.info("stored derived embedding %s (%s)", key, meta["derived"]["kind"])
    return key


def _sidecars(path) -> list[dict]:
    from .indexes import list_indexes
    return list_indexes(Embedding(path)) if path.exists() else []


# -- computing and following the library ----------------------------------------------------------
def _state(sources: list[Embedding]) -> list:
    """What the derived rows depend on in each source: its rows and their standardisation."""
    return [[s.key, s.n_segments, hashlib.sha256(repr(s.meta.get("standardisation")).encode()).hexdigest()[:16]]
            for s in sources]


def _compute(lib, emb: Embedding) -> None:
    """(Re)write ``emb``'s rows from its sources' vectors (rows of failed tracks stay zero)."""
    parts = sources(emb)
    n = min(s.n_segments for s in parts)
    missing = sorted({int(t) for s in parts for t in s.meta.get("missing_tracks", [])})
    seg_tracks = lib.segments["track_id"].to_numpy()[:n]
    valid = emb.valid_rows(seg_tracks, missing=missing)
    raw = combine(emb, [np.asarray(s.vectors()[:n]) for s in parts])
    raw[~valid] = 0.0
    first = lib.segments.drop_duplicates("track_id").set_index("track_id")["segment_id"]
    meta = dict(emb.meta, n_segments=int(n), missing_tracks=missing,
                n_tracks=int((lib.tracks["track_id"].map(first).to_numpy() < n).sum()),
                derived={**emb.meta["derived"], "state": _state(parts)},
                updated=time.strftime("%Y-%m-%dT%H:%M:%S"))
    emb.write(raw, meta, valid)


def follow(lib) -> list[str]:
    """Inside a change: recompute every derived embedding whose sources changed (grew, or were
    re-standardised), and bring its indexes up to date; returns their keys. Sources come first."""
    from .indexes import build_index, list_indexes, refresh
    done: list[str] = []
    pending = [e for e in lib.embeddings() if is_derived(e)]
    for _ in range(len(pending)):  # a derivation of a derivation waits for its source
        for emb in list(pending):
            if any(k in {p.key for p in pending} for k in emb.meta["derived"]["sources"]):
                continue
            pending.remove(emb)
            old = emb.meta["derived"].get("state")
            now = _state(sources(emb))
            if old == now:
                continue
            _compute(lib, emb)
            emb = emb.reload()
            if [s[2] for s in old or []] != [s[2] for s in now]:  # every vector moved: rebuild
                for sidecar in list_indexes(emb):
                    build_index(lib, emb, sidecar["factory"], name=sidecar["name"])
                trackvectors.update(lib, emb)
            else:
                refresh(lib, emb)
            done.append(emb.key)
    return done


__all__ = ["fuse", "project", "fit_projection", "follow", "combine", "is_derived", "DerivedEmbedder", "METHODS"]
