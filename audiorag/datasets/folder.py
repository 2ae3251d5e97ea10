"""Any folder of audio files, with metadata from a CSV, sub-folder names or a filename pattern.

- ``labels``: a CSV with a ``path`` column (absolute, or relative to the CSV) and any other columns
  (label, group, artist, ...), which become track metadata. Rows naming files that do not exist
  are kept as sources so the build records them as errors.
- ``label_from_folder``: ``label`` = the first sub-folder under the root (``kicks/k1.wav`` → ``kicks``).
- ``label_regex``: ``label`` = the first group of a regular expression matched against the file
  name, e.g. ``^([a-z]+)_`` turns sonic-pi's ``bd_haus.flac`` into ``bd``; named groups
  (``(?P<group>...)``) become columns of their own.

Every file is accounted for: names that are not valid UTF-8 are found (as ``str`` holding
surrogates, PEP 383); a symlink to a file is a source under the link's own path, wherever its
target lives; symlinked folders are walked. A dangling symlink, a symlink loop and a folder
that cannot be read are each recorded once in :attr:`FolderDataset.problems`, with the reason.
Only regular files are sources (after links are followed): a named pipe, socket or device is
recorded with its kind and never opened (opening a FIFO waits for a writer for ever).
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import stat
from pathlib import Path

import pandas as pd

from ..audio import AUDIO_EXTENSIONS
from ..errors import ParameterError
from ..io import decode_path, encode_path, file_sha256, kind_of
from . import Dataset, TrackSource


class FolderDataset(Dataset):
    """Every audio file under ``root`` (recursively, sorted), with optional ``labels`` CSV.

    >>> import tempfile; d = tempfile.mkdtemp()
    >>> ds = FolderDataset(d)
    >>> ds.sources(), ds.problems
    ([], [])
    """

    def __init__(self, root: str | os.PathLike, *, labels: str | os.PathLike | None = None,
                 label_from_folder: bool = False, label_regex: str | None = None):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            # quoted: a name may hold a newline, and the error is one line
            raise ParameterError(f"folder dataset: {encode_path(str(self.root))!r} is not a directory")
        self.labels = Path(labels).expanduser() if labels else None
        if self.labels is not None and not self.labels.is_file():
            raise ParameterError(f"folder dataset: labels CSV {encode_path(str(self.labels))!r} does not exist")
        self.label_from_folder = label_from_folder
        try:
            self.label_regex = re.compile(label_regex) if label_regex else None
        except re.error as exc:
            raise ParameterError(f"folder dataset: bad label_regex {label_regex!r}: {exc}") from None
        # the root is resolved once; paths under it keep their own (link) names
        self._base = os.path.realpath(self.root)
        self.id = f"folder:{self._base}"

    def _label_table(self) -> tuple[dict[str, dict], dict[str, str]]:
        """CSV rows by absolute path, and the real (symlink-free) path of each row's file."""
        if self.labels is None:
            return {}, {}
        try:
            # only empty cells are missing ("NA" or "None" may be real labels); a numeric column
            # with blanks then reads as numbers, not text
            df = pd.read_csv(self.labels, keep_default_na=False, na_values=[""])
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ParameterError(f"labels CSV {self.labels}: cannot be read ({exc})") from None
        if "path" not in df.columns:
            raise ParameterError(f"labels CSV {self.labels}: needs a 'path' column, has {list(df.columns)}")
        base = os.path.abspath(self.labels.parent)
        table, real = {}, {}
        for row in df.to_dict("records"):
            row = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
            if "path" not in row:
                continue  # a row without a path names no file
            p = str(row.pop("path"))
            if not os.path.lexists(os.path.join(base, p)) and os.path.lexists(os.path.join(base, decode_path(p))):
                p = decode_path(p)  # a name written as audiorag displays it (\xNN escapes)
            path = os.path.normpath(os.path.join(base, p))
            if path.startswith(os.path.abspath(self.root) + os.sep) and self._base != os.path.abspath(self.root):
                path = os.path.join(self._base, os.path.relpath(path, os.path.abspath(self.root)))
            table[path] = row
            real[os.path.realpath(path)] = path
        return table, real

    def sources(self) -> list[TrackSource]:
        """Audio files under the root (sorted by path), then CSV rows naming files that were not found.

        Fills :attr:`problems` with what could not be offered (dangling links, loops, unreadable folders).
        """
        self.problems = []
        table, real = self._label_table()
        files = sorted(self._scan())
        out, used = [], set()
        for f in files:
            key = f if f in table else real.get(os.path.realpath(f))
            meta = {**self._derived(f), **(table.get(key, {}) if key else {})}
            if key:
                used.add(key)
            out.append(TrackSource(f, meta))
        recorded = {p["uri"] for p in self.problems}  # a row naming a FIFO found by the scan is not a source either
        out += [TrackSource(f, dict(meta)) for f, meta in table.items() if f not in used and f not in recorded]
        return out

    def _scan(self) -> list[str]:
        """Walk the root with ``os.scandir``. Real folders first; symlinked folders afterwards, each
        real folder once (so a file is found under its real path when it has one inside the root)."""
        found: list[str] = []
        seen: set[tuple[int, int]] = set()
        links: list[tuple[str, list]] = []
        st = os.stat(self._base)
        self._walk(self._base, [(st.st_dev, st.st_ino)], seen, links, found)
        while links:
            path, ancestors = links.pop(0)
            try:
                st = os.stat(path)
            except OSError as exc:  # changed under our feet
                self._problem(path, type(exc).__name__, f"folder cannot be read ({exc.strerror or exc})")
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in ancestors:
                self._problem(path, "SymlinkLoop", f"symlink loop: the link (to {_target(path)}) leads back to a "
                                                   "folder it is in; not followed")
            elif ident not in seen:  # a link to a folder already walked adds nothing
                self._walk(path, ancestors + [ident], seen, links, found)
        return found

    def _walk(self, folder: str, ancestors: list, seen: set, links: list, found: list) -> None:
        seen.add(ancestors[-1])
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self._problem(folder, type(exc).__name__, f"folder cannot be read ({exc.strerror or exc}); "
                                                      "its files were not scanned")
            return
        for entry in entries:
            try:
                st = entry.stat()  # follows symlinks
            except OSError as exc:
                self._broken_entry(entry, exc)
                continue
            if entry.is_dir():
                if entry.is_symlink():
                    links.append((entry.path, ancestors))
                else:
                    self._walk(entry.path, ancestors + [(st.st_dev, st.st_ino)], seen, links, found)
            elif not stat.S_ISREG(st.st_mode):
                self._problem(entry.path, "NotARegularFile", f"a {kind_of(st.st_mode)}, not a regular file: not read")
            elif _is_audio_name(entry.name):
                found.append(entry.path)

    def _broken_entry(self, entry: os.DirEntry, exc: OSError) -> None:
        """A name whose target cannot be reached: record it if it may have been audio or a folder."""
        if not entry.is_symlink():
            self._problem(entry.path, type(exc).__name__, f"cannot be read ({exc.strerror or exc})")
            return
        if Path(entry.name).suffix and not _is_audio_name(entry.name):
            return  # a link to some other kind of file (notes.txt): not ours to report
        if exc.errno == errno.ELOOP:
            self._problem(entry.path, "SymlinkLoop", f"symlink loop: the link (to {_target(entry.path)}) never "
                                                     "reaches a file")
        elif exc.errno == errno.ENOENT:
            self._problem(entry.path, "DanglingSymlink",
                          f"dangling symlink: its target {_target(entry.path)} does not exist")
        else:
            self._problem(entry.path, type(exc).__name__, f"symlink to {_target(entry.path)} cannot be followed "
                                                          f"({exc.strerror or exc})")

    def _derived(self, path: str) -> dict:
        """Metadata taken from the file's path (labels are text: bytes of a name that are not UTF-8
        appear as ``\\xNN``, as audiorag displays such names)."""
        meta = {}
        rel = Path(os.path.relpath(path, self._base))
        if self.label_from_folder and len(rel.parts) > 1:
            meta["label"] = encode_path(rel.parts[0])
        if self.label_regex is not None:
            m = self.label_regex.search(rel.name)
            if m:
                named = {k: encode_path(v) for k, v in m.groupdict().items() if v is not None}
                meta.update(named)
                if m.groups() and "label" not in named and m.group(1) is not None:
                    meta["label"] = encode_path(m.group(1))
        return meta

    def content_hash(self) -> str:
        """sha256 over the sorted (relative path, file sha256) pairs and the labels CSV
        (files that cannot be read count by name only: the build records them)."""
        h = hashlib.sha256()
        for src in self.sources():
            try:
                digest = file_sha256(src.uri)
            except OSError:
                continue
            rel = encode_path(os.path.relpath(src.uri, self._base))
            h.update(f"{rel}\0{digest}\n".encode())
        if self.labels is not None:
            h.update(file_sha256(self.labels).encode())
        return "sha256:" + h.hexdigest()


def _is_audio_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def _target(link: str) -> str:
    """A symlink's target as written in the link (escaped for display)."""
    try:
        return encode_path(os.readlink(link))
    except OSError:
        return "?"
