import numpy as np
import pytest
from typer.testing import CliRunner

from audiorag import Library, ParameterError, Query
from audiorag.cli import app
from audiorag.index import mapped_memory
from audiorag.index import refine as R
from audiorag.index.factory import build
from audiorag.index.quality import exact_neighbours, held_out, measure, tune
from audiorag.library import embedding as embedding_module
from audiorag.library.indexes import list_indexes, load_index
from audiorag.search import search


def _clustered(rng, n=8_000, dim=32, centres=100):
    c = rng.standard_normal((centres, dim))
    x = c[rng.integers(0, centres, n)] + 0.5 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_refined_recall_reaches_the_target_the_codes_alone_cannot(rng):
    x = _clustered(rng)
    ids = np.arange(len(x))
    base, _ = build("IVF32,PQ4", x, [(ids, x)])  # 4-byte codes for 32 dimensions
    queries = held_out(ids, 200)
    truth = exact_neighbours(x, ids, queries, 10)
    plain = tune(base, "IVF32,PQ4", x[queries], truth, exclude=queries, target_recall=0.95)
    refined = R.RefinedIndex(base, x, "IVF32,PQ4,Refine")
    tuned = R.tune(refined, "IVF32,PQ4,Refine", x[queries], truth, exclude=queries, target_recall=0.95)
    assert plain["recall@10"] < 0.6 and not plain["target_met"]
    assert tuned["recall@10"] >= 0.95 and tuned["target_met"]
    assert set(tuned["search_params"]) == {"nprobe", "k_factor"} and tuned["search_params"]["k_factor"] <= 128
    # the cheapest k_factor: one step lower misses the target at the same nprobe
    lower = [f for f in R.K_FACTORS if f < tuned["search_params"]["k_factor"]]
    if lower:
        less = measure(refined, x[queries], truth, exclude=queries, params={**tuned["search_params"],
                                                                            "k_factor": lower[-1]})
        assert less["recall@10"] < 0.95
    # scores are the exact distances of the re-ranked rows (L2 on unit vectors: 2 - 2 cos)
    refined.set_search_params({"nprobe": 32, "k_factor": 800})
    d, found = refined.search(x[:5], 10)
    assert (found[:, 0] == np.arange(5)).all()
    np.testing.assert_array_equal(found[:, 1:], exact_neighbours(x, ids, np.arange(5), 9))
    np.testing.assert_allclose(d, 2 - 2 * np.take_along_axis(x[:5] @ x.T, found, axis=1), atol=1e-5)


def test_candidates_under_a_resident_budget():
    n = 10_000_000
    fits = R.candidates(n, 512, max_resident=640e6)
    assert fits[:2] == ["PCAR192,IVF4096,PQ48", "PCAR192,IVF4096,PQ48,Refine"]
    assert all(R.resident_bytes_per_segment(f, n, 512) <= 64 for f in fits)
    assert R.candidates(n, 512, max_resident=1e12)[0] == "IVF4096,SQ8"  # a plain family first when it fits
    assert R.candidates(n, 512) == R.candidates(n, 512, max_memory=None)  # no resident budget: unchanged
    with pytest.raises(ParameterError, match="no index fits"):
        R.candidates(n, 512, max_resident=1e8)


@pytest.fixture(scope="module")
def small_lib(corpus, tmp_path_factory):
    """8 synthetic tracks in 1 s windows every 0.1 s (2,328 segments), features45."""
    lib = Library.create(tmp_path_factory.mktemp("refine") / "lib", window=1, hop=0.1)
    lib.add(corpus.sources()[:8], embedders=["features45"], progress=False, workers=1)
    return lib


def test_auto_with_a_resident_budget(small_lib):
    lib, n = small_lib, len(small_lib.segments)
    plain = lib.build_index("features45", "auto", max_resident=1e9, name="roomy")
    assert plain["factory"] == "Flat" and "refine" not in plain
    budget = 52 * n  # 52 B per segment: no 8-bit or full-precision copy fits, only 24- or 16-byte codes
    side = lib.build_index("features45", "auto", max_resident=budget, target_recall=0.99, name="tight")
    tried = [t["factory"] for t in side["auto"]["tried"]]
    assert side["factory"].endswith(",Refine") and tried == [R.base_factory(side["factory"]), side["factory"]]
    assert side["auto"]["tried"][0]["recall@10"] < 0.99 <= side["quality"]["recall@10"]
    assert side["auto"]["max_resident"] == budget and side["refine"]["source"] == "vectors.npy"
    assert side["bytes_per_segment"] <= 52 and set(side["search_params"]) == {"nprobe", "k_factor"}
    emb = lib.embedding("features45")  # the generation the builds committed
    index = load_index(lib, emb, "tight")
    assert isinstance(index.faiss, R.RefinedIndex) and index.faiss.k_factor == side["search_params"]["k_factor"]
    q = np.asarray(lib.vectors("features45"))[:3]
    scores, ids = index.search(q, 1)
    assert ids[:, 0].tolist() == [0, 1, 2] and scores[:, 0] == pytest.approx(1.0, abs=1e-5)
    mapped = mapped_memory(emb.path / "index-tight.faiss")
    # the codes are all that is mapped resident (page-rounded); the vectors are read on demand
    assert mapped["resident_bytes"] <= mapped["mapped_bytes"] <= budget + 4096


