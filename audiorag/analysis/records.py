"""Result records: every evaluation or analysis run writes a validated ``metrics.json``.

A record carries everything needed to reproduce and compare a number: audiorag version
and git commit, dataset id and content hash, segmentation, embedder key and weights
identity, index factory, protocol, seed, machine, timings and the metrics.
:class:`Record` is the common shape; :class:`audiorag.evaluate.EvaluationRecord` narrows
its ``protocol`` to an evaluation :class:`~audiorag.evaluate.Protocol`.

>>> import tempfile
>>> r = Record(kind="analysis", dataset={}, library={}, embedder={}, seed=0, machine=machine(),
...            metrics={"items": 3})
>>> Record.read(r.write(tempfile.mkdtemp())).metrics
{'items': 3.0}
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, ValidationError

from .. import __version__
from ..errors import ParameterError, StorageError
from ..io import write_atomic

SCHEMA_VERSION = 1


class Machine(BaseModel):
    """Where a number was measured."""

    cores: int
    ram_gb: float
    cpu: str
    python: str
    platform: str


class Record(BaseModel):
    """One run. ``metrics`` maps names like ``segment/P@10`` or ``cluster/kmeans:8/nmi`` to numbers."""

    schema_version: int = SCHEMA_VERSION
    kind: str = "retrieval"
    audiorag_version: str = __version__
    git_commit: str | None = None
    created: str = Field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))
    dataset: dict
    library: dict
    embedder: dict
    index: dict | None = None
    protocol: dict | None = None
    seed: int
    machine: Machine
    timings: dict = Field(default_factory=dict)
    metrics: dict[str, float]
    extra: dict = Field(default_factory=dict)

    def write(self, out_dir: str | os.PathLike) -> Path:
        """Write ``out_dir/metrics.json`` (atomically; the folder is created). Returns its path."""
        path = Path(out_dir) / "metrics.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {path.parent}: {exc.strerror or exc}") from exc
        text = json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True, default=_json_default)
        write_atomic(path, text + "\n")
        return path

    @classmethod
    def read(cls, path: str | os.PathLike):
        """Read and validate a ``metrics.json``; a file that is not one raises :class:`ParameterError`."""
        try:
            data = json.loads(Path(path).read_text())
            return cls.model_validate(data)
        except FileNotFoundError:
            raise ParameterError(f"{path}: no such metrics record") from None
        except (OSError, ValueError, ValidationError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ParameterError(f"{path}: not a valid metrics record ({first})") from None


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def machine() -> Machine:
    """This machine: cores, RAM, CPU model, Python and platform."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    except (ValueError, OSError, AttributeError):
        ram = 0.0
    return Machine(cores=os.cpu_count() or 1, ram_gb=round(ram, 1), cpu=cpu, python=platform.python_version(),
                   platform=platform.platform())


def git_commit() -> str | None:
    """Commit of the audiorag source tree, with ``-dirty`` when it has uncommitted changes; None outside git."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists() or not (root / "pyproject.toml").exists():
        return None  # an installed package (site-packages), not a checkout of audiorag
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "audiorag"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def library_content_hash(lib, columns: list[str]) -> str:
    """sha256 over the tracks' content hashes and the given metadata columns, in track order."""
    h = hashlib.sha256()
    cols = ["content_hash"] + [c for c in columns if c in lib.tracks.columns]
    for row in lib.tracks[cols].astype(object).itertuples(index=False):
        # a missing value reads "nan" whatever the column's dtype (as float columns always did)
        h.update(("\t".join("nan" if v is None or v is pd.NA or v != v else str(v) for v in row) + "\n").encode())
    return "sha256:" + h.hexdigest()


def provenance(lib, emb, label_columns: list[str], *, n_tracks: int, **library_extra) -> dict:
    """The record fields that say what was measured: git commit, dataset (id, content hash over
    ``label_columns``, ``n_tracks``), library (path, segmentation, segments, ``library_extra``),
    embedder description and machine."""
    return {"git_commit": git_commit(),
            "dataset": {"id": lib.meta.get("dataset"), "content_hash": library_content_hash(lib, label_columns),
                        "n_tracks": int(n_tracks)},
            "library": {"path": str(lib.path), "segmentation": lib.segmentation.to_dict(),
                        "n_segments": int(len(lib.segments)), **library_extra},
            "embedder": {k: emb.meta.get(k) for k in ("key", "name", "params", "dim", "sample_rate", "weights",
                                                       "versions")},
            "machine": machine()}
