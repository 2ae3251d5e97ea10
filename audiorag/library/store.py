"""Files of the on-disk library, written atomically.

Layout (see DESIGN.md)::

    library.json  tracks.parquet  segments.parquet  errors.jsonl
    staging/add-<seq>.parquet            tracks of a committed, not yet consolidated add batch
    embeddings/<key>/embedder.json       description + standardisation stats + coverage
    embeddings/<key>/raw.npy             raw vectors (before standardisation / L2)
    embeddings/<key>/vectors.npy         float32, L2-normalised, one row per segment
    embeddings/<key>/parts/<batch>.npz   raw rows of a batch not yet consolidated

A batch is committed when its ``.npz`` part (embedding) or staging parquet (add)
exists; both are written by rename, so a killed build leaves either a whole batch or none.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..datasets import write_atomic


def write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def write_parquet(path: Path, df: pd.DataFrame) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    df.to_parquet(tmp, index=False)
    _fsync_rename(tmp, path)


def write_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npy")
    np.save(tmp, array)
    _fsync_rename(tmp, path)


def write_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    _fsync_rename(tmp, path)


def write_index(path: Path, index) -> None:
    """A FAISS index, atomically like every other library file."""
    import faiss
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    faiss.write_index(index, str(tmp))
    _fsync_rename(tmp, path)


def append_jsonl(path: Path, record: dict) -> None:
    """Append one line and fsync (a crash loses at most the line being written)."""
    with open(path, "a") as f:
        f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **record}, default=_json_default) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a crash
            continue
    return out


def _fsync_rename(tmp: Path, path: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
