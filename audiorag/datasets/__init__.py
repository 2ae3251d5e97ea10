"""Dataset recipes: each yields :class:`TrackSource` items (a file + metadata) for a library.

``resolve("synthetic:96")``, ``resolve("folder:/path/to/audio")``.

>>> resolve("synthetic:16").id
'synthetic-v3-n16-s0'
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ParameterError
from ..io import file_sha256, write_atomic  # noqa: F401  (used by the recipes; re-exported for old imports)


@dataclass
class TrackSource:
    """One item to ingest: an audio ``uri`` (a local path) and metadata columns for its track."""

    uri: str
    metadata: dict = field(default_factory=dict)


class Dataset:
    """A recipe that yields track sources. Subclasses set ``id`` and implement :meth:`sources`.

    ``problems`` lists what :meth:`sources` found but could not offer as a source (a dangling
    symlink, a symlink loop, an unreadable folder): one record per item,
    ``{"uri": path, "stage": "scan", "error": type name, "message": reason}``, refilled by
    every call of :meth:`sources` (empty for recipes that have nothing to report).

    >>> Dataset().problems
    []
    """

    id: str = ""

    @property
    def problems(self) -> list[dict]:
        return self.__dict__.setdefault("_problems", [])

    @problems.setter
    def problems(self, value: list[dict]) -> None:
        self.__dict__["_problems"] = list(value)

    def _problem(self, uri: str, error: str, message: str) -> None:
        """Record one item that cannot be a source (``stage`` "scan")."""
        self.problems.append({"uri": str(uri), "stage": "scan", "error": error, "message": message})

    def sources(self) -> list[TrackSource]:
        """The items to ingest (and, as a side effect, :attr:`problems`)."""
        raise NotImplementedError

    def content_hash(self) -> str:
        """A hash identifying the dataset's content (files and labels)."""
        raise NotImplementedError


def cache_dir() -> Path:
    """Where generated and downloaded audio goes: ``$AUDIORAG_CACHE`` or ``~/.cache/audiorag``."""
    return Path(os.environ.get("AUDIORAG_CACHE") or Path.home() / ".cache" / "audiorag")


def resolve(spec: str, **options) -> Dataset:
    """Parse a dataset spec: ``synthetic[:N[:SEED]]``, ``melodic[:N[:SEED]]``, ``folder:PATH`` (options: ``labels=CSV``,
    ``label_from_folder``, ``label_regex``), ``fma:SUBSET`` (option ``root=DIR``) or ``freesound:DIR``."""
    if os.path.isdir(spec):
        spec = f"folder:{spec}"
    kind, _, rest = spec.partition(":")
    if kind == "synthetic":
        from .synthetic import DEFAULT_N_TRACKS, SyntheticDataset
        parts = [p for p in rest.split(":") if p]
        try:
            n = int(parts[0]) if parts else DEFAULT_N_TRACKS
            seed = int(parts[1]) if len(parts) > 1 else 0
        except ValueError:
            raise ParameterError(f"dataset spec {spec!r}: expected synthetic[:N[:SEED]] with integers") from None
        return SyntheticDataset(n, seed, **{k: v for k, v in options.items() if k == "root"})
    if kind == "melodic":  # lead melodies over accompaniment, for query by humming (see .melodic)
        from .melodic import DEFAULT_N_TRACKS, MelodicDataset
        parts = [p for p in rest.split(":") if p]
        try:
            n, seed = (int(parts[0]) if parts else DEFAULT_N_TRACKS), (int(parts[1]) if len(parts) > 1 else 0)
        except ValueError:
            raise ParameterError(f"dataset spec {spec!r}: expected melodic[:N[:SEED]] with integers") from None
        return MelodicDataset(n, seed, **{k: v for k, v in options.items() if k == "root"})
    if kind == "folder":
        from .folder import FolderDataset
        if not rest:
            raise ParameterError("dataset spec 'folder:' needs a path, e.g. folder:/data/samples")
        return FolderDataset(rest, **{k: v for k, v in options.items()
                                      if k in ("labels", "label_from_folder", "label_regex")})
    if kind == "fma":
        from .fma import FMADataset
        return FMADataset(rest or "small", **{k: v for k, v in options.items() if k == "root"})
    if kind == "freesound":
        from .folder import FolderDataset
        if not rest:
            raise ParameterError("dataset spec 'freesound:' needs the folder written by "
                                 "`audiorag data fetch freesound`")
        ds = FolderDataset(rest, labels=Path(rest) / "freesound.csv")
        ds.id = f"freesound:{Path(rest).resolve()}"
        return ds
    raise ParameterError(f"unknown dataset {spec!r}: not a file or folder, and not a dataset spec "
                         "(synthetic[:N[:SEED]], melodic[:N[:SEED]], folder:PATH, fma:SUBSET or freesound:DIR)")
