"""Sweeps: a YAML grid (embedders × index factories × window/hop × protocols) run cell by cell through
the parameterised notebooks with papermill, then summarised from the cells' ``metrics.json`` records.

Layout of a sweep's output directory::

    libraries/<dataset>-w<window>-h<hop>/   one library per segmentation (holds every embedding and index)
    cells/<cell>/01_build_index.ipynb       the executed notebooks, beside
    cells/<cell>/03_evaluate.ipynb
    cells/<cell>/metrics.json               the cell's record (its presence marks the cell done)
    cells/<cell>/error.json                 why a cell failed (the sweep goes on)
    summary.parquet  summary.md  quality_vs_latency.png/svg  quality_by_cell.png/svg

>>> cfg = SweepConfig.model_validate({"name": "t", "dataset": "synthetic:16",
...     "grid": {"embedders": ["features45"], "indexes": ["Flat", "HNSW32"]}})
>>> [c.id for c in cfg.cells()]
['features45-flat-w10-h2-genre', 'features45-hnsw32-w10-h2-genre']
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path

import pandas as pd
import yaml
from pydantic import BaseModel, Field

from .errors import ParameterError
from .evaluate import EvaluationRecord, Protocol
from .index import index_name
from .library.store import write_json

log = logging.getLogger(__name__)
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
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


class Grid(BaseModel):
    embedders: list[EmbedderSpec | str]
    indexes: list[str] = Field(default_factory=lambda: ["Flat"])
    segmentations: list[SegmentationSpec] = Field(default_factory=lambda: [SegmentationSpec()])
    protocols: list[ProtocolSpec] = Field(default_factory=lambda: [ProtocolSpec()])


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
    output: str | None = None
    workers: int | None = None

    @classmethod
    def load(cls, path: str | Path) -> "SweepConfig":
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


def run_sweep(config: SweepConfig, *, output: str | Path | None = None, kernel: str = "python3",
              progress: bool = True) -> pd.DataFrame:
    """Run every cell not done yet (resume), continue past failures, then write the summary."""
    import papermill as pm
    root = Path(output or config.output or f"experiments/results/{config.name}")
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "sweep.json", config.model_dump(mode="json"))
    for cell in config.cells():
        cell_dir = root / "cells" / cell.id
        if (cell_dir / "metrics.json").exists():
            log.info("cell %s already done", cell.id)
            continue
        cell_dir.mkdir(parents=True, exist_ok=True)
        (cell_dir / "error.json").unlink(missing_ok=True)
        params = cell_parameters(config, cell, root)
        t0 = time.perf_counter()
        try:
            for nb in config.notebooks:
                pm.execute_notebook(str(NOTEBOOKS / nb), str(cell_dir / nb), parameters=params[nb],
                                    kernel_name=kernel, progress_bar=False, cwd=str(Path.cwd()))
        except Exception as exc:  # a failed cell is recorded; the sweep goes on
            write_json(cell_dir / "error.json", {"cell": cell.id, "error": type(exc).__name__,
                                                 "message": str(exc)[-4000:], "traceback": traceback.format_exc(limit=3)})
            log.warning("cell %s failed: %s", cell.id, type(exc).__name__)
            continue
        log.info("cell %s done in %.1fs", cell.id, time.perf_counter() - t0)
    return summarise(root)


def cell_parameters(config: SweepConfig, cell: Cell, root: Path) -> dict:
    """papermill parameters of each notebook for one cell."""
    from .embedders import get_embedder
    lib = str(config.library_dir(root, cell.segmentation))
    out = str(root / "cells" / cell.id)
    key = get_embedder(cell.embedder.name, **cell.embedder.params).key
    proto = cell.protocol.model_dump(exclude={"name"})
    return {
        "01_build_index.ipynb": {"dataset": config.dataset, "library": lib, "embedder": cell.embedder.name,
                                 "embedder_params": cell.embedder.params, "window": cell.segmentation.window,
                                 "hop": cell.segmentation.hop, "tail": cell.segmentation.tail, "index": cell.index,
                                 "out_dir": out, "workers": config.workers},
        "03_evaluate.ipynb": {"library": lib, "embedder": key, "index": index_name(cell.index), "protocol": proto,
                              "out_dir": out},
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
                     **{c: rec.metrics.get(c) for c in SUMMARY_COLUMNS}})
    failed = sorted(p.parent.name for p in (root / "cells").glob("*/error.json"))
    summary = pd.DataFrame(rows)
    if len(summary):
        summary.to_parquet(root / "summary.parquet", index=False)
        plots.sweep_comparison(summary, root)
    (root / "summary.md").write_text(markdown_table(summary) + "".join(f"\nfailed cell: {c} (see cells/{c}/error.json)"
                                                                        for c in failed) + "\n")
    return summary


def markdown_table(df: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub markdown table of a DataFrame (floats rounded)."""
    if df.empty:
        return "(no results)"
    def fmt(v):
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def build_step(*, dataset: str, library: str, embedder: str, embedder_params: dict | None = None,
               window: float = 10.0, hop: float = 2.0, tail: str = "keep-short", index: str = "Flat",
               out_dir: str | None = None, workers: int | None = None) -> dict:
    """What ``01_build_index`` does: create/open the library, add the dataset, embed, build the index."""
    from .library import Library
    lib = Library.create(library, window=window, hop=hop, tail=tail, exist_ok=True)
    from .embedders import get_embedder
    e = get_embedder(embedder, **(embedder_params or {}))
    t0 = time.perf_counter()
    report = lib.add(dataset, embedders=[e], workers=workers, progress=False)
    key = e.key
    embed_seconds = time.perf_counter() - t0
    sidecar = lib.build_index(key, index)
    result = {"library": str(lib.path), "dataset": lib.meta.get("dataset"), "embedding": key,
              "added": report.added, "failed": report.failed, "tracks": int(len(lib.tracks)),
              "segments": int(len(lib.segments)), "ingest_seconds": round(embed_seconds, 3), "index": sidecar}
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_json(Path(out_dir) / "build.json", result)
    return result
