"""The re-ranking factors of a library's search hits: the hits' stored descriptors (``key``, ``tempo``,
``loudness_db``...), their harmony / tempo / key compatibility with the query's descriptors (a library
moment's stored ones, or the clip's computed), a mood's fit; and the search filters on descriptor
columns. The scoring and selection themselves are pure functions in :mod:`audiorag.rerank`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..descriptors.mood import QUADRANTS
from ..descriptors.tonal import MODES, describe, harmonic_similarity, key_name, parse_key
from ..descriptors.tonal import SR as TONAL_SR
from ..errors import AudioragError, ParameterError
from ..library import conditioning
from ..library import descriptors as stored
from ..rerank import Rerank, key_compatibility, mood_score, rerank, tempo_compatibility
from .filters import track_mask


def candidate_table(lib, hits: pd.DataFrame | dict, *, query: dict | None = None, mood: str | None = None,
                    moods: dict | None = None) -> pd.DataFrame:
    """Search ``hits`` (a table or dict of columns; one row per segment, ``score`` = cosine) with the factor
    columns: the hits' descriptors (``key``, ``tempo``, ``loudness_db``, ``valence``, ``arousal``, the mood word as
    ``mood_word``...) and, given the ``query``'s descriptors
    (``tonic``, ``mode``, ``tempo``, ``harmony``), their harmony / tempo / key compatibility with it;
    given a ``mood``, its :func:`~audiorag.rerank.mood_score`. A library without descriptors gets 0 for those
    factors."""
    items = hits.items() if isinstance(hits, dict) else ((c, hits[c].array) for c in hits.columns)
    cols = {("similarity" if c == "score" else c): v for c, v in items}
    sid = np.asarray(cols["segment_id"])
    if not stored.present(lib):
        return pd.DataFrame(cols)
    table = lib.descriptors()
    desc = {("mood_word" if c == "mood" else c): table[c].to_numpy()[sid] for c in table.columns}  # "mood": the factor
    cols = {(f"track.{c}" if c in desc else c): v for c, v in cols.items()}  # e.g. a track's own `key`
    cols.update(desc)
    z = stored.arrays(lib)
    tonic, mode = z["tonic"][sid], z["mode"][sid]
    if query:
        if query.get("harmony") is not None:
            cols["harmony"] = harmonic_similarity(query["harmony"], z["harmony"][sid])
        if query.get("tempo") is not None:
            cols["tempo_match"] = tempo_compatibility(query["tempo"], desc["tempo"])
        if query.get("tonic") is not None and query["tonic"] >= 0:
            cols["key_match"] = key_compatibility(query["tonic"], query["mode"], tonic, mode)
    if mood:
        axes = {a: np.nan_to_num(desc[a].astype(np.float64), nan=0.5) for a in ("arousal", "valence")}
        cols["mood"] = mood_score(mood, axes["arousal"], axes["valence"], _tags(lib, sid), moods=moods)
    return pd.DataFrame(cols)


def _tags(lib, segment_ids) -> pd.DataFrame | None:
    """Tag probabilities of the segments when the library has exactly one tagger, covering every segment
    (only these rows are read: a sharded view gathers them from its shards)."""
    try:
        emb = lib.tagger()
    except AudioragError:
        return None
    tags = emb.tags()
    if len(tags) != len(lib.segments):  # a tagger still being built
        return None
    return pd.DataFrame(np.asarray(tags[np.asarray(segment_ids)]), columns=emb.tag_names)


def moment_descriptors(lib, segment_id: int) -> dict:
    """The factors' reference: the descriptors of the library's segment ``segment_id``."""
    if not stored.present(lib):
        return {}
    z = stored.arrays(lib)
    return {"tonic": int(z["tonic"][segment_id]), "mode": int(z["mode"][segment_id]),
            "tempo": float(z["tempo"][segment_id]) if z["described"][segment_id] else None,
            "harmony": z["harmony"][segment_id]}


def clip_descriptors(clip) -> dict:
    """The factors' reference for a clip (:class:`audiorag.audio.Clip`; the whole clip as one window)."""
    y = clip.at(TONAL_SR)
    d = describe(y, TONAL_SR, [0.0], [len(y) / TONAL_SR])
    return {"tonic": int(d["tonic"][0]), "mode": int(d["mode"][0]), "tempo": float(d["tempo"][0]),
            "harmony": d["harmony"][0]}


