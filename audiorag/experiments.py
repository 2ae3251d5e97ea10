"""Sweeps: a YAML grid (embedders × index factories × window/hop × protocols) run cell by cell through
the parameterised notebooks with papermill, then summarised from the cells' ``metrics.json`` records.

Layout of a sweep's output directory::

    libraries/<dataset>-w<window>-h<hop>/   one library per segmentation (holds every embedding and index)
    cells/<cell>/01_build_index.ipynb       the executed notebooks, beside
    cells/<cell>/03_evaluate.ipynb
    cells/<cell>/metrics.json               the cell's record (its presence marks the cell done)
    cells/<cell>/error.json                 why a cell failed (the sweep goes on)
    summary.parquet  summary.md  quality_vs_latency.png/svg  quality_by_cell.png/svg

The notebooks and the packaged sweeps (``default``, ``quick``) are package data, found through
:mod:`importlib.resources`, so a wheel install runs sweeps from any directory. In a checkout,
``audiorag/notebooks`` is a symbolic link to the top-level ``notebooks/`` and
``audiorag/sweeps/*.yaml`` link to ``experiments/*.yaml``: one copy of each file, nothing to keep
in sync. ``notebook_dir:`` in a sweep file or ``$AUDIORAG_NOTEBOOKS`` points a sweep at other
notebooks.

>>> cfg = SweepConfig.model_validate({"name": "t", "dataset": "synthetic:16",
...     "grid": {"embedders": ["features45"], "indexes": ["Flat", "HNSW32"]}})
>>> [c.id for c in cfg.cells()]
['features45-flat-w10-h2-genre', 'features45-hnsw32-w10-h2-genre']
>>> sorted(packaged_sweeps())
['default', 'quick']
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import traceback
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml
from pydantic import BaseModel, Field

from .errors import ParameterError
from .evaluate import EvaluationRecord, Protocol
from .evaluate.probe import ProbeProtocol, ProbeRecord
from .index import index_name
from .library.store import write_json

log = logging.getLogger(__name__)
#: the notebooks shipped with the package (a checkout: the top-level ``notebooks/``, through a link)
NOTEBOOKS = Path(str(resources.files(__package__) / "notebooks"))
#: sweep files shipped with the package, by name (``audiorag sweep default``)
SWEEPS = Path(str(resources.files(__package__) / "sweeps"))
#: environment variable naming another notebook directory
NOTEBOOKS_ENV = "AUDIORAG_NOTEBOOKS"
#: the columns ``audiorag sweep`` prints
TABLE_COLUMNS = ["cell", "segment/P@10", "track/P@10", "segment/mAP", "moment/accuracy", "latency/p50_ms",
                 "memory/index_bytes_per_segment", "probe/accuracy", "probe/macro_f1"]
SUMMARY_COLUMNS = ["segment/P@1", "segment/P@10", "segment/mAP", "segment/nDCG@10", "track/P@10", "track/mAP",
                   "moment/accuracy", "chance/P", "latency/p50_ms", "latency/p95_ms", "throughput/batch_qps",
                   "memory/index_bytes_per_segment", "cluster/silhouette", "cluster/purity", "cluster/nmi"]


class EmbedderSpec(BaseModel):
    name: str
    params: dict = Field(default_factory=dict)
    label: str | None = None

    @property
    def slug(self) -> str:
        return self.label or self.name


class SegmentationSpec(BaseModel):
    window: float = 10.0
    hop: float = 2.0
    tail: str = "keep-short"


class ProtocolSpec(Protocol):
    name: str | None = None

    @property
    def slug(self) -> str:
        return self.name or "-".join([self.label, *[f"x{c}" for c in self.exclude_same]])


class ProbeSpec(ProbeProtocol):
    """A probe (``grid.probes``), run once per embedder and segmentation; its accuracy and macro-F1 join the
    summary rows whose protocol has the same label (probe and retrieval side by side)."""

    name: str | None = None

    @property
    def slug(self) -> str:
        return self.name or f"{self.label}-{self.group or 'track'}-{self.model}"


class Grid(BaseModel):
    embedders: list[EmbedderSpec | str]
    indexes: list[str] = Field(default_factory=lambda: ["Flat"])
    segmentations: list[SegmentationSpec] = Field(default_factory=lambda: [SegmentationSpec()])
    protocols: list[ProtocolSpec] = Field(default_factory=lambda: [ProtocolSpec()])
    probes: list[ProbeSpec] = Field(default_factory=list)


class Cell(BaseModel):
    id: str
    embedder: EmbedderSpec
    index: str
    segmentation: SegmentationSpec
    protocol: ProtocolSpec


class SweepConfig(BaseModel):
    """A sweep file (``experiments/<name>.yaml``)."""

    name: str
    dataset: str
    grid: Grid
    notebooks: list[str] = Field(default_factory=lambda: ["01_build_index.ipynb", "03_evaluate.ipynb"])
    #: where the notebooks are, relative to the working directory (default: ``$AUDIORAG_NOTEBOOKS``,
    #: else the packaged ones)
    notebook_dir: str | None = None
    output: str | None = None
    workers: int | None = None
    #: build each library as this many shards (``build --shards N``, docs/shards.md); None: one library
    shards: int | None = Field(None, ge=1)
    #: a sharded sweep's queries through one Ray actor per shard on this cluster (``"auto"``, ``"HOST:PORT"``;
    #: docs/cluster.md); None: the local fan-out
    ray_address: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> SweepConfig:
        """Read a sweep file: a path, or the name of a packaged sweep (:func:`packaged_sweeps`)."""
        path = sweep_file(path)
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ParameterError(f"sweep file {path}: {exc}") from None
        try:
            return cls.model_validate(data)
        except ValueError as exc:
            raise ParameterError(f"sweep file {path} is not a valid sweep:\n{exc}") from None

    def cells(self) -> list[Cell]:
        out = []
        for seg in self.grid.segmentations:
            for e in self.grid.embedders:
                spec = e if isinstance(e, EmbedderSpec) else EmbedderSpec(name=e)
                for factory in self.grid.indexes:
                    for proto in self.grid.protocols:
                        cid = f"{spec.slug}-{index_name(factory)}-w{seg.window:g}-h{seg.hop:g}-{proto.slug}"
                        out.append(Cell(id=cid, embedder=spec, index=factory, segmentation=seg, protocol=proto))
        ids = [c.id for c in out]
        if len(set(ids)) != len(ids):
            raise ParameterError("sweep grid has duplicate cells; give embedders/protocols distinct labels/names")
        return out

    def library_dir(self, root: Path, seg: SegmentationSpec) -> Path:
        return root / "libraries" / f"{self.dataset.replace(':', '-').replace('/', '_')}-w{seg.window:g}-h{seg.hop:g}"

    def output_dir(self, output: str | Path | None = None) -> Path:
        """Where the sweep writes: ``output``, else the file's ``output:``, else ``experiments/results/<name>``."""
        return Path(output or self.output or f"experiments/results/{self.name}")


