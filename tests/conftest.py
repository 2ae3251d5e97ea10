"""Shared fixtures: generated audio only (no downloads); one small synthetic corpus, generated once.

Generated datasets are deterministic and named by their generator version, so they are kept between
test sessions in pytest's cache (``.pytest_cache/d/audiorag-data``; ``pytest --cache-clear`` drops it):
the first session generates the corpus, later ones reuse it. ``tests/`` is on ``sys.path``
(``pythonpath`` in pyproject.toml), so tests import fixtures such as ``random_models`` directly.
"""

import ctypes
import fcntl
import os
from contextlib import contextmanager

import numpy as np
import pytest
import soundfile as sf

SR = 22050


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@contextmanager
def locked(path):
    """An exclusive lock on ``path`` (other test sessions generating the same data wait)."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session", autouse=True)
def cache(request, tmp_path_factory):
    """``$AUDIORAG_CACHE`` for the whole session: pytest's cache (kept between sessions) or, with the
    cache plugin off (``-p no:cacheprovider``), a temporary folder."""
    store = getattr(request.config, "cache", None)
    path = store.mkdir("audiorag-data") if store is not None else tmp_path_factory.mktemp("cache")
    old = os.environ.get("AUDIORAG_CACHE")
    os.environ["AUDIORAG_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("AUDIORAG_CACHE", None)
    else:
        os.environ["AUDIORAG_CACHE"] = old


@pytest.fixture(scope="session")
def corpus(cache):
    """24 synthetic 30 s tracks (3 per genre), generated once."""
    from audiorag.datasets.synthetic import SyntheticDataset
    ds = SyntheticDataset(24, seed=7)
    with locked(cache / ".corpus.lock"):
        ds.generate()
    return ds


@pytest.fixture(scope="session")
def library(corpus, tmp_path_factory):
    """The corpus embedded with features45 (10 s windows, 2 s hop) and a Flat index."""
    from audiorag import Library
    lib = Library.create(tmp_path_factory.mktemp("lib") / "lib", window=10, hop=2)
    lib.add(corpus, embedders=["features45"], progress=False)
    lib.build_index("features45", "Flat")
    return lib


def write_tone(path, seconds=3.0, sr=SR, freq=440.0, channels=1, **kw):
    t = np.arange(int(seconds * sr)) / sr
    y = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    data = y if channels == 1 else np.stack([y] * channels, axis=1)
    sf.write(str(path), data, sr, **kw)
    return y


def write_tones(folder, n: int, *, freq: float = 220.0, seconds: float = 4.0) -> list:
    """``n`` tone files ``t0.wav`` … in ``folder``: file i is ``seconds + i`` long at ``freq · (i + 1)`` Hz."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_tone(folder / f"t{i}.wav", seconds=seconds + i, freq=freq * (i + 1))
    return [folder / f"t{i}.wav" for i in range(n)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


class without_file_override:
    """Drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from this thread's effective capabilities (kept
    as permitted, so they come back on exit): as root, ``chmod 000`` then really stops reading."""

    MASK = (1 << 1) | (1 << 2)

    def __enter__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
        self.saved = (_CapData * 2)()
        if self.libc.capget(ctypes.byref(self.header), self.saved) != 0:
            raise OSError(ctypes.get_errno(), "capget")
        dropped = (_CapData * 2)()
        ctypes.memmove(dropped, self.saved, ctypes.sizeof(dropped))
        dropped[0].effective &= ~self.MASK
        if self.libc.capset(ctypes.byref(self.header), dropped) != 0:
            raise OSError(ctypes.get_errno(), "capset")
        return self

    def __exit__(self, *exc):
        self.libc.capset(ctypes.byref(self.header), self.saved)


@contextmanager
def permissions_enforced():
    """``chmod`` really stops this thread from reading and writing: as root, CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH are dropped for the block (the test is skipped when they cannot be)."""
    if os.geteuid() != 0:
        yield
        return
    guard = without_file_override()
    try:
        guard.__enter__()
    except OSError:
        pytest.skip("running as root without the right to drop CAP_DAC_OVERRIDE: chmod cannot stop access")
    try:
        yield
    finally:
        guard.__exit__(None, None, None)
