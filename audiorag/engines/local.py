"""The local engine: files decoded and embedded on this machine.

With a model embedder, :func:`run_pipeline`: decoding threads prepare the files' windows while the
main thread runs the models batched across files. Otherwise :func:`map_pool`: a pool of forked worker
processes, one file per task. Embedders are created and warmed up in the parent before the pool
forks, so each worker starts with loaded models and compiled kernels.
"""

from __future__ import annotations

import multiprocessing as mp
import os

from .job import FileResult, FileTask, Job, forward, is_model, process_file

# the job of the running pool: forked workers inherit it instead of unpickling the embedders per task
_JOB: list = []


def run_local(tasks: list[FileTask], job: Job, *, workers: int, desc: str, progress: bool = True):
    """Yield one :class:`~audiorag.engines.job.FileResult` per task, in order, computed on this machine."""
    if any(is_model(e) for e in job.embedders):
        return run_pipeline(tasks, job, threads=max(1, workers - 1), desc=desc, progress=progress)
    _JOB[:] = [job]
    return map_pool(_process, tasks, workers=workers, desc=desc, progress=progress)


def _process(task: FileTask) -> FileResult:
    return process_file(_JOB[0], task)


def run_pipeline(tasks: list[FileTask], job: Job, *, threads: int, desc: str, progress: bool = True):
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
    models = [e for e in job.embedders if is_model(e)]
    set_threads()
    batch_windows = min(e.batch_windows for e in models)
    bar = tqdm(total=len(tasks), desc=desc, disable=not progress, leave=False)
    pending: list[FileResult] = []
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        ahead = deque()
        queue = iter(tasks)
        for task in queue:
            ahead.append(pool.submit(process_file, job, task))
            if len(ahead) >= 4 * threads:
                break
        while ahead:
            res = ahead.popleft().result()
            nxt = next(queue, None)
            if nxt is not None:
                ahead.append(pool.submit(process_file, job, nxt))
            pending.append(res)
            if not ahead or sum(len(r.prepared.get(models[0].key, [])) for r in pending) >= batch_windows:
                forward(models, pending)
                yield from pending
                bar.update(len(pending))
                pending = []
    bar.close()


def map_pool(func, tasks: list, *, workers: int, desc: str, progress: bool = True):
    """Yield ``func(task)`` for each task, in order, computed by ``workers`` forked processes
    (in this process when ``workers <= 1``). ``func`` must be a module-level function.

    >>> list(map_pool(abs, [-1, 2, -3], workers=1, desc="abs", progress=False))
    [1, 2, 3]
    """
    from tqdm.auto import tqdm
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
    """Worker processes of a local run: the machine's cores, at most 8.

    >>> 1 <= default_workers() <= 8
    True
    """
    return max(1, min(os.cpu_count() or 1, 8))
