"""Re-ranking of candidate moments: a multi-factor score, MMR diversity, caps and near-duplicate
suppression. Pure functions over a candidate table (one row per candidate segment); the factor
columns of a library's search hits come from :mod:`audiorag.search.factors`.

The score of a candidate is a weighted sum of factors, each kept as a ``contrib:<factor>``
column (the contributions sum to ``score``, so every ranking explains itself):

=========== ===================================================================================
factor      value in [0, 1] (1: best)
=========== ===================================================================================
similarity  cosine similarity of the embeddings (the search score)
harmony     :func:`~audiorag.descriptors.tonal.harmonic_similarity` of the key-relative
            chroma progressions
tempo_match :func:`tempo_compatibility` (half and double tempo count as compatible)
key_match   :func:`key_compatibility` on the circle of fifths (relative major/minor = 1)
mood        :func:`mood_score`: how well the moment fits a mood (its valence and arousal,
            :mod:`audiorag.descriptors.mood`, and tags)
=========== ===================================================================================

Selection (:func:`select`) is greedy: each step takes the candidate maximising
``λ·score − (1 − λ)·max cosine to the moments already chosen`` (MMR; ``λ = 1 − diversity``),
skipping candidates that would exceed a cap (per track, per artist, per any column, e.g. a
``period`` bucket) or that overlap in time a moment already chosen from the same track
(overlapping windows of one track count once).

>>> import pandas as pd, numpy as np
>>> t = pd.DataFrame({"track_id": [1, 1, 2], "start": [0.0, 2.0, 0.0], "end": [10.0, 12.0, 10.0],
...                   "similarity": [0.9, 0.89, 0.5]})
>>> v = np.eye(3, dtype="float32")
>>> rerank(t, v, Rerank(), k=2)["track_id"].tolist()      # the overlapping window of track 1 counts once
[1, 2]
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from .descriptors.mood import MOODS
from .errors import ParameterError

FACTORS = ("similarity", "harmony", "tempo_match", "key_match", "mood")

@dataclass(frozen=True)
class Rerank:
    """Re-ranking options. Weights of the score's factors; ``diversity`` = 1 − λ of MMR (0: pure
    relevance); caps (``None``: no cap); ``fan_out``: candidates fetched per result wanted.

    >>> Rerank(diversity=0.3, max_per_artist=2).weights()["similarity"]
    1.0
    """

    similarity: float = 1.0
    harmonic: float = 0.0
    tempo: float = 0.0
    key: float = 0.0
    mood_weight: float = 0.0
    mood: str | None = None
    diversity: float = 0.0
    max_per_track: int | None = 1
    max_per_artist: int | None = None
    caps: dict = field(default_factory=dict)
    suppress_overlap: bool = True
    fan_out: int = 10

    def __post_init__(self):
        for name in ("similarity", "harmonic", "tempo", "key", "mood_weight"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
                raise ParameterError(f"rerank: weight {name} must be a finite number >= 0, got {v!r}")
        if not 0.0 <= self.diversity <= 1.0:
            raise ParameterError(f"rerank: diversity must be in [0, 1], got {self.diversity}")
        for name, cap in (("max_per_track", self.max_per_track), ("max_per_artist", self.max_per_artist),
                          *self.caps.items()):
            if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or cap < 1):
                raise ParameterError(f"rerank: cap {name} must be an integer >= 1 or None, got {cap!r}")
        if self.mood is not None and self.mood not in MOODS:
            raise ParameterError(f"rerank: mood must be one of {', '.join(MOODS)}, got {self.mood!r}")
        if self.fan_out < 1:
            raise ParameterError(f"rerank: fan_out must be >= 1, got {self.fan_out}")

    def weights(self) -> dict:
        """Factor → weight (mood counts only when a mood is set)."""
        return {"similarity": float(self.similarity), "harmony": float(self.harmonic),
                "tempo_match": float(self.tempo), "key_match": float(self.key),
                "mood": float(self.mood_weight) if self.mood else 0.0}

    def all_caps(self) -> dict:
        """Column → cap, including the per-track and per-artist caps."""
        caps = {"track_id": self.max_per_track, "artist": self.max_per_artist, **self.caps}
        return {c: v for c, v in caps.items() if v is not None}

    def with_(self, **changes) -> Rerank:
        return replace(self, **changes)


# -- factors ---------------------------------------------------------------------------------------
def _fifths(tonic, mode) -> np.ndarray:
    """Position on the circle of fifths of each key (a minor key sits with its relative major)."""
    major = (np.asarray(tonic, dtype=np.int64) + 3 * (np.asarray(mode) == 1)) % 12
    return (major * 7) % 12


def key_compatibility(tonic_a, mode_a, tonic_b, mode_b) -> np.ndarray:
    """1 − (steps apart on the circle of fifths) / 6: the same or the relative key 1, a fifth apart
    0.83, the tritone 0; unknown keys (tonic −1) 0.

    >>> key_compatibility(0, 0, [0, 9, 7, 6, 9], [0, 1, 0, 0, 0]).round(2).tolist()   # C vs C, Am, G, F#, A
    [1.0, 1.0, 0.83, 0.0, 0.5]
    """
    a, b = _fifths(tonic_a, mode_a), _fifths(tonic_b, mode_b)
    d = np.abs(a - b) % 12
    out = 1.0 - np.minimum(d, 12 - d) / 6.0
    known = (np.asarray(tonic_a) >= 0) & (np.asarray(tonic_b) >= 0)
    return np.where(known, out, 0.0)


def tempo_compatibility(tempo_a, tempo_b, *, tolerance: float = 0.06) -> np.ndarray:
    """exp(−½ (d / tolerance)²) with d the log2 ratio of the tempi, folded so that half and double
    tempo match; unknown tempi (NaN, or 0: no beat found) 0.

    >>> tempo_compatibility(120, [120, 60, 126, 90, 0, np.nan]).round(2).tolist()
    [1.0, 1.0, 0.7, 0.0, 0.0, 0.0]
    """
    a, b = np.broadcast_arrays(np.asarray(tempo_a, dtype=np.float64), np.asarray(tempo_b, dtype=np.float64))
    known = (a > 0) & (b > 0)  # NaN compares False: unknown (and a zero tempo, no beat found) is unknown
    ratio = np.log2(np.divide(b, a, out=np.ones_like(a), where=known), out=np.zeros_like(a), where=known)
    d = np.abs(ratio - np.round(ratio))
    out = np.exp(-0.5 * (d / np.log2(1 + tolerance)) ** 2)
    return np.where(known, out, 0.0)


def mood_score(mood: str, arousal, valence, tags: pd.DataFrame | None = None, *, moods: dict | None = None):
    """How well moments fit ``mood`` (0..1): 1 − mean distance to the mood's targets on the axes it
    sets; with ``tags`` (tag probabilities, one column per tag), averaged with the mean probability of
    the mood's tags. ``moods`` overrides :data:`MOODS`.

    >>> mood_score("calm", np.array([0.1, 0.9]), np.array([0.5, 0.5])).round(2).tolist()
    [0.9, 0.1]
    """
    moods = MOODS if moods is None else moods
    if mood not in moods:
        raise ParameterError(f"mood must be one of {', '.join(moods)}, got {mood!r}")
    spec = moods[mood]
    axes = {"arousal": np.asarray(arousal, float), "valence": np.asarray(valence, float)}
    dists = [np.abs(axes[a] - spec[a]) for a in ("arousal", "valence") if a in spec]
    score = 1.0 - np.mean(dists, axis=0) if dists else np.full(len(axes["arousal"]), 0.5)
    names = [t for t in spec.get("tags", []) if tags is not None and t in tags.columns]
    if names:
        score = 0.5 * score + 0.5 * tags[names].to_numpy().mean(axis=1)
    return score


def score(table: pd.DataFrame, weights: dict) -> pd.DataFrame:
    """``table`` with ``contrib:<factor>`` = weight × factor column for every weighted factor and
    ``score`` = their sum. Factor columns missing from ``table`` count as 0.

    >>> t = score(pd.DataFrame({"similarity": [0.8], "tempo_match": [0.5]}), {"similarity": 1.0, "tempo_match": 0.2})
    >>> t[["contrib:similarity", "contrib:tempo_match", "score"]].round(2).values.tolist()
    [[0.8, 0.1, 0.9]]
    """
    out = table.copy()
    total = np.zeros(len(out))
    for f, w in weights.items():
        if f not in FACTORS:
            raise ParameterError(f"score: unknown factor {f!r}; factors: {', '.join(FACTORS)}")
        if w == 0:
            continue
        values = out[f].to_numpy(dtype=np.float64) if f in out.columns else np.zeros(len(out))
        out[f"contrib:{f}"] = w * np.nan_to_num(values)
        total += out[f"contrib:{f}"].to_numpy()
    out["score"] = total
    return out


# -- selection -------------------------------------------------------------------------------------
def select(table: pd.DataFrame, vectors: np.ndarray, k: int, *, lam: float = 1.0, caps: dict | None = None,
           suppress_overlap: bool = True, relevance: str = "score") -> list[int]:
    """Positions of up to ``k`` rows of ``table`` chosen greedily by MMR under caps.

    ``vectors`` (L2-normalised, one row per table row) measure redundancy; ``lam`` = 1 ranks by
    ``relevance`` alone, ``lam`` = 0 (after the most relevant first pick) by novelty alone. ``caps``
    maps a column to the most rows sharing one value of it, or to a dict value → limit (values not
    in it, and missing values, are never capped).

    >>> t = pd.DataFrame({"score": [0.9, 0.85, 0.5], "track_id": [1, 2, 3]})
    >>> v = np.array([[1, 0], [0.99, 0.14], [0, 1]], dtype="float32")
    >>> select(t, v, 2, lam=1.0), select(t, v, 2, lam=0.0)
    ([0, 1], [0, 2])
    """
    n = len(table)
    if not 0.0 <= lam <= 1.0:
        raise ParameterError(f"select: lam must be in [0, 1], got {lam}")
    if len(vectors) != n:
        raise ParameterError(f"select: {len(vectors)} vectors for {n} candidates")
    rel = np.nan_to_num(table[relevance].to_numpy(dtype=np.float64), nan=-np.inf)
    v = np.asarray(vectors, dtype=np.float32)
    caps = {c: m for c, m in (caps or {}).items() if c in table.columns}
    values = {c: table[c].to_numpy() for c in caps}
    present = {c: pd.notna(table[c]).to_numpy() for c in caps}
    counts: dict = {c: {} for c in caps}
    track = table["track_id"].to_numpy() if "track_id" in table.columns else None
    overlap = suppress_overlap and track is not None and {"start", "end"} <= set(table.columns)
    starts = table["start"].to_numpy() if overlap else None
    ends = table["end"].to_numpy() if overlap else None
    open_ = np.ones(n, dtype=bool)
    redundancy = np.zeros(n)
    chosen: list[int] = []
    while len(chosen) < k and open_.any():
        gain = rel if not chosen else lam * rel - (1.0 - lam) * redundancy
        pick = int(np.argmax(np.where(open_, gain, -np.inf)))
        chosen.append(pick)
        open_[pick] = False
        redundancy = np.maximum(redundancy, v @ v[pick])
        for c, limit in caps.items():
            if not present[c][pick]:
                continue
            value = values[c][pick]
            counts[c][value] = counts[c].get(value, 0) + 1
            cap = limit.get(value) if isinstance(limit, dict) else limit
            if cap is not None and counts[c][value] >= cap:
                open_ &= ~(present[c] & (values[c] == value))
        if overlap:
            open_ &= ~((track == track[pick]) & (starts < ends[pick]) & (starts[pick] < ends))
    return chosen


def rerank(table: pd.DataFrame, vectors: np.ndarray, options: Rerank, *, k: int) -> pd.DataFrame:
    """Score ``table`` (its factor columns, see the module doc) and select ``k`` rows: the result,
    ranked, with ``rank``, ``score`` and the ``contrib:`` columns."""
    scored = score(table, options.weights())
    chosen = select(scored, vectors, k, lam=1.0 - options.diversity, caps=options.all_caps(),
                    suppress_overlap=options.suppress_overlap)
    out = scored.iloc[chosen].reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    return out
