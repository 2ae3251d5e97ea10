"""File-system primitives: atomic writes, hashing, path names that round-trip, and the fault hook.

Every change audiorag makes to a library goes through the functions here, so that

* a write is atomic (temporary name in the same folder, fsync, rename), and an ``OSError``
  (read-only folder, full disk) becomes a :class:`~audiorag.errors.StorageError` naming the file;
* a test can stop a process at the *n*-th change (:func:`fault_point`): set
  ``AUDIORAG_FAULT_AT=n`` and ``AUDIORAG_FAULT=kill`` (the process dies at once, as under
  ``kill -9``) or ``AUDIORAG_FAULT=enospc`` (that change fails with "No space left on device").

>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> write_atomic(os.path.join(d, "a.txt"), "hello")
>>> open(os.path.join(d, "a.txt")).read()
'hello'
>>> decode_path(encode_path("caf\\udce9.wav")) == "caf\\udce9.wav", encode_path("caf\\udce9.wav")
(True, 'caf\\\\xe9.wav')
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
from pathlib import Path

from .errors import StorageError

log = logging.getLogger(__name__)

_FAULT = {"count": 0}


def fault_point(what: str = "") -> None:
    """Count one change to the file system; fail here when the fault hook says so (tests only)."""
    at = os.environ.get("AUDIORAG_FAULT_AT")
    if not at:
        return
    _FAULT["count"] += 1
    if _FAULT["count"] != int(at):
        return
    _FAULT["what"] = what
    if os.environ.get("AUDIORAG_FAULT", "kill") == "kill":
        os._exit(137)  # no cleanup, no finally: like kill -9
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), what)


def fault_count() -> int:
    """How many changes :func:`fault_point` has counted in this process (0 when the hook is off)."""
    return _FAULT["count"]


def _storage_error(path, exc: OSError) -> StorageError:
    return StorageError(f"cannot write {path}: {exc.strerror or exc} — check free space and permissions")


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` to a temporary name in the same folder, fsync, then rename over ``path``."""
    write_with(path, lambda f: f.write(data.encode() if isinstance(data, str) else data))


