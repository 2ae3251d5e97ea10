"""Every query kind on a sharded library gives what one library holding every track gives (docs/shards.md):
re-ranking by the moments' descriptors, filters on them, ``recommend`` with its descriptor factors and mood,
hum queries, late fusion, ``describe`` and tag-space text queries — 3 Flat shards against one Flat library
built from the same generated tracks, hits (tracks, moments) and scores equal to 1e-6."""

import json

import numpy as np
import pytest
import soundfile as sf
from conftest import locked
from typer.testing import CliRunner

from audiorag import Library
from audiorag.cli import app
from audiorag.datasets.melodic import SR, MelodicDataset, melodies_of, synthesise_hum
from audiorag.describe import describe
from audiorag.embedders import get_embedder
from audiorag.library.shards import ShardedLibrary
from audiorag.recommend import recommend
from audiorag.rerank import Rerank
from audiorag.search import Query, hum_search, search

pytestmark = pytest.mark.slow  # two builds with musicnn-mtt: ≈ 20 s
N = 3
EMBEDDERS = ("features45", "melody", "musicnn-mtt")
#: tracks of the shared synthetic corpus with sad, dark and happy moments (the melodies are calm)
MOODY = ("track0003", "track0007")


@pytest.fixture(scope="module")
def libs(cache, corpus, tmp_path_factory):
    """6 melodic tracks (hum) and 3 synthetic ones of other moods, as one library and as 3 shards;
    features45, melody and musicnn-mtt (a tagger: tag-space text, and moods from tags), Flat indexes."""
    melodic = MelodicDataset(6, seed=3, duration=20.0)
    with locked(cache / ".melodic.lock"):
        melodic.generate()
    sources = list(melodic.sources()) + [s for s in corpus.sources() if s.uri.rsplit("/", 1)[-1].startswith(MOODY)]
    root = tmp_path_factory.mktemp("shard-queries")
    single = Library.create(root / "single", window=10, hop=5)
    single.add(sources, embedders=list(EMBEDDERS), workers=1, progress=False)
    for name in EMBEDDERS:
        single.build_index(name, "Flat")
    sharded = ShardedLibrary.create(root / "sharded", N, window=10, hop=5)
    sharded.add(sources, embedders=[get_embedder(name) for name in EMBEDDERS], workers=1, parallel=False)
    lib = ShardedLibrary.open(sharded.path)
    g = dict(zip(lib.tracks["uri"], lib.tracks["track_id"]))
    ids = {int(t): int(g[u]) for t, u in zip(single.tracks["track_id"], single.tracks["uri"])}
    return {"single": single, "lib": lib, "ids": ids, "root": root}


def same_hits(a, b, ids: dict, *, columns=()):
    """Equal hits: the same tracks (single id → global id) and moments, scores to 1e-6, and ``columns`` equal."""
    assert len(a) == len(b) > 0
    assert [ids[t] for t in a["track_id"]] == b["track_id"].tolist()
    np.testing.assert_allclose(a["start"], b["start"])
    np.testing.assert_allclose(a["end"], b["end"])
    np.testing.assert_allclose(a["score"], b["score"], rtol=0, atol=1e-6)
    for c in columns:
        assert a[c].tolist() == b[c].tolist(), c


def hum_of(single, track: int, **kw):
    notes = melodies_of(single.tracks.set_index("track_id").at[track, "uri"])
    return synthesise_hum(notes, np.random.default_rng(7), phrase=(10, 21), snr_db=25, edit=None, **kw)


def test_the_view_reads_its_shards_descriptors_tags_and_contours_in_global_order(libs):
    single, lib, ids = libs["single"], libs["lib"], libs["ids"]
    a, b = single.descriptors(), lib.descriptors()
    assert len(b) == len(lib.segments) == len(single.segments) and b.index.name == "segment_id"
    assert set(a["mood"]) == set(b["mood"]) and len(set(b["mood"])) >= 3  # calm, sad, happy...
    for t in (0, 4, 7):  # a track's moments carry its own descriptors in the view
        rows_a = np.flatnonzero(single.segments["track_id"].to_numpy() == t)
        rows_b = np.flatnonzero(lib.segments["track_id"].to_numpy() == ids[t])
        rows_of_a, rows_of_b = a.iloc[rows_a].reset_index(drop=True), b.iloc[rows_b].reset_index(drop=True)
        for column in ("key", "mood"):
            assert rows_of_a[column].tolist() == rows_of_b[column].tolist()
        np.testing.assert_allclose(rows_of_a["tempo"], rows_of_b["tempo"])
        np.testing.assert_allclose(single.descriptors(harmony=True)[rows_a], lib.descriptors(harmony=True)[rows_b])
        np.testing.assert_allclose(single.embedding("melody").tags()[rows_a], lib.embedding("melody").tags()[rows_b])
        np.testing.assert_allclose(single.tags(embedder="musicnn-mtt").to_numpy()[rows_a],
                                   lib.tags(embedder="musicnn-mtt").to_numpy()[rows_b], atol=1e-6)
    assert lib.tagger().key == single.tagger().key


