import numpy as np
import pytest

from audiorag import Library, ParameterError, Query
from audiorag.audio import load
from audiorag.datasets.synthetic import SyntheticDataset
from audiorag.search import search


def test_clip_cut_from_indexed_track_finds_its_moment(library):
    hop = library.segmentation.hop
    found = 0
    trials = [(tid, at) for tid in library.tracks["track_id"][::3] for at in (3.3, 11.0, 17.9)]
    for tid, at in trials:
        uri = library.tracks.set_index("track_id").at[tid, "uri"]
        hits = search(library, Query.audio(uri, start=at, end=at + 10), k=3)
        top = hits.iloc[0]
        found += top["track_id"] == tid and abs(top["start"] - at) <= hop
    assert found == len(trials)


def test_array_query_equals_file_query(library):
    uri = library.tracks["uri"].iloc[4]
    y, sr = load(uri)
    from_file = search(library, Query.audio(uri, start=5, end=15), k=5)
    from_array = search(library, Query.audio(y, sr=sr, start=5, end=15), k=5)
    assert from_file["segment_id"].tolist() == from_array["segment_id"].tolist()
    np.testing.assert_allclose(from_file["score"], from_array["score"], atol=1e-5)


def test_moment_query_exclusion_filters_and_track_aggregation(library):
    tid = int(library.tracks["track_id"].iloc[2])
    hits = search(library, Query.moment(tid, at=8.5), k=5)
    assert hits.iloc[0]["track_id"] == tid and hits.iloc[0]["start"] == 8.0
    assert hits.iloc[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert list(hits.columns[:6]) == ["rank", "track_id", "segment_id", "start", "end", "score"]
    assert {"uri", "genre", "artist"} <= set(hits.columns)
    other = search(library, Query.moment(tid, at=8.5), k=20, exclude_same_track=True)
    assert len(other) == 20 and (other["track_id"] != tid).all()
    assert other["score"].is_monotonic_decreasing
    genre = library.tracks["genre"].iloc[0]
    only = search(library, Query.moment(tid, 0), k=10, filters={"genre": genre})
    assert (only["genre"] == genre).all() and len(only) == 10
    tracks = search(library, Query.moment(tid, 0), k=6, by="track", exclude_same_track=True)
    assert tracks["track_id"].is_unique and len(tracks) == 6 and "n_segments" in tracks
    with pytest.raises(ParameterError, match="unknown column"):
        search(library, Query.moment(tid, 0), filters={"colour": "red"})
    with pytest.raises(ParameterError, match="not in the library"):
        search(library, Query.moment(10_000, 0))


def test_features45_discriminates_but_is_not_perfect(library):
    """The corpus must be hard enough: genre precision of track-level neighbours is between chance and 1."""
    tracks = library.tracks.set_index("track_id")
    precisions = []
    for tid in tracks.index:
        hits = search(library, Query.moment(int(tid), 10.0), k=5, by="track", exclude_same_track=True)
        precisions.append(np.mean(tracks.loc[hits["track_id"], "genre"].to_numpy() == tracks.at[tid, "genre"]))
    p = float(np.mean(precisions))
    assert 1 / 8 + 0.1 < p < 0.97, p


def test_long_query_is_matched_as_a_sequence(cache, tmp_path):
    """A 30 s clip of a 75 s track is localised as one 30 s span starting within ±hop of its source."""
    ds = SyntheticDataset(8, seed=11, duration=75.0)
    lib = Library.create(tmp_path / "long", window=10, hop=2)
    lib.add(ds, embedders=["features45"], progress=False)
    lib.build_index("features45", "Flat")
    for tid, at in [(1, 20.0), (5, 33.0), (6, 41.5)]:
        uri = lib.tracks.set_index("track_id").at[tid, "uri"]
        hits = search(lib, Query.audio(uri, start=at, end=at + 30), k=3)
        top = hits.iloc[0]
        assert top["track_id"] == tid
        assert abs(top["start"] - at) <= lib.segmentation.hop
        assert top["end"] - top["start"] == pytest.approx(30.0, abs=lib.segmentation.hop)
        # other hits never overlap the top hit on the same track
        same = hits[(hits["track_id"] == tid) & (hits["rank"] > 1)]
        assert ((same["start"] >= top["end"]) | (same["end"] <= top["start"])).all()


def test_one_search_context_per_embedding_however_a_query_names_it(library):
    """The default (None), the embedder's name and its key share one context, so a model embedder is loaded
    once per process: a server's warm-up (which names keys) warms the queries of clients that name none."""
    import importlib

    from audiorag import Query
    from audiorag.search import search
    contexts = importlib.import_module("audiorag.search.context")
    contexts._CONTEXTS.clear()
    key = library.embedding("features45").key
    hits = [search(library, Query.moment(1, 3.0), embedder=e, k=3) for e in (key, None, "features45")]
    assert len(contexts._CONTEXTS) == 1
    assert all(h[["track_id", "segment_id"]].equals(hits[0][["track_id", "segment_id"]]) for h in hits)
