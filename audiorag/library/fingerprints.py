"""The library's landmark fingerprints: computed in the build pipeline, committed with each batch.

The postings themselves (format, merge, removal) are :mod:`audiorag.index.fingerprints`; this module
joins them to the library's life cycle: :func:`enable` creates them, each ``add`` batch stages the
landmarks of its new tracks in the same commit as the tracks (:func:`write_part`), :func:`consolidate`
folds them in with the rest, ``remove``/``replace`` drop a track's postings in their own commit, and
:func:`backfill` fingerprints tracks added before fingerprints were enabled. Everything runs under the
writers' lock, each batch one generation: a build killed anywhere resumes from its last commit.

>>> import tempfile, os, numpy as np, soundfile as sf
>>> from audiorag import Library
>>> d = tempfile.mkdtemp()
>>> sf.write(os.path.join(d, "a.wav"), np.random.default_rng(0).standard_normal(22050 * 4) * .1, 22050)
>>> lib = Library.create(os.path.join(d, "lib"))
>>> _ = lib.add(d, embedders=["features45"], workers=1, progress=False)
>>> enabled(lib), backfill(lib, workers=1, progress=False), fingerprinted(lib)
(False, 1, [0])
"""

from __future__ import annotations

import logging

from ..engines import default_workers, file_landmarks, map_pool
from ..index import fingerprints as postings
from ..io import decode_path

log = logging.getLogger(__name__)


def path(lib):
    """The ``fingerprints/`` folder of the generation ``lib`` reads (or writes)."""
    return lib.data / postings.DIR


def enabled(lib) -> bool:
    """Whether the library keeps fingerprints (then every ``add`` computes them)."""
    return postings.exists(path(lib))


def enable(lib) -> None:
    """Create empty postings (one commit; nothing when they exist)."""
    if not enabled(lib):
        with lib.store.transaction():
            postings.create(path(lib))
    postings.check(path(lib))


def write_part(lib, name: str, track_ids, results: list) -> None:
    """Stage the landmarks of an ``add`` batch (inside its commit) when the library keeps fingerprints."""
    pairs = [(t, r) for t, r in zip(track_ids, results) if r is not None]  # None: computed later by backfill
    if enabled(lib) and pairs:
        postings.write_part(path(lib), name, [t for t, _ in pairs], [r for _, r in pairs])


def consolidate(lib) -> None:
    """Fold staged landmarks into the postings (inside the open change)."""
    if enabled(lib):
        postings.consolidate(path(lib))


def remove(lib, track_ids) -> None:
    """Drop the postings of removed tracks (inside the open change)."""
    if enabled(lib):
        postings.remove(path(lib), track_ids)


def fingerprinted(lib) -> list[int]:
    """The ids of the tracks that have landmarks."""
    return sorted(postings.track_ids(path(lib)))


def _fingerprint_file(task) -> tuple[int, tuple | None]:
    """Worker task of :func:`backfill`: decode one library track and compute its landmarks."""
    from ..audio import load
    track_id, uri = task
    try:
        y, sr = load(decode_path(uri))
    except Exception as exc:  # noqa: BLE001 - a file gone or changed since it was added: no landmarks, logged
        log.warning("fingerprints: %s: %s", uri, exc)
        return track_id, None
    return track_id, file_landmarks(y, sr)


def backfill(lib, *, workers: int | None = None, progress: bool = True, batch_tracks: int = 64) -> int:
    """Fingerprint every track that has no landmarks yet (enabling fingerprints first); each batch one
    commit, the postings merged once at the end. Returns how many tracks were fingerprinted."""
    with lib.store.lock():
        enable(lib)
        done = set(fingerprinted(lib))
        todo = lib.tracks[~lib.tracks["track_id"].isin(done)]
        tasks = list(zip(todo["track_id"].astype(int), todo["uri"]))
        if not tasks:
            return 0
        results = map_pool(_fingerprint_file, tasks, workers=workers or default_workers(), desc="fingerprints",
                           progress=progress)
        batch, n = [], 0
        for track_id, res in results:
            if res is None:
                continue
            batch.append((track_id, res))
            if len(batch) >= batch_tracks:
                n += _commit(lib, batch)
                batch = []
        n += _commit(lib, batch)
        if postings.pending(path(lib)):
            with lib.store.transaction():
                consolidate(lib)
    return n


def _commit(lib, batch) -> int:
    if batch:
        with lib.store.transaction():
            postings.write_part(path(lib), f"backfill-{batch[0][0]:012d}", [t for t, _ in batch],
                                [r for _, r in batch])
    return len(batch)


def summary(lib) -> dict | None:
    """For ``info``: tracks fingerprinted, postings, bytes on disk and per hour of audio (None: none kept).

    >>> from audiorag import Library
    >>> summary(Library.create(__import__("tempfile").mkdtemp() + "/lib")) is None
    True
    """
    if not enabled(lib):
        return None
    meta = postings.check(path(lib))
    size = sum(p.stat().st_size for p in path(lib).rglob("*") if p.is_file())
    hours = meta.get("seconds", 0.0) / 3600
    return {"tracks": meta["n_tracks"], "postings": meta["n_postings"], "bytes": size, "hours": round(hours, 3),
            "bytes_per_hour": round(size / hours) if hours else None}
