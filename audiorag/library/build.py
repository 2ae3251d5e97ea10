"""The build pipeline: decode each file once, validate it, and run every embedder on it.

Work runs in a pool of worker processes (one file per task, results in input order);
embedders are created and warmed up in the parent before the pool forks, so each
worker starts with loaded models and compiled kernels. A file that fails any stage
becomes an error record, never an exception that stops the batch.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from dataclasses import dataclass, field

import numpy as np

from ..audio import AudioInfo, load_with_hash, resample
from ..embedders import Embedder
from ..errors import AudioDecodeError, AudioragError, ParameterError
from ..segment import Segmentation
from . import descriptors, fingerprints

_STATE: dict = {}


@dataclass
class FileResult:
    """What one worker task produced for one file."""

    uri: str
    status: str  # "ok" | "duplicate" | "error"
    content_hash: str | None = None
    info: AudioInfo | None = None
    duration: float = 0.0
    raw: dict = field(default_factory=dict)  # embedder key -> float32[n_segments, dim]
    tags: dict = field(default_factory=dict)  # embedder key -> float32[n_segments, n_tags] (taggers)
    prepared: dict = field(default_factory=dict)  # embedder key -> model inputs awaiting the forward pass
    error: dict | None = None
    descriptors: dict | None = None  # musical descriptors of its windows (see .descriptors)
    landmarks: tuple | None = None  # (hashes, frames, n_frames) when the library keeps fingerprints


def warm_up(embedders: list[Embedder]) -> None:
    """Run each embedder once on a short noise clip (compiles JIT kernels before workers fork)."""
    from ..embedders.stems import shared_separation
    noise = (0.1 * np.random.default_rng(0).standard_normal(int(44100 * 1.5))).astype(np.float32)
    with shared_separation(noise, 44100):  # stem embedders separate it once per source (Demucs is heavy)
        for e in embedders:
            e.embed_track(resample(noise, 44100, e.sample_rate), [0.0], [1.5])


def run(func, tasks: list, state: dict, *, workers: int, desc: str, progress: bool = True,
        engine: str = "local", ray_address: str | None = None):
    """Yield ``func(task)`` for each task, in order: on Ray's worker actors with ``engine="ray"``
    (:mod:`.ray_engine`), else through :func:`run_pipeline` when a model embedder is involved,
    else through :func:`run_pool`."""
    if engine == "ray":
        from .ray_engine import run_ray
        return run_ray(func, tasks, state, address=ray_address, workers=workers, desc=desc, progress=progress)
    if engine != "local":
        raise ParameterError(f"engine must be 'local' or 'ray', got {engine!r}")
    if any(_is_model(e) for e in state["embedders"]):
        return run_pipeline(func, tasks, state, threads=max(1, workers - 1), desc=desc, progress=progress)
    return run_pool(func, tasks, state, workers=workers, desc=desc, progress=progress)


def run_pipeline(func, tasks: list, state: dict, *, threads: int, desc: str, progress: bool = True):
    """Decode and prepare files in ``threads`` threads while the main thread runs the models.

    Model embedders load once; their prepared windows are batched across files (up to
    ``batch_windows`` per forward) and torch uses every core. Files are decoded ahead, at
    most ``4 × threads`` in flight, so decoding the next files overlaps the forward pass of
    the current batch. Results come back in task order.
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    from ..embedders.torchmodel import set_threads
    _STATE.clear()
    _STATE.update(state)
    models = [e for e in state["embedders"] if _is_model(e)]
    set_threads()
    batch_windows = min(e.batch_windows for e in models)
    bar = tqdm(total=len(tasks), desc=desc, disable=not progress, leave=False)
    pending: list[FileResult] = []
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        ahead = deque()
        queue = iter(tasks)
        for task in queue:
            ahead.append(pool.submit(func, task))
            if len(ahead) >= 4 * threads:
                break
        while ahead:
            res = ahead.popleft().result()
            nxt = next(queue, None)
            if nxt is not None:
                ahead.append(pool.submit(func, nxt))
            pending.append(res)
            if not ahead or sum(len(r.prepared.get(models[0].key, [])) for r in pending) >= batch_windows:
                _forward(models, pending)
                yield from pending
                bar.update(len(pending))
                pending = []
    bar.close()


def _is_model(e: Embedder) -> bool:
    """A model embedder (:class:`~audiorag.embedders.torchmodel.TorchEmbedder`): its windows are
    prepared in decoding threads and its forward pass runs batched in the main thread. Tested by
    its interface so that importing this module does not import torch."""
    return callable(getattr(e, "prepare_track", None)) and callable(getattr(e, "run", None))


