import numpy as np
import pytest

from audiorag.errors import ParameterError
from audiorag.evaluate import metrics as M

pytrec_eval = pytest.importorskip("pytrec_eval")


def test_hand_worked_example():
    # ranked: R N R N N, 3 relevant in the collection
    rel = np.array([[1, 0, 1, 0, 0]], dtype=bool)
    assert M.precision_at_k(rel, 1)[0] == 1.0
    assert M.precision_at_k(rel, 5)[0] == pytest.approx(2 / 5)
    assert M.precision_at_k(rel, 10)[0] == pytest.approx(2 / 10)  # missing ranks are non-relevant
    assert M.recall_at_k(rel, [3], 5)[0] == pytest.approx(2 / 3)
    assert M.average_precision(rel, [3])[0] == pytest.approx((1 / 1 + 2 / 3) / 3)
    dcg = 1 + 1 / np.log2(4)
    idcg = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert M.ndcg_at_k(rel, [3], 5)[0] == pytest.approx(dcg / idcg)
    assert M.reciprocal_rank(np.array([[0, 0, 1]], bool))[0] == pytest.approx(1 / 3)
    assert M.reciprocal_rank(np.array([[0, 0, 0]], bool))[0] == 0.0
    none = np.zeros((1, 4), bool)
    assert M.average_precision(none, [0])[0] == 0 and M.ndcg_at_k(none, [0], 3)[0] == 0


def test_clustering_and_systems_metrics():
    assert M.purity(list("aabbcc"), [0, 0, 1, 1, 1, 1]) == pytest.approx(4 / 6)
    assert M.nmi(list("aabb"), [1, 1, 0, 0]) == pytest.approx(1.0)
    x = np.array([[0, 1], [0, 1.1], [1, 0], [1.1, 0]], float)
    s = M.silhouette(x, [0, 0, 1, 1], metric="euclidean")
    assert s["silhouette"] > 0.9 and s["silhouette_sample"] is None
    lat = M.latency_summary(np.arange(1, 101) / 1000)
    assert lat["p50_ms"] == pytest.approx(50.5) and lat["p99_ms"] == pytest.approx(99.01)
    assert M.throughput(100, 2.0) == 50 and M.memory_per_segment(1000, 10) == 100
    assert M.moment_accuracy([1, 2], [0.0, 5.0], [1, 2], [2.5, 4.0], 2.0).tolist() == [0.0, 1.0]


def test_validation():
    with pytest.raises(ParameterError, match="n_queries, depth"):
        M.precision_at_k(np.ones(3), 1)
    with pytest.raises(ParameterError, match="more relevant"):
        M.average_precision(np.ones((1, 3), bool), [2])
    with pytest.raises(ParameterError, match="k must be"):
        M.precision_at_k(np.ones((1, 3), bool), 0)
    with pytest.raises(ParameterError):
        M.silhouette(np.zeros((3, 2)), [0, 0, 0])


def _trec(qrels: dict, run: dict, measures: set) -> dict:
    return pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)


def test_cross_check_against_trec_eval_on_random_runs():
    """P@k, AP, nDCG@k and RR agree with trec_eval (pytrec_eval) on random runs, to 1e-9."""
    rng = np.random.default_rng(0)
    n_docs, depth = 300, 50
    for _ in range(20):
        relevant = {f"d{i}" for i in rng.choice(n_docs, rng.integers(0, 40), replace=False)}
        ranked = [f"d{i}" for i in rng.permutation(n_docs)[:depth]]
        scores = np.sort(rng.random(depth))[::-1]
        qrels = {"q": {d: 1 for d in relevant} or {"none": 0}}
        run = {"q": {d: float(s) for d, s in zip(ranked, scores)}}
        ref = _trec(qrels, run, {"P_5", "P_10", "map", "ndcg_cut_10", "recip_rank"})["q"]
        rel = np.array([[d in relevant for d in ranked]])
        n = [len(relevant)]
        assert M.precision_at_k(rel, 5)[0] == pytest.approx(ref["P_5"], abs=1e-9)
        assert M.precision_at_k(rel, 10)[0] == pytest.approx(ref["P_10"], abs=1e-9)
        assert M.average_precision(rel, n)[0] == pytest.approx(ref["map"], abs=1e-9)
        assert M.ndcg_at_k(rel, n, 10)[0] == pytest.approx(ref["ndcg_cut_10"], abs=1e-9)
        assert M.reciprocal_rank(rel)[0] == pytest.approx(ref["recip_rank"], abs=1e-9)


def _read_trec(path, kind):
    out: dict = {}
    for line in open(path):
        parts = line.split()
        if kind == "run":
            out.setdefault(parts[0], {})[parts[2]] = float(parts[4])
        else:
            out.setdefault(parts[0], {})[parts[2]] = int(parts[3])
    return out


def test_exported_run_and_qrels_reproduce_reported_metrics(library, tmp_path):
    from audiorag.evaluate import Protocol, evaluate
    ev = evaluate(library, protocol=Protocol(label="genre", exclude_same=["artist"], queries="sample", n_queries=120,
                                             ks=[1, 10], moment_queries=0, latency_queries=5))
    ev.export_run(tmp_path / "run.txt")
    ev.export_qrels(tmp_path / "qrels.txt")
    run, qrels = _read_trec(tmp_path / "run.txt", "run"), _read_trec(tmp_path / "qrels.txt", "qrels")
    for q in run:  # a query with no relevant item still counts (trec_eval skips queries absent from qrels)
        qrels.setdefault(q, {"__none__": 0})
    ref = _trec(qrels, run, {"P_10", "map", "ndcg_cut_10", "recip_rank"})
    m = ev.record.metrics
    assert len(ref) == 120
    assert np.mean([r["P_10"] for r in ref.values()]) == pytest.approx(m["segment/P@10"], abs=1e-9)
    assert np.mean([r["map"] for r in ref.values()]) == pytest.approx(m["segment/mAP"], abs=1e-9)
    assert np.mean([r["ndcg_cut_10"] for r in ref.values()]) == pytest.approx(m["segment/nDCG@10"], abs=1e-9)
    assert np.mean([r["recip_rank"] for r in ref.values()]) == pytest.approx(m["segment/MRR"], abs=1e-9)
