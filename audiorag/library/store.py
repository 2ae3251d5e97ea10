"""The library's files on disk: one writer at a time, commits by generation, damage reported clearly.

Layout of a library directory::

    library.json         format, segmentation, dataset (written at create, and when the dataset is set)
    CURRENT              the name of the committed generation, e.g. ``gen-000012`` (the commit point)
    lock                 the writers' lock (an OS file lock; holder pid, host and time inside)
    errors-history.jsonl every failure ever recorded (the current ones are in the generation)
    gen-000012/          one generation: the whole state of the library
        manifest.json    every file of the generation with its size and sha256
        tracks.parquet  segments.parquet  errors.jsonl  staging/
        embeddings/<key>/embedder.json raw.npy vectors.npy tags.npy parts/ index-<name>.faiss index-<name>.json

A change is a :meth:`Store.transaction`: a new generation directory is filled with hard links
to the files of the current one, the change rewrites some of them (each write atomic, by
rename, so a link is replaced and the old generation is untouched), ``manifest.json`` is
written, and ``CURRENT`` is renamed into place — the one atomic switch. A process killed at
any instruction leaves either the old generation or the new one current; the next writer
removes what a dead one left (:meth:`Store.recover`). Readers read one generation and never
see a half-written state: each pins its generation with a shared lock on its directory
(:meth:`Store.pin`), and a writer deletes old generations only when no reader pins them.

Nothing automatic deletes a *complete* generation (its manifest valid, every file there with its
recorded size) unless it is older than CURRENT: a generation newer than CURRENT is deleted only when
it is incomplete (a dead writer's), and one complete generation just after CURRENT, built on it, is
a writer that died between its manifest and the switch: the next writer makes it current (so does
the next reader to open the library when no writer holds the lock and it may write: :meth:`Store.settle`).
Anything else (CURRENT damaged, older than complete generations) stops writers until ``audiorag check
--repair`` chooses (:func:`audiorag.library.check.check_path`).

>>> import tempfile
>>> s = Store.create(tempfile.mkdtemp())
>>> with s.transaction() as d:
...     write_json(d / "hello.json", {"a": 1})
>>> s.generation, read_json(s.current / "hello.json")
(1, {'a': 1})
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import socket
import time
import weakref
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import io
from ..errors import LibraryDamagedError, LibraryLockedError, StorageError

log = logging.getLogger(__name__)
GEN = re.compile(r"gen-(\d{6,})$")
# seconds a writer waits for a lock recorded as its own but held by none of its Stores: its forked workers
OWN_CHILDREN_GRACE = 10.0
_HOLDERS: weakref.WeakSet = weakref.WeakSet()  # the Store objects of this process that hold the writers' lock


class FileEntry(BaseModel):
    """One file of a generation as its manifest records it."""

    model_config = ConfigDict(strict=True)
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")


class Manifest(BaseModel):
    """``manifest.json``: every file of a generation with its size and sha256."""

    model_config = ConfigDict(strict=True)
    generation: int = Field(ge=0)
    committed: str
    parent: str | None = None  # the generation it was built on (absent in manifests before it was recorded)
    files: dict[str, FileEntry]


class SegmentationSpec(BaseModel):
    """The ``segmentation`` of ``library.json``."""

    model_config = ConfigDict(strict=True)
    window: float = Field(gt=0, allow_inf_nan=False)
    hop: float = Field(gt=0, allow_inf_nan=False)
    tail: str


class LibraryMeta(BaseModel):
    """``library.json``: format, segmentation, dataset (other keys are kept as they are)."""

    model_config = ConfigDict(strict=True, extra="allow")
    format_version: int
    segmentation: SegmentationSpec
    dataset: str | None = None


def validated(path, model: type[BaseModel]) -> dict:
    """The JSON file ``path`` checked against ``model``; a file of another shape is one
    :class:`LibraryDamagedError` naming the file and the first wrong field.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "manifest.json"
    >>> _ = p.write_text('{"generation": 1, "committed": "x", "files": {"a": {"bytes": "9"}}}')
    >>> validated(p, Manifest)
    Traceback (most recent call last):
    ...
    audiorag.errors.LibraryDamagedError: .../manifest.json: field files.a.bytes: Input should be a valid integer ...
    """
    obj = read_json(path)
    try:
        return model.model_validate(obj).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "(the whole file)"
        raise damaged(path, f"field {where}: {first['msg']}") from None


def read_manifest(gen_dir: Path) -> dict:
    """A generation's validated manifest (see :class:`Manifest`)."""
    return validated(Path(gen_dir) / "manifest.json", Manifest)


