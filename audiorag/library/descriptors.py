"""Per-segment musical descriptors in the library: key, mode, confidence, tempo, loudness, onset rate,
spectral centroid, harmony, and the mood they imply (:mod:`audiorag.descriptors.mood`).

They are computed at build time from the audio the engine already decodes (any embedder, see
:func:`audiorag.engines.describe_windows`), committed with each batch of tracks as a part
(``descriptors/parts/<batch>.npz``, beside the embeddings' parts) and folded into
``descriptors/descriptors.npz`` (one row per segment, the vectors' row order) when the batch is
consolidated. A library built before descriptors existed gets them on its next ``add``/``build``
(:func:`backfill`: its tracks are decoded once more, in batches, each batch one commit).

:meth:`audiorag.Library.descriptors` reads them as a table aligned with ``lib.segments``
(``key`` like ``"A minor"``, ``mode``, ``key_confidence``, ``tempo``, ``loudness_db``, ``onset_rate``,
``centroid_hz``, and ``valence``, ``arousal``, ``mood``, ``mood_confidence``); search filters use these columns
(``--where key="A minor"``, ``--where "tempo>=100"``, ``--where mood=calm``). The mood is computed when the
table is read, from the stored descriptors and, when the library has taggers, their tags (the highest
probability of each tag name across taggers), so adding a tagger refines it without a rebuild. A library
described before onset rate and centroid existed has them empty (NaN); its arousal uses loudness and tempo.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from .. import io
from ..descriptors import mood
from ..descriptors.tonal import MODES, PITCH_CLASSES
from ..engines import default_workers, describe_windows, empty_descriptors, map_pool
from ..io import decode_path
from ..segment import Segmentation
from .store import read_npz, write_npz

log = logging.getLogger(__name__)
COLUMNS = ("key", "mode", "key_confidence", "tempo", "loudness_db", "onset_rate", "centroid_hz", "valence", "arousal",
           "mood", "mood_confidence")
_VALUES = ("key_confidence", "tempo", "loudness_db", "onset_rate", "centroid_hz")
_ARRAYS = ("tonic", "mode", *_VALUES, "harmony")
_FILE = "descriptors/descriptors.npz"


def write_part(lib, name: str, track_ids, results: list[dict]) -> None:
    """Inside the batch's change: the descriptors of its tracks, folded by :func:`consolidate`."""
    io.make_dirs(lib.data / "descriptors" / "parts")
    write_npz(lib.data / "descriptors" / "parts" / f"{name}.npz", track_ids=np.asarray(track_ids, np.int64),
              counts=np.asarray([len(r["tonic"]) for r in results], np.int64),
              **{a: np.concatenate([r[a] for r in results]) for a in _ARRAYS})


_CACHE: dict = {}


def _read(path) -> dict:
    """``descriptors.npz`` (remembered by path and modification time: searches read it per query)."""
    try:
        stamp = (str(path), os.stat(path).st_mtime_ns)
    except FileNotFoundError:
        return {}
    if stamp not in _CACHE:
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[stamp] = read_npz(path)
    return _CACHE[stamp]


def _stored(lib, n_segments: int) -> dict:
    """The stored arrays grown to ``n_segments`` rows (rows never described: ``described`` False)."""
    z = _read(lib.data / _FILE)
    empty = {**empty_descriptors(n_segments), "described": np.zeros(n_segments, bool)}
    out = {}
    for a, blank in empty.items():
        old = z.get(a)
        out[a] = blank if old is None else np.concatenate([old[:n_segments], blank[len(old):]])  # a copy
    return out


def consolidate(lib, segments: pd.DataFrame) -> None:
    """Inside the consolidating change: fold every part into ``descriptors.npz`` (rows of ``segments``)."""
    root = lib.data / "descriptors" / "parts"
    parts = sorted(root.glob("*.npz")) if root.exists() else []
    if not parts:
        return
    stored = _stored(lib, len(segments))
    rows = segments[segments["track_id"] >= 0].groupby("track_id", sort=False)["segment_id"].agg(["min", "size"])
    for p in parts:
        z = read_npz(p)
        offsets = np.concatenate([[0], np.cumsum(z["counts"])])
        for i, tid in enumerate(z["track_ids"].tolist()):
            if tid not in rows.index or rows.at[tid, "size"] != offsets[i + 1] - offsets[i]:
                continue  # the batch's track did not make it into the tables
            first = int(rows.at[tid, "min"])
            sl = slice(first, first + int(rows.at[tid, "size"]))
            for a in _ARRAYS:
                if a in z:  # a part written before the array existed leaves it empty
                    stored[a][sl] = z[a][offsets[i]:offsets[i + 1]]
            stored["described"][sl] = True
    write_npz(lib.data / _FILE, **stored)
    io.remove(root)


def missing_tracks(lib) -> pd.DataFrame:
    """The library's tracks whose segments have no descriptors yet."""
    segments = lib.segments
    described = _stored(lib, len(segments))["described"]
    live = segments["track_id"].to_numpy() >= 0
    todo = np.unique(segments["track_id"].to_numpy()[live & ~described])
    return lib.tracks[lib.tracks["track_id"].isin(todo)]


def _describe_file(task) -> tuple[int, dict | None]:
    """Worker task of :func:`backfill`: decode one library track and describe its windows."""
    from ..audio import load
    track_id, uri, window, hop, tail = task
    try:
        y, sr = load(decode_path(uri))
    except Exception as exc:  # noqa: BLE001 - a file gone since it was added keeps empty descriptors
        log.warning("descriptors: %s: %s", uri, exc)
        return track_id, None
    return track_id, describe_windows(y, sr, Segmentation(window, hop, tail), len(y) / sr)


