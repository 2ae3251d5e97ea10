"""Frozen standardisation statistics (``features45``) and drift: once frozen they stay while new vectors look like
the old ones (the drift is recorded), and are refitted on every vector past ``DRIFT_BOUND`` — in a library and,
from the shards' merged sums, in a sharded library, which keeps the same statistics and drift as one library."""

import json

import numpy as np
import pytest
import soundfile as sf

from audiorag import Library
from audiorag.datasets import resolve
from audiorag.embedders import get_embedder
from audiorag.library import embedding
from audiorag.library.shards import ShardedLibrary

KEY = get_embedder("features45").key


def _tracks(folder, *, loud_noise: bool, seed: int):
    """6 tracks of 12 s: tones (with a whisper of noise from ``seed``), or loud noise."""
    folder.mkdir(parents=True)
    rng, t = np.random.default_rng(seed), np.arange(12 * 16000) / 16000
    for i in range(6):
        tone = 0.3 * np.sin(2 * np.pi * 110 * (i + 1) * t) * (1 + 0.5 * np.sin(2 * np.pi * t / (3 + i)))
        y = 0.9 * rng.uniform(-1, 1, len(t)) if loud_noise else tone + 1e-4 * rng.standard_normal(len(t))
        sf.write(folder / f"{folder.name}-{i}.wav", y.astype(np.float32), 16000)
    return resolve(f"folder:{folder}")


@pytest.fixture
def corpora(tmp_path):
    return {"first": _tracks(tmp_path / "first", loud_noise=False, seed=1),
            "alike": _tracks(tmp_path / "alike", loud_noise=False, seed=2),
            "other": _tracks(tmp_path / "other", loud_noise=True, seed=3)}


def test_frozen_statistics_follow_the_bound_in_a_library_and_in_shards(corpora, tmp_path, monkeypatch):
    monkeypatch.setattr(embedding, "STANDARDISATION_FROZEN_AFTER", 20)  # 6 tracks × 4 windows freeze it
    single = Library.create(tmp_path / "single", window=5, hop=2.5)
    sharded = ShardedLibrary.create(tmp_path / "sharded", 2, window=5, hop=2.5)
    seen = []
    for name in ("first", "alike", "other"):
        single.add(corpora[name], embedders=[get_embedder("features45")], workers=1, progress=False)
        sharded.add(corpora[name], embedders=[get_embedder("features45")], workers=1, parallel=False)
        one = single.embedding(KEY).reload().meta
        shards = ShardedLibrary.open(tmp_path / "sharded")
        stats = [lib.embedding(KEY).meta["standardisation"] for lib in shards.shards]
        record = json.loads((tmp_path / "sharded" / "shards.json").read_text())["standardisation"][KEY]
        # the shards hold one library's statistics and drift
        np.testing.assert_allclose(stats[0]["mean"], one["standardisation"]["mean"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(stats[0]["std"], one["standardisation"]["std"], rtol=1e-9, atol=1e-12)
        assert stats[0]["n_fitted"] == one["standardisation"]["n_fitted"] == record["n_fitted"]
        assert all(st == stats[0] for st in stats)
        if "drift" in one:
            assert record["drift"]["past_bound"] == one["drift"]["past_bound"]
            assert record["drift"]["mean_shift"] == pytest.approx(one["drift"]["mean_shift"], rel=1e-6)
        seen.append((one["standardisation"]["n_fitted"], one.get("drift"), len(single.segments)))
    (n1, d1, s1), (n2, d2, s2), (n3, d3, s3) = seen
    assert d1 is None and n1 == s1 == 24  # fitted on the first 24 vectors: frozen from here
    assert n2 == n1 and not d2["past_bound"] and d2["mean_shift"] < 0.2 and d2["n"] == s2 == 48  # alike: kept
    assert d3["past_bound"] and d3["mean_shift"] > embedding.DRIFT_BOUND["mean_shift"] and n3 == s3 == 72  # refitted
    raw = np.asarray(single.embedding(KEY).raw(), np.float64)
    np.testing.assert_allclose(single.embedding(KEY).meta["standardisation"]["mean"], raw.mean(axis=0), rtol=1e-6)