def incomplete(gen_dir: Path) -> str | None:
    """Why a generation directory is not complete (its manifest invalid, for another generation,
    or a file missing or of another size than recorded), or None when it is complete."""
    gen_dir = Path(gen_dir)
    try:
        manifest = read_manifest(gen_dir)
    except LibraryDamagedError as exc:
        return str(exc).split(" — ")[0]
    if _gen_name(manifest["generation"]) != gen_dir.name:
        return f"{gen_dir}/manifest.json: field generation: {manifest['generation']}, not {gen_dir.name}"
    for rel, entry in manifest["files"].items():
        try:
            size = os.stat(gen_dir / rel).st_size
        except OSError:
            return f"{gen_dir / rel}: missing"
        if size != entry["bytes"]:
            return f"{gen_dir / rel}: {size} bytes, {entry['bytes']} recorded when it was written"
    return None


def generations(root: Path) -> list[tuple[int, Path]]:
    """The generation directories under ``root``, oldest first."""
    return sorted((int(m.group(1)), p) for p in Path(root).iterdir() if (m := GEN.fullmatch(p.name)) and p.is_dir())


def _drop_inherited_locks() -> None:
    """In a forked child: let go of the writers' lock the parent holds. A flock belongs to the open
    file, which the child shares: a worker that outlived the parent's lock would hold it, and the
    parent's next change would find itself "being changed by" its own pid."""
    for store in list(_HOLDERS):
        fd = store._fd  # noqa: SLF001 - this module's own class
        if fd is not None:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, fd, inheritable=False)  # the number stays valid (closed later); the lock's file does not
            os.close(null)
        store._depth, store._fd = 0, None
    _HOLDERS.clear()


os.register_at_fork(after_in_child=_drop_inherited_locks)


