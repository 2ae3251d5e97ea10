"""Mood of moments from their descriptors: arousal and valence in [0, 1], a mood word and its confidence.
Plain arrays in, plain arrays out (layer 2). A fixed, documented model (no training):

- **arousal** — the mean of four cues, each mapped linearly onto [0, 1] and clipped (:data:`AROUSAL_CUES`):
  loudness (−40 → −10 dBFS RMS), tempo (60 → 180 BPM), onset rate (0.5 → 8 per second, log scale) and
  spectral centroid (400 → 4,000 Hz, log scale). A missing cue (NaN: no onsets, a library described before
  the cue existed) is left out of the mean, and so is the tempo of a window with less than one onset per second
  (a drone or a pad has no pulse, and its tempo estimate is noise).
- **valence** — from the mode: 0.5 ± 0.4 × the key confidence (+ major, − minor; clipped to [0, 1]).
- **tags** (optional) — a tagger's probabilities (musicnn MSD or MTT names) move each axis halfway towards the
  tags' vote: the share of the axis' positive tags in the positive + negative ones (:data:`TAG_CUES`: *happy,
  party, catchy* against *sad* for valence; *fast, loud, party, dance...* against *slow, quiet, soft, mellow,
  chill...* for arousal). A tagger with none of an axis' tags leaves it alone.
- **mood word** — the quadrant of the (valence, arousal) square, after Russell's circumplex: *happy* (positive,
  aroused), *calm* (positive, low arousal), *sad* (negative, low), *dark* (negative, aroused) — four of the moods
  ``recommend --mood`` and re-ranking accept (:data:`MOODS`; *energetic* and *bright* are one-axis targets for
  ranking, never estimated); **confidence** — twice the distance to the nearest quadrant border (0: on a
  border, 1: in a corner).

>>> a = arousal(loudness_db=[-38.0, -12.0], tempo=[65.0, 170.0], onset_rate=[0.6, 7.0], centroid_hz=[450, 3500])
>>> v = valence(mode=[0, 1], key_confidence=[0.8, 0.8])
>>> a.round(2).tolist(), v.round(2).tolist(), words(v, a)[0].tolist()
([0.06, 0.94], [0.82, 0.18], ['calm', 'dark'])
"""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError

#: arousal cue → (low, high, scale): the values mapped to 0 and 1
AROUSAL_CUES = {"loudness_db": (-40.0, -10.0, "linear"), "tempo": (60.0, 180.0, "linear"),
                "onset_rate": (0.5, 8.0, "log"), "centroid_hz": (400.0, 4000.0, "log")}
#: axis → (positive tags, negative tags) of musicnn's MSD and MTT vocabularies (lower case)
TAG_CUES = {"valence": (("happy", "party", "catchy", "sexy"), ("sad",)),
            "arousal": (("fast", "loud", "party", "dance", "beat", "beats", "techno", "metal", "heavy metal", "punk",
                         "hard rock", "electro"),
                        ("slow", "quiet", "soft", "mellow", "chill", "chillout", "easy listening", "ambient",
                         "new age"))}
TAG_WEIGHT = 0.5
MIN_PULSE = 1.0  # onsets per second below which a window's tempo is not an arousal cue
#: (valence ≥ 0.5, arousal ≥ 0.5) → the estimated mood word (Russell's circumplex quadrants)
QUADRANTS = {(True, True): "happy", (True, False): "calm", (False, False): "sad", (False, True): "dark"}
#: moods: targets on the two axes (arousal, valence in [0, 1]) and the tags (musicnn MagnaTagATune names) that
#: speak for the mood when re-ranking with a tagger (:func:`audiorag.rerank.mood_score`)
MOODS: dict[str, dict] = {
    "calm": {"arousal": 0.0, "tags": ["slow", "quiet", "soft", "ambient", "new age", "classical"]},
    "energetic": {"arousal": 1.0, "tags": ["fast", "loud", "techno", "dance", "metal", "rock", "beat"]},
    "dark": {"valence": 0.0, "arousal": 0.75, "tags": ["weird", "metal", "techno"]},
    "bright": {"valence": 1.0, "tags": ["pop", "classical", "piano", "harp", "flute"]},
    "happy": {"valence": 1.0, "arousal": 0.75, "tags": ["pop", "dance", "beat", "fast"]},
    "sad": {"valence": 0.0, "arousal": 0.2, "tags": ["slow", "soft", "quiet", "strings", "violin", "cello"]},
}


def _unit(values, low: float, high: float, scale: str) -> np.ndarray:
    x = np.asarray(values, np.float64)
    if scale == "log":
        x, low, high = np.log(np.clip(x, low, None)), np.log(low), np.log(high)   # NaN stays NaN
    return np.clip((x - low) / (high - low), 0.0, 1.0)


