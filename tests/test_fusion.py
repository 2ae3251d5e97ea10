"""Derived embeddings: early fusion and stored projections follow the library; late fusion in search."""

import json

import numpy as np
import pytest
import soundfile as sf
from conftest import SR
from typer.testing import CliRunner

from audiorag import Library, ParameterError
from audiorag.cli import app
from audiorag.datasets import TrackSource
from audiorag.embedders import _REGISTRY, Embedder, l2_normalise, register
from audiorag.library.store import read_npz
from audiorag.search import Query, search


@pytest.fixture(scope="module")
def bands8():
    """A second real embedder, cheap: log energies of 8 frequency bands."""
    @register("bands8")
    class Bands8(Embedder):
        name, sample_rate, dim = "bands8", 8000, 8

        def embed(self, batch):
            power = np.abs(np.fft.rfft(self.check_batch(batch), axis=1)) ** 2
            return np.log1p(np.stack([b.sum(axis=1) for b in np.array_split(power, 8, axis=1)], axis=1))
    yield "bands8"
    _REGISTRY.pop("bands8")


def sources(folder, n, start=0):
    """Tones (label "tone") and noises (label "noise"), 5 s each."""
    rng = np.random.default_rng(start)
    out = []
    for i in range(start, start + n):
        t = np.arange(5 * SR) / SR
        noisy = i % 2 == 1
        y = 0.3 * rng.standard_normal(len(t)) if noisy else 0.4 * np.sin(2 * np.pi * (200 + 90 * i) * t)
        y = (y * np.linspace(0.3, 1, len(t))).astype(np.float32)
        sf.write(folder / f"s{i}.wav", y, SR)
        out.append(TrackSource(str(folder / f"s{i}.wav"), {"label": "noise" if noisy else "tone"}))
    return out


def formula(lib, keys, weights):
    return l2_normalise(np.concatenate([w * np.asarray(lib.vectors(k)) for k, w in zip(keys, weights)], axis=1))


@pytest.fixture
def fused(tmp_path, bands8):
    (tmp_path / "audio").mkdir()
    lib = Library.create(tmp_path / "lib", window=2, hop=1)
    lib.add(sources(tmp_path / "audio", 6), embedders=["features45", bands8], workers=1, progress=False)
    for e in ("features45", bands8):
        lib.build_index(e, "Flat")
    from audiorag.library.derived import fuse
    key = fuse(lib, ["features45", bands8], weights=[3, 1])
    return lib, key, tmp_path


def test_fusion_vectors_equal_the_formula_and_stay_aligned_after_remove(fused):
    lib, key, _ = fused
    emb = lib.embedding("features45+bands8")
    assert emb.key == key and emb.dim == 53 and emb.meta["derived"]["weights"] == [0.75, 0.25]
    keys = emb.meta["derived"]["sources"]
    np.testing.assert_allclose(lib.vectors(key), formula(lib, keys, [0.75, 0.25]), atol=1e-6)
    before = np.array(lib.vectors(key))
    lib.remove([2])
    after = lib.vectors(key)
    live = lib.segments["track_id"].to_numpy() >= 0
    assert np.array_equal(after, before)  # rows keep their segment ids
    np.testing.assert_allclose(after[live], formula(lib, keys, [0.75, 0.25])[live], atol=1e-6)
    hits = search(lib, Query.moment(0, 1.0), embedder="features45+bands8", k=100)
    assert 2 not in set(hits["track_id"]) and len(hits) == live.sum()
    assert lib.check() == []


def test_derived_embeddings_follow_added_tracks(fused, bands8):
    lib, key, tmp = fused
    from audiorag.library.derived import project
    pkey = project(lib, "features45", label="label", method="lda")
    pemb = lib.embedding(pkey)
    trained = pemb.meta["derived"]["trained_on"]
    assert trained["n_tracks"] == 6 and trained["label_counts"] == {"noise": 12, "tone": 12}
    z = read_npz(pemb.path / "projection.npz")
    lib.add(sources(tmp / "audio", 3, start=6), workers=1, progress=False)
    assert len(lib.tracks) == 9
    keys = lib.embedding(key).meta["derived"]["sources"]
    np.testing.assert_allclose(lib.vectors(key), formula(lib, keys, [0.75, 0.25]), atol=1e-6)
    expected = l2_normalise(np.asarray(lib.vectors("features45")) @ z["W"] + z["b"])
    np.testing.assert_allclose(lib.vectors(pkey), expected, atol=1e-5)
    assert lib.embedding(pkey).meta["derived"]["trained_on"] == trained  # the fit is not redone by an add
    new = int(lib.tracks["track_id"].iloc[-1])
    hits = search(lib, Query.moment(new, 1.0), embedder=pkey, k=3, exclude_same_track=True)
    assert (hits["label"] == lib.tracks.set_index("track_id").at[new, "label"]).all()
    assert lib.check() == []


def test_late_fusion_with_squared_weights_ranks_as_early_fusion(fused):
    lib, key, tmp = fused
    early = search(lib, Query.moment(1, 2.0), embedder="features45+bands8", k=8)
    late = search(lib, Query.moment(1, 2.0), embedder="features45+bands8", k=8, fusion="late", weights=[9, 1])
    assert late["segment_id"].tolist() == early["segment_id"].tolist()
    np.testing.assert_allclose(late["score"], early["score"], atol=1e-5)
    clip = search(lib, Query.audio(tmp / "audio" / "s3.wav", start=1, end=3), embedder="features45+bands8", k=1)
    assert (int(clip["track_id"].iat[0]), float(clip["start"].iat[0])) == (3, 1.0)  # audio through both sources
    with pytest.raises(ParameterError, match="late fusion needs 2 weights"):
        search(lib, Query.moment(1, 2.0), embedder="features45+bands8", fusion="late", weights=[1])


def test_cli_fuse_project_and_search(fused):
    lib, _, _ = fused
    run = CliRunner().invoke
    r = run(app, ["fuse", str(lib.path), "bands8", "features45", "--weights", "1,1", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["name"] == "bands8+features45"
    r = run(app, ["project", str(lib.path), "--embedder", "bands8", "--label", "label", "--method", "linear",
                  "--where", "track_id<4"])
    assert r.exit_code == 0, r.output
    assert "fitted on 16 segments of 4 tracks" in r.output
    r = run(app, ["search", str(lib.path), "--track", "0", "--at", "1", "--embedder", "bands8+features45",
                  "--fusion", "late", "-k", "3", "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.output)) == 3
    r = run(app, ["fuse", str(lib.path), "bands8"])
    assert r.exit_code == 2 and "at least two different embeddings" in r.output
