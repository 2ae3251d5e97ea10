"""FMA — the Free Music Archive dataset (Defferrard et al., ISMIR 2017; CC BY 4.0 metadata).

``fetch`` downloads ``fma_metadata.zip`` and one audio archive (resumable, SHA1-checked, then
extracted); ``FMADataset`` reads ``tracks.csv`` (its header spans two rows: section, column) and
``genres.csv`` and yields one track source per clip of the subset, with the official
artist-disjoint ``split`` (training / validation / test) and the audio layout
``fma_small/000/000002.mp3``. Files known to hold no audio are reported, never fatal: the build
records them in ``errors.jsonl`` like any other bad file.

    audiorag data fetch fma-small --to ~/data/fma
    audiorag build lib-fma --dataset fma:small --fma-root ~/data/fma
"""

from __future__ import annotations

import ast
import json
import logging
import os
import zipfile
from pathlib import Path

import pandas as pd

from ..errors import ParameterError
from ..io import write_atomic
from . import Dataset, TrackSource, cache_dir
from .fetch import download

log = logging.getLogger(__name__)
BASE_URL = "https://os.unil.cloud.switch.ch/fma/"
# archive name and published SHA1 (mdeff/fma README)
ARCHIVES = {
    "metadata": ("fma_metadata.zip", "f0df49ffe5f2a6008d7dc83c6915b31835dfe733"),
    "small": ("fma_small.zip", "ade154f733639d52e35e32f5593efe5be76c6d70"),
    "medium": ("fma_medium.zip", "c67b69ea232021025fca9231fc1c7c1a063ab50b"),
    "large": ("fma_large.zip", "497109f4dd721066b5ce5e5f250ec604dc78939e"),
    "full": ("fma_full.zip", "0f0ace23fbe9ba30ecb7e95f763e435ea802b8ab"),
}
SUBSETS = ("small", "medium", "large", "full")
# clips without audio because of wrong source metadata (mdeff/fma issues #8, #41, #44)
KNOWN_BAD = {99134: "no audio (wrong metadata upstream)", 108925: "no audio (wrong metadata upstream)",
             133297: "no audio (wrong metadata upstream)"}


def base_url(url: str | None = None) -> str:
    """The mirror: ``url``, else ``$AUDIORAG_FMA_URL``, else the official one."""
    u = url or os.environ.get("AUDIORAG_FMA_URL") or BASE_URL
    return u if u.endswith("/") else u + "/"


def fetch(subset: str, root: str | os.PathLike, *, url: str | None = None, checksums: dict | None = None,
          progress: bool = True) -> Path:
    """Download (resuming) and extract the metadata and the ``subset`` audio into ``root``."""
    if subset not in SUBSETS:
        raise ParameterError(f"FMA subset must be one of {SUBSETS}, got {subset!r}")
    root = Path(root)
    for name in ("metadata", subset):
        archive, sha1 = ARCHIVES[name]
        sha1 = (checksums or {}).get(name, sha1)
        path = download(base_url(url) + archive, root / archive, sha1=sha1, progress=progress)
        extract(path, root)
    return root


def extract(archive: Path, root: Path) -> None:
    """Unzip once (a marker file records a finished extraction)."""
    marker = root / f".{archive.stem}.extracted"
    if marker.exists():
        return
    with zipfile.ZipFile(archive) as z:
        bad = z.testzip()
        if bad is not None:
            raise ParameterError(f"{archive}: member {bad} is corrupt; delete the archive and fetch again")
        z.extractall(root)
    write_atomic(marker, archive.name + "\n")


def load_tracks(root: str | os.PathLike) -> pd.DataFrame:
    """``tracks.csv`` as a DataFrame indexed by FMA track id with two-level columns (section, column)."""
    path = Path(root) / "fma_metadata" / "tracks.csv"
    if not path.exists():
        raise ParameterError(f"{path} not found: fetch the metadata first (audiorag data fetch fma-small --to {root})")
    return pd.read_csv(path, index_col=0, header=[0, 1], low_memory=False)


def load_genres(root: str | os.PathLike) -> pd.DataFrame:
    return pd.read_csv(Path(root) / "fma_metadata" / "genres.csv", index_col=0)


def audio_path(root: str | os.PathLike, subset: str, track_id: int) -> Path:
    """``root/fma_<subset>/000/000002.mp3``."""
    tid = f"{int(track_id):06d}"
    return Path(root) / f"fma_{subset}" / tid[:3] / f"{tid}.mp3"


class FMADataset(Dataset):
    """The clips of one FMA subset (``small`` ⊂ ``medium`` ⊂ ``large``; ``full`` has untrimmed audio)."""

    def __init__(self, subset: str = "small", *, root: str | os.PathLike | None = None):
        if subset not in SUBSETS:
            raise ParameterError(f"FMA subset must be one of {SUBSETS}, got {subset!r}")
        self.subset = subset
        self.root = Path(root) if root else cache_dir() / "fma"
        self.id = f"fma-{subset}"

    def sources(self) -> list[TrackSource]:
        tracks = load_tracks(self.root)
        genres = load_genres(self.root)["title"].to_dict()
        if self.subset != "full":
            order = {"small": 0, "medium": 1, "large": 2}
            level = tracks[("set", "subset")].map(order)
            tracks = tracks[level <= order[self.subset]]
        out = []
        for tid, row in tracks.iterrows():
            ids = _id_list(row[("track", "genres")])
            out.append(TrackSource(str(audio_path(self.root, self.subset, tid)), {
                "track_id": int(tid), "title": _text(row[("track", "title")]),
                "artist_id": int(row[("artist", "id")]), "artist": _text(row[("artist", "name")]),
                "album_id": int(row[("album", "id")]), "genre_top": _text(row[("track", "genre_top")]),
                "genres": json.dumps([genres.get(g, str(g)) for g in ids]), "split": row[("set", "split")],
                "subset": row[("set", "subset")], "license": _text(row[("track", "license")])}))
        bad = [s for s in out if s.metadata["track_id"] in KNOWN_BAD]
        for s in bad:
            tid = s.metadata["track_id"]
            log.warning("FMA track %d is known to be bad: %s", tid, KNOWN_BAD[tid])
        return out

    def content_hash(self) -> str:
        from ..io import file_sha256
        return file_sha256(self.root / "fma_metadata" / "tracks.csv")


def _id_list(value) -> list[int]:
    if isinstance(value, str) and value.startswith("["):
        return [int(v) for v in ast.literal_eval(value)]
    return []


def _text(value) -> str:
    return "" if pd.isna(value) else str(value)