def packaged_sweeps() -> dict[str, Path]:
    """The sweep files shipped with audiorag, by name (``default``: the demo; ``quick``: features45 only)."""
    return {p.stem: p for p in sorted(SWEEPS.glob("*.yaml"))}


def sweep_file(path: str | Path) -> Path:
    """``path`` when it exists, else the packaged sweep of that name (``"default"``, ``"quick.yaml"``).

    >>> sweep_file("quick").name
    'quick.yaml'
    """
    p = Path(path)
    if p.exists():
        return p
    packaged = packaged_sweeps()
    if p.parent == Path(".") and p.suffix in ("", ".yaml", ".yml") and p.stem in packaged:
        return packaged[p.stem]
    raise ParameterError(f"sweep file {path} not found (packaged sweeps, by name: {', '.join(packaged)})")


def notebook_dir(config: SweepConfig | None = None) -> Path:
    """The notebooks a sweep runs: the file's ``notebook_dir``, else ``$AUDIORAG_NOTEBOOKS``, else the packaged ones.

    >>> (notebook_dir() / "01_build_index.ipynb").is_file()
    True
    """
    chosen = (config.notebook_dir if config is not None else None) or os.environ.get(NOTEBOOKS_ENV)
    return Path(chosen).expanduser() if chosen else NOTEBOOKS


