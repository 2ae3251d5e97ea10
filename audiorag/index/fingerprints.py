"""The landmark postings of a library: hash → where it occurs, as sorted arrays, memory-mapped.

Files, under a generation's ``fingerprints/`` folder (each written atomically by the store's helpers, so
the generation commit protocol covers them like every other file)::

    fingerprints.json  landmark parameters (a library made with others is refused), counts
    offsets.npy        uint32[2**HASH_BITS + 1]: postings of hash h are postings[offsets[h]:offsets[h + 1]]
    postings.npy       uint32[n]: the global frame of each hash occurrence, grouped by hash, sorted within
    tracks.npy         int64[n_tracks, 3]: track_id, first global frame, frames (sorted by first frame)
    parts/<name>.npz   batches written during a build, folded in by :func:`consolidate`

Why sorted arrays rather than an embedded key-value store (LMDB, as Olaf and Panako use): postings are
written in bulk and read far more often than written, so a CSR layout (offsets + one flat array) costs
4 bytes per posting with no per-key overhead, opens with ``np.load(mmap_mode="r")`` in microseconds,
needs no dependency, and is an ordinary immutable file that the library's generations link, checksum
and roll back. A lookup is two reads of ``offsets`` and one contiguous slice. What a KV store does
better — cheap single-key inserts — is not needed: tracks arrive in batches (``parts/``) and are
merged once per build (an ``O(n log n)`` sort, about a second per 100 h of audio); removing tracks
rewrites the arrays once (``O(n)``). Each track owns a range of a global frame counter, so one uint32
says both which track and where; removed ranges are simply left unused (2**32 frames of 32 ms are
38,000 hours).

>>> import tempfile, numpy as np
>>> d = Path(tempfile.mkdtemp())
>>> create(d)
>>> write_part(d, "add-0", [7], [(np.array([5, 9], np.uint32), np.array([3, 4], np.uint32), 10)])
>>> consolidate(d)
>>> p = Postings(d)
>>> p.lookup(np.array([9, 1], np.uint32))
(array([0]), array([4], dtype=uint32))
>>> p.locate(np.array([4])), track_ids(d)
((array([7]), array([4])), [7])
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import io
from ..descriptors import landmarks
from ..errors import IncompatibleLibraryError
from ..library.store import read_json, read_npy, read_npz, write_json, write_npy, write_npz

DIR = "fingerprints"
GAP = 64  # frames left unused between tracks, so that no alignment runs from one track into the next


def params() -> dict:
    """The landmark parameters the postings depend on (stored, and compared when a library is opened)."""
    L = landmarks
    return {"sr": L.SR, "n_fft": L.N_FFT, "hop": L.HOP, "bands": [L.F_MIN, L.F_MAX, L.BANDS_PER_OCTAVE],
            "peaks": [L.PEAK_BANDS, L.PEAK_FRAMES, L.PEAKS_PER_SECOND, L.THRESHOLD_DB, L.FLOOR_DB],
            "hash": [L.DT_MAX, L.DF_MAX, L.FAN_OUT, L.LOOK_AHEAD, L.RATIO_LEVELS, L.HASH_BITS], "version": 1}


def exists(path: Path) -> bool:
    """Whether ``path`` (a ``fingerprints/`` folder) holds postings."""
    return (Path(path) / "fingerprints.json").exists()


def create(path: Path) -> None:
    """Empty postings in ``path`` (nothing is changed when they exist with the same parameters)."""
    path = Path(path)
    if exists(path):
        check(path)
        return
    io.make_dirs(path)
    _write(path, np.zeros(1 << landmarks.HASH_BITS, np.int64), np.zeros(0, np.uint32), np.zeros((0, 3), np.int64))


def check(path: Path) -> dict:
    """The stored metadata; :class:`IncompatibleLibraryError` when made with other landmark parameters."""
    meta = read_json(Path(path) / "fingerprints.json")
    if meta.get("params") != params():
        raise IncompatibleLibraryError(f"{path}: fingerprints were made with {meta.get('params')}, this audiorag "
                                       f"makes {params()}; rebuild them (remove the folder, build --fingerprint)")
    return meta


def _write(path: Path, counts: np.ndarray, postings: np.ndarray, tracks: np.ndarray) -> None:
    offsets = np.zeros(len(counts) + 1, np.uint32)
    np.cumsum(counts, out=offsets[1:])
    write_npy(path / "postings.npy", postings.astype(np.uint32, copy=False))
    write_npy(path / "offsets.npy", offsets)
    write_npy(path / "tracks.npy", tracks.astype(np.int64, copy=False))
    seconds = float(tracks[:, 2].sum()) * landmarks.FRAME_SECONDS if len(tracks) else 0.0
    write_json(path / "fingerprints.json", {"params": params(), "n_postings": int(len(postings)),
                                            "n_tracks": int(len(tracks)), "seconds": seconds,
                                            "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})


def write_part(path: Path, name: str, track_ids, prints: list[tuple]) -> None:
    """Stage a batch: ``prints`` holds ``(hashes, frames, n_frames)`` per track (see :func:`landmarks.fingerprint`)."""
    io.make_dirs(Path(path) / "parts")
    hashes = [np.asarray(p[0], np.uint32) for p in prints]
    write_npz(Path(path) / "parts" / f"{name}.npz", track_ids=np.asarray(track_ids, np.int64),
              n_frames=np.asarray([int(p[2]) for p in prints], np.int64),
              counts=np.asarray([len(h) for h in hashes], np.int64),
              hashes=np.concatenate(hashes) if hashes else np.zeros(0, np.uint32),
              frames=np.concatenate([np.asarray(p[1], np.uint32) for p in prints]) if prints
              else np.zeros(0, np.uint32))


def _parts(path: Path) -> list[Path]:
    return sorted((Path(path) / "parts").glob("*.npz")) if (Path(path) / "parts").exists() else []


def pending(path: Path) -> bool:
    """Whether batches wait to be folded in."""
    return bool(_parts(path))


def track_ids(path: Path) -> list[int]:
    """The tracks with landmarks, folded in or staged."""
    if not exists(path):
        return []
    done = read_npy(Path(path) / "tracks.npy", mmap=False)[:, 0].tolist()
    return done + [t for p in _parts(path) for t in read_npz(p)["track_ids"].tolist()]


def _hash_of_each(offsets: np.ndarray) -> np.ndarray:
    """The hash of every posting, from the CSR offsets."""
    return np.repeat(np.arange(len(offsets) - 1, dtype=np.uint64), np.diff(offsets.astype(np.int64)))


def consolidate(path: Path) -> None:
    """Fold the staged batches into the postings (one sort) and delete them; inside a library change."""
    path = Path(path)
    parts = _parts(path)
    if not parts:
        return
    check(path)
    offsets = read_npy(path / "offsets.npy", mmap=False)
    old = read_npy(path / "postings.npy", mmap=False)
    tracks = read_npy(path / "tracks.npy", mmap=False)
    known = set(tracks[:, 0].tolist())
    next_base = int((tracks[:, 1] + tracks[:, 2]).max()) + GAP if len(tracks) else 0
    keys, rows = [(_hash_of_each(offsets) << np.uint64(32)) | old.astype(np.uint64)], [tracks]
    for p in parts:
        z = read_npz(p)
        bounds = np.concatenate([[0], np.cumsum(z["counts"])])
        for i, tid in enumerate(z["track_ids"].tolist()):
            if tid in known:  # folded before (a batch written twice): keep the first
                continue
            known.add(tid)
            lo, hi = bounds[i], bounds[i + 1]
            frames = z["frames"][lo:hi].astype(np.uint64) + np.uint64(next_base)
            keys.append((z["hashes"][lo:hi].astype(np.uint64) << np.uint64(32)) | frames)
            rows.append(np.array([[tid, next_base, int(z["n_frames"][i])]], np.int64))
            next_base += int(z["n_frames"][i]) + GAP
    if next_base >= 1 << 32:
        raise IncompatibleLibraryError(f"{path}: more than 2**32 frames of audio ({next_base}); split the library")
    key = np.sort(np.concatenate(keys))
    counts = np.bincount((key >> np.uint64(32)).astype(np.int64), minlength=1 << landmarks.HASH_BITS)
    _write(path, counts, (key & np.uint64(0xFFFFFFFF)).astype(np.uint32), np.concatenate(rows))
    io.remove(path / "parts")


def remove(path: Path, ids) -> int:
    """Drop the postings of tracks ``ids`` (inside a library change); returns how many tracks had some."""
    path = Path(path)
    consolidate(path)
    tracks = read_npy(path / "tracks.npy", mmap=False)
    gone = np.isin(tracks[:, 0], np.asarray(list(ids), np.int64))
    if not gone.any():
        return 0
    offsets = read_npy(path / "offsets.npy", mmap=False)
    postings = read_npy(path / "postings.npy", mmap=False)
    row = np.searchsorted(tracks[:, 1], postings, side="right") - 1
    keep = ~gone[row]
    counts = np.bincount(_hash_of_each(offsets)[keep].astype(np.int64), minlength=len(offsets) - 1)
    _write(path, counts, postings[keep], tracks[~gone])
    return int(gone.sum())


class Postings:
    """Read-only, memory-mapped postings of one ``fingerprints/`` folder."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.meta = check(self.path)
        self.offsets = read_npy(self.path / "offsets.npy")
        self.postings = read_npy(self.path / "postings.npy")
        self.tracks = read_npy(self.path / "tracks.npy", mmap=False)
        if len(self.offsets) != (1 << landmarks.HASH_BITS) + 1 or int(self.offsets[-1]) != len(self.postings):
            raise IncompatibleLibraryError(f"{self.path}: offsets and postings disagree; run `audiorag check`")

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every posting of each query hash: ``(index into hashes, global frame)``."""
        hashes = np.asarray(hashes, np.int64)
        lo = self.offsets[hashes].astype(np.int64)
        n = self.offsets[hashes + 1].astype(np.int64) - lo
        which = np.repeat(np.arange(len(hashes)), n)
        starts = np.repeat(lo - np.concatenate([[0], np.cumsum(n)[:-1]]), n)
        return which, np.asarray(self.postings[starts + np.arange(len(which))])

    def counts(self, hashes: np.ndarray) -> np.ndarray:
        """How many postings each hash has."""
        hashes = np.asarray(hashes, np.int64)
        return self.offsets[hashes + 1].astype(np.int64) - self.offsets[hashes].astype(np.int64)

    def locate(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(track_id, frame within the track)`` of global frames."""
        frames = np.asarray(frames, np.int64)
        row = np.clip(np.searchsorted(self.tracks[:, 1], frames, side="right") - 1, 0, None)
        return self.tracks[row, 0], frames - self.tracks[row, 1]

    @property
    def n_frames(self) -> int:
        """Frames of audio indexed (the sum over tracks)."""
        return int(self.tracks[:, 2].sum())
