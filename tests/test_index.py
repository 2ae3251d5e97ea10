import json

import faiss
import numpy as np
import pytest

from audiorag import IncompatibleLibraryError, Library, ParameterError, Query
from audiorag.index import Index, make_index, mapped_memory
from audiorag.index.factory import apply_search_params, bytes_per_segment, candidates, default_search_params, index_name
from audiorag.index.quality import exact_neighbours, held_out, neighbour_recall, tune
from audiorag.library import embedding as embedding_module
from audiorag.library.indexes import list_indexes, load_index
from audiorag.search import search


def _clustered(rng, n=4000, dim=48, centres=40):
    c = rng.standard_normal((centres, dim))
    x = c[rng.integers(0, centres, n)] + 0.3 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("factory,min_recall", [("Flat", 1.0), ("HNSW32", 0.95), ("IVF32,Flat", 0.9),
                                                pytest.param("IVF32,PQ16", 0.5, marks=pytest.mark.slow), ("SQ8", 0.9),
                                                pytest.param("OPQ8_32,IVF32,PQ8", 0.3, marks=pytest.mark.slow)])
def test_index_round_trip_and_recall(tmp_path, rng, factory, min_recall):
    x = _clustered(rng)
    ids = np.arange(len(x)) * 3 + 7  # ids are segment ids, not positions
    index = Index(make_index(x, ids, factory), {"factory": factory, "metric": "l2" if "PQ" in factory else "ip"})
    q = x[:200] + 0.05 * rng.standard_normal((200, x.shape[1])).astype(np.float32)
    cosine = q @ x.T
    exact = np.argsort(-cosine, axis=1)[:, :10] * 3 + 7
    d0, i0 = index.search(q, 10)
    assert neighbour_recall(i0, exact).mean() >= min_recall
    if factory in ("Flat", "HNSW32"):  # scores are cosines whatever the metric
        np.testing.assert_allclose(d0[:, 0], cosine.max(axis=1), atol=1e-4)
    path = str(tmp_path / "i.faiss")
    faiss.write_index(index.faiss, path)
    from audiorag.index import _read_flags
    loaded = faiss.read_index(path, _read_flags(factory))
    apply_search_params(loaded, default_search_params(factory))
    d1, i1 = loaded.search(q, 10)
    np.testing.assert_array_equal(index.faiss.search(q, 10)[1], i1)


def test_bad_factories_and_budgets_are_named(rng):
    x = _clustered(rng, n=100, dim=45)
    with pytest.raises(ParameterError, match="IVF1024"):
        make_index(x, np.arange(100), "IVF1024,Flat")
    with pytest.raises(ParameterError, match="Bogus"):
        make_index(x, np.arange(100), "Bogus12")
    assert index_name("IVF256,PQ16") == "ivf256-pq16"
    with pytest.raises(ParameterError, match="smallest.*needs 24 B"):
        candidates(10_000_000, 512, max_memory=10_000_000 * 10)


def test_candidates_follow_size_and_budget():
    assert candidates(1_000, 45)[0] == "Flat"
    assert candidates(1_000, 45, max_memory=1_000 * 60) == ["SQ8"] + [f for f in candidates(1_000, 45)
                                                                    if bytes_per_segment(f, 45) <= 60][1:]
    assert candidates(500_000, 512)[0] == "HNSW32"
    big = candidates(10_000_000, 768, max_memory=64 * 10_000_000)
    assert all(bytes_per_segment(f, 768) <= 64 for f in big) and big[0] == "PCAR224,IVF4096,PQ56"
    assert bytes_per_segment("HNSW32", 100) == 400 + 8 + 256 + 16
    assert bytes_per_segment("OPQ16_64,IVF256,PQ16", 512) == 24
    assert bytes_per_segment("PCAR112,IVF256,PQ28+28", 512) == 64


def test_neighbour_recall_counts_padding_as_miss():
    assert neighbour_recall([[1, 2, -1]], [[1, 2, 3]]).tolist() == [pytest.approx(2 / 3)]
    with pytest.raises(ParameterError):
        neighbour_recall([1, 2], [[1, 2]])


def test_tune_stops_at_the_cheapest_setting_reaching_the_target(rng):
    x = _clustered(rng, n=6000)
    ids = np.arange(len(x))
    index = make_index(x, ids, "IVF64,Flat")
    q = held_out(ids, 300)
    truth = exact_neighbours(x, ids, q, 10)
    assert not np.any(truth == q[:, None])  # the query itself is not its own neighbour
    result = tune(index, "IVF64,Flat", x[q], truth, exclude=q, target_recall=0.9)
    curve = [c["recall@10"] for c in result["curve"]]
    assert result["target_met"] and result["recall@10"] >= 0.9
    assert len(curve) == 1 or curve[-2] < 0.9 <= curve[-1]
    assert result["search_params"] == result["curve"][-1]["search_params"]
    assert result["latency_p99_ms"] >= result["latency_p50_ms"] > 0 and result["batch_qps"] > 0
    unreachable = tune(index, "IVF64,Flat", x[q], truth, exclude=q, target_recall=1.01)
    reached = [c["recall@10"] for c in unreachable["curve"]]
    assert not unreachable["target_met"] and unreachable["recall@10"] >= max(reached) - 0.005 - 1e-9
    assert len(reached) == 7 or reached[-1] - reached[-2] < 0.001  # nprobe 1 … 64, or stopped on a plateau