def test_rerank_by_descriptors_on_shards_equals_one_library(libs):
    single, lib, ids = libs["single"], libs["lib"], libs["ids"]
    uri = single.tracks["uri"].iloc[7]
    for options in (Rerank(harmonic=1.0, tempo=1.0, key=1.0), Rerank(mood="sad", mood_weight=1.0, diversity=0.3,
                                                                       max_per_track=2),
                    Rerank(mood="calm", mood_weight=1.0, harmonic=0.5, fan_out=3)):
        changed = []
        for t in (1, 7):
            a = search(single, Query.moment(t, 4.0), k=6, embedder="features45", rerank=options)
            b = search(lib, Query.moment(ids[t], 4.0), k=6, embedder="features45", rerank=options)
            same_hits(a, b, ids, columns=("key", "mood_word"))
            for factor in ("harmony", "tempo_match", "key_match", "mood"):
                if factor in a.columns:
                    np.testing.assert_allclose(a[factor], b[factor], atol=1e-6)
            plain = search(lib, Query.moment(ids[t], 4.0), k=6, embedder="features45", rerank=options.with_(
                harmonic=0.0, tempo=0.0, key=0.0, mood=None))
            changed.append(b["segment_id"].tolist() != plain["segment_id"].tolist())
        assert any(changed), options  # the descriptors changed the ranking
        clip = Query.audio(uri, start=2.0, end=12.0)  # the query's descriptors computed from the clip
        same_hits(search(single, clip, k=6, embedder="features45", rerank=options),
                  search(lib, clip, k=6, embedder="features45", rerank=options), ids)


@pytest.mark.parametrize("condition", [{"key": "a min"}, {"key": ["G minor", "F# major"]},
                                       {"tempo": {"op": ">=", "value": 120}}, {"mood": "calm"}, {"mood": "sad"},
                                       {"mood": "calm", "loudness_db": {"op": "<", "value": -20}}])
def test_filters_on_descriptors_on_shards_equal_one_library(libs, condition):
    single, lib, ids = libs["single"], libs["lib"], libs["ids"]
    a = search(single, Query.moment(7, 6.0), k=12, embedder="features45", filters=condition)
    b = search(lib, Query.moment(ids[7], 6.0), k=12, embedder="features45", filters=condition)
    same_hits(a, b, ids)
    passing = search(single, Query.moment(7, 6.0), k=len(single.segments), embedder="features45", filters=condition)
    assert 0 < len(passing) < len(single.segments)  # the condition keeps some moments, not all
    a = search(single, Query.moment(2, 0.0), k=5, embedder="features45", filters=condition, by="track")
    b = search(lib, Query.moment(ids[2], 0.0), k=5, embedder="features45", filters=condition, by="track")
    same_hits(a, b, ids, columns=("n_segments",))


def test_recommend_with_descriptors_and_mood_on_shards_equals_one_library(libs):
    single, lib, ids = libs["single"], libs["lib"], libs["ids"]
    for kw in ({}, {"mood": "sad", "diversity": 0.5}, {"time_of_day": "night", "max_per_track": 2},
               {"harmonic": 0.6, "tempo": 0.3, "key": 0.3, "max_per_artist": None}):
        a = recommend(single, ["0@4", "7@2", "3@10"], history=[5], k=5, embedder="features45", **kw)
        b = recommend(lib, [f"{ids[0]}@4", f"{ids[7]}@2", f"{ids[3]}@10"], history=[ids[5]], k=5,
                      embedder="features45", **kw)
        same_hits(a, b, ids, columns=("taste", "mood_word"))
        np.testing.assert_allclose(a["harmony"], b["harmony"], atol=1e-6)
        assert a.attrs["mood"] == b.attrs["mood"] and a.attrs["mood_inferred"] == b.attrs["mood_inferred"]
    assert b.attrs["mood_inferred"] is not None and b.attrs["mood_inferred"]["played"] == 1  # inferred on shards


def test_hum_on_shards_equals_one_library(libs):
    single, lib, ids = libs["single"], libs["lib"], libs["ids"]
    y, info = hum_of(single, 2, transpose=3, tempo=0.9)
    for by in ("segment", "track"):
        a, b = search(single, Query.hum(y, sr=SR), k=5, by=by), search(lib, Query.hum(y, sr=SR), k=5, by=by)
        same_hits(a, b, ids)
        assert b["track_id"].iloc[0] == ids[2] and abs(b["start"].iloc[0] - info["start"]) <= 1.0
    # a coarse stage shorter than the corpus: the fan-out's candidates are one index's
    assert 2 * 8 < len(single.segments)
    same_hits(hum_search(single, Query.hum(y, sr=SR), k=4, candidates=8),
              hum_search(lib, Query.hum(y, sr=SR), k=4, candidates=8), ids)
    lead = single.tracks["lead"].iloc[2]
    same_hits(search(single, Query.hum(y, sr=SR), k=3, filters={"lead": lead}),
              search(lib, Query.hum(y, sr=SR), k=3, filters={"lead": lead}), ids)


