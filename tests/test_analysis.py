"""Analysis: clusters, anomalies, maps and tagging on constructed data with known answers, then
on the session library and through the CLI."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from audiorag.analysis import analyse, anomalies, clusters, maps, tagging
from audiorag.cli import app
from audiorag.embedders import l2_normalise
from audiorag.errors import ParameterError
from audiorag.search import Query, search


def blobs(rng, n_per=30, k=4, dim=16, spread=0.05):
    centres = l2_normalise(rng.normal(size=(k, dim)))
    x = l2_normalise(np.vstack([c + spread * rng.normal(size=(n_per, dim)) for c in centres]))
    return x, np.repeat([f"c{i}" for i in range(k)], n_per)


def test_well_separated_blobs_score_as_such(rng):
    x, truth = blobs(rng)
    for method, params in [("kmeans", {"k": 4}), ("hdbscan", {}), ("dbscan", {"eps": 0.1})]:
        ids = clusters.fit(method, x, **params)
        s = clusters.score(x, ids, truth)
        assert s["n_clusters"] == 4 and s["noise_share"] < 0.05, method
        assert s["silhouette"] > 0.9 and s["purity"] == 1.0 and s["nmi"] > 0.95, (method, s)
    shuffled = clusters.score(x, rng.permutation(clusters.fit("kmeans", x, k=4)), truth)
    assert shuffled["silhouette"] < 0.1 and shuffled["nmi"] < 0.3


def test_k_sweep_peaks_at_the_true_k_and_composition_counts(rng):
    x, truth = blobs(rng, k=5)
    sweep = clusters.k_sweep(x, range(2, 9), truth)
    assert sweep.loc[sweep["silhouette"].idxmax(), "k"] == 5
    table = clusters.composition(clusters.fit("kmeans", x, k=5), truth)
    assert table.shape == (5, 5) and sorted(table.max(axis=1)) == [30] * 5 and table.to_numpy().sum() == 150
    sampled = clusters.score(x, clusters.fit("kmeans", x, k=5), sample_size=50)
    assert sampled["silhouette_sample"] == 50


def test_cluster_specs():
    assert clusters.parse("kmeans:12") == ("kmeans", {"k": 12})
    assert clusters.parse("dbscan:0.25") == ("dbscan", {"eps": 0.25})
    for bad in ("kmeans", "spectral:3", "kmeans:x"):
        with pytest.raises(ParameterError):
            clusters.parse(bad)


def test_injected_outliers_are_found(rng):
    x, _ = blobs(rng, n_per=100, k=3, spread=0.03)
    odd = l2_normalise(rng.normal(size=(6, x.shape[1])))
    mixed = np.vstack([x, odd])
    injected = np.r_[np.zeros(len(x), bool), np.ones(6, bool)]
    assert anomalies.precision_at_n(anomalies.knn_distance(mixed, k=5), injected) == 1.0
    assert anomalies.precision_at_n(anomalies.isolation_forest(mixed), injected) >= 5 / 6
    flags = anomalies.flagged(anomalies.knn_distance(mixed, k=5), 0.02)
    assert flags.sum() == 6 and flags[injected].all()
    assert anomalies.precision_at_n(rng.random(len(mixed)), injected) < 0.5
    with pytest.raises(ParameterError):
        anomalies.flagged(np.ones(5), 0.7)


def test_outlier_clips_are_what_they_say():
    noise = anomalies.outlier_clips("noise", 4, sr=8000, seconds=1)
    quiet = anomalies.outlier_clips("silence", 4, sr=8000, seconds=1)
    clicks = anomalies.outlier_clips("clicks", 4, sr=8000, seconds=2)
    assert noise.shape == (4, 8000) and np.abs(noise).max() <= 0.51 and (np.abs(noise).max(axis=1) >= 0.05).all()
    assert len({round(float(np.abs(c).max()), 4) for c in noise}) == 4            # every clip different
    assert np.abs(quiet).max() < 5e-3 and (np.abs(quiet).max(axis=1) > 0).all()
    counts = np.count_nonzero(clicks, axis=1)
    assert ((counts >= 1) & (counts <= 16)).all() and len(set(counts)) > 1
    with pytest.raises(ParameterError):
        anomalies.outlier_clips("hum", 1, sr=8000, seconds=1)


@pytest.mark.slow
def test_projections(rng):
    x, truth = blobs(rng, k=3)
    for method in ("pca", "tsne", "umap"):
        xy = maps.project(x, method, seed=0)
        assert xy.shape == (90, 2) and np.isfinite(xy).all(), method
        centres = np.stack([xy[truth == c].mean(axis=0) for c in ("c0", "c1", "c2")])
        within = np.mean([np.linalg.norm(xy[truth == c] - centres[i], axis=1).mean()
                          for i, c in enumerate(("c0", "c1", "c2"))])
        between = np.min([np.linalg.norm(centres[i] - centres[j]) for i in range(3) for j in range(i + 1, 3)])
        assert between > 2 * within, method
    np.testing.assert_array_equal(maps.project(x, "tsne", seed=1), maps.project(x, "tsne", seed=1))
    with pytest.raises(ParameterError):
        maps.project(x, "mds")


def test_votes_and_abstain():
    conf = tagging.votes(np.array([["a", "b", "a", "c"], ["a", "b", "c", "d"]]),
                         np.array([[1, 1, 1, 1], [0.4, 0.3, 0.2, 0.1]]))
    assert conf[0] == {"a": 0.5, "b": 0.25, "c": 0.25}
    assert conf[1]["a"] == pytest.approx(0.4)
    assert tagging.decide(conf, 0.45) == ["a", None]
    assert tagging.decide(conf, 0.0) == ["a", "a"]


@pytest.mark.slow
def test_analysis_of_the_library(library, tmp_path):
    a = analyse(library, clusters=["kmeans:8", "hdbscan"], ks=range(2, 11), inject_rounds=2, maps=("pca",),
                out_dir=tmp_path)
    m = a.record.metrics
    assert m["items"] == len(library.segments)
    assert 0 < m["cluster/kmeans:8/silhouette"] < 1 and 0.4 < m["cluster/kmeans:8/purity"] <= 1
    assert 2 <= m["cluster/best_k"] <= 10 and m["anomaly/injected_per_round"] == 3 and m["anomaly/rounds"] == 2
    assert 0 <= m["tagging/precision"] <= 1 and m["tagging/coverage"] >= m["tagging/recall"] * 0 + 0
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["kind"] == "analysis" and record["metrics"]["cluster/kmeans:8/n_clusters"] == 8
    for f in ("items.csv", "k_sweep.csv", "k_sweep.png", "map-pca.png", "outliers.csv", "composition-kmeans8.csv"):
        assert (tmp_path / f).exists(), f
    assert a.items["outlier"].sum() == round(0.1 * len(a.items))


def test_leave_one_out_tagging_beats_chance(library):
    r = tagging.leave_one_out(library, label="genre", k=5, abstain=0.0)
    chance = library.tracks["genre"].value_counts(normalize=True).max()
    assert r["tagging/coverage"] == 1.0 and r["tagging/accuracy"] > chance
    strict = tagging.leave_one_out(library, label="genre", k=5, abstain=0.6)
    assert 0 < strict["tagging/coverage"] < 1.0 and strict["tagging/precision"] >= r["tagging/precision"]
    assert strict["tagging/recall"] == pytest.approx(strict["tagging/precision"] * strict["tagging/coverage"])
    silent = tagging.leave_one_out(library, label="genre", k=5, abstain=1.01)
    assert silent["tagging/coverage"] == 0 and np.isnan(silent["tagging/precision"])


def test_cluster_column_filters_search(library, tmp_path):
    import shutil

    from audiorag import Library
    shutil.copytree(library.path, tmp_path / "lib")
    lib = Library.open(tmp_path / "lib")
    a = analyse(lib, level="track", clusters=["kmeans:4"], ks=(), contamination=0, maps=(), tag_k=0,
                write_column="cluster")
    assert lib.tracks["cluster"].notna().all() and lib.tracks["cluster"].nunique() == 4
    stored = lib.tracks.set_index("track_id").loc[a.items["track_id"], "cluster"]
    assert a.items["cluster:kmeans:4"].tolist() == stored.tolist()
    wanted = int(lib.tracks["cluster"].iloc[0])
    hits = search(lib, Query.moment(int(lib.tracks["track_id"].iloc[-1])), k=5, filters={"cluster": wanted})
    assert set(hits["cluster"]) == {wanted}
    with pytest.raises(ParameterError, match="reserved"):
        lib.set_track_column("uri", {})


@pytest.mark.slow
def test_cli_analyse(library, tmp_path):
    r = CliRunner().invoke(app, ["analyse", str(library.path), "--clusters", "kmeans:8", "--ks", "2-6",
                                 "--maps", "pca", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.output)
    assert metrics["cluster/kmeans:8/n_clusters"] == 8 and "anomaly/knn/precision@N" in metrics
    r = CliRunner().invoke(app, ["analyse", str(library.path), "--clusters", "spectral:3", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown clustering" in r.output


def test_unlabelled_items_are_clustered_but_not_scored(rng):
    x, truth = blobs(rng, k=3)
    ids = clusters.fit("kmeans", x, k=3)
    partial = truth.astype(object)
    partial[::4] = None  # a quarter without a label
    partial[1::8] = ""
    s = clusters.score(x, ids, partial)
    known = np.array([v not in (None, "") for v in partial])
    assert s["unlabelled"] == int((~known).sum()) and s["purity"] == 1.0 and s["nmi"] == pytest.approx(1.0)
    assert s["purity"] == clusters.purity(truth[known], ids[known])
    assert np.isnan(clusters.score(x, ids, [None] * len(x))["purity"])
    table = clusters.composition(ids, clusters.label_array(partial))
    assert table.to_numpy().sum() == known.sum()  # unlabelled items are not counted in any label
    from audiorag.evaluate import metrics as M
    assert M.purity is clusters.purity and M.nmi is clusters.nmi  # evaluation uses analysis' metrics