def test_auto_index_small_library_is_exact(library):
    side = library.build_index("features45", "auto")
    assert side["name"] == "auto" and side["factory"] == "Flat"
    assert side["quality"]["recall@10"] == 1.0 and side["quality"]["target_met"]
    assert side["auto"]["tried"][0]["factory"] == "Flat" and side["bytes_per_segment"] < 45 * 4 + 8 + 40


def test_auto_index_respects_the_budget_and_records_measured_recall(library):
    n = len(library.segments)
    side = library.build_index("features45", "auto", max_memory=60 * n, target_recall=0.5, name="budget")
    emb = library.embedding("features45")
    assert side["factory"] == "SQ8" and side["bytes_per_segment"] <= 60
    # the recorded recall is the one measured on the held-out queries against exact search
    x = np.asarray(library.vectors("features45"))
    queries = held_out(np.arange(n), 500)
    index = load_index(library, emb, "budget")
    _, found = index.search(x[queries], 11)
    found = np.array([[i for i in row if i != q][:10] for row, q in zip(found, queries)])
    sims = x[queries] @ x.T
    sims[np.arange(len(queries)), queries] = -np.inf
    truth = np.argsort(-sims, axis=1, kind="stable")[:, :10]
    assert neighbour_recall(found, truth).mean() == pytest.approx(side["quality"]["recall@10"], abs=0.01)
    assert 0.5 <= side["quality"]["recall@10"] < 1.0
    for name in ("budget", "auto"):
        library.drop_index("features45", name)


def test_library_index_sidecar_mmap_and_staleness(library):
    side = library.build_index("features45", "HNSW32")
    emb = library.embedding("features45")  # the generation the build committed
    assert side["n"] == len(library.segments) and side["factory"] == "HNSW32"
    assert side["search_params"]["efSearch"] >= 16 and side["quality"]["recall@10"] >= 0.95
    assert {i["name"] for i in list_indexes(emb)} >= {"flat", "hnsw32"}
    index = load_index(library, emb, "HNSW32")
    assert index.sidecar["name"] == "hnsw32" and index.ntotal == len(library.segments)
    flat = load_index(library, emb, "flat")
    # served memory-mapped: the file is a mapping of this process, not a private copy
    assert mapped_memory(emb.path / "index-flat.faiss")["mapped_bytes"] >= side["dim"] * 4 * side["n"]
    q = np.asarray(library.vectors("features45")[:5])
    _, ids = flat.search(q, 1)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]
    path = emb.path / "index-stale.json"
    path.write_text(json.dumps({**index.sidecar, "name": "stale", "n_rows": 3}))
    with pytest.raises(IncompatibleLibraryError, match="rebuild"):
        load_index(library, emb, "stale")
    path.unlink()