def _kernel_arguments(kernel: str) -> list[str]:
    """Silence an ipykernel's start-up warnings (over TCP it warns that traffic is unencrypted, once per
    notebook, on the terminal); errors still show. Other kernels get nothing."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager
        argv = KernelSpecManager().get_kernel_spec(kernel).argv
    except Exception:  # unknown kernel: papermill reports it
        return []
    return ["--IPKernelApp.log_level=ERROR"] if any("ipykernel" in a for a in argv) else []


#: Kernel option for sweep runs: the package's tqdm bars as text on the kernel's stderr (which papermill
#: streams back as it is written) instead of widgets, whose updates never reach papermill's output.
TEXT_BARS = "--IPKernelApp.exec_lines=import tqdm.auto, tqdm.std; tqdm.auto.tqdm = tqdm.std.tqdm"


def progress_text(output: str) -> str | None:
    """The latest state of a tqdm text bar in a stream ``output`` ("embed features45 31/96 tracks"),
    or None when it holds none.

    >>> progress_text("\\rembed f45:  31%|███       | 30/96 [00:05<00:11,  5.6it/s]")
    'embed f45 30/96'
    >>> progress_text("\\revaluate:  40%|████      | 2/5 [00:01<00:01,  1.99step/s, ranking]")
    'evaluate 2/5 · ranking'
    >>> progress_text("hello") is None
    True
    """
    import re
    for line in reversed(output.replace("\r", "\n").splitlines()):
        m = re.match(r"\s*(.*?):\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)(?:\s*\[[^\],]*(?:,[^\],]*)?(?:,\s*([^\]]*))?\])?",
                     line)
        if m:
            desc, n, total, postfix = m.groups()
            return f"{desc} {n}/{total}" + (f" · {postfix.strip()}" if postfix and postfix.strip() else "")
    return None


@contextlib.contextmanager
def _kernel_progress(bar):
    """While a sweep runs, show the running notebook's own bars (decoding, embedding, index, queries)
    after the sweep bar's cell and notebook; the kernel's other output stays in the executed notebook.
    Yields a dict whose ``where`` the sweep sets to the running cell and notebook."""
    running = {"where": ""}
    pm_log = logging.getLogger("papermill")

    class Relay(logging.Handler):
        def emit(self, record):
            text = progress_text(record.getMessage()) if bar is not None else None
            if text:
                bar.set_postfix_str(f"{running['where']} · {text}")

    handler, saved = Relay(), (pm_log.propagate, pm_log.level)
    pm_log.addHandler(handler)
    pm_log.propagate = False
    pm_log.setLevel(logging.INFO)
    try:
        yield running
    finally:
        pm_log.removeHandler(handler)
        pm_log.propagate = saved[0]
        pm_log.setLevel(saved[1])


def run_sweep(config: SweepConfig, *, output: str | Path | None = None, kernel: str = "python3",
              progress: bool = True) -> pd.DataFrame:
    """Run every cell not done yet (resume), continue past failures, then write the summary.

    Parameters
    ----------
    config : SweepConfig
        The sweep (:meth:`SweepConfig.load` reads a file or a packaged sweep by name).
    output : path, optional
        Output directory (default :meth:`SweepConfig.output_dir`).
    kernel : str
        Jupyter kernel the notebooks run in; an ipykernel's start-up warnings are silenced.
    progress : bool
        One bar over the cells to run (elapsed, ETA, current cell and notebook) and, on a
        terminal, a second one over the running notebook's cells.

    Returns
    -------
    pandas.DataFrame
        The summary of every finished cell (:func:`summarise`); :func:`closing_note` formats it.
    """
    import papermill as pm
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm
    root = config.output_dir(output)
    nb_dir = notebook_dir(config)
    missing = [nb for nb in config.notebooks if not (nb_dir / nb).is_file()]
    if missing:
        raise ParameterError(f"notebooks not found in {nb_dir}: {', '.join(missing)} "
                             f"(set notebook_dir in the sweep file or ${NOTEBOOKS_ENV})")
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "sweep.json", config.model_dump(mode="json"))
    cells = config.cells()
    todo = [c for c in cells if not (root / "cells" / c.id / "metrics.json").exists()]
    if len(todo) < len(cells):
        log.info("%d of %d cells already done (delete a cell's metrics.json to run it again)",
                 len(cells) - len(todo), len(cells))
    extra = _kernel_arguments(kernel) + ([TEXT_BARS] if progress else [])
    bar = tqdm(todo, desc=f"sweep {config.name}", unit="cell", disable=not progress or not todo, dynamic_ncols=True,
               bar_format="{desc}: {n_fmt}/{total_fmt} cells |{bar}| {elapsed} elapsed, ETA {remaining}{postfix}")
    with logging_redirect_tqdm(loggers=[log]), _kernel_progress(bar if progress else None) as running:
        for cell in bar:
            cell_dir = root / "cells" / cell.id
            cell_dir.mkdir(parents=True, exist_ok=True)
            (cell_dir / "error.json").unlink(missing_ok=True)
            params = cell_parameters(config, cell, root)
            t0 = time.perf_counter()
            try:
                for nb in config.notebooks:
                    running["where"] = f"{cell.id} · {Path(nb).stem}"
                    bar.set_postfix_str(running["where"])
                    inner = {"desc": f"  {Path(nb).stem}", "leave": False, "position": 1, "disable": None} \
                        if progress else False
                    pm.execute_notebook(str(nb_dir / nb), str(cell_dir / nb), parameters=params[nb],
                                        kernel_name=kernel, progress_bar=inner, log_output=progress,
                                        cwd=str(Path.cwd()), extra_arguments=extra)
            except Exception as exc:  # a failed cell is recorded; the sweep goes on
                write_json(cell_dir / "error.json", {"cell": cell.id, "error": type(exc).__name__,
                                                     "message": str(exc)[-4000:],
                                                     "traceback": traceback.format_exc(limit=3)})
                log.warning("cell %s failed: %s (see %s)", cell.id, type(exc).__name__, cell_dir / "error.json")
                continue
            log.info("cell %s done in %.1fs", cell.id, time.perf_counter() - t0)
    bar.close()
    for cell in cells:  # probes of finished cells' embeddings (also those done by an earlier run)
        if (root / "cells" / cell.id / "metrics.json").exists():
            run_probes(config, cell, root)
    return summarise(root)


def cell_parameters(config: SweepConfig, cell: Cell, root: Path) -> dict:
    """papermill parameters of each notebook for one cell (absolute paths: a notebook reads a relative
    one from the repository root, the sweep from its working directory)."""
    from .embedders import get_embedder
    root = Path(root).absolute()
    lib = str(config.library_dir(root, cell.segmentation))
    out = str(root / "cells" / cell.id)
    key = get_embedder(cell.embedder.name, **cell.embedder.params).key
    proto = cell.protocol.model_dump(exclude={"name"})
    return {
        "01_build_index.ipynb": {"dataset": config.dataset, "library": lib, "embedder": cell.embedder.name,
                                 "embedder_params": cell.embedder.params, "window": cell.segmentation.window,
                                 "hop": cell.segmentation.hop, "tail": cell.segmentation.tail, "index": cell.index,
                                 "out_dir": out, "workers": config.workers, "shards": config.shards},
        "03_evaluate.ipynb": {"library": lib, "embedder": key, "index": index_name(cell.index), "protocol": proto,
                              "out_dir": out, "ray_address": config.ray_address},
        "05_reported_metrics.ipynb": {"library": lib, "embedder": key, "index": index_name(cell.index),
                                      "label": cell.protocol.label, "out_dir": out},
    }


def summarise(root: str | Path) -> pd.DataFrame:
    """Collect every cell's ``metrics.json`` (and failures) into summary.parquet, summary.md and plots."""
    from . import plots
    root = Path(root)
    rows = []
    for path in sorted((root / "cells").glob("*/metrics.json")):
        rec = EvaluationRecord.read(path)
        rows.append({"cell": path.parent.name, "embedder": rec.embedder["key"], "index": rec.index["factory"],
                     "window": rec.library["segmentation"]["window"], "hop": rec.library["segmentation"]["hop"],
                     "protocol": rec.protocol.describe(), "queries": rec.timings["n_queries"],
                     **{c: rec.metrics.get(c) for c in SUMMARY_COLUMNS},
                     **_probe_scores(root, rec)})
    failed = sorted(p.parent.name for p in (root / "cells").glob("*/error.json"))
    summary = pd.DataFrame(rows)
    if len(summary):
        summary.to_parquet(root / "summary.parquet", index=False)
        plots.sweep_comparison(summary, root)
    (root / "summary.md").write_text(markdown_table(summary) + "".join(f"\nfailed cell: {c} (see cells/{c}/error.json)"
                                                                        for c in failed) + "\n")
    return summary