def arousal(**cues) -> np.ndarray:
    """Arousal in [0, 1]: the mean of the :data:`AROUSAL_CUES` given (arrays of one length; NaN: unknown, left
    out). A row with no known cue gets 0.5.

    >>> arousal(loudness_db=[-10.0, np.nan], tempo=[np.nan, np.nan]).tolist()
    [1.0, 0.5]
    """
    unknown = set(cues) - set(AROUSAL_CUES)
    if unknown or not cues:
        raise ParameterError(f"arousal: cues are {', '.join(AROUSAL_CUES)}; got {', '.join(sorted(cues)) or 'none'}")
    parts = np.stack([_unit(v, *AROUSAL_CUES[c]) for c, v in cues.items()])
    known = ~np.isnan(parts)
    n = known.sum(axis=0)
    return np.where(n > 0, np.nansum(parts, axis=0) / np.maximum(n, 1), 0.5)


def valence(mode, key_confidence) -> np.ndarray:
    """Valence in [0, 1] from the mode (0 major, 1 minor, −1 unknown) and the key confidence.

    >>> valence([0, 1, -1], [1.0, 0.5, 0.9]).round(2).tolist()
    [0.9, 0.3, 0.5]
    """
    sign = np.where(np.asarray(mode) == 0, 1.0, np.where(np.asarray(mode) == 1, -1.0, 0.0))
    conf = np.clip(np.nan_to_num(np.asarray(key_confidence, np.float64)), 0.0, 1.0)
    return np.clip(0.5 + 0.4 * sign * conf, 0.0, 1.0)


def with_tags(axis: str, values, tags: dict) -> np.ndarray:
    """``values`` of ``axis`` ("valence" or "arousal") moved :data:`TAG_WEIGHT` of the way towards the tags'
    vote; ``tags`` maps tag names (any case) to probability arrays. Unchanged without the axis' tags.

    >>> with_tags("valence", [0.9, 0.9], {"happy": np.array([0.02, 0.0]), "sad": np.array([0.02, 0.1])}).tolist()
    [0.7, 0.45]
    """
    pos, neg = TAG_CUES[axis]
    lower = {str(k).lower(): np.asarray(v, np.float64) for k, v in tags.items()}
    have_pos, have_neg = [lower[t] for t in pos if t in lower], [lower[t] for t in neg if t in lower]
    values = np.asarray(values, np.float64)
    if not have_pos or not have_neg:
        return values
    p, q = np.sum(have_pos, axis=0), np.sum(have_neg, axis=0)
    vote = np.where(p + q > 0, p / np.where(p + q > 0, p + q, 1.0), 0.5)
    return (1 - TAG_WEIGHT) * values + TAG_WEIGHT * vote


def words(valence_, arousal_) -> tuple[np.ndarray, np.ndarray]:
    """The mood word of each (valence, arousal) point — its quadrant of the square (:data:`QUADRANTS`) — and
    its confidence: twice the distance to the nearest quadrant border (0 on a border, 1 in a corner).

    >>> w, c = words([0.8, 0.2, 0.45], [0.1, 0.9, 0.4])
    >>> w.tolist(), c.round(2).tolist()
    (['calm', 'dark', 'sad'], [0.6, 0.6, 0.1])
    """
    v, a = np.asarray(valence_, np.float64), np.asarray(arousal_, np.float64)
    names = np.array([QUADRANTS[(bool(x >= 0.5), bool(y >= 0.5))] for x, y in zip(v.ravel(), a.ravel())], dtype=object)
    return names, 2 * np.minimum(np.abs(v - 0.5), np.abs(a - 0.5))


def estimate(descriptors: dict, tags: dict | None = None) -> dict:
    """``valence``, ``arousal``, ``mood`` and ``mood_confidence`` of windows from their descriptors (the arrays of
    :func:`audiorag.descriptors.tonal.describe`; ``onset_rate``/``centroid_hz`` may be missing) and optionally
    their tag probabilities (tag name → array).

    >>> d = {"mode": np.array([0, 1]), "key_confidence": np.array([0.9, 0.9]), "tempo": np.array([70.0, 170.0]),
    ...      "loudness_db": np.array([-35.0, -12.0])}
    >>> tags = {"happy": np.array([0.0, 0.4]), "sad": np.array([0.3, 0.0])}
    >>> estimate(d)["mood"].tolist(), estimate(d, tags)["mood"].tolist()
    (['calm', 'dark'], ['sad', 'happy'])
    """
    cues = {c: np.asarray(descriptors[c], np.float64) for c in AROUSAL_CUES if c in descriptors}
    if "tempo" in cues and "onset_rate" in cues:
        cues["tempo"] = np.where(cues["onset_rate"] < MIN_PULSE, np.nan, cues["tempo"])
    a = arousal(**cues)
    v = valence(descriptors["mode"], descriptors["key_confidence"])
    if tags:
        a, v = with_tags("arousal", a, tags), with_tags("valence", v, tags)
    word, conf = words(v, a)
    return {"valence": v, "arousal": a, "mood": word, "mood_confidence": conf}