def descriptor_filters(lib, filters: dict | None) -> tuple[dict | None, np.ndarray | None]:
    """Split search ``filters`` into track filters and a mask over segments from the descriptor
    columns (:data:`audiorag.library.descriptors.COLUMNS`; ``track.<name>`` names a track column
    that a descriptor shadows). A key condition accepts any spelling :func:`parse_key` reads.

    Returns ``(track_filters or None, segment mask or None)``.
    """
    if not filters:
        return filters, None
    described = stored.present(lib)
    track, moment = {}, {}
    for col, want in filters.items():
        if col.startswith("track."):
            track[col.removeprefix("track.")] = want
        elif described and col in stored.COLUMNS:
            moment[col] = _normalise_keys(want) if col == "key" else _known_words(col, want)
        elif col in stored.COLUMNS and col not in lib.tracks.columns:
            raise ParameterError(f"filter on {col!r}: {lib.path} has no descriptors yet; the next build computes "
                                 "them (`audiorag build LIB --dataset SPEC`, or lib.add(...))")
        else:
            track[col] = want
    if not moment:
        return track or None, None
    return track or None, track_mask(lib.descriptors().reset_index(drop=True), moment, what="filter")


#: the words a moment's text descriptors take (a value outside them is a typo, not an empty answer)
WORDS = {"mood": tuple(QUADRANTS.values()), "mode": MODES}


def _known_words(col: str, want):
    """Equality conditions on ``mood`` / ``mode`` lower-cased and checked against :data:`WORDS`.

    >>> _known_words("mood", ["Calm", {"op": "!=", "value": "sad"}])
    ['calm', {'op': '!=', 'value': 'sad'}]
    >>> _known_words("mood", "elated")
    Traceback (most recent call last):
    ...
    audiorag.errors.ParameterError: filter on 'mood': 'elated' is not one of happy, calm, sad, dark
    """
    if col not in WORDS:
        return want

    def one(v):
        if isinstance(v, dict):
            return {**v, "value": one(v["value"])} if v.get("op") in ("=", "!=") else v
        word = str(v).strip().lower()
        if word not in WORDS[col]:
            raise ParameterError(f"filter on {col!r}: {v!r} is not one of {', '.join(WORDS[col])}")
        return word
    return [one(v) for v in want] if isinstance(want, (list, tuple, set)) else one(want)


def _normalise_keys(want):
    """``"a min"`` → ``"A minor"`` (for equality conditions on ``key``)."""
    def one(v):
        if isinstance(v, dict):
            return {**v, "value": one(v["value"])} if v.get("op") in ("=", "!=") else v
        return key_name(*parse_key(v))
    return [one(v) for v in want] if isinstance(want, (list, tuple, set)) else one(want)


def rerank_hits(lib, ctx, query, hits: pd.DataFrame, *, k: int, options: Rerank) -> pd.DataFrame:
    """Re-rank search candidates ``hits``: their factors against the query's descriptors (a library moment's
    stored ones; an audio clip's computed from the clip), then :func:`audiorag.rerank.rerank`. Columns: the
    hits', the descriptors, ``similarity`` (the cosine), the factors, ``contrib:*`` and ``score``."""
    ref = None
    if query.kind == "moment":
        ref = moment_descriptors(lib, ctx.layout.moment(query.track_id, query.at))
    elif query.kind == "audio":
        ref = clip_descriptors(query.clip(conditioning(lib)))
    table = candidate_table(lib, hits, query=ref, mood=options.mood)
    vectors = np.asarray(ctx.vectors[table["segment_id"].to_numpy()])
    return rerank(table, vectors, options, k=k)
