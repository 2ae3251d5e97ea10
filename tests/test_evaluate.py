import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from audiorag.cli import app
from audiorag.errors import ParameterError
from audiorag.evaluate import EvaluationRecord, Protocol, evaluate
from audiorag.evaluate.protocol import exclusion_keys, query_segments, segment_labels, subset_tracks
from audiorag.segment import Segmentation, segment_table

FAST = dict(moment_queries=8, latency_queries=10)


def test_section_labels_follow_the_majority_section():
    tracks = pd.DataFrame({"track_id": [0, 1], "genre": ["rock", "jazz"],
                           "sections": [json.dumps([[0, 14.0, "rock"], [14.0, 30, "ambient"]]),
                                        json.dumps([[0, 30, "jazz"]])]})
    segs = segment_table([0, 1], [30.0, 30.0], Segmentation(10, 2))
    labels = segment_labels(tracks, segs, Protocol())
    first = labels[: 11]
    starts = segs["start"].to_numpy()[:11]
    assert list(first[starts + 5 <= 14]) == ["rock"] * int((starts + 5 <= 14).sum())
    assert list(first[starts + 5 > 14]) == ["ambient"] * int((starts + 5 > 14).sum())
    assert set(labels[11:]) == {"jazz"}
    assert set(segment_labels(tracks, segs, Protocol(sections_column=None))[:11]) == {"rock"}


def test_query_sets():
    segs = segment_table([0, 1, 2], [30.0, 12.0, 5.0], Segmentation(10, 2))
    valid = np.ones(len(segs), bool)
    assert len(query_segments(segs, valid, Protocol())) == len(segs)
    sample = query_segments(segs, valid, Protocol(queries="sample", n_queries=5, seed=3))
    again = query_segments(segs, valid, Protocol(queries="sample", n_queries=5, seed=3))
    assert len(sample) == 5 and (sample == again).all()
    per_track = query_segments(segs, valid, Protocol(queries="per-track"))
    assert segs.set_index("segment_id").loc[per_track, "track_id"].tolist() == [0, 1, 2]
    with pytest.raises(ParameterError, match="n_queries"):
        query_segments(segs, valid, Protocol(queries="sample"))


def test_exclusions_and_determinism(library, tmp_path):
    proto = Protocol(label="genre", exclude_same=["artist"], **FAST)
    a = evaluate(library, protocol=proto)
    b = evaluate(library, protocol=proto)
    quality = [k for k in a.record.metrics if not k.startswith(("latency", "throughput", "moment/clip"))]
    assert {k: a.record.metrics[k] for k in quality} == {k: b.record.metrics[k] for k in quality}
    artist = library.tracks.set_index("track_id")["artist"]
    seg_track = library.segments["track_id"].to_numpy()
    for q, ranked in zip(a.queries[:50], a.ranked[:50]):
        assert not (artist.loc[seg_track[ranked]].to_numpy() == artist.loc[seg_track[q]]).any()
    m = a.record.metrics
    assert m["chance/P"] < m["segment/P@10"] < 1 and 0 < m["segment/mAP"] < 1
    assert 0 <= m["moment/accuracy"] <= m["moment/track_accuracy"] <= 1
    # a looser protocol (only the same track excluded) finds same-artist tracks and scores higher
    loose = evaluate(library, protocol=Protocol(label="genre", **FAST)).record.metrics
    assert loose["segment/P@10"] > m["segment/P@10"]
    path = a.record.write(tmp_path)
    again = EvaluationRecord.read(path)
    assert again.metrics == a.record.metrics and again.protocol.exclude_same == ["artist"]
    assert again.embedder["key"] == library.embedding().key and again.index["factory"] == "Flat"
    assert again.machine.cores >= 1 and again.dataset["content_hash"].startswith("sha256:")


def test_eval_cli(library, tmp_path):
    r = CliRunner().invoke(app, ["eval", str(library.path), "--label", "genre", "--exclude-same", "artist",
                                 "-k", "1,10", "--queries", "50", "--moment-queries", "4", "--out", str(tmp_path / "o"),
                                 "--json"])
    assert r.exit_code == 0, r.output
    record = json.loads(r.stdout)
    assert record["protocol"]["n_queries"] == 50 and record["timings"]["n_queries"] == 50
    assert (tmp_path / "o" / "metrics.json").exists() and (tmp_path / "o" / "per-query.csv").exists()
    r = CliRunner().invoke(app, ["eval", str(library.path), "--label", "mood"])
    assert r.exit_code == 2 and "not a track column" in r.output


