"""A sharded library served by Ray shard actors (docs/cluster.md) on a real two-node
``ray.cluster_utils.Cluster`` (each node its own raylet and resources), started once for the module:
searches give exactly the local fan-out's hits and those of one library holding every track; each
shard's actor is named, reused and placed on the node ``shards.json`` names; an actor killed mid-query
is restarted and the query retried; a shard that stays down is named, never silently dropped."""

import json
import os

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'audiorag[scale]')")

from test_shards import _corpus, _ids, _same_hits  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from audiorag import Library  # noqa: E402
from audiorag.cli import app  # noqa: E402
from audiorag.embedders import Embedder, get_embedder, register  # noqa: E402
from audiorag.engines.ray import FAULT_ENV  # noqa: E402
from audiorag.library.cluster import NAMESPACE  # noqa: E402
from audiorag.library.shards import ShardedLibrary  # noqa: E402
from audiorag.search import Query, search  # noqa: E402

pytestmark = pytest.mark.slow
N = 3


@register("test-bands24")
class Bands24(Embedder):
    """A fixed space that costs nothing to build: log energies of 24 log-spaced bands, centred per window
    (so the cluster test spends its time on Ray, not on embedding)."""

    name, sample_rate, dim = "test-bands24", 16000, 24

    def embed(self, batch):
        power = np.abs(np.fft.rfft(self.check_batch(batch), axis=1)) ** 2
        edges = np.unique(np.geomspace(8, power.shape[1] - 1, self.dim + 1).astype(int))[: self.dim]
        bands = np.log(np.add.reduceat(power, edges, axis=1) + 1e-9)
        return (bands - bands.mean(axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """9 tracks (24 band energies, landmark fingerprints) as one library and as 3 shards; a Ray cluster
    of two nodes (a head and a worker, 1 CPU each) whose processes see ``AUDIORAG_RAY_FAULT`` (a marker that exists: no
    fault until a test removes it); shard s placed on node s % 2."""
    from ray.cluster_utils import Cluster
    root = tmp_path_factory.mktemp("cluster")
    emb = Bands24()
    ds = _corpus(root / "audio")
    single = Library.create(root / "single", window=5, hop=2.5)
    single.add(ds, embedders=[emb], workers=1, progress=False, fingerprint=True)
    single.build_index(emb.key, "Flat")
    sharded = ShardedLibrary.create(root / "sharded", N, window=5, hop=2.5)
    sharded.add(ds, embedders=[emb], workers=1, parallel=False, fingerprint=True)
    marker = root / "actor-exited"
    marker.touch()
    old = os.environ.get(FAULT_ENV)
    os.environ[FAULT_ENV] = str(marker)
    c = _two_nodes(Cluster)
    ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
    try:
        c.wait_for_nodes()
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        assert len(nodes) == 2
        for s in range(N):
            sharded.place(s, node=nodes[s % 2])
        yield {"address": c.address, "nodes": nodes, "single": single, "path": root / "sharded",
               "marker": marker, "uri": single.tracks["uri"].iloc[4]}
    finally:
        ray.shutdown()
        c.shutdown()
        if old is None:
            os.environ.pop(FAULT_ENV, None)
        else:
            os.environ[FAULT_ENV] = old


def _two_nodes(Cluster):
    """A head and a worker node, 1 CPU each; once more if a node misses Ray's fixed 30 s start-up deadline
    (a loaded machine: the raylet registers late)."""
    small = {"num_cpus": 1, "object_store_memory": 80 * 2**20}
    for attempt in (1, 2):
        c = Cluster()
        try:
            c.add_node(**small, include_dashboard=False)
            c.add_node(**small)
            return c
        except Exception:
            c.shutdown()
            if attempt == 2:
                raise


def _queries(uri, ids):
    return [(Query.moment(ids[t], at), by) for t in (0, 4, 8) for at, by in ((5.0, "segment"), (2.5, "track"))] + \
        [(Query.audio(uri, start=3.0, end=8.0), "segment"), (Query.audio(uri, start=1.0, end=11.0), "segment")]


def test_ray_search_equals_the_local_fanout_and_one_library(cluster):
    local = ShardedLibrary.open(cluster["path"])
    lib = ShardedLibrary.open(cluster["path"], ray_address=cluster["address"])
    ids = _ids(cluster["single"], local)
    single_of = {g: t for t, g in ids.items()}
    for k in (5, 40):
        for query, by in _queries(cluster["uri"], ids):
            a = search(lib, query, k=k, by=by, exclude_same_track=by == "track")
            b = search(local, query, k=k, by=by, exclude_same_track=by == "track")
            assert a.attrs["missing_shards"] == [] and len(a) > 0
            assert a["segment_id"].tolist() == b["segment_id"].tolist()  # exactly the local fan-out's hits
            assert a["score"].tolist() == b["score"].tolist()
            q = query if query.kind != "moment" else Query.moment(single_of[query.track_id], query.at)
            _same_hits(search(cluster["single"], q, k=k, by=by, exclude_same_track=by == "track"), a, ids)
    # one named actor per shard, on the node shards.json places it, found again by a second opening
    assert lib.cluster.nodes() == {s: cluster["nodes"][s % 2] for s in range(N)}
    again = ShardedLibrary.open(cluster["path"], ray_address=cluster["address"]).cluster
    for s in range(N):
        assert again.actor(s)._actor_id == lib.cluster.actor(s)._actor_id
        assert ray.get_actor(lib.cluster.names[s], namespace=NAMESPACE)._actor_id == lib.cluster.actor(s)._actor_id


def test_an_actor_killed_mid_query_is_restarted_and_the_query_retried(cluster):
    local = ShardedLibrary.open(cluster["path"])
    lib = ShardedLibrary.open(cluster["path"], ray_address=cluster["address"])
    query = Query.audio(cluster["uri"], start=3.0, end=8.0)
    before = {s: ray.get(lib.cluster.actor(s).__ray_ready__.remote()) for s in range(N)}  # all up
    assert len(before) == N
    cluster["marker"].unlink()  # the next actor call exits its process (os._exit) once
    hits = search(lib, query, k=20)
    assert cluster["marker"].exists(), "no actor was killed"
    assert hits.attrs["missing_shards"] == []
    expected = search(local, query, k=20)
    assert hits["segment_id"].tolist() == expected["segment_id"].tolist()
    assert hits["score"].tolist() == expected["score"].tolist()


def test_a_shard_that_stays_down_is_named_never_silently_dropped(cluster):
    local = ShardedLibrary.open(cluster["path"])
    gone = ShardedLibrary.open(cluster["path"])
    gone.place(1, node=cluster["nodes"][1], path="/nonexistent/shard-001")  # not on that node: cannot open
    lib = ShardedLibrary.open(cluster["path"], ray_address=cluster["address"])
    try:
        lib.cluster.stop([1])  # its running actor is replaced by one made from the new placement
        query = Query.audio(cluster["uri"], start=3.0, end=8.0)
        hits = search(lib, query, k=10)
        assert hits.attrs["missing_shards"] == [1]
        assert not (hits["track_id"] % N == 1).any()
        full = search(local, query, k=60)
        rest = full[full["track_id"] % N != 1].head(10)
        assert hits["segment_id"].tolist() == rest["segment_id"].tolist()  # the other shards' hits, all of them
        out = CliRunner().invoke(app, ["search", str(cluster["path"]), "--audio", cluster["uri"], "--start", "3",
                                       "--end", "8", "--ray-address", cluster["address"], "--json"])
        assert out.exit_code == 0, out.output
        assert "warning: shard(s) 1 did not answer" in out.stderr
        for protocol in ("retrieval", "identify"):  # figures over a part of the library would be wrong: refused
            ev = CliRunner().invoke(app, ["eval", str(cluster["path"]), "--label", "label", "--protocol", protocol,
                                          "--queries", "2", "--ray-address", cluster["address"]])
            assert ev.exit_code == 2 and "shard(s) 1 did not answer" in ev.output, (protocol, ev.output)
    finally:
        lib.cluster.stop([1])
        gone.place(1, node=cluster["nodes"][1])
    hits = search(ShardedLibrary.open(cluster["path"], ray_address=cluster["address"]), query, k=10)
    assert hits.attrs["missing_shards"] == []  # placed back: answers again
    assert hits["segment_id"].tolist() == search(local, query, k=10)["segment_id"].tolist()


def test_rerank_and_recommend_on_shards_equal_one_library_locally_and_through_ray(cluster):
    """Over-fetch rule: every shard is asked for the whole candidate depth (k × fan_out), so the merged
    candidates are one library's and diversity, caps and the moments' descriptors (harmony, tempo, key,
    mood) re-rank them to the same moments; ``recommend`` infers the same listener's mood."""
    from audiorag.recommend import recommend
    from audiorag.rerank import Rerank
    single = cluster["single"]
    local = ShardedLibrary.open(cluster["path"])
    ray_lib = ShardedLibrary.open(cluster["path"], ray_address=cluster["address"])
    ids = _ids(single, local)
    for options in (Rerank(diversity=0.5, max_per_track=2), Rerank(max_per_track=1, fan_out=3),
                    Rerank(harmonic=1.0, tempo=0.5, key=0.5, mood="calm", mood_weight=0.5, diversity=0.2)):
        want = search(single, Query.moment(4, 5.0), k=6, rerank=options)
        for lib in (local, ray_lib):
            got = search(lib, Query.moment(ids[4], 5.0), k=6, rerank=options)
            assert [ids[t] for t in want["track_id"]] == got["track_id"].tolist()
            np.testing.assert_allclose(got["score"], want["score"], rtol=0, atol=1e-6)
            np.testing.assert_allclose(got["start"], want["start"])
    want = recommend(single, ["0@5", "4@2.5"], history=[8], k=5, diversity=0.3, harmonic=0.5)
    assert want.attrs["mood_inferred"] is not None  # from the stored descriptors of the likes and the played track
    for lib in (local, ray_lib):
        got = recommend(lib, [f"{ids[0]}@5", f"{ids[4]}@2.5"], history=[ids[8]], k=5, diversity=0.3, harmonic=0.5)
        assert got.attrs["missing_shards"] == [] and got.attrs["mood_inferred"] == want.attrs["mood_inferred"]
        assert [ids[t] for t in want["track_id"]] == got["track_id"].tolist()
        np.testing.assert_allclose(got["score"], want["score"], rtol=0, atol=1e-6)


def test_hum_through_the_shard_actors_equals_the_local_fanout(cluster, cache, tmp_path):
    """The coarse stage of a hum query goes to the shard actors (RayFanoutIndex); the driver reads the
    candidates' contours from the shards' files and aligns them: the local fan-out's hits, to the bit."""
    from conftest import locked

    from audiorag.datasets.melodic import SR, MelodicDataset, melodies_of, synthesise_hum
    from audiorag.search import hum_search
    melodic = MelodicDataset(6, seed=3, duration=20.0)
    with locked(cache / ".melodic.lock"):
        melodic.generate()
    ShardedLibrary.create(tmp_path / "melodic", N, window=10, hop=2).add(melodic, embedders=[get_embedder("melody")],
                                                                          workers=1, parallel=False)
    local = ShardedLibrary.open(tmp_path / "melodic")
    ray_lib = ShardedLibrary.open(tmp_path / "melodic", ray_address=cluster["address"])
    try:
        uri = local.tracks["uri"].iloc[2]
        y, _ = synthesise_hum(melodies_of(uri), np.random.default_rng(7), phrase=(10, 21), snr_db=25, edit=None)
        for by in ("segment", "track"):
            a, b = search(ray_lib, Query.hum(y, sr=SR), k=5, by=by), search(local, Query.hum(y, sr=SR), k=5, by=by)
            assert a.attrs["missing_shards"] == [] and len(a) > 0
            assert a["segment_id"].tolist() == b["segment_id"].tolist() and a["score"].tolist() == b["score"].tolist()
        assert a["track_id"].iloc[0] == local.tracks["track_id"].iloc[2]
        a = hum_search(ray_lib, Query.hum(y, sr=SR), k=3, candidates=8)  # a coarse stage shorter than the corpus
        b = hum_search(local, Query.hum(y, sr=SR), k=3, candidates=8)
        assert a["segment_id"].tolist() == b["segment_id"].tolist() and a["score"].tolist() == b["score"].tolist()
    finally:
        ray_lib.cluster.stop()


def test_the_cli_places_shards_and_says_where_their_actors_run(cluster):
    path, nodes = str(cluster["path"]), cluster["nodes"]
    r = CliRunner().invoke(app, ["shards", "place", path, "--shard", "2", "--node", nodes[0], "--json"])
    assert r.exit_code == 0, r.output
    assert '"node": "' + nodes[0] in r.stdout
    r = CliRunner().invoke(app, ["shards", "where", path, "--ray-address", cluster["address"], "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["node"] for row in rows] == [nodes[s % 2] for s in range(N)]
    assert all(row["placed"]["node"] == row["node"] for row in rows)
    r = CliRunner().invoke(app, ["shards", "place", path, "--shard", "7"])
    assert r.exit_code == 2 and r.output.strip() == "error: --shard must be 0..2, got 7", r.output


def test_serve_answers_through_the_shard_actors(cluster):
    from fastapi.testclient import TestClient

    from audiorag.serve import Settings, create_app
    local = ShardedLibrary.open(cluster["path"])
    ids = _ids(cluster["single"], local)
    settings = Settings(str(cluster["path"]), ray_address=cluster["address"], warm=False)
    with TestClient(create_app(settings)) as c:
        r = c.get("/search/moment", params={"track": ids[2], "at": 5.0, "k": 10})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["missing_shards"] == []
        want = search(local, Query.moment(ids[2], 5.0), k=10)
        assert [h["segment_id"] for h in body["hits"]] == want["segment_id"].tolist()


def test_eval_through_the_shard_actors_equals_the_local_fanout(cluster):
    from audiorag.evaluate import Protocol, evaluate
    protocol = Protocol(label="label", ks=[1, 5], moment_queries=0)
    a = evaluate(ShardedLibrary.open(cluster["path"]), protocol=protocol).record.metrics
    b = evaluate(ShardedLibrary.open(cluster["path"], ray_address=cluster["address"]), protocol=protocol).record.metrics
    quality = [m for m in a if m.split("/")[0] in ("segment", "track")]
    assert quality and all(a[m] == b[m] for m in quality), {m: (a[m], b[m]) for m in quality if a[m] != b[m]}


def test_identify_through_the_shard_actors_equals_one_library(cluster):
    """The shard actors look up their fingerprints (ShardServer.run): the matches of one library."""
    import soundfile as sf

    from audiorag.identify import identify
    single = cluster["single"]
    lib = ShardedLibrary.open(cluster["path"], ray_address=cluster["address"])
    ids = _ids(single, lib)
    y, sr = sf.read(cluster["uri"].removeprefix("file://"), dtype="float32")
    clip = y[int(2.0 * sr): int(9.0 * sr)]
    want = identify(single, clip, sr=sr, k=2)
    got = identify(lib, clip, sr=sr, k=2)
    assert got.attrs["missing_shards"] == [] and len(want) >= 1
    assert [ids[t] for t in want["track_id"]] == got["track_id"].tolist()
    for col in ("offset", "stretch", "score", "confidence"):
        assert got[col].tolist() == want[col].tolist(), col


def test_serve_answers_503_naming_shards_that_stay_down_when_asked(cluster):
    """``serve --missing-shards 503`` (Settings.missing_shards): no partial hits but a 503 naming the shards;
    the default answers the other shards' hits and names them; ShardedLibrary.open(missing="error") raises."""
    from fastapi.testclient import TestClient

    from audiorag.library.cluster import ShardsMissing
    from audiorag.serve import Settings, create_app
    local = ShardedLibrary.open(cluster["path"])
    ids = _ids(cluster["single"], local)
    track = next(g for g in ids.values() if g % N != 1)
    gone = ShardedLibrary.open(cluster["path"])
    gone.place(1, node=cluster["nodes"][1], path="/nonexistent/shard-001")
    lib = ShardedLibrary.open(cluster["path"], ray_address=cluster["address"], missing="error")
    try:
        lib.cluster.stop([1])
        with pytest.raises(ShardsMissing) as err:
            search(lib, Query.moment(track, 5.0), k=5)
        assert err.value.shards == [1]
        for policy, status in (("503", 503), ("partial", 200)):
            settings = Settings(str(cluster["path"]), ray_address=cluster["address"], warm=False,
                                missing_shards=policy)
            with TestClient(create_app(settings)) as c:
                r = c.get("/search/moment", params={"track": track, "at": 5.0, "k": 5})
            assert r.status_code == status, r.text
            assert r.json()["missing_shards"] == [1]
            if status == 503:
                assert r.json()["error"] == "shards_missing" and "hits" not in r.json()
                assert r.headers["retry-after"] == "1"
            else:
                assert len(r.json()["hits"]) == 5
    finally:
        lib.cluster.stop([1])
        gone.place(1, node=cluster["nodes"][1])


def test_a_sweep_cell_through_the_shard_actors_gives_one_librarys_figures(cluster, tmp_path):
    """``ray_address`` in the sweep file reaches 03_evaluate's parameters: the cell's kernel queries the
    sharded library through shard actors on this cluster, with one library's figures."""
    from test_shard_commands import sweep_equals_one_library
    metrics = sweep_equals_one_library(tmp_path, ray_address=cluster["address"])
    lib = ShardedLibrary.open(next((tmp_path / "out" / "libraries").iterdir()), ray_address=cluster["address"])
    try:
        assert all(lib.cluster.running(s) for s in range(N)), "the kernel's queries made no shard actors"
        assert metrics["segment/P@1"] > 0
    finally:
        lib.cluster.stop()