def run_probes(config: SweepConfig, cell: Cell, root: Path) -> None:
    """The grid's probes of this cell's embedder and segmentation, each run once, into
    ``probes/<embedder>-w<window>-h<hop>-<probe>/``; a failure is recorded there (``error.json``)."""
    from .embedders import get_embedder
    from .evaluate.probe import probe
    from .library.shards import open_library
    seg = cell.segmentation
    for spec in config.grid.probes:
        out = root / "probes" / f"{cell.embedder.slug}-w{seg.window:g}-h{seg.hop:g}-{spec.slug}"
        if (out / "metrics.json").exists():
            continue
        out.mkdir(parents=True, exist_ok=True)
        try:
            probe(open_library(config.library_dir(root, seg)), out_dir=out, **spec.model_dump(exclude={"name"}),
                  embedder=get_embedder(cell.embedder.name, **cell.embedder.params).key)
        except Exception as exc:  # recorded; the sweep goes on
            write_json(out / "error.json", {"probe": out.name, "error": type(exc).__name__, "message": str(exc)})
            log.warning("probe %s failed: %s", out.name, exc)


def _probe_scores(root: Path, rec: EvaluationRecord) -> dict:
    """Accuracy and macro-F1 of the probe of ``rec``'s embedding, segmentation and label, if the sweep ran one."""
    for path in sorted((root / "probes").glob("*/metrics.json")):
        probe = ProbeRecord.read(path)
        if (probe.embedder["key"], probe.library["segmentation"], probe.protocol.label) == \
                (rec.embedder["key"], rec.library["segmentation"], rec.protocol.label):
            return {c: probe.metrics[c] for c in ("probe/accuracy", "probe/macro_f1")}
    return {}