class Store:
    """The generations, lock and recovery of one library directory."""

    def __init__(self, root, *, wait: bool | float = False):
        self.root = Path(root)
        self.wait = wait
        self._depth = 0
        self._fd: int | None = None
        self._txn: Path | None = None
        self.serial = 0  # counts the changes begun here: what was read inside a failed one is stale
        self.last_commit: Path | None = None  # the generation this object committed last, until read

    @classmethod
    def create(cls, root, **kw) -> Store:
        """An empty store (generation 0) in ``root``; an existing one is opened as it is."""
        s = cls(root, **kw)
        io.make_dirs(s.root)
        if not (s.root / "CURRENT").exists():
            with s.lock():
                if not (s.root / "CURRENT").exists():
                    io.make_dirs(s.root / _gen_name(0))
                    _write_manifest(s.root / _gen_name(0), 0, None)
                    switch(s.root, 0)
        return s

    # -- reading ----------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        """The committed generation's number (read with plain system calls: a server reads it per request,
        and ``Path.read_text`` takes 5× as long)."""
        try:
            fd = os.open(os.path.join(self.root, "CURRENT"), os.O_RDONLY)
            try:
                text = os.read(fd, 256).decode("utf-8", "replace").strip()
            finally:
                os.close(fd)
        except FileNotFoundError:
            raise LibraryDamagedError(f"{self.root}: CURRENT is missing; run `audiorag check {self.root}`") from None
        m = GEN.fullmatch(text)
        if not m:
            raise LibraryDamagedError(f"{self.root}/CURRENT: {text[:40]!r} is not a generation name; "
                                      f"run `audiorag check {self.root}`")
        return int(m.group(1))

    @property
    def current(self) -> Path:
        """The committed generation's directory."""
        return self.root / _gen_name(self.generation)

    @property
    def open_change(self) -> Path | None:
        """The directory of the change (transaction) in progress, if any."""
        return self._txn

    def settle(self) -> bool:
        """For a reader: when a writer died between its manifest and the switch (a complete generation just
        after CURRENT, built on it), do what the next writer would (:meth:`recover`: make that generation
        current, remove the dead writer's leftovers), so what a reader sees and what the next change works on
        agree. Nothing happens while a writer holds the lock (it switches itself) or when the library is
        read-only (readers keep reading CURRENT); ``audiorag check`` never settles (it changes nothing).
        Returns True when CURRENT moved on."""
        try:
            gen = self.generation
        except LibraryDamagedError:
            return False
        if not (self.root / _gen_name(gen + 1)).is_dir():
            return False
        wait, self.wait = self.wait, False
        try:
            with self.lock():  # recover() decides: complete and built on CURRENT, or nothing
                pass
        except (LibraryLockedError, StorageError):
            return False
        finally:
            self.wait = wait
        return self.generation == gen + 1

    def _roll_forward(self, gen: int) -> bool:
        """Make the one complete generation after ``gen``, built on it, current (a writer that died just before
        its switch); True when it did. Incomplete newer generations are not looked at here."""
        newer = [(n, p) for n, p in generations(self.root) if n > gen and incomplete(p) is None]
        if [n for n, _ in newer] != [gen + 1] or read_manifest(newer[0][1])["parent"] not in (None, _gen_name(gen)):
            return False
        log.info("%s: %s was complete but not yet current (its writer stopped); now current", self.root,
                 newer[0][1].name)
        switch(self.root, gen + 1)
        return True

    # -- the one writer ---------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, *, recover: bool = True):
        """Hold the writers' lock (re-entrant in this object). Another holder → wait when ``wait``
        (``True``, or the seconds to wait), else :class:`LibraryLockedError` naming it.
        ``recover``: first remove what a dead writer left (:meth:`recover`)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        path = self.root / "lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot open {path}: {exc.strerror} — is the library read-only?") from exc
        try:
            self._acquire(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                      "since": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._depth, self._fd = 1, fd
        _HOLDERS.add(self)
        try:
            if recover:
                self.recover()
            yield
        finally:
            _HOLDERS.discard(self)
            self._depth, self._fd = 0, None
            os.close(fd)  # releases the lock (so does the death of the process)

    def _acquire(self, fd: int) -> None:
        if self._try_lock(fd) or self._after_own_children(fd):
            return
        holder = self.holder()
        if not self.wait:
            raise LibraryLockedError(f"{self.root} is being changed by {holder}; wait for it to finish "
                                     "(or pass --wait / wait=True)")
        log.warning("%s is being changed by %s; waiting", self.root, holder)
        deadline = None if self.wait is True else time.monotonic() + float(self.wait)
        while not self._try_lock(fd):
            if deadline is not None and time.monotonic() > deadline:
                raise LibraryLockedError(f"{self.root} is still being changed by {holder} after {self.wait} s")
            time.sleep(0.05)

    @staticmethod
    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _after_own_children(self, fd: int) -> bool:
        """Whether the lock came free within :data:`OWN_CHILDREN_GRACE` seconds, when its recorded holder is this
        process and no :class:`Store` of this process holds it: then its holders are this process's forked
        workers that have not run yet (each lets go of the lock first thing, but a loaded machine may not
        schedule it for a while)."""
        mine = f"pid {os.getpid()} on {socket.gethostname()} "
        root = self.root.resolve()
        if not self.holder().startswith(mine) or any(s.root.resolve() == root for s in list(_HOLDERS)):
            return False
        deadline = time.monotonic() + OWN_CHILDREN_GRACE
        while time.monotonic() < deadline:
            time.sleep(0.01)
            if self._try_lock(fd):
                return True
        return False

    def holder(self) -> str:
        """Who holds the lock, as ``pid 123 on host since 2026-11-23T10:00:00``."""
        try:
            h = json.loads((self.root / "lock").read_text() or "{}")
            return f"pid {h['pid']} on {h['host']} since {h['since']}"
        except (OSError, ValueError, KeyError):
            return "another process"

    @property
    def locked(self) -> bool:
        return self._depth > 0

    def busy(self) -> bool:
        """Whether another writer holds the lock now (a probe: nothing is recovered or changed)."""
        if self._depth:
            return False
        try:
            fd = os.open(self.root / "lock", os.O_RDONLY)
        except FileNotFoundError:
            return False
        except OSError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    # -- commits ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self, *, verify: bool = True, carry: tuple = ()):
        """A new generation: yields its directory (a copy of the current one, by hard links);
        committed when the block ends, discarded when it raises. Nested blocks join the outer one.

        ``verify``: refuse (:class:`LibraryDamagedError`) to build on a generation whose files
        differ in size from its manifest — a change never carries damage forward. ``carry``: files
        (relative paths) whose manifest entries stay even though they are missing (``check --repair``
        keeps the record of what it could not restore)."""
        if self._txn is not None:
            yield self._txn
            return
        with self.lock():
            gen = self.generation
            if verify:
                self.verify_sizes()
            newer = [p.name for n, p in generations(self.root) if n > gen]
            if newer:  # complete ones (recover() removed the rest): never built over
                raise LibraryDamagedError(f"{self.root}/CURRENT names {_gen_name(gen)}, but {', '.join(newer)} "
                                          f"are newer and complete; run `audiorag check {self.root} --repair`")
            new = self.root / _gen_name(gen + 1)
            self.serial += 1
            _link_tree(self.current, new)
            self._txn = new
            try:
                yield new
                _write_manifest(new, gen + 1, self.current, carry=carry)
                switch(self.root, gen + 1)
                self.last_commit = new
            except BaseException:
                self._txn = None
                with contextlib.suppress(StorageError):
                    io.remove(new)
                raise
            finally:
                self._txn = None
            try:
                self.prune(gen + 1)
            except StorageError as exc:  # committed all the same; the next writer deletes what is left
                log.warning("could not delete old generations: %s", exc)

    def verify_sizes(self, gen: Path | None = None) -> None:
        """Every file of a generation (the committed one by default) is there with its recorded size
        (a ``stat`` each); else :class:`LibraryDamagedError`."""
        gen = gen or self.current
        for rel, entry in read_manifest(gen)["files"].items():
            try:
                size = os.stat(gen / rel).st_size
            except FileNotFoundError:
                raise damaged(gen / rel, "missing") from None
            if size != entry["bytes"]:
                raise damaged(gen / rel, f"{size} bytes, {entry['bytes']} recorded when it was written")

    def pin(self) -> tuple[Path, int]:
        """The committed generation and an open file that keeps it from being deleted
        (a shared lock on its directory) until :func:`unpin`."""
        for _ in range(100):
            gen = self.current
            try:
                fd = os.open(gen, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:  # deleted between reading CURRENT and opening it: read CURRENT again
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # being deleted right now
                os.close(fd)
                continue
            if gen.is_dir() and self.current == gen:
                return gen, fd
            os.close(fd)
        if not self.current.is_dir():
            raise LibraryDamagedError(f"{self.root}/CURRENT: names {self.current.name}, which does not exist; "
                                      f"run `audiorag check {self.root}`")
        raise LibraryDamagedError(f"{self.root}: could not open a committed generation; "
                                  f"run `audiorag check {self.root}`")

    def adopt(self, names: list[str]) -> None:
        """Move the files ``names`` of a flat library (format 1, no generations) into generation 1
        and commit it; a move interrupted by a crash is finished by the next call."""
        if (self.root / "CURRENT").exists():
            return
        gen = self.root / _gen_name(1)
        io.make_dirs(gen)
        for name in names:
            if (self.root / name).exists():
                io.move(self.root / name, gen / name)
        _write_manifest(gen, 1, None)
        switch(self.root, 1)

    def recover(self) -> list[str]:
        """Remove what a dead writer left: incomplete newer generations, temporary files, old
        generations; make current the complete generation a writer left just before its switch.
        Runs when the lock is taken; returns what it removed. With CURRENT damaged, or naming an
        incomplete generation, it does nothing: ``audiorag check --repair`` decides."""
        try:
            gen = self.generation
        except LibraryDamagedError:  # no committed generation to measure leftovers against (check --repair)
            return []
        if incomplete(self.current) is not None:
            return []
        removed = []
        newer = [(n, p) for n, p in generations(self.root) if n > gen]
        for _, p in newer:
            if incomplete(p) is not None:
                io.remove(p)
                removed.append(p.name)
        if self._roll_forward(gen):
            gen += 1
        for p in self.root.iterdir():
            if ".tmp-" in p.name:
                io.remove(p)
                removed.append(p.name)
        for p in _temporaries(self.current):
            io.remove(p)
            removed.append(str(p.relative_to(self.root)))
        removed += self.prune(gen)
        if removed:
            log.info("%s: removed what an interrupted writer left: %s", self.root, ", ".join(removed[:5]))
        return removed

    def prune(self, gen: int) -> list[str]:
        """Delete the generations before ``gen`` that no reader pins; their names."""
        out = []
        for p in sorted(self.root.iterdir()):
            m = GEN.fullmatch(p.name)
            if not m or int(m.group(1)) >= gen:
                continue
            try:
                fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                fd = None
            try:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                io.remove(p)
                out.append(p.name)
            except BlockingIOError:
                pass  # a reader still reads it
            finally:
                if fd is not None:
                    os.close(fd)
        return out


def unpin(fd: int | None) -> None:
    """Release a generation pinned by :meth:`Store.pin`."""
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _gen_name(n: int) -> str:
    return f"gen-{n:06d}"


def switch(root: Path, gen: int) -> None:
    """Make generation ``gen`` (complete on disk) the committed one: its entries synced, then ``CURRENT``
    renamed into place, the one atomic step of a commit."""
    for d, _, _ in os.walk(root / _gen_name(gen)):  # every entry of the generation is on disk before CURRENT
        io.fsync_dir(d)
    io.write_atomic(root / "CURRENT", _gen_name(gen) + "\n")


def _link_tree(src: Path, dst: Path) -> None:
    io.make_dirs(dst)
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        if entry.name == "manifest.json" or ".tmp-" in entry.name:
            continue
        if entry.is_dir(follow_symlinks=False):
            _link_tree(Path(entry.path), dst / entry.name)
        else:
            io.link_or_copy(entry.path, dst / entry.name)


def _temporaries(gen_dir: Path) -> list[Path]:
    return [Path(d) / f for d, _, files in os.walk(gen_dir) for f in files if ".tmp-" in f]


def files_of(gen_dir: Path) -> list[str]:
    """Every file of a generation directory, relative, sorted (``manifest.json`` excluded)."""
    out = []
    for d, _, files in os.walk(gen_dir):
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), gen_dir)
            if rel != "manifest.json":
                out.append(rel)
    return sorted(out)


def _write_manifest(gen_dir: Path, gen: int, previous: Path | None, *, carry: tuple = ()) -> None:
    """Sizes and sha256 of every file; a file linked unchanged from ``previous`` keeps its entry,
    and so do the ``carry`` files, present or not."""
    old = {}
    if previous is not None and (previous / "manifest.json").exists():
        old = read_manifest(previous)["files"]
    files = {rel: old[rel] for rel in carry if rel in old}
    for rel in files_of(gen_dir):
        st = os.stat(gen_dir / rel)
        prev = old.get(rel)
        if prev is not None and previous is not None and _same_file(previous / rel, st):
            files[rel] = prev
        else:
            files[rel] = {"bytes": st.st_size, "sha256": io.file_sha256(gen_dir / rel)}
    write_json(gen_dir / "manifest.json", {"generation": gen, "committed": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                           "parent": previous.name if previous is not None else None,
                                           "files": files})


def _same_file(path: Path, st: os.stat_result) -> bool:
    try:
        o = os.stat(path)
    except FileNotFoundError:
        return False
    return (o.st_ino, o.st_dev, o.st_size) == (st.st_ino, st.st_dev, st.st_size)


# -- files ------------------------------------------------------------------------------------
def damaged(path, reason) -> LibraryDamagedError:
    """The error for a library file that cannot be read, pointing at ``audiorag check``."""
    path = Path(path)
    root = next((p for p in path.parents if (p / "library.json").exists()), path.parent)
    return LibraryDamagedError(f"{path}: {reason} — the file is damaged; run `audiorag check {root}` "
                               "(--repair rebuilds what can be derived)")


def write_json(path: Path, obj) -> None:
    io.write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise damaged(path, f"not valid JSON ({exc})") from None
    except FileNotFoundError:
        raise damaged(path, "missing") from None


def write_parquet(path: Path, df) -> None:
    io.write_with(path, lambda f: df.to_parquet(f, index=False))


def read_parquet(path: Path):
    import pandas as pd
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise damaged(path, "missing") from None
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise damaged(path, f"not a readable parquet table ({exc})") from None


def write_npy(path: Path, array: np.ndarray) -> None:
    io.write_with(path, lambda f: np.save(f, array))


def read_npy(path: Path, *, mmap: bool = True) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None)
    except FileNotFoundError:
        raise damaged(path, "missing") from None
    except (ValueError, OSError, EOFError) as exc:
        raise damaged(path, f"not a complete .npy array ({exc})") from None


def write_npz(path: Path, **arrays) -> None:
    io.write_with(path, lambda f: np.savez(f, **arrays))


def read_npz(path: Path) -> dict:
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise damaged(path, "missing") from None
    except Exception as exc:  # zipfile.BadZipFile, ValueError, EOFError
        raise damaged(path, f"not a complete .npz archive ({exc})") from None


def write_index(path: Path, index) -> None:
    """A FAISS index, atomically like every other library file."""
    import faiss
    io.write_with(path, lambda f: faiss.write_index(index, faiss.PyCallbackIOWriter(f.write)))


def read_index(path: Path, flags: int = 0):
    import faiss
    if not Path(path).exists():
        raise damaged(path, "missing")
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        raise damaged(path, f"not a readable FAISS index ({str(exc).splitlines()[0][:120]})") from None


def append_jsonl(path: Path, record: dict) -> None:
    """Append one record as a line (with its time) and fsync."""
    io.append_line(path, json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **record}, default=_json_default))


def write_jsonl(path: Path, records: list[dict]) -> None:
    io.write_atomic(path, "".join(json.dumps(r, default=_json_default) + "\n" for r in records))


def read_jsonl(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    out = []
    for line in Path(path).read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a crash
            continue
    return out


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
