"""The commands beyond plain search on a sharded library (docs/shards.md): 3 shards built from the same
generated tracks as one library give that library's answers — identify (fingerprints per shard, matches
merged), every eval protocol, analyse / probe / project / fuse — or say precisely which figure differs."""

import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from audiorag import Library
from audiorag.cli import app
from audiorag.datasets import resolve
from audiorag.embedders import get_embedder
from audiorag.errors import ParameterError
from audiorag.evaluate.identify import degrade, evaluate_identify, music
from audiorag.identify import identify
from audiorag.library.shards import ShardedLibrary

N = 3
SR = 22050
runner = CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """9 tracks of 16 s of generated music that never repeats (3 labels, 3 artists each spanning the 3
    labels), as one library and as 3 shards, both with features45 vectors, a Flat index and landmark
    fingerprints."""
    root = tmp_path_factory.mktemp("shard-commands")
    rows = ["path,label,artist"]
    for i in range(9):
        folder = root / "audio" / f"genre{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"m{i}.flac", music(16, SR, seed=i), SR)
        rows.append(f"audio/genre{i % 3}/m{i}.flac,genre{i % 3},artist{i // 3}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    ds = resolve(f"folder:{root / 'audio'}", labels=root / "labels.csv")
    single = Library.create(root / "single", window=5, hop=2.5)
    single.add(ds, embedders=["features45"], fingerprint=True, workers=1, progress=False)
    single.build_index("features45", "Flat")
    sharded = ShardedLibrary.create(root / "sharded", N, window=5, hop=2.5)
    sharded.add(ds, embedders=[get_embedder("features45")], fingerprint=True, workers=2)
    lib = ShardedLibrary.open(root / "sharded")
    assert all(len(s.tracks) for s in lib.shards), "every shard should hold tracks"
    return {"root": root, "single": single, "path": root / "sharded", "lib": lib}


def _ids(single, sharded) -> dict:
    """One library's track id → the sharded library's global id (through the uri)."""
    g = dict(zip(sharded.tracks["uri"], sharded.tracks["track_id"]))
    return {int(t): int(g[u]) for t, u in zip(single.tracks["track_id"], single.tracks["uri"])}


def _clip(single, track: int, at: float, seconds: float):
    uri = single.tracks.set_index("track_id").loc[track, "uri"]
    y, sr = sf.read(uri.removeprefix("file://"), dtype="float32")
    return y[int(at * sr): int((at + seconds) * sr)]


def _same_figures(a: dict, b: dict, names=None) -> None:
    """The figures ``names`` (default: all of ``a``) equal to 9 decimals; silhouettes and intra-list distances
    (ILD), sums of float32 products over vectors gathered in another order, to 1e-6 relative."""
    names = sorted(a if names is None else names)
    assert set(names) <= set(b), set(names) - set(b)
    loose = [m for m in names if "silhouette" in m or m.endswith("/ILD")]
    assert {m: round(a[m], 9) for m in names if m not in loose} == {m: round(b[m], 9) for m in names if m not in loose}
    np.testing.assert_allclose([a[m] for m in loose], [b[m] for m in loose], rtol=1e-6, err_msg=str(loose))


def test_identify_on_shards_gives_one_librarys_matches(built):
    single, lib = built["single"], built["lib"]
    ids = _ids(single, lib)
    for track, at, seconds, kind in ((0, 3.2, 10, "clean"), (4, 5.5, 5, "noise-10dB"), (8, 1.0, 10, "stretch+5%"),
                                     (2, 6.0, 3, "mp3-64k")):
        clip = degrade(_clip(single, track, at, seconds), SR, kind, rng=np.random.default_rng(track))
        want = identify(single, clip, sr=SR, k=3)
        got = identify(lib, clip, sr=SR, k=3)
        assert len(want) >= 1 and int(want["track_id"].iloc[0]) == track, (track, kind, want)
        assert [ids[t] for t in want["track_id"]] == got["track_id"].tolist(), (track, kind)
        assert got["uri"].tolist() == want["uri"].tolist()
        for col in ("offset", "stretch", "score", "confidence"):
            np.testing.assert_allclose(got[col], want[col], rtol=0, atol=1e-9, err_msg=f"{col} {track} {kind}")
        assert got.attrs["missing_shards"] == [] and got.attrs["n_hashes"] == want.attrs["n_hashes"]
    unindexed = music(8, SR, seed=99)
    assert len(identify(single, unindexed, sr=SR)) == len(identify(lib, unindexed, sr=SR)) == 0


def test_identify_on_shards_from_the_cli(built):
    single, lib = built["single"], built["lib"]
    ids = _ids(single, lib)
    y = _clip(single, 5, 2.0, 8)
    sf.write(built["root"] / "clip.wav", y, SR)
    r = runner.invoke(app, ["identify", str(built["path"]), "--audio", str(built["root"] / "clip.wav"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["matches"][0]["track_id"] == ids[5] and abs(out["matches"][0]["offset"] - 2.0) < 0.1
    assert out["missing_shards"] == []


def test_identify_on_a_shard_without_fingerprints_says_so_in_one_line(built, tmp_path):
    lib = ShardedLibrary.create(tmp_path / "nofp", N, window=5, hop=2.5)
    lib.add(built["root"] / "audio", embedders=[get_embedder("features45")], workers=1, parallel=False)
    sf.write(tmp_path / "clip.wav", _clip(built["single"], 1, 2.0, 5), SR)
    r = runner.invoke(app, ["identify", str(lib.path), "--audio", str(tmp_path / "clip.wav")])
    assert r.exit_code == 2, r.output
    assert r.output.count("\n") == 1 and "have no fingerprints; build them with" in r.output, r.output


def test_eval_identify_on_shards_equals_one_library(built):
    a, ta = evaluate_identify(built["single"], clips=2, seed=3)
    b, tb = evaluate_identify(built["lib"], clips=2, seed=3)
    quality = [m for m in a.metrics if "latency" not in m]
    assert len(quality) >= 40
    assert {m: a.metrics[m] for m in quality} == {m: b.metrics[m] for m in quality}


def test_serve_identifies_on_shards(built, tmp_path):
    from fastapi.testclient import TestClient

    from audiorag.serve import Settings, create_app
    single, lib = built["single"], built["lib"]
    ids = _ids(single, lib)
    sf.write(tmp_path / "clip.wav", _clip(single, 7, 4.0, 6), SR)
    with TestClient(create_app(Settings(str(built["path"]), warm=False))) as c:
        r = c.post("/identify", files={"file": ("clip.wav", (tmp_path / "clip.wav").read_bytes())})
        assert r.status_code == 200, r.text
        match = r.json()["matches"][0]
        assert match["track_id"] == ids[7] and abs(match["offset"] - 4.0) < 0.1


def test_eval_retrieval_on_shards_gives_every_figure_of_one_library(built):
    """Quality, clusters by label and moment accuracy: the samples and KMeans run in the corpus's order, so
    a sharded library gets one library's figures; only the timings (and what depends on them) differ."""
    from audiorag.evaluate import Protocol, evaluate
    for protocol in (Protocol(label="label", ks=[1, 5], moment_queries=12, seed=4),
                     Protocol(label="label", ks=[1, 5], moment_queries=0, queries="sample", n_queries=20, seed=5)):
        a = evaluate(built["single"], protocol=protocol).record.metrics
        b = evaluate(built["lib"], protocol=protocol).record.metrics
        timed = [m for m in a if m.split("/")[0] in ("latency", "throughput") or m == "moment/clip_query_ms"]
        same = sorted(set(a) - set(timed) - {"memory/index_bytes_per_segment"})
        assert set(a) == set(b) and "cluster/nmi" in same and len(same) > 20
        _same_figures(a, b, same)
        # the index files: one header per shard (a Flat index's header is under 100 bytes)
        extra = (b["memory/index_bytes_per_segment"] - a["memory/index_bytes_per_segment"]) * len(built["lib"].segments)
        assert 0 < extra < (N - 1) * 100


def test_eval_recommend_on_shards_equals_one_library(built):
    """Listeners drawn in the corpus's order, the same recommendations: every figure but the timings. The
    settings' descriptor factors are set to 0 (the shards' descriptors are not merged: see docs/shards.md)."""
    from audiorag.evaluate.recommend import evaluate_recommend
    plain = {"harmonic": 0.0, "tempo": 0.0, "key": 0.0, "infer_mood": False}
    a, _ = evaluate_recommend(built["single"], label="label", n_listeners=6, seed=2, **plain)
    b, _ = evaluate_recommend(built["lib"], label="label", n_listeners=6, seed=2, **plain)
    same = [m for m in a.metrics if not m.endswith("ms")]
    assert len(same) > 50 and a.metrics["search/P@10"] > 0
    _same_figures(a.metrics, b.metrics, same)


@pytest.mark.slow
def test_eval_hum_on_shards_equals_one_library(cache, tmp_path):
    """The hums are drawn in the corpus's order (the same phrases for every library of the same files) and each
    hum search is merged across the shards: every figure but the timings is one library's."""
    from conftest import locked

    from audiorag.datasets.melodic import MelodicDataset
    from audiorag.evaluate.hum import evaluate_hum
    ds = MelodicDataset(6, seed=3, duration=20.0)
    with locked(cache / ".melodic.lock"):
        ds.generate()
    single = Library.create(tmp_path / "single", window=10, hop=2)
    single.add(ds, embedders=["melody"], workers=1, progress=False)
    single.build_index("melody")
    lib = ShardedLibrary.create(tmp_path / "sharded", N, window=10, hop=2)
    lib.add(ds, embedders=[get_embedder("melody")], indexes=["auto"], workers=1, parallel=False)
    a, _ = evaluate_hum(single, n_hums=8, seed=1)
    b, _ = evaluate_hum(ShardedLibrary.open(lib.path), n_hums=8, seed=1)
    assert a["hums"] == 8 and a["top10"] > 0
    _same_figures(a, b, [m for m in a if not m.startswith(("latency/", "cpu/"))])


def test_a_bad_missing_shards_policy_is_refused_in_one_line(built):
    r = runner.invoke(app, ["serve", str(built["path"]), "--missing-shards", "drop"])
    assert r.exit_code == 2 and r.output.strip() == "error: --missing-shards must be partial or 503, got 'drop'"
    with pytest.raises(ParameterError, match="missing must be 'partial' or 'error'"):
        ShardedLibrary.open(built["path"], missing="drop")


TINY_SWEEP = {"name": "tiny-shards", "dataset": "synthetic:12:7", "shards": N,
              "grid": {"embedders": ["features45"], "indexes": ["Flat"], "segmentations": [{"window": 10, "hop": 2}],
                       "protocols": [{"name": "tiny", "label": "genre", "ks": [1, 5], "queries": "sample",
                                      "n_queries": 30, "moment_queries": 4, "latency_queries": 5}]}}


def sweep_equals_one_library(tmp_path, ray_address=None) -> dict:
    """Run :data:`TINY_SWEEP` (its library sharded, queried through ``ray_address``) and check its cell's
    record against ``evaluate()`` on one library built from the same dataset; returns the record's metrics."""
    import yaml

    from audiorag.evaluate import EvaluationRecord, Protocol, evaluate
    from audiorag.experiments import SweepConfig, run_sweep
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**TINY_SWEEP, "ray_address": ray_address}))
    summary = run_sweep(SweepConfig.load(path), output=tmp_path / "out", progress=False)
    cell = tmp_path / "out" / "cells" / "features45-flat-w10-h2-tiny"
    assert len(summary) == 1, list(cell.glob("*"))
    build = json.loads((cell / "build.json").read_text())
    assert build["shards"] == N and build["tracks"] == 12
    got = EvaluationRecord.read(cell / "metrics.json")
    single = Library.create(tmp_path / "single", window=10, hop=2)
    single.add("synthetic:12:7", embedders=["features45"], workers=1, progress=False)
    single.build_index("features45", "Flat")
    record = evaluate(single, protocol=Protocol(**got.protocol.model_dump())).record
    assert got.dataset["id"] == record.dataset["id"] == single.meta["dataset"], got.dataset  # the same provenance
    want = record.metrics
    same = [m for m in want if m.split("/")[0] in ("segment", "track", "chance", "cluster")
            or m in ("moment/accuracy", "moment/track_accuracy")]
    assert len(same) > 20
    _same_figures(want, got.metrics, same)
    return got.metrics


@pytest.mark.slow
def test_a_sharded_sweep_gives_one_librarys_figures_through_the_local_fanout(tmp_path):
    sweep_equals_one_library(tmp_path)


def test_ray_address_on_a_library_without_shards_is_refused_in_one_line(built):
    for args in (["recommend", str(built["single"].path), "--liked", "0@2"],
                 ["identify", str(built["single"].path), "--audio", str(built["root"] / "labels.csv")],
                 ["eval", str(built["single"].path), "--protocol", "recommend", "--label", "label"]):
        r = runner.invoke(app, [*args, "--ray-address", "auto"])
        assert r.exit_code == 2, (args, r.output)
        assert r.output.strip() == (f"error: --ray-address: {built['single'].path} is a library without shards; "
                                    "Ray serves sharded libraries (build --shards N)"), r.output


def test_recommend_on_shards_from_the_cli(built):
    """The CLI opens the sharded library (``--ray-address`` too: tests/test_cluster.py) and answers what
    ``recommend()`` answers on it, naming no missing shard (one library's answer: test_cluster.py)."""
    from audiorag.recommend import recommend
    lib = built["lib"]
    track = int(lib.tracks["track_id"].iloc[4])
    r = runner.invoke(app, ["recommend", str(built["path"]), "--liked", f"{track}@2.5", "--harmonic", "0", "--tempo",
                            "0", "--key", "0", "-k", "4", "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    want = recommend(lib, [(track, 2.5)], k=4, harmonic=0.0, tempo=0.0, key=0.0)
    assert sorted(m["segment_id"] for m in got["moments"]) == sorted(want["segment_id"].tolist())
    assert got["missing_shards"] == []


def test_analyse_probe_and_projected_eval_on_shards_equal_one_library(built):
    """Items in the corpus's order, folds over the tracks' names: the figures of one library (timings apart)."""
    from audiorag.analysis import analyse
    from audiorag.evaluate import Protocol
    from audiorag.evaluate.probe import probe
    from audiorag.evaluate.projection import evaluate_projected
    single, lib = built["single"], built["lib"]
    kw = {"label": "label", "clusters": ["kmeans:3", "dbscan:0.9"], "ks": range(2, 5), "contamination": 0.1,
          "inject_rounds": 1, "maps": ["pca"], "tag_k": 3}
    a, b = analyse(single, **kw), analyse(lib, **kw)
    assert len(a.record.metrics) > 15
    _same_figures(a.record.metrics, b.record.metrics)
    assert a.items["uri"].tolist() == b.items["uri"].tolist() and a.items["start"].tolist() == b.items["start"].tolist()
    np.testing.assert_allclose(a.maps["pca"], b.maps["pca"], atol=1e-5)
    for level, group in (("segment", None), ("track", "artist"), ("segment", "artist")):
        pa = probe(single, label="label", group=group, folds=3, level=level).record.metrics
        pb = probe(lib, label="label", group=group, folds=3, level=level).record.metrics
        _same_figures(pa, pb)
    protocol = Protocol(label="label", ks=[1, 5])
    ra, _ = evaluate_projected(single, method="lda", cv_group="artist", folds=3, protocol=protocol)
    rb, _ = evaluate_projected(lib, method="lda", cv_group="artist", folds=3, protocol=protocol)
    _same_figures(ra.metrics, rb.metrics)


def test_project_and_fuse_on_shards_search_as_one_library(built, tmp_path):
    """A projection fitted once over every shard and stored in each, and a fusion stored shard by shard:
    searched on the sharded library, one library's hits (CLI for the sharded one)."""
    from audiorag.library.shardedits import fuse, project
    from audiorag.search import Query, search
    single, path = built["single"], built["path"]
    ids = _ids(single, built["lib"])
    want_proj = project(single, "features45", label="label", method="lda")
    r = runner.invoke(app, ["project", str(path), "--embedder", "features45", "--label", "label", "--json"])
    assert r.exit_code == 0, r.output
    got_proj = json.loads(r.stdout)["key"]
    want_fused = fuse(single, ["features45", want_proj], weights=[1.0, 2.0])
    r = runner.invoke(app, ["fuse", str(path), "features45", got_proj, "--weights", "1,2", "--json"])
    assert r.exit_code == 0, r.output
    got_fused = json.loads(r.stdout)["key"]
    lib = ShardedLibrary.open(path)
    assert {got_proj, got_fused} <= {e.key for e in lib.embeddings()}
    for want_key, got_key in ((want_proj, got_proj), (want_fused, got_fused)):
        for t in (0, 5):
            a = search(single, Query.moment(t, 2.5), k=12, embedder=want_key)
            b = search(lib, Query.moment(ids[t], 2.5), k=12, embedder=got_key)
            assert [ids[x] for x in a["track_id"]] == b["track_id"].tolist(), (want_key, t)
            np.testing.assert_allclose(a["start"], b["start"])
            np.testing.assert_allclose(a["score"], b["score"], atol=1e-5)


def test_analyse_on_shards_from_the_cli_writes_a_column_in_each_shard(built, tmp_path):
    r = runner.invoke(app, ["analyse", str(built["path"]), "--label", "", "--level", "track", "--clusters",
                            "kmeans:2", "--ks", "", "--anomalies", "0", "--maps", "pca", "--write-column", "cluster2",
                            "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    lib = ShardedLibrary.open(built["path"])
    assert lib.tracks["cluster2"].notna().all() and set(lib.tracks["cluster2"]) <= {0, 1}
    items = __import__("pandas").read_csv(tmp_path / "items.csv")
    assert dict(zip(items["track_id"], items["cluster:kmeans:2"])) == dict(zip(lib.tracks["track_id"],
                                                                               lib.tracks["cluster2"]))
