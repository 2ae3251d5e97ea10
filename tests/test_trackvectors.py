"""Per-track vectors (S4's track similarity): ``search(..., by="track", aggregate="mean"|"max")`` ranks tracks by
their pooled vectors, and ``embeddings/<key>/tracks.npz`` follows every add and remove of the library."""

import json

import numpy as np
import pytest
from conftest import write_tones
from typer.testing import CliRunner

from audiorag import Library
from audiorag.cli import app
from audiorag.errors import ParameterError
from audiorag.library import trackvectors
from audiorag.search import Query, search


def _pooled(lib, pooling):
    """Each live track's pooled vector, computed here from the segment vectors (the reference)."""
    vectors, seg = np.asarray(lib.vectors()), lib.segments
    out = {}
    for tid in lib.tracks["track_id"]:
        rows = vectors[seg["segment_id"][seg["track_id"] == tid].to_numpy()]
        v = rows.mean(axis=0) if pooling == "mean" else rows.max(axis=0)
        out[int(tid)] = v / np.linalg.norm(v)
    return out


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_pooled_aggregates_rank_tracks_by_the_cosine_to_their_pooled_vector(library, pooling):
    pooled = _pooled(library, pooling)
    seg = library.segments
    q_row = int(seg.index[(seg["track_id"] == 3) & (seg["start"] == 10.0)][0])
    q = np.asarray(library.vectors()[q_row])
    expected = sorted((t for t in pooled if t != 3), key=lambda t: -float(pooled[t] @ q))[:5]
    hits = search(library, Query.moment(3, at=10.0), k=5, by="track", aggregate=pooling, exclude_same_track=True)
    assert hits["track_id"].tolist() == expected
    np.testing.assert_allclose(hits["score"], [pooled[t] @ q for t in expected], atol=1e-5)
    for _, h in hits.iterrows():  # the moment shown is the track's segment nearest to the query
        rows = seg[seg["track_id"] == h["track_id"]]
        best = rows["segment_id"].to_numpy()[np.argmax(np.asarray(library.vectors())[rows["segment_id"]] @ q)]
        assert h["segment_id"] == best and h["n_segments"] == len(rows)
    best_hits = search(library, Query.moment(3, at=10.0), k=5, by="track", exclude_same_track=True)
    assert "n_segments" in best_hits and best_hits["score"].iloc[0] >= hits["score"].iloc[0]


def test_a_whole_track_clip_pooled_like_the_tracks_finds_that_track_first(library):
    uri = library.tracks.loc[library.tracks["track_id"] == 5, "uri"].iloc[0]
    hits = search(library, Query.audio(uri), k=3, by="track", aggregate="mean")
    assert hits["track_id"].iloc[0] == 5 and hits["score"].iloc[0] > 0.999
    assert hits["score"].iloc[1] < 0.99


def test_track_vectors_follow_adds_and_removes_and_check_repairs_them(tmp_path):
    files = write_tones(tmp_path / "audio", 5, freq=180.0)
    lib = Library.create(tmp_path / "lib", window=2, hop=1)
    lib.add(files[:3], embedders=["features45"], workers=1, progress=False)
    lib.build_index("features45", "Flat")

    def stored():  # read from the generation the library is at now
        z = np.load(lib.embedding().path / trackvectors.FILE)
        return z["track_ids"].tolist(), {p: z[p] for p in trackvectors.POOLINGS}, json.loads(str(z["coverage"]))

    def matches_reference():
        ids, pooled, _ = stored()
        assert ids == sorted(lib.tracks["track_id"].tolist())
        for pooling in trackvectors.POOLINGS:
            ref = _pooled(lib, pooling)
            np.testing.assert_allclose(pooled[pooling], np.stack([ref[t] for t in ids]), atol=1e-5)

    matches_reference()
    lib.remove([1])
    assert stored()[0] == [0, 2]
    matches_reference()
    lib.add(files[3:], workers=1, progress=False)
    assert stored()[0] == [0, 2, 3, 4]
    matches_reference()
    assert lib.check() == []

    # a library made before track vectors existed: search pools in memory, check names it, repair writes it
    with lib.store.transaction():
        (lib.embedding().path / trackvectors.FILE).unlink()
    lib = Library.open(lib.path)
    hits = search(lib, Query.moment(3, at=1.0), k=2, by="track", aggregate="mean", exclude_same_track=True)
    assert len(hits) == 2 and 3 not in hits["track_id"].tolist()
    problems = lib.check()
    assert [p["problem"] for p in problems] == ["the per-track vectors do not match the library"]
    assert all(p["repaired"] for p in Library.open(lib.path).check(repair=True))
    lib = Library.open(lib.path)
    assert lib.check() == []
    matches_reference()
    again = search(lib, Query.moment(3, at=1.0), k=2, by="track", aggregate="mean", exclude_same_track=True)
    assert again["track_id"].tolist() == hits["track_id"].tolist()


def test_aggregates_that_cannot_apply_are_one_clear_line(library, tmp_path):
    with pytest.raises(ParameterError, match="needs by='track'"):
        search(library, Query.moment(0, at=0.0), aggregate="mean")
    with pytest.raises(ParameterError, match="aggregate must be one of best, mean, max"):
        search(library, Query.moment(0, at=0.0), by="track", aggregate="median")
    with pytest.raises(ParameterError, match="a text query needs aggregate='best'"):
        search(library, Query.text("calm piano"), by="track", aggregate="max")
    r = CliRunner().invoke(app, ["search", str(library.path), "--track", "0", "--aggregate", "mean"])
    assert r.exit_code == 2 and "--aggregate mean ranks tracks: give it with --by track" in r.output
    r = CliRunner().invoke(app, ["search", str(library.path), "--track", "0", "--by", "track", "--aggregate", "max",
                                 "-k", "3", "--json"])
    assert r.exit_code == 0, r.output
    assert [h["rank"] for h in json.loads(r.output)] == [1, 2, 3]
