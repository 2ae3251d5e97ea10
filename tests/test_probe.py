"""Probes and out-of-fold projected retrieval: group-disjoint folds, no leakage, numbers on known data."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from audiorag.cli import app
from audiorag.errors import ParameterError
from audiorag.evaluate import Protocol, evaluate
from audiorag.evaluate.probe import ProbeRecord, group_folds, probe, probe_arrays
from audiorag.evaluate.projection import evaluate_projected, projected_retrieval


def blobs(rng, n_per=40, classes=4, dim=12, sep=4.0):
    y = np.repeat([f"c{i}" for i in range(classes)], n_per)
    x = rng.standard_normal((len(y), dim))
    x[np.arange(len(y)), np.repeat(np.arange(classes), n_per)] += sep
    groups = np.arange(len(y)) // 4  # four items per group, one class per group
    return x, y, groups


@pytest.mark.parametrize("folds", [0, 3, 5])
def test_group_folds_never_share_a_group(rng, folds):
    groups = rng.integers(0, 9, 120)
    splits = group_folds(groups, folds, seed=3)
    tested = np.concatenate([te for _, te in splits])
    assert sorted(tested.tolist()) == list(range(120))  # every item tested exactly once
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
        assert len(train) + len(test) == 120
    assert len(splits) == (9 if folds == 0 else folds)
    with pytest.raises(ParameterError, match="at least 2 groups"):
        group_folds([1, 1, 1], 3)


def test_probe_separates_blobs_and_is_chance_on_shuffled_labels(rng):
    x, y, groups = blobs(rng)
    out = probe_arrays(x, y, groups, folds=5)
    assert out["metrics"]["probe/accuracy"] >= 0.97
    assert out["metrics"]["probe/macro_f1"] >= 0.97
    assert out["metrics"]["chance/accuracy"] <= 0.3
    assert set(out["per_class_recall"]) == {"c0", "c1", "c2", "c3"}
    assert out["confusion"].sum() == len(y) and np.trace(out["confusion"]) == (out["pred"] == y).sum()
    shuffled = probe_arrays(x, rng.permutation(y), groups, folds=5)["metrics"]["probe/accuracy"]
    assert abs(shuffled - 0.25) <= 0.12
    mlp = probe_arrays(x, y, groups, model="mlp", folds=3)
    assert mlp["metrics"]["probe/accuracy"] >= 0.95


def test_test_fold_labels_do_not_change_the_probe_or_the_projection(rng):
    x, y, groups = blobs(rng, n_per=30, classes=3, sep=1.5)
    before = probe_arrays(x, y, groups, folds=4, seed=1)
    held = before["fold"] == 0
    changed = y.copy()
    changed[held] = np.roll(np.unique(y), 1)[np.searchsorted(np.unique(y), y[held])]  # every test label wrong
    after = probe_arrays(x, changed, groups, folds=4, seed=1)
    assert (after["fold"] == before["fold"]).all()
    assert (after["pred"][held] == before["pred"][held]).all()  # fitted on the other folds only
    raw = projected_retrieval(x, y, groups, method="lda", folds=4, seed=1)
    moved = projected_retrieval(x, changed, groups, method="lda", folds=4, seed=1)
    assert all(np.array_equal(raw["ranked"][q], moved["ranked"][q]) for q in np.flatnonzero(raw["fold"] == 0))


def test_projection_beats_raw_cosine_when_labels_live_in_few_dimensions(rng):
    x, y, groups = blobs(rng, n_per=30, classes=3, dim=40, sep=2.0)
    x[:, 3:] *= 3  # loud dimensions that do not depend on the label swamp raw cosine
    raw = projected_retrieval(x, y, groups, method="none")["metrics"]
    for method in ("lda", "linear"):
        m = projected_retrieval(x, y, groups, method=method)["metrics"]
        assert m["segment/P@10"] >= raw["segment/P@10"] + 0.2, method
    assert raw["chance/P"] == pytest.approx(1 / 3)
    with pytest.raises(ParameterError, match="projection must be one of"):
        projected_retrieval(x, y, groups, method="pca")


def test_raw_out_of_fold_retrieval_equals_evaluate_with_the_group_excluded(library):
    protocol = Protocol(label="genre", exclude_same=["artist"], moment_queries=0, latency_queries=1)
    expected = evaluate(library, protocol=protocol).record.metrics
    record, per_query = evaluate_projected(library, method="none", cv_group="artist", protocol=protocol)
    for name in ("segment/P@1", "segment/P@10", "segment/mAP", "segment/MRR", "chance/P"):
        assert record.metrics[name] == pytest.approx(expected[name], abs=1e-9), name
    assert record.kind == "retrieval-supervised" and record.extra["supervised"] is False
    lda, _ = evaluate_projected(library, method="lda", cv_group="artist", protocol=protocol)
    assert lda.extra["supervised"] is True and len(lda.timings["fit_seconds_per_fold"]) == 5
    assert len(per_query) == record.timings["n_queries"]


def test_probe_on_a_library_keeps_artists_apart_and_writes_its_record(library, tmp_path):
    result = probe(library, label="genre", group="artist", folds=4, out_dir=tmp_path)
    pred = result.predictions
    assert (pred.groupby("group")["fold"].nunique() == 1).all()  # an artist is tested in one fold only
    m = result.record.metrics
    assert m["probe/n_items"] == len(pred) and m["probe/n_folds"] == 4
    assert 0 <= m["probe/accuracy"] <= 1 and m["probe/accuracy"] == pytest.approx((pred.label == pred.predicted).mean())
    assert m["probe/accuracy"] > m["chance/accuracy"]
    rec = ProbeRecord.read(tmp_path / "metrics.json")
    assert rec.kind == "probe" and rec.protocol.group == "artist"
    assert (tmp_path / "confusion.png").stat().st_size > 0 and (tmp_path / "predictions.csv").exists()
    track = probe(library, label="genre", level="track", folds=3).record.metrics  # one mean vector per track
    assert track["probe/n_items"] == len(library.tracks) and track["probe/n_folds"] == 3


def test_cli_probe_and_projected_eval(library):
    r = CliRunner().invoke(app, ["probe", str(library.path), "--label", "genre", "--group", "artist", "--folds", "3",
                                 "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["kind"] == "probe"
    r = CliRunner().invoke(app, ["eval", str(library.path), "--label", "genre", "--projection", "lda",
                                 "--cv-group", "artist", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["kind"] == "retrieval-supervised" and out["extra"]["projection"] == "lda"
    assert "artist" in out["protocol"]["exclude_same"]
    r = CliRunner().invoke(app, ["probe", str(library.path), "--model", "svm"])
    assert r.exit_code == 2 and "--model must be one of logistic, mlp" in r.output
    r = CliRunner().invoke(app, ["eval", str(library.path), "--projection", "pca"])
    assert r.exit_code == 2 and "--projection must be one of" in r.output


def test_a_sweep_runs_the_grid_probes_and_shows_them_beside_retrieval(library, tmp_path):
    from audiorag.experiments import SweepConfig, markdown_table, run_probes, summarise
    cfg = SweepConfig.model_validate({"name": "p", "dataset": "synthetic:24", "grid": {
        "embedders": ["features45"], "protocols": [{"label": "genre", "exclude_same": ["artist"]}],
        "probes": [{"label": "genre", "group": "artist", "folds": 3}]}})
    cell = cfg.cells()[0]
    lib_dir = cfg.library_dir(tmp_path, cell.segmentation)
    lib_dir.parent.mkdir(parents=True)
    lib_dir.symlink_to(library.path)
    protocol = cell.protocol.model_dump(exclude={"name"})
    evaluate(library, protocol=Protocol(**{**protocol, "moment_queries": 0, "latency_queries": 1})).record.write(
        tmp_path / "cells" / cell.id)
    run_probes(cfg, cell, tmp_path)
    probe_dir = tmp_path / "probes" / "features45-w10-h2-genre-artist-logistic"
    assert ProbeRecord.read(probe_dir / "metrics.json").protocol.folds == 3
    summary = summarise(tmp_path)
    assert summary["probe/accuracy"].iat[0] == ProbeRecord.read(probe_dir / "metrics.json").metrics["probe/accuracy"]
    assert "probe/macro_f1" in markdown_table(summary)