def test_unlabelled_tracks_are_neither_queries_nor_relevant():
    tracks = pd.DataFrame({"track_id": [0, 1, 2, 3], "genre": ["rock", None, float("nan"), ""],
                           "artist": ["a", None, None, "b"]})
    segs = segment_table([0, 1, 2, 3], [4.0] * 4, Segmentation(2, 2))
    labels = segment_labels(tracks, segs, Protocol())
    assert labels.tolist() == ["rock", "rock", None, None, None, None, None, None]
    artist = exclusion_keys(tracks, segs, Protocol(exclude_same=["artist"]))[1]
    assert artist[2] != artist[4]  # two tracks without an artist are not "the same artist"
    assert artist[2] == artist[3] and artist[0] != artist[6]


def test_subset_compares_typed_values():
    tracks = pd.DataFrame({"track_id": [0, 1, 2], "year": [2001.0, 2002.0, np.nan], "split": ["test", "train", "test"]})
    assert subset_tracks(tracks, Protocol(subset={"year": "2001"})).tolist() == [True, False, False]
    assert subset_tracks(tracks, Protocol(subset={"year": {"op": ">", "value": 2001}, "split": "train"})).tolist() == \
        [False, True, False]
    with pytest.raises(ParameterError, match="not a number"):
        subset_tracks(tracks, Protocol(subset={"year": "MMI"}))
    with pytest.raises(ParameterError, match="track columns"):
        subset_tracks(tracks, Protocol(subset={"decade": "2000s"}))
    with pytest.raises(ValueError):  # pydantic: -k 0 never reaches a metric
        Protocol(ks=[0])


def test_evaluation_with_unlabelled_tracks_equals_leaving_them_out(library, tmp_path):
    import shutil

    from audiorag import Library
    shutil.copytree(library.path, tmp_path / "lib")
    lib = Library.open(tmp_path / "lib")
    genre = lib.tracks.set_index("track_id")["genre"]
    unlabelled = genre.index[::5]  # every fifth track has no genre
    lib.set_track_column("genre_partial", {t: g for t, g in genre.items() if t not in set(unlabelled)})
    lib.set_track_column("labelled", {t: int(t not in set(unlabelled)) for t in genre.index})
    partial = evaluate(lib, protocol=Protocol(label="genre_partial", moment_queries=0, latency_queries=5)).record
    subset = evaluate(lib, protocol=Protocol(label="genre", subset={"labelled": "1"}, moment_queries=0,
                                             latency_queries=5)).record
    assert partial.metrics["n_unlabelled"] == len(unlabelled)
    assert partial.metrics["n_unlabelled_segments"] == int(lib.segments["track_id"].isin(unlabelled).sum())
    assert partial.timings["n_queries"] == subset.timings["n_queries"] < len(lib.segments)
    quality = [k for k in subset.metrics if k.startswith(("segment/", "track/", "chance/", "cluster/"))]
    assert quality and {k: partial.metrics[k] for k in quality} == {k: subset.metrics[k] for k in quality}


def test_the_deployment_size_is_the_committed_generation_not_the_older_ones_a_reader_pins(tmp_path):
    """S2's "deployment size": a reader that still pins an older generation keeps it on disk, sharing most files
    with the current one by hard links; the size counted is what a deployment copies (14.0 MB on the default
    corpus, where walking every folder said 25.9 MB)."""
    from conftest import write_tone

    from audiorag import Library
    from audiorag.evaluate.reported import library_sizes
    for i in range(3):
        write_tone(tmp_path / f"t{i}.wav", seconds=4, freq=220 * (i + 1))
    lib = Library.create(tmp_path / "lib", window=2, hop=1)
    lib.add([tmp_path / "t0.wav", tmp_path / "t1.wav"], embedders=["features45"], workers=1, progress=False)
    reader = Library.open(tmp_path / "lib")  # pins this generation
    lib.add([tmp_path / "t2.wav"], workers=1, progress=False)
    lib = Library.open(tmp_path / "lib")
    assert len([p for p in (tmp_path / "lib").iterdir() if p.name.startswith("gen-")]) >= 2
    current = sum(p.stat().st_size for p in lib.data.rglob("*") if p.is_file()) \
        + sum(p.stat().st_size for p in lib.path.iterdir() if p.is_file())
    everything = sum(p.stat().st_size for p in lib.path.rglob("*") if p.is_file())
    assert library_sizes(lib, lib.embedding("features45"), None)["library/disk_mb"] == current / 1e6 < everything / 1e6
    reader.close()