def _fmt(value) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{float(value):.3f}"


def closing_note(config: SweepConfig, summary: pd.DataFrame, *, output: str | Path | None = None,
                 quality: str = "segment/P@10") -> str:
    """What ``audiorag sweep`` prints at the end: the summary table, failed cells, where the figures
    are, and three commands to try next on the best cell's library.

    >>> cfg = SweepConfig.model_validate({"name": "t", "dataset": "synthetic:16", "output": "out",
    ...     "grid": {"embedders": ["features45"]}})
    >>> print(closing_note(cfg, pd.DataFrame()))
    (no finished cells)
    <BLANKLINE>
    figures: none yet
    """
    root = config.output_dir(output)
    cols = [c for c in TABLE_COLUMNS if c in summary.columns]
    lines = [markdown_table(summary[cols]) if len(summary) else "(no finished cells)"]
    failed = sorted(p.parent.name for p in (root / "cells").glob("*/error.json"))
    lines += [f"failed cell: {c} (see {root / 'cells' / c / 'error.json'})" for c in failed]
    if not len(summary):
        return "\n".join(lines + ["", "figures: none yet"])
    scores = pd.to_numeric(summary[quality], errors="coerce") if quality in summary else pd.Series(dtype=float)
    best = summary.loc[scores.idxmax()] if scores.notna().any() else summary.iloc[0]  # e.g. no labels: no P@10
    cells = {c.id: c for c in config.cells()}
    cell = cells.get(best["cell"], next(iter(cells.values())))
    lib = config.library_dir(root, cell.segmentation)
    key, index = best["embedder"], index_name(str(best["index"]))
    notebook = notebook_dir(config).resolve() / "02_explore_search.ipynb"  # a checkout: notebooks/, not the link
    try:
        notebook = notebook.relative_to(Path.cwd())
    except ValueError:
        pass
    lines += ["",
              f"summary: {root / 'summary.md'} ({root / 'summary.parquet'})",
              f"figures: {root / 'quality_vs_latency.png'}, {root / 'quality_by_cell.png'}; "
              f"per cell: {root / 'cells' / '<cell>'}/*.png",
              "",
              f"next, on the best cell ({best['cell']}, {quality} {_fmt(best.get(quality))}):",
              f"  audiorag search {lib} --embedder {key} --index {index} --track 0 --at 10 -k 5 "
              "--exclude-same-track --by track",
              f"  audiorag analyse {lib} --embedder {key} --maps pca --out {root / 'analyse'}",
              f"  jupyter lab {notebook}    # set library = \"{lib}\", embedder = \"{key}\""]
    return "\n".join(lines)