def write_with(path: str | os.PathLike, writer, *, suffix: str = "") -> None:
    """Call ``writer(file)`` on a temporary file beside ``path``, fsync, then rename it over ``path``.

    ``suffix`` keeps an extension some writers insist on (``np.save`` adds ``.npy``).
    On any failure the temporary file is removed and an ``OSError`` becomes a
    :class:`~audiorag.errors.StorageError`.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
    try:
        fault_point(f"write {path}")
        with open(tmp, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        fault_point(f"rename {path}")
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        _quiet_unlink(tmp)
        raise _storage_error(path, exc) from exc
    except BaseException:
        _quiet_unlink(tmp)
        raise


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line and fsync (a crash loses at most the line being written)."""
    try:
        fault_point(f"append {path}")
        with open(path, "a") as f:
            f.write(line.rstrip("\n") + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise _storage_error(path, exc) from exc


_KINDS = {stat.S_IFDIR: "folder", stat.S_IFIFO: "named pipe (FIFO)", stat.S_IFSOCK: "socket",
          stat.S_IFCHR: "character device", stat.S_IFBLK: "block device", stat.S_IFLNK: "symlink"}


def kind_of(mode: int) -> str:
    """What a ``st_mode`` is, in words: ``"file"``, ``"folder"``, ``"named pipe (FIFO)"``, ``"socket"``...

    >>> kind_of(os.stat(".").st_mode)
    'folder'
    """
    return "file" if stat.S_ISREG(mode) else _KINDS.get(stat.S_IFMT(mode), "special file")


def open_regular(path: str | os.PathLike):
    """``open(path, "rb")`` for a regular file only: a FIFO, socket, device or folder is an
    ``OSError`` naming its kind, raised at once (opening a FIFO would wait for a writer for ever).

    >>> open_regular(".")
    Traceback (most recent call last):
    ...
    IsADirectoryError: [Errno 21] a folder, not a regular file: '.'
    """
    _refuse_special(os.stat(path).st_mode, path)  # a socket cannot even be opened
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO swapped in meanwhile: no wait
    try:
        _refuse_special(os.fstat(fd).st_mode, path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _refuse_special(mode: int, path) -> None:
    if not stat.S_ISREG(mode):
        code = errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL
        raise OSError(code, f"a {kind_of(mode)}, not a regular file", os.fsdecode(path))


def make_dirs(path: str | os.PathLike) -> None:
    """``mkdir -p`` as one counted change."""
    try:
        if not os.path.isdir(path):
            fault_point(f"mkdir {path}")
            os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise _storage_error(path, exc) from exc


def link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Hard-link ``src`` to ``dst`` (a copy where the file system has no hard links)."""
    try:
        fault_point(f"link {dst}")
        try:
            os.link(src, dst)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            shutil.copy2(src, dst)
    except OSError as exc:
        raise _storage_error(dst, exc) from exc


def move(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename ``src`` to ``dst`` (atomic within one file system) as one counted change."""
    try:
        fault_point(f"move {src}")
        os.replace(src, dst)
    except OSError as exc:
        raise _storage_error(dst, exc) from exc


def remove(path: str | os.PathLike) -> None:
    """Remove a file or a folder tree (nothing when absent) as one counted change."""
    if not os.path.lexists(path):
        return
    try:
        fault_point(f"remove {path}")
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError as exc:
        raise _storage_error(path, exc) from exc


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a folder's entries (renames, new files) durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _quiet_unlink(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def file_sha256(path: str | os.PathLike) -> str:
    """``"sha256:<hex>"`` of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def encode_path(path: str) -> str:
    """A file name as text that any UTF-8 store accepts and :func:`decode_path` turns back.

    Names that are valid UTF-8 and hold no backslash are unchanged; bytes that are not
    UTF-8 (Python keeps them as lone surrogates, PEP 383) become ``\\xNN`` and a backslash
    becomes ``\\\\``. The result is also how such a name is displayed.
    """
    raw = os.fsencode(path)
    try:
        text = raw.decode("utf-8")
        return text.replace("\\", "\\\\") if "\\" in text else text
    except UnicodeDecodeError:
        pass
    out, i = [], 0
    while i < len(raw):  # one character (or one undecodable byte) at a time
        for n in (1, 2, 3, 4):
            try:
                ch = raw[i:i + n].decode("utf-8")
                break
            except UnicodeDecodeError:
                ch = None
        if ch is None:
            out.append(f"\\x{raw[i]:02x}")
            i += 1
        else:
            out.append("\\\\" if ch == "\\" else ch)
            i += n
    return "".join(out)


_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2})")


def decode_path(text: str) -> str:
    """The file name :func:`encode_path` encoded (a ``str`` that opens the same file)."""
    if "\\" not in text:
        return text
    raw = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(text):
        raw += text[pos:m.start()].encode("utf-8")
        raw += b"\\" if m.group(1) == "\\" else bytes([int(m.group(1)[1:], 16)])
        pos = m.end()
    raw += text[pos:].encode("utf-8")
    return os.fsdecode(bytes(raw))


#: lines a native decoder writes straight to the process's stderr (libmpg123 inside libsndfile: "Note: Trying to
#: resync...", "[src/libmpg123/layer3.c:...] error: ..."): reports on the stream that the decode's own result says
_DECODER_CHATTER = re.compile(r"^(?:\[src/libmpg123/|Note: |Warning: |Big trouble)")
_held = {"depth": 0, "saved": -1, "file": None}


@contextlib.contextmanager
def native_stderr_held():
    """Hold back what native code writes to file descriptor 2 while the block runs: decoder chatter goes to the
    debug log; anything else written meanwhile is passed on to stderr when the block ends, so nothing is lost.

    Only in the main thread: the descriptor belongs to the whole process, so a server decoding uploads in its
    threads keeps its stderr as it is (the chatter then shows, the server's own lines are never held back).
    When stderr cannot be held (closed, no temporary file), the block runs without it.

    >>> with native_stderr_held():
    ...     _ = os.write(2, b"Note: Trying to resync...\\n")  # held back: chatter
    """
    if threading.current_thread() is not threading.main_thread() or _held["depth"] or not _hold():
        yield  # another thread, inside a hold already (it covers this one), or stderr cannot be held
        return
    try:
        yield
    finally:
        _release()


def _hold() -> bool:
    """Point file descriptor 2 at a temporary file; False (nothing changed) when that cannot be done."""
    try:  # a process started with stderr closed may hold any file at descriptor 2: leave it alone
        if sys.stderr is None or sys.stderr.fileno() != 2:
            return False
        sys.stderr.flush()
        captured = tempfile.TemporaryFile()
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is an OSError and a ValueError
        return False
    try:
        saved = os.dup(2)
    except OSError:
        captured.close()
        return False
    os.dup2(captured.fileno(), 2)
    _held.update(depth=1, saved=saved, file=captured)
    return True


def _release() -> None:
    """Give file descriptor 2 back; pass on what was written meanwhile, chatter aside."""
    os.dup2(_held["saved"], 2)
    os.close(_held["saved"])
    captured = _held["file"]
    _held.update(depth=0, saved=-1, file=None)
    captured.seek(0)
    text = captured.read().decode("utf-8", "replace")
    captured.close()
    kept = []
    for line in text.splitlines(keepends=True):
        if _DECODER_CHATTER.match(line):
            log.debug("decoder: %s", line.rstrip())
        else:
            kept.append(line)
    if kept:
        os.write(2, "".join(kept).encode())


def _forget_hold_in_child() -> None:
    """A child forked while the parent held stderr gets its real stderr back and no hold of its own."""
    if _held["depth"]:
        os.dup2(_held["saved"], 2)
        os.close(_held["saved"])
        _held["file"].close()
        _held.update(depth=0, saved=-1, file=None)


os.register_at_fork(after_in_child=_forget_hold_in_child)
