"""musicnn and aisfx against reference numbers of their original implementations, the TF
checkpoint reader, the threaded build pipeline, per-segment tags and offline text search.

The reference numbers (tests/data/*_reference.json) were generated once from the original
code — musicnn's TF1 graph restored with TensorFlow, aisfx's essentia spectrogram and
its own model code — on the signals below; see each file's ``generated_by``.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("musicnn.configuration", reason="pip install --no-deps musicnn==0.1.0")
pytest.importorskip("aisfx.models", reason="pip install --no-deps aisfx==0.1.2")

import torch  # noqa: E402

from audiorag.datasets import TrackSource  # noqa: E402
from audiorag.embedders import get_embedder  # noqa: E402
from audiorag.embedders.aisfx import blocks, spectrogram  # noqa: E402
from audiorag.embedders.musicnn import MTT_TAGS, PATCH_FRAMES, log_mel, patch_starts  # noqa: E402
from audiorag.embedders.tfcheckpoint import read_checkpoint  # noqa: E402
from audiorag.errors import (
    CheckpointFormatError,  # noqa: E402
    ParameterError,  # noqa: E402
)
from audiorag.library import Library  # noqa: E402
from audiorag.search import Query, search  # noqa: E402

DATA = Path(__file__).parent / "data"


def signals(sr: int, seconds: float) -> dict[str, np.ndarray]:
    """The deterministic inputs the reference numbers were computed on."""
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(20261121)
    chirp = 0.5 * np.sin(2 * np.pi * (110 * t + 0.5 * 1500 * t ** 2 / 3.0))
    beat = np.zeros_like(t)
    beat[(np.arange(len(t)) % (sr // 2)) < sr // 40] = 1.0
    drums = beat * np.clip(rng.standard_normal(len(t)) * 0.25, -0.99, 0.99)
    tremolo = 1 + 0.3 * np.sin(2 * np.pi * 2 * t)
    chord = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (261.63, 329.63, 392.0)) * tremolo
    chord = chord + 0.01 * rng.standard_normal(len(t))
    return {"chirp": chirp.astype(np.float32), "drums": drums.astype(np.float32), "chord": chord.astype(np.float32)}


@pytest.mark.parametrize("name,model", [("musicnn-mtt", "MTT_musicnn"), ("musicnn-msd", "MSD_musicnn")])
def test_musicnn_port_matches_the_tensorflow_original(name, model):
    ref = json.loads((DATA / "musicnn_reference.json").read_text())["models"]
    e = get_embedder(name)
    for sig_name, y in signals(16000, 3.0).items():
        r = ref[f"{model}/{sig_name}"]
        with torch.inference_mode():
            out = e.model(torch.from_numpy(log_mel(y)[:PATCH_FRAMES][None]))
        np.testing.assert_allclose(torch.sigmoid(out["logits"])[0], r["tags"], atol=2e-5)
        np.testing.assert_allclose(out["penultimate"][0], r["penultimate"], atol=1e-4)
        np.testing.assert_allclose(out["mean_pool"][0, :64], r["mean_pool_head"], atol=1e-3)
        np.testing.assert_allclose(out["max_pool"][0, :64], r["max_pool_head"], atol=2e-3)
        # the tags differ between inputs (the float16 front end of the original made them all alike)
    tags = [e.embed_tagged(y[None])[1][0] for y in signals(16000, 3.0).values()]
    assert min(np.abs(a - b).max() for a, b in [(tags[0], tags[1]), (tags[1], tags[2]), (tags[0], tags[2])]) > 0.1


def test_musicnn_patches_and_pooling():
    assert patch_starts(626).tolist() == [0, 220, 439]
    assert patch_starts(187).tolist() == [0]
    assert patch_starts(100).tolist() == [0]
    e = get_embedder("musicnn-mtt")
    y = signals(16000, 10.0)["drums"]
    vec, tags = e.embed_tagged(y[None])
    spec = log_mel(y)
    starts = patch_starts(len(spec))
    with torch.inference_mode():
        out = e.model(torch.from_numpy(np.stack([spec[s:s + PATCH_FRAMES] for s in starts])))
    np.testing.assert_allclose(vec[0], out["penultimate"].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tags[0], torch.sigmoid(out["logits"]).mean(0), rtol=1e-5, atol=1e-7)
    pools = get_embedder("musicnn-mtt", layer="pools").embed(y[None])[0]
    np.testing.assert_allclose(pools[:753], out["max_pool"].amax(0), rtol=1e-5)
    np.testing.assert_allclose(pools[753:], out["mean_pool"].mean(0), rtol=1e-5, atol=1e-6)
    assert get_embedder("musicnn-mtt", layer="taggram").embed(y[None]).shape == (1, 50)
    with pytest.raises(ParameterError, match="penultimate"):
        get_embedder("musicnn-mtt", layer="nope")


def test_aisfx_matches_the_essentia_front_end_and_original_model():
    ref = json.loads((DATA / "aisfx_reference.json").read_text())["signals"]
    e = get_embedder("aisfx")
    for name, y in signals(44100, 5.0).items():
        r = ref[name]
        spec = spectrogram(y)
        assert spec.shape == (217, 96)  # essentia's FrameCutter: frames centred up to the end + one hop
        np.testing.assert_allclose(spec[:5], r["spectrogram_rows_0_4"], atol=5e-5)
        np.testing.assert_allclose(spec.sum(1), r["spectrogram_row_sums"], rtol=1e-4)
        with torch.inference_mode():
            emb = e.model(torch.from_numpy(np.stack([spec[s:s + 100] for s in (0, 50, 100)])))
        np.testing.assert_allclose(emb, r["block_embeddings"], atol=1e-3)
    assert blocks(np.zeros((432, 96), np.float32)).shape == (8, 100, 96)
    assert blocks(np.ones((30, 96), np.float32))[0, 30:].sum() == 0  # short: zero-padded like aisfx


def test_checkpoint_reader_errors(tmp_path):
    with pytest.raises(CheckpointFormatError, match="no TF checkpoint"):
        read_checkpoint(tmp_path / "missing")
    (tmp_path / "bad.index").write_bytes(b"\0" * 64)
    with pytest.raises(CheckpointFormatError, match="magic"):
        read_checkpoint(tmp_path / "bad")


@pytest.fixture(scope="module")
def tagged(tmp_path_factory, corpus):
    lib = Library.create(tmp_path_factory.mktemp("tagged") / "lib", window=10, hop=5)
    sources = corpus.sources()[::4]  # one track of each of 6 genres
    bad = tmp_path_factory.mktemp("bad") / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEfmt not really")
    report = lib.add(sources[:3] + [TrackSource(str(bad))] + sources[3:], embedders=["musicnn-mtt"], progress=False)
    assert report.added == 6 and report.failed == 1
    lib.build_index("musicnn-mtt")
    return lib


def test_pipeline_build_equals_direct_embedding(tagged):
    """Windows batched across files in the pipeline give the vectors of embedding each track alone."""
    from audiorag.audio import load
    e = get_embedder("musicnn-mtt")
    emb = tagged.embedding("musicnn-mtt")
    for tid in tagged.tracks["track_id"][:3]:
        rows = tagged.segments[tagged.segments["track_id"] == tid]
        y, _ = load(tagged.tracks.set_index("track_id").loc[tid, "uri"], sr=e.sample_rate)
        direct = emb.postprocess(e.embed_track(y, rows["start"].to_numpy(), rows["end"].to_numpy()))
        np.testing.assert_allclose(tagged.vectors("musicnn-mtt")[rows["segment_id"]], direct, atol=1e-5)
    errors = tagged.errors()
    assert errors["uri"].str.endswith("broken.wav").tolist() == [True]


def test_tags_per_segment_and_track(tagged):
    all_tags = tagged.tags()
    assert all_tags.shape == (len(tagged.segments), 50) and list(all_tags.columns) == list(MTT_TAGS)
    assert ((all_tags.to_numpy() >= 0) & (all_tags.to_numpy() <= 1)).all()
    tid = int(tagged.tracks["track_id"][1])
    rows = tagged.segments.index[tagged.segments["track_id"] == tid]
    np.testing.assert_allclose(tagged.tags(track_id=tid).to_numpy()[0], all_tags.loc[rows].mean().to_numpy(), rtol=1e-6)
    assert tagged.tags(segment_id=int(rows[0])).index.tolist() == [int(rows[0])]
    with pytest.raises(ParameterError):
        tagged.tags(track_id=10 ** 9)


def test_text_search_ranks_by_matched_tags(tagged):
    hits = search(tagged, Query.text("fast techno beat"), k=5)
    matched = hits.attrs["matched_tags"]
    assert "techno" in matched and len(matched) <= 5
    assert hits["score"].is_monotonic_decreasing
    cols = [f"tag:{t}" for t in matched]
    weights = np.array(list(matched.values()))
    np.testing.assert_allclose(hits["score"], hits[cols].to_numpy() @ weights / weights.sum(), rtol=1e-5)
    scores_all = tagged.tags()[list(matched)].to_numpy() @ weights / weights.sum()
    assert hits["score"].iloc[0] == pytest.approx(scores_all.max(), rel=1e-5)
    techno = tagged.tracks.loc[tagged.tracks["genre"] == "techno", "track_id"].tolist()
    by_track = search(tagged, Query.text("fast techno beat"), by="track", k=3)
    if techno:
        assert by_track["track_id"].iloc[0] in techno
    only = search(tagged, Query.text("piano"), k=3, filters={"genre": "ambient"})
    assert set(only["genre"]) <= {"ambient"}
    with pytest.raises(ParameterError):
        Query.text("  ")


@pytest.mark.slow
def test_cli_text_search(tagged):
    out = subprocess.run([sys.executable, "-m", "audiorag.cli", "search", str(tagged.path), "--text",
                          "female singer", "-k", "2", "--json"], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    assert "female vocal" in data["matched_tags"] and len(data["hits"]) == 2
