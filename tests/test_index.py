import faiss
import numpy as np
import pytest

from audiorag import IncompatibleLibraryError, ParameterError
from audiorag.index import default_search_params, index_name, list_indexes, load_index, make_index


def _clustered(rng, n=4000, dim=48, centres=40):
    c = rng.standard_normal((centres, dim))
    x = c[rng.integers(0, centres, n)] + 0.3 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("factory,min_recall", [("Flat", 1.0), ("HNSW32", 0.95), ("IVF32,Flat", 0.9),
                                                ("IVF32,PQ16", 0.5), ("SQ8", 0.9)])
def test_index_round_trip_and_recall(tmp_path, rng, factory, min_recall):
    x = _clustered(rng)
    ids = np.arange(len(x)) * 3 + 7  # ids are segment ids, not positions
    index = make_index(x, ids, factory)
    q = x[:200] + 0.05 * rng.standard_normal((200, x.shape[1])).astype(np.float32)
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10] * 3 + 7
    d0, i0 = index.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i0, exact)])
    assert recall >= min_recall
    path = str(tmp_path / "i.faiss")
    faiss.write_index(index, path)
    loaded = faiss.read_index(path, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    from audiorag.index import apply_search_params
    apply_search_params(loaded, default_search_params(factory))
    d1, i1 = loaded.search(q, 10)
    np.testing.assert_array_equal(i0, i1)
    np.testing.assert_allclose(d0, d1)


def test_bad_factories_are_named(rng):
    x = _clustered(rng, n=100, dim=45)
    with pytest.raises(ParameterError, match="IVF1024"):
        make_index(x, np.arange(100), "IVF1024,Flat")
    with pytest.raises(ParameterError, match="Bogus"):
        make_index(x, np.arange(100), "Bogus12")
    assert index_name("IVF256,PQ16") == "ivf256-pq16"


def test_library_index_sidecar_mmap_and_staleness(library):
    emb = library.embedding("features45")
    side = library.build_index("features45", "HNSW32")
    assert side["n"] == len(library.segments) and side["factory"] == "HNSW32"
    assert side["search_params"] == {"efSearch": 64}
    assert {i["name"] for i in list_indexes(emb)} >= {"flat", "hnsw32"}
    index, sidecar = load_index(emb, "HNSW32")
    assert sidecar["name"] == "hnsw32" and index.ntotal == len(library.segments)
    flat, _ = load_index(emb, "flat")
    q = np.asarray(library.vectors("features45")[:5])
    _, ids = flat.search(q, 1)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]
    stale = dict(sidecar, vectors_state="0" * 16)
    path = emb.path / "index-stale.json"
    import json
    path.write_text(json.dumps({**stale, "name": "stale"}))
    with pytest.raises(IncompatibleLibraryError, match="rebuild"):
        load_index(emb, "stale")
    path.unlink()