@pytest.mark.slow
def test_incremental_add_remove_and_replace(tmp_path, corpus, monkeypatch):
    monkeypatch.setattr(embedding_module, "STANDARDISATION_FROZEN_AFTER", 1)  # frozen after the first fit
    monkeypatch.setattr(embedding_module, "DRIFT_BOUND", {"mean_shift": np.inf, "std_ratio": np.inf})  # and stays
    sources = corpus.sources()
    files = [s.uri for s in sources]
    lib = Library.create(tmp_path / "lib", window=10, hop=2)
    lib.add(sources[:12], embedders=["features45"], progress=False, workers=1)
    built = [lib.build_index("features45", f)["factory"] for f in ("Flat", "IVF8,Flat", "HNSW32")]
    old_vectors = np.asarray(lib.vectors("features45")).copy()

    lib.add(sources[12:16], progress=False, workers=1)
    new_tracks = lib.tracks["track_id"].tolist()[12:]
    new_segments = int(lib.segments["track_id"].isin(new_tracks).sum())
    np.testing.assert_array_equal(np.asarray(lib.vectors("features45"))[:len(old_vectors)], old_vectors)
    for factory in built:  # updated in place (a rebuild writes a sidecar without last_update)
        side = next(s for s in list_indexes(lib.embedding("features45")) if s["factory"] == factory)
        assert side["last_update"]["added"] == new_segments and side["n"] == len(lib.segments)
    fresh = make_index(np.asarray(lib.vectors("features45")), np.arange(len(lib.segments)), "Flat")
    q = np.asarray(lib.vectors("features45"))[::7]
    flat = load_index(lib, lib.embedding("features45"), "flat")
    np.testing.assert_array_equal(flat.search(q, 10)[1], fresh.search(q, 10)[1])
    hit = search(lib, Query.moment(new_tracks[-1], at=4.0), k=1, index="IVF8,Flat", embedder="features45")
    assert hit["track_id"].iloc[0] == new_tracks[-1] and hit["score"].iloc[0] == pytest.approx(1.0, abs=1e-4)

    gone = int(lib.tracks["track_id"].iloc[3])
    gone_rows = lib.segments.index[lib.segments["track_id"] == gone].to_numpy()
    kept = lib.segments[lib.segments["track_id"] != gone].copy()
    assert lib.remove([gone]) == 1
    assert gone not in lib.tracks["track_id"].tolist() and len(lib.tracks) == 15
    assert (lib.segments.loc[gone_rows, "track_id"] == -1).all()
    assert lib.segments.loc[kept.index].equals(kept)  # other segment ids unchanged
    for name in ("flat", "ivf8-flat", "hnsw32"):
        index = load_index(lib, lib.embedding("features45"), name)
        assert index.ntotal == len(lib.segments) - len(gone_rows)
        _, ids = index.search(np.asarray(lib.vectors("features45"))[gone_rows], 20)
        assert not np.isin(ids, gone_rows).any()
    sides = {s["name"]: s for s in list_indexes(lib.embedding("features45"))}
    assert sides["flat"]["last_update"]["removed"] == len(gone_rows)
    assert "last_update" not in sides["hnsw32"]  # graphs cannot delete: rebuilt
    with pytest.raises(ParameterError, match="not in the library"):
        search(lib, Query.moment(gone, at=0.0), embedder="features45")
    with pytest.raises(ParameterError, match=r"\[424242\]"):
        lib.remove([424242])

    # a new embedding after a removal lines its rows up with the segments, removed rows left out
    pytest.importorskip("transformers")
    from random_models import save_model
    key = lib.embed("wav2vec2", model=str(save_model("wav2vec2", tmp_path / "w2v")), workers=1, progress=False)
    w2v = lib.vectors(key)
    assert len(w2v) == len(lib.segments) and not np.asarray(w2v)[gone_rows].any()
    assert np.linalg.norm(np.asarray(w2v)[kept.index], axis=1) == pytest.approx(1.0, abs=1e-5)
    target = int(lib.tracks["track_id"].iloc[0])
    genre = lib.tracks.loc[lib.tracks["track_id"] == target, "genre"].iloc[0]
    lib.replace(target, files[20])
    row = lib.tracks[lib.tracks["track_id"] == target].iloc[0]
    assert row["uri"] == files[20] and row["genre"] == genre
    hit = search(lib, Query.audio(files[20], start=0.0, end=10.0), embedder="features45", k=1)
    assert hit["track_id"].iloc[0] == target
    reopened = Library.open(lib.path)
    assert len(reopened.vectors("features45")) == len(reopened.segments)


def test_an_index_is_built_updated_and_opened_from_arrays_and_a_directory_alone(tmp_path, rng):
    """No library: vectors, row ids and a folder; new rows are added in place, gone rows removed."""
    from audiorag.index import build_index, choose, list_indexes, open_index, update_index
    x = rng.standard_normal((400, 16)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    valid = np.ones(400, bool)
    valid[300:] = False  # rows not there yet
    side = build_index(tmp_path, x, np.flatnonzero(valid), "Flat", fields={"n_rows": 300})
    assert (tmp_path / "index-flat.faiss").exists() and list_indexes(tmp_path) == [side]
    tracks = np.arange(400) // 10
    valid[300:] = True
    valid[:10] = False  # the first track is gone
    side = update_index(tmp_path, side, x, valid, tracks, {"n_rows": 400})
    assert side["n"] == 390 and side["last_update"]["added"] == 100 and side["last_update"]["removed"] == 10
    index = open_index(tmp_path, choose(list_indexes(tmp_path), "Flat"), lambda: x)
    _, ids = index.search(x[[0, 350]], 1)
    assert ids[1, 0] == 350 and ids[0, 0] >= 10
    with pytest.raises(ParameterError, match="no index 'hnsw32' for vectors; have \\['flat'\\]"):
        choose(list_indexes(tmp_path), "hnsw32")


@pytest.mark.parametrize("n", [2, 6, 11])
def test_an_index_of_fewer_vectors_than_k_is_measured_on_the_neighbours_that_exist(tmp_path, n, caplog):
    """A library of a few segments: exact search finds every neighbour there is, so Flat's recall@10 is 1 (it read
    0.5 for 6 vectors, and a warning said no index reached the target, when missing neighbours counted as misses
    and FAISS's -1 padding was read as the last id)."""
    from audiorag.index import build_index
    x = np.random.default_rng(n).standard_normal((n, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    truth = exact_neighbours(x, np.arange(n), np.arange(n), 10)
    assert ((truth >= 0).sum(axis=1) == min(n - 1, 10)).all() and (truth < n).all()
    assert all(q not in row for q, row in zip(range(n), truth))
    side = build_index(tmp_path, x, np.arange(n), "Flat")
    assert side["quality"]["recall@10"] == 1.0 and "no index reached" not in caplog.text