def test_refined_index_follows_add_and_remove(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(embedding_module, "STANDARDISATION_FROZEN_AFTER", 1)  # frozen: updated in place
    monkeypatch.setattr(embedding_module, "DRIFT_BOUND", {"mean_shift": np.inf, "std_ratio": np.inf})  # and stays
    sources = corpus.sources()
    lib = Library.create(tmp_path / "lib", window=2, hop=0.5)
    lib.add(sources[:6], embedders=["features45"], progress=False, workers=1)
    lib.build_index("features45", "PCAR32,IVF16,PQ8,Refine", target_recall=0.9, name="r")
    lib.add(sources[6:8], progress=False, workers=1)
    gone = int(lib.tracks["track_id"].iloc[2])
    gone_rows = lib.segments.index[lib.segments["track_id"] == gone].to_numpy()
    assert lib.remove([gone]) == 1
    side = next(s for s in list_indexes(lib.embedding("features45")) if s["name"] == "r")
    assert side["last_update"]["removed"] == len(gone_rows) and "refine" in side
    index = load_index(lib, lib.embedding("features45"), "r")
    x = np.asarray(lib.vectors("features45"))
    live = np.flatnonzero(lib.segments["track_id"].to_numpy() >= 0)
    assert index.ntotal == len(live)
    index.faiss.set_search_params({"nprobe": 16, "k_factor": len(live)})  # every live segment a candidate
    q = x[live[::5]]
    _, ids = index.search(q, 10)
    sims = q @ x[live].T
    np.testing.assert_array_equal(ids, live[np.argsort(-sims, axis=1, kind="stable")[:, :10]])
    _, ids = load_index(lib, lib.embedding("features45"), "r").search(x[gone_rows], 20)
    assert not np.isin(ids, gone_rows).any()
    new = int(lib.tracks["track_id"].iloc[-1])
    hit = search(lib, Query.moment(new, at=3.0), k=1, index="r", embedder="features45")
    assert hit["track_id"].iloc[0] == new and hit["score"].iloc[0] == pytest.approx(1.0, abs=1e-4)


def test_max_resident_option_is_checked(tmp_path):
    r = CliRunner().invoke(app, ["build", str(tmp_path / "lib"), "--max-resident", "lots"])
    assert r.exit_code == 2 and "--max-resident" in r.output and "Traceback" not in r.output


def _near_ties(rng, n=6_000, dim=64, centres=20, spread=2e-2):
    """Vectors so close around a few centres that half precision (rounding error ≈ 5e-4) cannot order their
    neighbours while single precision can (their scores differ by ≈ 1e-5, not 1e-7)."""
    c = rng.standard_normal((centres, dim))
    x = c[rng.integers(0, centres, n)] + spread * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("k_factor", [1, 2, 8])
def test_half_precision_codes_re_ranked_give_exactly_the_exact_neighbours(rng, k_factor):
    x = _near_ties(rng)
    ids = np.arange(len(x))
    base, _ = build("SQfp16", x, [(ids, x)])
    q = x[rng.integers(0, len(x), 200)] + 1e-2 * rng.standard_normal((200, x.shape[1])).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ x.T.astype(np.float64)
    best = -np.sort(-sims, axis=1)[:, :10]

    def true_scores(found):  # the neighbours' scores in double precision: equal to `best` up to float32 ties
        return np.take_along_axis(sims, found, axis=1)

    codes_alone = base.search(q, 10)[1]
    assert (np.abs(true_scores(codes_alone) - best) > 1e-5).any(axis=1).mean() > 0.5  # the codes alone misorder
    refined = R.RefinedIndex(base, x, "SQfp16,Refine", k_factor=k_factor)
    scores, found = refined.search(q, 10)
    np.testing.assert_allclose(true_scores(found), best, rtol=0, atol=3e-7)  # widened until none left out can win
    np.testing.assert_allclose(scores, true_scores(found), rtol=0, atol=3e-7)
    # other re-ranked codes are not certified: with too few candidates they miss neighbours
    pq, _ = build("PQ8", x, [(ids, x)])
    assert (np.abs(true_scores(R.RefinedIndex(pq, x, "PQ8,Refine", k_factor=1).search(q, 10)[1]) - best) > 1e-5).any()


def test_half_precision_error_bounds_the_codes_error(rng):
    x = rng.standard_normal((2_000, 512)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[:10, :256] *= 1e-6  # components below half precision's smallest normal
    x[:10] /= np.linalg.norm(x[:10], axis=1, keepdims=True)
    base, _ = build("SQfp16", x, [(np.arange(len(x)), x)])
    for q in x[::97]:
        approx, ids = base.search(q[None, :], len(x))
        err = np.abs(approx[0] - x[ids[0]] @ q).max()
        assert 0 < err <= R.half_precision_error(q)


def test_a_library_searched_through_half_precision_codes_answers_as_flat(small_lib):
    lib = small_lib
    flat = lib.build_index("features45", "Flat", name="flat")
    half = lib.build_index("features45", "SQfp16,Refine", name="half")
    assert half["quality"]["recall@10"] == 1.0 and half["bytes_per_segment"] < 0.6 * flat["bytes_per_segment"]
    for at in (1.0, 7.5, 20.0):
        a = search(lib, Query.moment(3, at=at), k=10, index="flat", embedder="features45")
        b = search(lib, Query.moment(3, at=at), k=10, index="half", embedder="features45")
        assert a["segment_id"].tolist() == b["segment_id"].tolist()
        np.testing.assert_allclose(a["score"], b["score"], atol=1e-5)
