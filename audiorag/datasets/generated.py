"""The base of the generated corpora (``synthetic``, ``melodic``): a seeded plan rendered to FLAC files once.

A generated corpus is a pure function of ``(n_tracks, seed, duration)`` and its generator's version:
:meth:`GeneratedDataset.plan` decides everything random up front (one dict per track),
:meth:`GeneratedDataset.render` turns one planned track into audio, and :meth:`GeneratedDataset.manifest`
writes ``tracks.csv`` (the labels and every file's sha256). Files go to the cache
(``$AUDIORAG_CACHE/<name>/<id>``), are written once, in a process pool, and read back as a folder.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf

from ..io import file_sha256, write_atomic
from . import Dataset, TrackSource, cache_dir
from .synth import SR


def write_track(render, job: tuple[dict, str]) -> str:
    """Write ``render(spec)`` for ``job = (spec, out_dir)`` as ``out_dir/spec["file"]`` (16-bit FLAC) unless it
    exists; returns its path. Generated corpora map it over their planned tracks in a process pool
    (``functools.partial(write_track, render_track)``)."""
    spec, out_dir = job
    path = Path(out_dir) / spec["file"]
    if not path.exists():
        tmp = path.with_suffix(f".tmp-{os.getpid()}.flac")  # processes generating the same corpus never collide
        sf.write(tmp, render(spec), SR, format="FLAC", subtype="PCM_16")
        os.replace(tmp, path)
    return str(path)


class GeneratedDataset(Dataset):
    """A corpus generated from a seed. Subclasses set ``name`` and ``version`` and implement :meth:`plan`,
    :meth:`render` (a module-level function, so that worker processes can unpickle it) and :meth:`manifest`.
    The id is ``<name>-v<version>-n<N>-s<SEED>`` (``-d<seconds>`` unless 30 s tracks)."""

    name = ""
    version = 0

    def __init__(self, n_tracks: int, seed: int = 0, *, root: str | os.PathLike | None = None,
                 duration: float = 30.0, workers: int | None = None):
        self.n_tracks, self.seed, self.duration = int(n_tracks), int(seed), float(duration)
        self.workers = workers or os.cpu_count() or 1
        self.id = f"{self.name}-v{self.version}-n{self.n_tracks}-s{self.seed}" + \
                  ("" if self.duration == 30.0 else f"-d{self.duration:g}")
        self.root = Path(root) if root else cache_dir() / self.name / self.id

    def plan(self) -> list[dict]:
        """Every track's parameters (``file``: its name in the folder), decided from the seed."""
        raise NotImplementedError

    @staticmethod
    def render(spec: dict) -> np.ndarray:
        """Audio of one planned track (float32 mono at :data:`~audiorag.datasets.synth.SR`)."""
        raise NotImplementedError

    def manifest(self, specs: list[dict]) -> str:
        """The text of ``tracks.csv`` (``path`` column, labels, ``sha256``), written last: its presence
        means the corpus is complete. May write the corpus' other files first."""
        raise NotImplementedError

    def generate(self) -> Path:
        """Write the FLAC files and ``tracks.csv`` (idempotent); returns the folder."""
        manifest = self.root / "tracks.csv"
        if manifest.exists():
            return self.root
        self.root.mkdir(parents=True, exist_ok=True)
        specs = self.plan()
        from tqdm.auto import tqdm
        jobs = [(s, str(self.root)) for s in specs]
        with ProcessPoolExecutor(self.workers) as pool:
            done = pool.map(partial(write_track, self.render), jobs)
            list(tqdm(done, total=len(jobs), desc=f"generating {self.id}", leave=False))
        write_atomic(manifest, self.manifest(specs))
        return self.root

    def sources(self) -> list[TrackSource]:
        from .folder import FolderDataset
        self.generate()
        sources = FolderDataset(self.root, labels=self.root / "tracks.csv").sources()
        for src in sources:  # the manifest's file hash duplicates the track's content_hash
            src.metadata.pop("sha256", None)
        return sources

    def content_hash(self) -> str:
        """sha256 of the manifest, which holds every file's sha256."""
        self.generate()
        return file_sha256(self.root / "tracks.csv")