def backfill(lib, *, workers: int | None = None, progress: bool = True, batch_tracks: int = 32) -> int:
    """Describe the tracks added before descriptors existed (each batch one commit); returns how many.
    Call with the library's writers' lock held (``add`` does)."""
    todo = missing_tracks(lib)
    if todo.empty:
        return 0
    seg = lib.segmentation
    tasks = [(int(t), u, seg.window, seg.hop, seg.tail) for t, u in zip(todo["track_id"], todo["uri"])]
    results = map_pool(_describe_file, tasks, workers=workers or default_workers(), desc="descriptors",
                       progress=progress)
    counts = lib.segments.groupby("track_id").size()
    batch: list = []
    for track_id, res in results:
        batch.append((track_id, res if res is not None else empty_descriptors(int(counts.get(track_id, 0)))))
        if len(batch) >= batch_tracks:
            _commit(lib, batch)
            batch = []
    if batch:
        _commit(lib, batch)
    log.info("descriptors: %d tracks described", len(tasks))
    return len(tasks)


def _commit(lib, batch) -> None:
    with lib.store.transaction():
        write_part(lib, f"backfill-{batch[0][0]:012d}", [t for t, _ in batch], [r for _, r in batch])
        consolidate(lib, lib.segments)


def table(lib) -> pd.DataFrame:
    """Descriptor columns aligned with ``lib.segments`` (NA where a segment has none), indexed by
    ``segment_id``: ``key`` ("A minor"), ``mode`` ("major"/"minor"), ``key_confidence``,
    ``tempo`` (BPM), ``loudness_db`` (dBFS), ``onset_rate`` (per second), ``centroid_hz``, ``valence``,
    ``arousal`` (0..1), ``mood`` (a word of :data:`audiorag.descriptors.mood.MOODS`), ``mood_confidence``.
    A sharded view (:class:`~audiorag.library.shards.ShardedLibrary`) reads its shards' tables, in its order."""
    if _sharded(lib):
        return lib.per_segment("descriptors", table)
    path = lib.data / _FILE
    taggers = _taggers(lib)
    stamp = ("table", str(path), os.stat(path).st_mtime_ns if path.exists() else 0, len(lib.segments),
             tuple((e.key, _mtime(e.path / "tags.npy")) for e in taggers))
    if stamp not in _CACHE:
        _CACHE[stamp] = _table(lib)
    return _CACHE[stamp]


def _mtime(path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return 0


def _taggers(lib) -> list:
    return [e for e in lib.embeddings() if e.is_tagger]


def segment_tags(lib, n_segments: int) -> dict:
    """Tag name (lower case) → probabilities of every segment: the highest across the library's taggers
    (taggers not yet covering every segment are left out)."""
    merged: dict = {}
    for e in _taggers(lib):
        probs = e.tags()
        if len(probs) != n_segments:
            continue
        for j, name in enumerate(e.tag_names):
            col = np.asarray(probs[:, j], np.float64)
            merged[name.lower()] = np.maximum(merged[name.lower()], col) if name.lower() in merged else col
    return merged


def _table(lib) -> pd.DataFrame:
    z = _stored(lib, len(lib.segments))
    ok = z["described"] & (z["tonic"] >= 0)
    names = np.array([f"{p} {m}" for m in MODES for p in PITCH_CLASSES], dtype=object)
    key = np.where(ok, names[np.clip(z["mode"] * 12 + z["tonic"], 0, 23)], None)
    mode = np.where(ok, np.array(MODES, dtype=object)[np.clip(z["mode"], 0, 1)], None)
    values = {c: np.where(ok, z[c], np.nan).astype(np.float64) for c in _VALUES}
    m = mood.estimate({**values, "mode": np.where(ok, z["mode"], -1)}, segment_tags(lib, len(ok)))
    return pd.DataFrame({"key": key, "mode": mode, **values,
                         "valence": np.where(ok, m["valence"], np.nan), "arousal": np.where(ok, m["arousal"], np.nan),
                         "mood": np.where(ok, m["mood"], None),
                         "mood_confidence": np.where(ok, m["mood_confidence"], np.nan)},
                        index=pd.Index(np.arange(len(ok)), name="segment_id"))


def harmony(lib) -> np.ndarray:
    """The harmony descriptors ``[n_segments, 12 × steps]`` (zero rows where a segment has none)."""
    return arrays(lib)["harmony"]


def arrays(lib) -> dict:
    """The stored arrays, one row per segment (``tonic``, ``mode``: −1 where none; read-only: shared
    between calls; a sharded view's: its shards', read by row on demand)."""
    if _sharded(lib):
        return lib.per_segment("descriptor arrays", arrays)
    path = lib.data / _FILE
    stamp = ("arrays", str(path), os.stat(path).st_mtime_ns if path.exists() else 0, len(lib.segments))
    if stamp not in _CACHE:
        z = _stored(lib, len(lib.segments))
        for a in ("tonic", "mode"):
            z[a] = np.where(z["described"], z[a], -1).astype(np.int8)
        _CACHE[stamp] = z
    return _CACHE[stamp]


def present(lib) -> bool:
    """Whether the library (a sharded view: any of its shards) stores descriptors (for any segment)."""
    if _sharded(lib):
        return any(present(s) for s in lib.shards)
    return os.path.exists(lib.data / _FILE)


def _sharded(lib) -> bool:
    """A sharded view (:mod:`audiorag.library.shards`, which imports this module): it gathers its shards'."""
    return hasattr(lib, "per_segment")
