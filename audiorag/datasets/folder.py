"""Any folder of audio files; metadata from an optional CSV.

The CSV has a ``path`` column (absolute, or relative to the CSV) and any other
columns (label, group, artist, ...), which become track metadata. Rows naming files
that do not exist are kept as sources so the build records them as errors.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..audio import AUDIO_EXTENSIONS
from ..errors import ParameterError
from . import Dataset, TrackSource, file_sha256


class FolderDataset(Dataset):
    """Every audio file under ``root`` (recursively, sorted), with optional ``labels`` CSV.

    >>> import tempfile; d = tempfile.mkdtemp()
    >>> FolderDataset(d).sources()
    []
    """

    def __init__(self, root: str | os.PathLike, *, labels: str | os.PathLike | None = None):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise ParameterError(f"folder dataset: {self.root} is not a directory")
        self.labels = Path(labels).expanduser() if labels else None
        if self.labels is not None and not self.labels.is_file():
            raise ParameterError(f"folder dataset: labels CSV {self.labels} does not exist")
        self.id = f"folder:{self.root.resolve()}"

    def _label_table(self) -> dict[str, dict]:
        if self.labels is None:
            return {}
        df = pd.read_csv(self.labels, keep_default_na=False)
        if "path" not in df.columns:
            raise ParameterError(f"labels CSV {self.labels}: needs a 'path' column, has {list(df.columns)}")
        base = self.labels.parent
        table = {}
        for row in df.to_dict("records"):
            p = Path(str(row.pop("path")))
            table[str((p if p.is_absolute() else base / p).resolve())] = row
        return table

    def sources(self) -> list[TrackSource]:
        table = self._label_table()
        files = sorted(str(p.resolve()) for p in self.root.rglob("*")
                       if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        seen = set(files)
        out = [TrackSource(f, dict(table.get(f, {}))) for f in files]
        out += [TrackSource(f, dict(meta)) for f, meta in table.items() if f not in seen]
        return out

    def content_hash(self) -> str:
        """sha256 over the sorted (relative path, file sha256) pairs and the labels CSV."""
        import hashlib
        h = hashlib.sha256()
        for src in self.sources():
            if os.path.exists(src.uri):
                h.update(f"{os.path.relpath(src.uri, self.root)}\0{file_sha256(src.uri)}\n".encode())
        if self.labels is not None:
            h.update(file_sha256(self.labels).encode())
        return "sha256:" + h.hexdigest()
