"""Sharded libraries (docs/shards.md): the fan-out search merges exactly (Flat shards give the hits of one Flat
index over every track), ids are global and name their shard, routing is stable, parallel and sequential
builds agree, eval and serve work on the sharded library, other commands refuse in one line."""

import numpy as np
import pytest
import random_models
import soundfile as sf
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from audiorag import Library
from audiorag.cli import app
from audiorag.datasets import resolve
from audiorag.embedders import get_embedder
from audiorag.evaluate import Protocol, evaluate
from audiorag.library.shards import ShardedLibrary, split_id
from audiorag.search import Query, search
from audiorag.serve import Settings, create_app

N = 3


def _corpus(folder):
    """9 tracks of 12 s in 3 genre folders: two tones and noise, amplitude-modulated (every window differs)."""
    rng = np.random.default_rng(3)
    sr, t = 16000, np.arange(12 * 16000) / 16000
    for g, base in enumerate((220.0, 440.0, 880.0)):
        (folder / f"genre{g}").mkdir(parents=True)
        for i in range(3):
            f2 = base * rng.uniform(1.2, 2.5)
            y = np.sin(2 * np.pi * base * t) + 0.5 * np.sin(2 * np.pi * f2 * t) * (1 + np.sin(2 * np.pi * t / 7 + i))
            y = 0.3 * y / np.abs(y).max() + 0.05 * rng.standard_normal(len(t))
            sf.write(folder / f"genre{g}" / f"track{i}.wav", y.astype(np.float32), sr)
    return resolve(f"folder:{folder}", label_from_folder=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One corpus (tiny random wav2vec2) as one library and as 3 shards built in parallel."""
    root = tmp_path_factory.mktemp("shards")
    emb = get_embedder("wav2vec2", model=str(random_models.save_model("wav2vec2", root / "w2v")))
    ds = _corpus(root / "audio")
    single = Library.create(root / "single", window=5, hop=2.5)
    single.add(ds, embedders=[emb], workers=1, progress=False)
    single.build_index(emb.key, "Flat")
    sharded = ShardedLibrary.create(root / "sharded", N, window=5, hop=2.5)
    reports = sharded.add(ds, embedders=[emb], workers=2)
    return {"root": root, "emb": emb, "ds": ds, "single": single, "path": root / "sharded", "reports": reports}


def _same_hits(a, b, ids: dict):
    """Equal hits: the same tracks (through their uri) and moments, the same scores."""
    assert len(a) == len(b) > 0
    assert [ids[t] for t in a["track_id"]] == b["track_id"].tolist()
    np.testing.assert_allclose(a["score"], b["score"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(a["start"], b["start"])


def _ids(single, sharded) -> dict:
    g = dict(zip(sharded.tracks["uri"], sharded.tracks["track_id"]))
    return {int(t): int(g[u]) for t, u in zip(single.tracks["track_id"], single.tracks["uri"])}


def test_global_ids_are_unique_and_name_their_shard(built):
    lib = ShardedLibrary.open(built["path"])
    tracks = lib.tracks
    assert len(tracks) == len(built["single"].tracks) == 9 and tracks["track_id"].is_unique
    assert len(lib.segments) == len(built["single"].segments)
    for gid, uri in zip(tracks["track_id"], tracks["uri"]):
        local, shard = split_id(int(gid), N)
        own = lib.shards[shard].tracks
        assert own.loc[own["track_id"] == local, "uri"].item() == uri
    assert sum(r["added"] for r in built["reports"]) == 9 and all(r["added"] for r in built["reports"])


@pytest.mark.parametrize("k", [10, 50])
def test_sharded_search_equals_single_search(built, k):
    single, lib = built["single"], ShardedLibrary.open(built["path"])
    ids = _ids(single, lib)
    uri = single.tracks["uri"].iloc[4]
    for t in (0, 4, 8):
        _same_hits(search(single, Query.moment(t, 5.0), k=k), search(lib, Query.moment(ids[t], 5.0), k=k), ids)
        a = search(single, Query.moment(t, 2.5), k=k, by="track", exclude_same_track=True)
        b = search(lib, Query.moment(ids[t], 2.5), k=k, by="track", exclude_same_track=True)
        _same_hits(a, b, ids)
        assert ids[t] not in b["track_id"].tolist() and b["n_segments"].tolist() == a["n_segments"].tolist()
    clip = Query.audio(uri, start=3.0, end=8.0)  # one window: embedded once, searched on every shard
    _same_hits(search(single, clip, k=k), search(lib, clip, k=k), ids)
    long = Query.audio(uri, start=1.0, end=11.0)  # a sequence of windows
    _same_hits(search(single, long, k=k), search(lib, long, k=k), ids)
    genre = single.tracks["label"].iloc[1]
    a = search(single, Query.moment(1, 0.0), k=k, filters={"label": genre})
    b = search(lib, Query.moment(ids[1], 0.0), k=k, filters={"label": genre})
    _same_hits(a, b, ids)
    assert set(b["label"]) == {genre}


def test_routing_is_stable_and_a_readd_changes_nothing(built):
    lib = ShardedLibrary.open(built["path"])
    before = [(len(s.tracks), s.generation) for s in lib.shards]
    assert lib.route(built["ds"].sources()) == lib.route(built["ds"].sources())
    reports = lib.add(built["ds"], embedders=[built["emb"]], workers=2, parallel=False)
    assert sum(r["added"] for r in reports) == 0 and sum(r["duplicates"] for r in reports) == 9
    assert [len(s.tracks) for s in ShardedLibrary.open(built["path"]).shards] == [n for n, _ in before]


def test_parallel_build_gives_the_vectors_of_a_sequential_one(built, tmp_path):
    seq = ShardedLibrary.create(tmp_path / "seq", N, window=5, hop=2.5)
    seq.add(built["ds"], embedders=[built["emb"]], workers=1, parallel=False)
    seq, par = ShardedLibrary.open(tmp_path / "seq"), ShardedLibrary.open(built["path"])
    assert seq.tracks["track_id"].tolist() == par.tracks["track_id"].tolist()
    np.testing.assert_array_equal(np.asarray(seq.vectors()), np.asarray(par.vectors()))


def test_eval_on_the_sharded_library_equals_eval_on_one_library(built):
    protocol = Protocol(label="label", ks=[1, 5, 10], moment_queries=0)
    a = evaluate(built["single"], protocol=protocol).record.metrics
    b = evaluate(ShardedLibrary.open(built["path"]), protocol=protocol).record.metrics
    quality = [m for m in a if m.split("/")[0] in ("segment", "track", "chance")]
    assert len(quality) > 20
    assert {m: round(a[m], 9) for m in quality} == {m: round(b[m], 9) for m in quality}
    r = CliRunner().invoke(app, ["eval", str(built["path"]), "--label", "label", "--moment-queries", "0"])
    assert r.exit_code == 0, r.output
    assert f"segment  P@1={a['segment/P@1']:.4f}" in r.output


def test_serve_and_cli_search_on_a_sharded_library(built):
    lib = ShardedLibrary.open(built["path"])
    ids = _ids(built["single"], lib)
    with TestClient(create_app(Settings(str(built["path"])))) as c:
        r = c.get("/search/moment", params={"track": ids[2], "at": 5.0, "k": 10})
        assert r.status_code == 200, r.text
        hits = r.json()["hits"]
        want = search(lib, Query.moment(ids[2], 5.0), k=10)
        assert [h["track_id"] for h in hits] == want["track_id"].tolist()
        assert c.get("/tracks").json()["total"] == 9
        assert c.get(f"/tracks/{ids[5]}").json()["track_id"] == ids[5]
        assert c.get("/stats").json()["tracks"] == 9
    r = CliRunner().invoke(app, ["search", str(built["path"]), "--track", str(ids[2]), "--at", "5", "--json"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["info", str(built["path"])])
    assert r.exit_code == 0 and f"{N} shards" in r.output, r.output


def test_other_commands_refuse_in_one_line(built):
    for args in (["check", str(built["path"])], ["remove", str(built["path"]), "0"],
                 ["search", str(built["path"]), "--track", "0", "--by", "track", "--aggregate", "mean"]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        line = r.output.strip()
        assert "\n" not in line and "is a sharded library" in line and "Traceback" not in line, line
    audio, model = str(built["root"] / "audio"), f"wav2vec2:model={built['root'] / 'w2v'}"
    r = CliRunner().invoke(app, ["build", str(built["path"]), "--shards", "2", "--dataset", audio, "--embedder", model])
    assert r.exit_code == 2 and "3 shards, asked for 2" in r.output, r.output


def test_features45_on_shards_is_standardised_over_every_shard_as_one_library(built):
    """Per-shard sums merged into one mean and std: the statistics, vectors' scores and hits of one library."""
    root, ds = built["root"], built["ds"]
    single = Library.create(root / "f45-single", window=5, hop=2.5)
    single.add(ds, embedders=["features45"], workers=1, progress=False)
    single.build_index("features45", "Flat")
    lib = ShardedLibrary.create(root / "f45-sharded", N, window=5, hop=2.5)
    lib.add(ds, embedders=[get_embedder("features45")], workers=1, parallel=False)
    lib = ShardedLibrary.open(lib.path)
    want = single.embedding("features45").meta["standardisation"]
    for shard in lib.shards:
        got = shard.embedding("features45").meta["standardisation"]
        assert got["n_fitted"] == want["n_fitted"] == len(single.segments) and got["shards"] == N
        np.testing.assert_allclose(got["mean"], want["mean"], rtol=1e-9)
        np.testing.assert_allclose(got["std"], want["std"], rtol=1e-9)
    counts = lib.meta["standardisation"][single.embedding("features45").key]
    assert sum(counts["per_shard"]) == counts["n_fitted"] and all(counts["per_shard"])
    ids = _ids(single, lib)
    for t in (0, 4, 8):
        _same_hits(search(single, Query.moment(t, 5.0), k=20), search(lib, Query.moment(ids[t], 5.0), k=20), ids)
    generations = [s.generation for s in lib.shards]
    assert lib.standardise() == [] and [s.generation for s in lib.reload().shards] == generations  # nothing to do
