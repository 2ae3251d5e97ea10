"""The Ray engine: files decoded and embedded on a Ray cluster's worker actors.

:func:`run_ray` has the contract of :func:`audiorag.engines.run`: given a
:class:`~audiorag.engines.job.Job` and its tasks, it yields one
:class:`~audiorag.engines.job.FileResult` per task, in task order. A Ray Data dataset of the
tasks is mapped (``map_batches``) by a pool of worker actors, one per CPU of the cluster: each
actor builds the job's embedders from their specs (name, params) and warms them up once, then runs
the same per-file function as the local engine (:func:`~audiorag.engines.job.process_file`) on
each file of its batch, with model embedders batched across the files of the batch. Results
come back pickled, streamed in task order (``preserve_order``), to the driver, which stays the
library's one writer and commits them in batches as with the local engine.

Files must be readable at the same path on every node (a shared file system); a worker that
cannot read a file gives that file's normal error record. Ray is imported here only, on first use.
A worker actor that dies is restarted by Ray and its batch retried.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
from collections import Counter
from dataclasses import replace

import numpy as np

from ..embedders import get_embedder
from ..errors import MissingDependencyError, ParameterError
from .job import FileTask, Job, forward, is_model, process_file, warm_up

log = logging.getLogger(__name__)

#: object store of a local Ray started by the build (bytes): results are small, the machine is shared
OBJECT_STORE_BYTES = 512 * 2**20
#: a test hook: a worker exits (as under ``kill -9``) on its next batch when this file does not exist yet
FAULT_ENV = "AUDIORAG_RAY_FAULT"


def require_ray():
    """The ``ray`` module, or :class:`~audiorag.errors.MissingDependencyError` naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ModuleNotFoundError:
        raise MissingDependencyError("--engine ray needs ray, which is not installed: "
                                     "pip install 'audiorag[scale]'") from None
    return ray