def markdown_table(df: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub markdown table of a DataFrame (floats rounded)."""
    if df.empty:
        return "(no results)"
    def fmt(v):
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def project_root(start: str | Path | None = None) -> Path:
    """The folder a notebook's relative paths are relative to: the repository root — the nearest folder at
    or above ``start`` (default: the working directory, which JupyterLab sets to the notebook's folder)
    holding ``pyproject.toml`` and ``notebooks/`` — else ``start`` itself (a copy outside a checkout).

    >>> root = project_root()
    >>> project_root(root / "notebooks") == root
    True
    """
    here = Path(start if start is not None else Path.cwd()).absolute()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return here


def notebook_path(value: str | Path | None, *, start: str | Path | None = None) -> str | None:
    """A notebook parameter that is a path, made absolute by the notebooks' one rule: a relative path is
    relative to the repository root (:func:`project_root`), so ``library = "my-lib"`` means the same
    library whether the kernel runs in ``notebooks/`` (JupyterLab) or at the root (papermill, a sweep).
    Dataset specs that hold a folder (``folder:PATH``, ``freesound:DIR``) have their folder resolved;
    ``None`` and other specs (``synthetic:16``) are returned as they are.

    >>> root = project_root()
    >>> notebook_path("my-lib", start=root / "notebooks") == str(root / "my-lib")
    True
    >>> notebook_path("synthetic:16"), notebook_path(None)
    ('synthetic:16', None)
    """
    if value is None:
        return None
    text = str(value)
    prefix, _, rest = text.partition(":")
    if rest and prefix in ("folder", "freesound"):
        return f"{prefix}:{notebook_path(rest, start=start)}"
    if rest and prefix.isidentifier() and len(prefix) > 1:  # another dataset spec, e.g. synthetic:16, fma:small
        return text
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else project_root(start) / path)


def build_step(*, dataset: str, library: str, embedder: str, embedder_params: dict | None = None,
               window: float = 10.0, hop: float = 2.0, tail: str = "keep-short", index: str = "Flat",
               out_dir: str | None = None, workers: int | None = None, progress: bool = False,
               shards: int | None = None) -> dict:
    """What ``01_build_index`` does: create/open the library, add the dataset, embed, build the index.
    ``progress``: bars (tqdm) over the tracks decoded and embedded, then the index build. ``shards``: a
    sharded library of that many shards instead (:func:`sharded_build_step`)."""
    from tqdm.auto import tqdm

    from .embedders import get_embedder
    from .library import Library
    e = get_embedder(embedder, **(embedder_params or {}))
    if shards is not None:
        return sharded_build_step(dataset=dataset, library=library, embedder=e, shards=shards, window=window,
                                  hop=hop, tail=tail, index=index, out_dir=out_dir, workers=workers)
    lib = Library.create(library, window=window, hop=hop, tail=tail, exist_ok=True)
    t0 = time.perf_counter()
    report = lib.add(dataset, embedders=[e], workers=workers, progress=progress)
    key = e.key
    embed_seconds = time.perf_counter() - t0
    with tqdm(total=1, desc=f"index {index}", unit="index", disable=not progress, leave=False) as bar:
        sidecar = lib.build_index(key, index)  # one step: building and tuning report no progress of their own
        bar.update()
    result = {"library": str(lib.path), "dataset": lib.meta.get("dataset"), "embedding": key,
              "added": report.added, "failed": report.failed, "tracks": int(len(lib.tracks)),
              "segments": int(len(lib.segments)), "ingest_seconds": round(embed_seconds, 3), "index": sidecar}
    return _build_record(result, out_dir)


def sharded_build_step(*, dataset: str, library: str, embedder, shards: int, window: float, hop: float, tail: str,
                       index: str, out_dir: str | None, workers: int | None) -> dict:
    """:func:`build_step` into a sharded library of ``shards`` shards (created, or reopened with that many),
    built in parallel (:meth:`~audiorag.library.shards.ShardedLibrary.add`), each shard with the index."""
    from .datasets import resolve
    from .index import index_name
    from .library.fanout import open_index
    from .library.shards import ShardedLibrary
    source = resolve(dataset)
    lib = ShardedLibrary.create(library, shards, window=window, hop=hop, tail=tail, exist_ok=True,
                                dataset=getattr(source, "id", None))  # the records' dataset id, as build's
    t0 = time.perf_counter()
    reports = lib.add(source, embedders=[embedder], indexes=[index], workers=workers)
    seconds = time.perf_counter() - t0
    lib = ShardedLibrary.open(library)
    sidecar = open_index(lib, lib.embedding(embedder.key), index_name(index)).sidecar
    result = {"library": str(lib.path), "dataset": lib.meta.get("dataset"), "embedding": embedder.key,
              "shards": lib.n, "added": sum(r["added"] for r in reports), "failed": sum(r["failed"] for r in reports),
              "tracks": int(len(lib.tracks)), "segments": int(len(lib.segments)), "ingest_seconds": round(seconds, 3),
              "index": sidecar}
    return _build_record(result, out_dir)


def _build_record(result: dict, out_dir: str | None) -> dict:
    """``result`` written to ``out_dir/build.json`` (when given), and returned."""
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_json(Path(out_dir) / "build.json", result)
    return result