def test_late_fusion_on_shards_equals_one_library(libs):
    single, lib, ids = libs["single"], libs["lib"], libs["ids"]
    for kw in ({}, {"weights": [0.3, 0.7], "by": "track"}, {"filters": {"mood": "calm"}, "exclude_same_track": True}):
        a = search(single, Query.moment(4, 2.0), k=8, embedder="features45+musicnn-mtt", fusion="late", **kw)
        b = search(lib, Query.moment(ids[4], 2.0), k=8, embedder="features45+musicnn-mtt", fusion="late", **kw)
        same_hits(a, b, ids)
    clip = Query.audio(single.tracks["uri"].iloc[1], start=0.0, end=10.0)
    same_hits(search(single, clip, k=8, embedder="melody+features45", fusion="late"),
              search(lib, clip, k=8, embedder="melody+features45", fusion="late"), ids)


def test_tag_space_text_on_shards_equals_one_library(libs):
    single, lib, ids = libs["single"], libs["lib"], libs["ids"]
    for by in ("segment", "track"):
        a = search(single, Query.text("slow quiet piano"), k=8, by=by)
        b = search(lib, Query.text("slow quiet piano"), k=8, by=by)
        tags = [c for c in a.columns if c.startswith("tag:")]
        assert tags and a.attrs["matched_tags"] == b.attrs["matched_tags"]
        same_hits(a, b, ids)
        np.testing.assert_allclose(a[tags].to_numpy(float), b[tags].to_numpy(float), atol=1e-6)


def test_describe_on_shards_equals_one_library(libs):
    single, lib, ids = libs["single"], libs["lib"], libs["ids"]
    clip = Query.audio(single.tracks["uri"].iloc[6], start=4.0, end=14.0)
    for qa, qb in ((Query.moment(6, 8.0), Query.moment(ids[6], 8.0)), (clip, clip)):
        a = describe(single, qa, k=5, embedder="features45").to_dict()
        b = describe(lib, qb, k=5, embedder="features45").to_dict()
        assert b["descriptors_from"] == ("library" if qb.kind == "moment" else "clip")
        na, nb = a.pop("neighbourhood"), b.pop("neighbourhood")
        for d in (a, b):
            d["query"].pop("segment_id", None)
        a["query"] = {**a["query"], **({"track_id": ids[a["query"]["track_id"]]} if "track_id" in a["query"] else {})}
        assert json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)
        assert [ids[n["track_id"]] for n in na["neighbours"]] == [n["track_id"] for n in nb["neighbours"]]
        assert na["labels"] == nb["labels"] and na["tags"] == nb["tags"]
    r = CliRunner().invoke(app, ["describe", str(lib.path), "--track", str(ids[6]), "--at", "8", "-k", "5",
                                 "--embedder", "features45", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["key"] == describe(single, Query.moment(6, 8.0), k=5, embedder="features45").key


def test_cli_search_on_shards_with_a_descriptor_filter_and_a_hum_prints_what_one_library_does(libs, tmp_path):
    single, lib, ids = libs["single"], libs["lib"], libs["ids"]
    y, _ = hum_of(single, 2)
    hum = tmp_path / "hum.wav"
    sf.write(hum, y, SR)
    for a_args, b_args in ((["--track", "7", "--at", "6", "--where", "mood=calm", "--embedder", "features45"],
                            ["--track", str(ids[7]), "--at", "6", "--where", "mood=calm", "--embedder", "features45"]),
                           (["--hum", str(hum), "-k", "4"], ["--hum", str(hum), "-k", "4"])):
        out = []
        for path, args in ((single.path, a_args), (lib.path, b_args)):
            r = CliRunner().invoke(app, ["search", str(path), *args, "--json"])
            assert r.exit_code == 0, r.output
            out.append(json.loads(r.stdout))
        a, b = out
        assert len(a) == len(b) > 0
        for x, y_ in zip(a, b):
            assert ids[x.pop("track_id")] == y_.pop("track_id")
            x.pop("segment_id"), y_.pop("segment_id")
            assert x.pop("score") == pytest.approx(y_.pop("score"), abs=1e-6)
            assert _shown(x) == _shown(y_)


def _shown(hit: dict) -> dict:
    """A hit's other fields, a missing value (None or NaN: the tracks tables of shards without the column) as None."""
    return {c: None if v is None or v != v else v for c, v in hit.items()}
