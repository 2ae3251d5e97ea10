"""Any folder of audio files, with metadata from a CSV, sub-folder names or a filename pattern.

- ``labels``: a CSV with a ``path`` column (absolute, or relative to the CSV) and any other columns
  (label, group, artist, ...), which become track metadata. Rows naming files that do not exist
  are kept as sources so the build records them as errors.
- ``label_from_folder``: ``label`` = the first sub-folder under the root (``kicks/k1.wav`` → ``kicks``).
- ``label_regex``: ``label`` = the first group of a regular expression matched against the file
  name, e.g. ``^([a-z]+)_`` turns sonic-pi's ``bd_haus.flac`` into ``bd``; named groups
  (``(?P<group>...)``) become columns of their own.
"""

from __future__ import annotations

import os
import re
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

    def __init__(self, root: str | os.PathLike, *, labels: str | os.PathLike | None = None,
                 label_from_folder: bool = False, label_regex: str | None = None):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise ParameterError(f"folder dataset: {self.root} is not a directory")
        self.labels = Path(labels).expanduser() if labels else None
        if self.labels is not None and not self.labels.is_file():
            raise ParameterError(f"folder dataset: labels CSV {self.labels} does not exist")
        self.label_from_folder = label_from_folder
        try:
            self.label_regex = re.compile(label_regex) if label_regex else None
        except re.error as exc:
            raise ParameterError(f"folder dataset: bad label_regex {label_regex!r}: {exc}") from None
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
        out = [TrackSource(f, {**self._derived(f), **table.get(f, {})}) for f in files]
        out += [TrackSource(f, dict(meta)) for f, meta in table.items() if f not in seen]
        return out

    def _derived(self, path: str) -> dict:
        meta = {}
        rel = Path(path).relative_to(self.root.resolve())
        if self.label_from_folder and len(rel.parts) > 1:
            meta["label"] = rel.parts[0]
        if self.label_regex is not None:
            m = self.label_regex.search(rel.name)
            if m:
                named = {k: v for k, v in m.groupdict().items() if v is not None}
                meta.update(named)
                if m.groups() and "label" not in named:
                    meta["label"] = m.group(1)
        return meta

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