def run_ray(tasks: list[FileTask], job: Job, *, address: str | None = None, workers: int | None = None,
            desc: str = "ingest", progress: bool = True):
    """Yield ``process_file(job, task)`` for each task, in order, computed by worker actors on Ray.

    ``address``: None starts a local Ray on this machine with ``workers`` CPUs (default: every
    core; token authentication on, as Ray 2.60 does by default) and shuts it down when the results
    end; ``"auto"`` or ``"HOST:PORT"`` connects to a running cluster (``ray start --head``) and uses
    one actor per CPU of it. When Ray is already
    initialised in this process, it is used as it is.

    >>> from audiorag.segment import Segmentation
    >>> from audiorag.embedders import get_embedder
    >>> job = Job(Segmentation(10, 2), [get_embedder("features45")])
    >>> [r.status for r in run_ray([FileTask("/no/such.wav")], job, progress=False)]  # doctest: +SKIP
    ['error']
    """
    ray = require_ray()
    specs = embedder_specs(job.embedders)
    started = connect(address, workers)
    logging.getLogger("ray.data").setLevel(_quiet())
    from tqdm.auto import tqdm
    bar = tqdm(total=len(tasks), desc=f"{desc} (ray)", disable=not progress, leave=False)
    nodes: Counter = Counter()  # files per node id
    try:
        if not tasks:
            return
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        per_batch = batch_files(job.embedders)
        n_batches = -(-len(tasks) // per_batch)
        actors = max(1, min(int(ray.cluster_resources().get("CPU", 1)), n_batches))
        ds = ray.data.from_items([{"task": pickle.dumps(t)} for t in tasks], override_num_blocks=n_batches)
        plain = replace(job, embedders=[])  # actors build their own embedders from the specs
        ds = ds.map_batches(_Worker, fn_constructor_kwargs={"job": plain, "specs": specs},
                            batch_size=per_batch, batch_format="numpy", num_cpus=1,
                            compute=ray.data.ActorPoolStrategy(size=actors))  # dead actors: restarted, batch retried
        for row in ds.iter_rows():
            nodes[row["node"]] += 1
            yield pickle.loads(row["result"])
            bar.update()
    finally:  # also when the caller stops after the last result (``zip``)
        if nodes:
            log.info("ray: %d files on %d node(s): %s", sum(nodes.values()), len(nodes), dict(nodes))
        bar.close()
        if started:
            ray.shutdown()


def batch_files(embedders: list) -> int:
    """Files per worker batch: few for model embedders (a batch's windows go through the model
    together), more for feature embedders (fewer round trips)."""
    return 2 if any(is_model(e) for e in embedders) else 4


def embedder_specs(embedders: list) -> list[tuple[str, dict]]:
    """``(name, params)`` of each embedder: workers build their own (models load once per actor)."""
    specs = []
    for e in embedders:
        try:
            same = get_embedder(e.name, **e.params).key == e.key
        except Exception:
            same = False
        if not same:
            raise ParameterError(f"--engine ray: embedder {e.name!r} is not registered by name "
                                 "(Ray workers build embedders with get_embedder(name, **params))")
        specs.append((e.name, dict(e.params)))
    return specs


def connect(address: str | None = None, workers: int | None = None) -> bool:
    """Start or join Ray as :func:`run_ray` does; True when this call started it (then ``ray.shutdown()``
    is the caller's). A benchmark calls it first to time Ray's start-up apart from the builds.

    >>> started = connect()  # doctest: +SKIP
    """
    ray = require_ray()
    if ray.is_initialized():
        return False
    check_address(address)
    quiet = _quiet()
    logging.getLogger("ray").setLevel(quiet)
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal" if quiet > logging.INFO else "warning")
    try:
        if address is None:
            ray.init(address="local", num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
                     object_store_memory=OBJECT_STORE_BYTES, logging_level=quiet, log_to_driver=False)
        else:
            ray.init(address=address, logging_level=quiet, log_to_driver=False)
    except ConnectionError as exc:
        raise ParameterError(f"--ray-address {address}: cannot connect to a Ray cluster: {exc}") from None
    return True


def check_address(address: str | None, *, timeout: float = 5.0) -> None:
    """A ``HOST:PORT`` address must answer on TCP within ``timeout`` seconds: Ray itself would retry a wrong
    address for minutes. ``None`` (start a local Ray) and ``auto`` (Ray finds the cluster) are not probed.

    >>> check_address("127.0.0.1:1")
    Traceback (most recent call last):
    ...
    audiorag.errors.ParameterError: --ray-address 127.0.0.1:1: no Ray cluster answers there (Connection refused)
    """
    if address in (None, "auto"):
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ParameterError(f"--ray-address {address}: no Ray cluster answers there ({reason})") from None


def _quiet() -> int:
    """Ray's log level: errors only, unless this process logs INFO (``audiorag -v``)."""
    return logging.ERROR if logging.getLogger().getEffectiveLevel() > logging.INFO else logging.INFO


class _Worker:
    """One Ray actor: embedders built and warmed up once, then batches of files decoded and embedded."""

    def __init__(self, job: Job, specs: list):
        import ray
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)  # one actor per CPU: BLAS/FFT threads inside would oversubscribe them
        embedders = [get_embedder(name, **params) for name, params in specs]
        self.models = [e for e in embedders if is_model(e)]
        if self.models:
            from ..embedders.torchmodel import set_threads
            set_threads(1)
        warm_up(embedders)
        self.job = replace(job, embedders=embedders)
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict) -> dict:
        fault_hook()
        results = [process_file(self.job, pickle.loads(t)) for t in batch["task"]]
        if self.models:
            forward(self.models, results)
        return {"result": np.array([pickle.dumps(r) for r in results], dtype=object),
                "node": np.array([self.node] * len(results), dtype=object)}


def fault_hook() -> None:
    """Exit this process (as under ``kill -9``) the first time it runs while the file named by
    ``AUDIORAG_RAY_FAULT`` does not exist (then create it): the tests' way to kill an actor mid-call."""
    path = os.environ.get(FAULT_ENV)
    if not path:
        return
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(1)
