"""Notebook 02's map: its items are the analysis item table, so rows and points line up after a removal."""

import shutil

import numpy as np

from audiorag import Library
from audiorag.analysis import explore, maps
from audiorag.search import Query, search


def test_map_items_line_up_after_remove(library, tmp_path):
    shutil.copytree(library.path, tmp_path / "lib")
    lib = Library.open(tmp_path / "lib")
    gone = [int(t) for t in lib.tracks["track_id"].iloc[[1, 5]]]
    lib.remove(gone)
    key = lib.embedding("features45").key

    items, vectors = explore.map_items(lib, "features45")
    xy = maps.project(vectors, "pca")
    assert len(items) == len(vectors) == len(xy) == int((lib.segments["track_id"] >= 0).sum())
    assert not items["track_id"].isin(gone).any() and items["genre"].notna().all()
    stored = np.asarray(lib.vectors(key))
    np.testing.assert_array_equal(vectors, stored[items["segment_id"].to_numpy()])  # row i is segment i's vector

    # hits ringed on the map are the hits' own points
    track = int(items["track_id"].iloc[0])
    hits = search(lib, Query.moment(track, at=4.0), embedder=key, k=5)
    rows = explore.rows_of(items, hits["segment_id"])
    assert sorted(items["segment_id"].iloc[rows]) == sorted(hits["segment_id"])
    assert (items["track_id"].iloc[rows].to_numpy() >= 0).all() and len(rows) == 5
