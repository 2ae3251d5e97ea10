"""Every notebook runs through papermill (real kernels) with tiny parameters; sweeps resume and record failures."""

import json

import pandas as pd
import papermill as pm
import pytest
import yaml

from audiorag.evaluate import EvaluationRecord
from audiorag.experiments import NOTEBOOKS, SweepConfig, run_sweep

TINY_PROTOCOL = {"name": "tiny", "label": "genre", "exclude_same": ["artist"], "ks": [1, 10], "queries": "sample",
                 "n_queries": 40, "moment_queries": 4, "latency_queries": 10}


def test_sweep_runs_resumes_and_records_failures(corpus, tmp_path):
    cfg = {"name": "tiny", "dataset": "synthetic:24:7",
           "grid": {"embedders": ["features45"], "indexes": ["Flat", "HNSW32", "IVF4096,Flat"],
                    "segmentations": [{"window": 10, "hop": 2}], "protocols": [TINY_PROTOCOL]}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    summary = run_sweep(SweepConfig.load(path), output=out)
    assert sorted(summary["index"]) == ["Flat", "HNSW32"]
    cells = out / "cells"
    failed = cells / "features45-ivf4096-flat-w10-h2-tiny" / "error.json"
    assert "needs at least 4096 vectors" in json.loads(failed.read_text())["message"]
    assert "failed cell: features45-ivf4096-flat-w10-h2-tiny" in (out / "summary.md").read_text()
    flat = cells / "features45-flat-w10-h2-tiny"
    for name in ("01_build_index.ipynb", "03_evaluate.ipynb", "metrics.json", "precision_at_k.png", "latency.svg",
                 "per_class_precision.png", "build.json"):
        assert (flat / name).exists(), name
    record = EvaluationRecord.read(flat / "metrics.json")
    assert record.protocol.n_queries == 40 and record.index["factory"] == "Flat"
    assert 0 < record.metrics["segment/P@10"] < 1
    assert pd.read_parquet(out / "summary.parquet").shape[0] == 2
    assert (out / "quality_vs_latency.png").exists() and (out / "quality_by_cell.svg").exists()

    # resume: finished cells are skipped; an interrupted cell (no metrics.json) runs again
    hnsw = cells / "features45-hnsw32-w10-h2-tiny"
    flat_mtime = (flat / "03_evaluate.ipynb").stat().st_mtime_ns
    before = json.loads((hnsw / "metrics.json").read_text())["metrics"]
    (hnsw / "metrics.json").unlink()
    again = run_sweep(SweepConfig.load(path), output=out)
    assert (flat / "03_evaluate.ipynb").stat().st_mtime_ns == flat_mtime
    after = json.loads((hnsw / "metrics.json").read_text())["metrics"]
    quality = [k for k in before if k.startswith(("segment/", "track/", "chance/", "moment/accuracy"))]
    assert {k: before[k] for k in quality} == {k: after[k] for k in quality}
    pd.testing.assert_frame_equal(summary[["cell", "segment/P@10", "segment/mAP"]],
                                  again[["cell", "segment/P@10", "segment/mAP"]])


def test_reported_metrics_notebook(library, tmp_path):
    pm.execute_notebook(str(NOTEBOOKS / "05_reported_metrics.ipynb"), str(tmp_path / "05.ipynb"),
                        parameters={"library": str(library.path), "out_dir": str(tmp_path)}, kernel_name="python3",
                        progress_bar=False)
    table = pd.read_csv(tmp_path / "reported.csv")
    assert len(table) == 7 and table["audiorag"].notna().all()
    assert set(table["seed"].str[:2]) == {"S0", "S1", "S3", "S4"}
    silhouette = table.loc[table["metric"] == "cluster/silhouette_k12", "audiorag"].item()
    assert -1 <= silhouette <= 1
    assert EvaluationRecord.read(tmp_path / "metrics.json").metrics["segment/P@10"] > 0


def test_sweep_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ngrid: {}\n")
    from audiorag.errors import ParameterError
    with pytest.raises(ParameterError, match="not a valid sweep"):
        SweepConfig.load(bad)
    for path in sorted((NOTEBOOKS.parent / "experiments").glob("*.yaml")):
        assert SweepConfig.load(path).cells(), path


def test_clusters_anomalies_notebook(library, tmp_path):
    pm.execute_notebook(str(NOTEBOOKS / "04_clusters_anomalies.ipynb"), str(tmp_path / "04.ipynb"),
                        parameters={"library": str(library.path), "clusters": ["kmeans:8", "dbscan:0.3"], "k_min": 2,
                                    "k_max": 8, "inject_rounds": 2, "maps": ["pca"], "out_dir": str(tmp_path)},
                        kernel_name="python3", progress_bar=False)
    record = EvaluationRecord.read(tmp_path / "metrics.json")
    assert record.kind == "analysis" and 2 <= record.metrics["cluster/best_k"] <= 8
    assert record.metrics["cluster/kmeans:8/n_clusters"] == 8 and record.metrics["anomaly/rounds"] == 2
    assert len(pd.read_csv(tmp_path / "k_sweep.csv")) == 7 and (tmp_path / "map-pca.png").exists()


def test_explore_notebook_runs_headless(library, tmp_path):
    pm.execute_notebook(str(NOTEBOOKS / "02_explore_search.ipynb"), str(tmp_path / "02.ipynb"),
                        parameters={"library": str(library.path), "query_track": 3, "query_at": 4.0, "k": 5,
                                    "out_dir": str(tmp_path)}, kernel_name="python3", progress_bar=False)
    hits = pd.read_csv(tmp_path / "hits.csv")
    assert len(hits) == 5 and hits["track_id"].iloc[0] == 3 and hits["score"].iloc[0] > 0.999
    assert (tmp_path / "map.png").exists()
    executed = json.loads((tmp_path / "02.ipynb").read_text())
    outputs = [o for c in executed["cells"] for o in c.get("outputs", [])]
    assert sum("audio/wav" in json.dumps(o) or "<audio" in json.dumps(o) for o in outputs) >= 5
