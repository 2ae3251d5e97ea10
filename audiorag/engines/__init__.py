"""Ingest engines: where the files of a build are decoded and embedded.

The contract (:mod:`.job`): an engine receives a :class:`Job` (segmentation, embedders, options,
known content hashes) and a list of :class:`FileTask` (path, expected hash), and yields one
:class:`FileResult` per task, in task order (raw vectors and tags per embedder key, descriptors,
landmarks, or an error record). Engines hold no library and write nothing: the library's ``add`` and
``embed`` call :func:`run` and commit what comes back.

- ``local`` (:mod:`.local`): forked worker processes, or decoding threads feeding batched models;
- ``ray`` (:mod:`.ray`): Ray worker actors on one machine or a cluster (``pip install 'audiorag[scale]'``).

>>> from audiorag.segment import Segmentation
>>> from audiorag.embedders import get_embedder
>>> job = Job(Segmentation(10, 2), [get_embedder("features45")])
>>> [r.status for r in run([FileTask("/no/such.wav")], job, workers=1, progress=False)]
['error']
"""

from __future__ import annotations

from ..errors import ParameterError
from .job import (
    FileResult,
    FileTask,
    Job,
    describe_windows,
    empty_descriptors,
    error_record,
    file_landmarks,
    process_file,
    warm_up,
)
from .local import default_workers, map_pool, run_local

ENGINES = ("local", "ray")

__all__ = ["ENGINES", "FileResult", "FileTask", "Job", "default_workers", "describe_windows", "empty_descriptors",
           "error_record", "file_landmarks", "map_pool", "process_file", "run", "warm_up"]


def run(tasks: list[FileTask], job: Job, *, engine: str = "local", workers: int | None = None,
        ray_address: str | None = None, desc: str = "ingest", progress: bool = True):
    """Yield one :class:`FileResult` per task, in task order, computed by ``engine``.

    ``local`` warms the embedders up here, before its workers fork; Ray's worker actors warm up
    their own. ``workers``: processes (local, default :func:`default_workers`) or CPUs of a Ray
    started here; ``ray_address``: a running Ray cluster (``auto`` or ``HOST:PORT``).
    """
    workers = workers or default_workers()
    if engine == "ray":
        from .ray import run_ray
        return run_ray(tasks, job, address=ray_address, workers=workers, desc=desc, progress=progress)
    if engine != "local":
        raise ParameterError(f"engine must be 'local' or 'ray', got {engine!r}")
    warm_up(job.embedders)
    return run_local(tasks, job, workers=workers, desc=desc, progress=progress)
