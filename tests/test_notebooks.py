"""Every notebook runs through papermill (real kernels) with tiny parameters; sweeps resume, record failures,
show progress without kernel noise and end with commands that work."""

import json
import re
import shlex
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest
import yaml
from typer.testing import CliRunner

from audiorag.errors import ParameterError
from audiorag.evaluate import EvaluationRecord
from audiorag.experiments import NOTEBOOKS, SweepConfig, closing_note, packaged_sweeps, run_sweep, sweep_file

ROOT = Path(__file__).resolve().parents[1]

TINY_PROTOCOL = {"name": "tiny", "label": "genre", "exclude_same": ["artist"], "ks": [1, 10], "queries": "sample",
                 "n_queries": 40, "moment_queries": 4, "latency_queries": 10}


@pytest.mark.slow
def test_sweep_runs_resumes_and_records_failures(corpus, tmp_path, capfd, monkeypatch):
    cfg = {"name": "tiny", "dataset": "synthetic:24:7",
           "grid": {"embedders": ["features45"], "indexes": ["Flat", "HNSW32", "IVF4096,Flat"],
                    "segmentations": [{"window": 10, "hop": 2}], "protocols": [TINY_PROTOCOL]}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    capfd.readouterr()
    summary = run_sweep(SweepConfig.load(path), output=out)
    err = capfd.readouterr().err
    assert "sweep tiny: 3/3 cells" in err and "ETA" in err   # one bar over the cells
    assert "without encryption" not in err and "IPKernelApp" not in err  # the kernels' start-up warning
    # the bar moves inside a notebook too: the kernel's own bars (tracks, index, queries) after the cell's name
    assert re.search(r"01_build_index · ingest \d+/24", err) and "01_build_index · index Flat" in err
    assert re.search(r"03_evaluate · evaluate: queries \d+/40", err)
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

    # the closing note: table, figures, and three next commands that run as printed
    note = closing_note(SweepConfig.load(path), again, output=out)
    assert "| features45-flat-w10-h2-tiny |" in note and str(out / "quality_vs_latency.png") in note
    assert "failed cell: features45-ivf4096-flat-w10-h2-tiny" in note
    commands = [line.strip() for line in note.splitlines() if line.startswith("  ")]
    assert [c.split()[:2] for c in commands] == [["audiorag", "search"], ["audiorag", "analyse"], ["jupyter", "lab"]]
    assert (Path.cwd() / shlex.split(commands[2])[2]).is_file()
    from audiorag.cli import app
    monkeypatch.chdir(tmp_path)
    for command in commands[:2]:
        result = CliRunner().invoke(app, shlex.split(command)[1:], catch_exceptions=False)
        assert result.exit_code == 0, (command, result.output)


@pytest.mark.slow
def test_reported_metrics_notebook(library, tmp_path):
    pm.execute_notebook(str(NOTEBOOKS / "05_reported_metrics.ipynb"), str(tmp_path / "05.ipynb"),
                        parameters={"library": str(library.path), "out_dir": str(tmp_path), "inject_rounds": 1},
                        kernel_name="python3", progress_bar=False)
    from audiorag.evaluate import reported
    table = pd.read_csv(tmp_path / "reported.csv")
    assert len(table) == len(reported.CLAIMS) and set(table["id"].str[:2]) == set(reported.SEEDS)
    record = EvaluationRecord.read(tmp_path / "metrics.json")
    assert record.kind == "reported" and record.metrics["segment/P@10"] > 0
    assert -1 <= record.metrics["cluster/silhouette_k12"] <= 1


def test_sweep_files_and_notebooks_are_found(tmp_path, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ngrid: {}\n")
    with pytest.raises(ParameterError, match="not a valid sweep"):
        SweepConfig.load(bad)
    files = sorted((ROOT / "experiments").glob("*.yaml"))
    assert len(files) >= 4
    for path in files:
        cfg = SweepConfig.load(path)
        assert cfg.cells(), path
        assert all((NOTEBOOKS / nb).is_file() for nb in cfg.notebooks), path
    assert SweepConfig.load("quick").grid.embedders == ["features45"]   # a packaged sweep, by name
    assert set(packaged_sweeps()) == {"default", "quick"}
    with pytest.raises(ParameterError, match="packaged sweeps, by name: default, quick"):
        sweep_file("nope")
    with pytest.raises(ParameterError, match="not found"):
        SweepConfig.load(tmp_path / "absent.yaml")

    # another notebook directory: from the environment, or the sweep file (which wins)
    cfg = SweepConfig.load("quick")
    monkeypatch.setenv("AUDIORAG_NOTEBOOKS", str(tmp_path / "elsewhere"))
    with pytest.raises(ParameterError, match=f"notebooks not found in {tmp_path / 'elsewhere'}"):
        run_sweep(cfg, output=tmp_path / "out")
    cfg.notebook_dir = str(tmp_path / "mine")
    with pytest.raises(ParameterError, match="01_build_index.ipynb, 03_evaluate.ipynb"):
        run_sweep(cfg, output=tmp_path / "out")
    assert not (tmp_path / "out").exists()   # nothing written before the notebooks are found


@pytest.mark.slow
def test_clusters_anomalies_notebook(library, tmp_path):
    pm.execute_notebook(str(NOTEBOOKS / "04_clusters_anomalies.ipynb"), str(tmp_path / "04.ipynb"),
                        parameters={"library": str(library.path), "clusters": ["kmeans:8", "dbscan:0.3"], "k_min": 2,
                                    "k_max": 8, "inject_rounds": 2, "maps": ["pca"], "out_dir": str(tmp_path)},
                        kernel_name="python3", progress_bar=False)
    record = EvaluationRecord.read(tmp_path / "metrics.json")
    assert record.kind == "analysis" and 2 <= record.metrics["cluster/best_k"] <= 8
    assert record.metrics["cluster/kmeans:8/n_clusters"] == 8 and record.metrics["anomaly/rounds"] == 2
    assert len(pd.read_csv(tmp_path / "k_sweep.csv")) == 7 and (tmp_path / "map-pca.png").exists()


@pytest.mark.slow
def test_explore_notebook_runs_headless(library, tmp_path):
    pm.execute_notebook(str(NOTEBOOKS / "02_explore_search.ipynb"), str(tmp_path / "02.ipynb"),
                        parameters={"library": str(library.path), "query_track": 3, "query_at": 4.0, "k": 5,
                                    "out_dir": str(tmp_path)}, kernel_name="python3", progress_bar=False)
    hits = pd.read_csv(tmp_path / "hits.csv")
    assert len(hits) == 5 and hits["track_id"].iloc[0] == 3 and hits["score"].iloc[0] > 0.999
    assert (tmp_path / "map.png").exists()
    description = json.loads((tmp_path / "description.json").read_text())   # the description panel
    assert description["query"]["track_id"] == 3 and len(description["neighbourhood"]["neighbours"]) == 5
    executed = json.loads((tmp_path / "02.ipynb").read_text())
    outputs = [o for c in executed["cells"] for o in c.get("outputs", [])]
    assert sum("audio/wav" in json.dumps(o) or "<audio" in json.dumps(o) for o in outputs) >= 5


@pytest.mark.slow
def test_recommend_notebook(library, tmp_path):
    pm.execute_notebook(str(NOTEBOOKS / "06_recommend.ipynb"), str(tmp_path / "06.ipynb"),
                        parameters={"library": str(library.path), "n_listeners": 6, "diversities": [0.0, 0.9],
                                    "discovery": [0.5], "out_dir": str(tmp_path)},
                        kernel_name="python3", progress_bar=False)
    from audiorag.analysis.records import Record
    record = Record.read(tmp_path / "metrics.json")
    table = pd.read_csv(tmp_path / "tradeoff.csv").set_index("setting")
    assert record.kind == "recommend" and record.metrics["listeners"] == 6
    assert list(table.index) == ["search", "caps-a2", "d0.0-a2", "d0.9-a2", "d0.3-a2-disc0.5"]
    assert table.loc["d0.9-a2", "ILD"] > table.loc["d0.0-a2", "ILD"]
    assert table.loc["d0.3-a2-disc0.5", "discovery"] >= 0.5
    assert (tmp_path / "recommend_tradeoff.png").exists()


PATH_PARAMETERS = {"library", "out_dir", "dataset", "query_file", "records"}


def test_every_path_parameter_of_every_notebook_is_read_from_the_repository_root():
    for nb_path in sorted(NOTEBOOKS.glob("*.ipynb")):
        cells = json.loads(nb_path.read_text())["cells"]
        at = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
        names = {line.split("=")[0].strip() for line in "".join(cells[at]["source"]).splitlines() if "=" in line}
        first_code = "".join(cells[at + 1]["source"])
        for name in names & PATH_PARAMETERS:
            assert f"notebook_path({name})" in first_code, (nb_path.name, name)
        assert "relative to the repository root" in "".join(cells[0]["source"]), nb_path.name


def test_a_relative_notebook_path_means_the_same_from_notebooks_and_from_the_root():
    from audiorag.experiments import notebook_path
    from_notebooks = notebook_path("my-lib", start=ROOT / "notebooks")
    assert from_notebooks == notebook_path("my-lib", start=ROOT) == str(ROOT / "my-lib")
    assert notebook_path("folder:audio", start=ROOT / "notebooks") == f"folder:{ROOT / 'audio'}"
    assert notebook_path("/abs/lib", start=ROOT / "notebooks") == "/abs/lib"
    assert notebook_path("fma:small") == "fma:small"