def _forward(models: list, results: list[FileResult]) -> None:
    """Run each model once over the prepared windows of ``results`` and give each file its rows.

    A failing forward pass turns the files of that batch into error records.
    """
    for e in models:
        ok = [r for r in results if r.status == "ok"]
        counts = [len(r.prepared[e.key]) for r in ok]
        try:
            out = e.run([w for r in ok for w in r.prepared.pop(e.key)])
            offsets = np.cumsum([0] + counts)
            for r, lo, hi in zip(ok, offsets[:-1], offsets[1:]):
                r.raw[e.key] = check_output(e, out["vectors"][lo:hi], hi - lo)
                if "tags" in out:
                    r.tags[e.key] = out["tags"][lo:hi]
        except Exception as exc:
            for r in ok:
                r.status, r.error = "error", error_record(r.uri, f"embed:{e.key}", exc)


def run_pool(func, tasks: list, state: dict, *, workers: int, desc: str, progress: bool = True):
    """Yield ``func(task)`` for each task, in order, computed by ``workers`` processes sharing ``state``."""
    from tqdm.auto import tqdm
    _STATE.clear()
    _STATE.update(state)
    bar = tqdm(total=len(tasks), desc=desc, disable=not progress, leave=False)
    try:
        if workers <= 1 or len(tasks) <= 1:
            for t in tasks:
                yield func(t)
                bar.update()
            return
        with mp.get_context("fork").Pool(workers, initializer=_one_thread_each) as pool:
            for r in pool.imap(func, tasks, chunksize=1):
                yield r
                bar.update()
    finally:
        bar.close()


def _one_thread_each() -> None:
    # the pool already uses every core; BLAS/FFT threads inside each worker would oversubscribe them
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _embed_all(y: np.ndarray, sr: int, duration: float) -> dict:
    from ..embedders.stems import shared_separation
    with shared_separation(y, sr):  # one separation per track and stem source, shared by its stem embedders
        return _embed_each(y, sr, duration)


def _embed_each(y: np.ndarray, sr: int, duration: float) -> dict:
    seg: Segmentation = _STATE["segmentation"]
    starts, ends = seg.windows(duration)
    by_rate: dict[int, np.ndarray] = {}
    raw, prepared, tags = {}, {}, {}
    for e in _STATE["embedders"]:
        stage = f"embed:{e.key}"
        try:
            if e.sample_rate not in by_rate:
                by_rate[e.sample_rate] = resample(y, sr, e.sample_rate)
            if _is_model(e):  # the model runs in the pipeline's main thread
                prepared[e.key] = e.prepare_track(by_rate[e.sample_rate], starts, ends)
                continue
            if e.tag_names:  # a tagger without a model (melody: its contours) gives its tags with the vectors
                vectors, tags[e.key] = e.embed_track_tagged(by_rate[e.sample_rate], starts, ends)
            else:
                vectors = e.embed_track(by_rate[e.sample_rate], starts, ends)
            raw[e.key] = check_output(e, vectors, len(starts))
        except Exception as exc:
            exc.stage = stage  # type: ignore[attr-defined]
            raise
    return raw, prepared, tags


def check_output(e: Embedder, raw, n: int) -> np.ndarray:
    raw = np.asarray(raw, dtype=np.float32)
    if raw.shape != (n, e.dim):
        raise AudioragError(f"{e.name} returned shape {raw.shape}, expected {(n, e.dim)}")
    if not np.isfinite(raw).all():
        raise AudioragError(f"{e.name} returned non-finite values")
    return raw


def ingest_file(uri: str) -> FileResult:
    """Worker task for ``add``: read + hash + decode + validate + embed one new file."""
    stage = "decode"
    try:
        y, sr, digest, header = load_with_hash(uri)
        if digest in _STATE["known_hashes"]:
            return FileResult(uri, "duplicate", content_hash=digest)
        duration = len(y) / sr
        raw, prepared, tags = _embed_all(y, sr, duration)
        described = descriptors.compute(y, sr, _STATE["segmentation"], duration)
        marks = fingerprints.compute(y, sr) if _STATE.get("fingerprint") else None
        return FileResult(uri, "ok", digest, header, duration, raw, tags, prepared=prepared, descriptors=described,
                          landmarks=marks)
    except Exception as exc:
        return FileResult(uri, "error", error=error_record(uri, getattr(exc, "stage", stage), exc))


def embed_file(task: tuple[str, str]) -> FileResult:
    """Worker task for ``embed``: decode a file already in the library (its hash must still match)."""
    uri, expected = task
    try:
        y, sr, digest, header = load_with_hash(uri)
        if digest != expected:
            raise AudioDecodeError(uri, f"content changed since it was added ({expected[:15]}… → {digest[:15]}…)")
        raw, prepared, tags = _embed_all(y, sr, len(y) / sr)
        return FileResult(uri, "ok", digest, header, len(y) / sr, raw, tags, prepared=prepared)
    except Exception as exc:
        return FileResult(uri, "error", error=error_record(uri, getattr(exc, "stage", "decode"), exc))


def error_record(uri: str, stage: str, exc: Exception) -> dict:
    reason = exc.reason if isinstance(exc, AudioDecodeError) else str(exc)
    record = {"uri": uri, "stage": stage, "error": type(exc).__name__, "message": reason}
    if not isinstance(exc, AudioragError):  # unexpected: keep the trace for a bug report
        record["traceback"] = traceback.format_exc(limit=5)
    return record
