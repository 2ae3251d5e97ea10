"""Re-ranking factors on constructed candidates; recommendations from likes, history and context;
the recommend command and evaluation protocol."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from audiorag import Query
from audiorag.cli import app
from audiorag.errors import ParameterError
from audiorag.evaluate.recommend import evaluate_recommend, listeners, settings_grid
from audiorag.recommend import context_mood, recommend, tastes
from audiorag.rerank import Rerank, key_compatibility, mood_score, rerank, score, select, tempo_compatibility
from audiorag.search import search


def _unit(rows):
    v = np.asarray(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# -- re-ranking on constructed candidates ------------------------------------------------------------
def test_mmr_takes_the_dissimilar_item_at_lambda_0_and_the_most_similar_at_1():
    t = pd.DataFrame({"score": [0.90, 0.88, 0.60, 0.50]})
    v = _unit([[1, 0, 0], [0.99, 0.1, 0], [0, 1, 0], [0.7, 0.7, 0]])   # row 1 ≈ row 0; row 2 orthogonal
    assert select(t, v, 2, lam=1.0) == [0, 1]
    assert select(t, v, 2, lam=0.0) == [0, 2]
    assert select(t, v, 4, lam=0.0) == [0, 2, 3, 1]                     # the near-duplicate comes last


def test_caps_hold_per_track_artist_and_any_column():
    rng = np.random.default_rng(0)
    n = 60
    t = pd.DataFrame({"score": np.sort(rng.random(n))[::-1], "track_id": rng.integers(0, 6, n),
                      "artist": rng.choice(["a", "b", "c", "d"], n), "period": rng.choice(["60s", "70s", None], n)})
    v = _unit(rng.standard_normal((n, 8)))
    chosen = t.iloc[select(t, v, 10, lam=0.7, caps={"track_id": 2, "artist": 3, "period": 2})]
    assert chosen["track_id"].value_counts().max() <= 2 and chosen["artist"].value_counts().max() <= 3
    assert chosen["period"].value_counts().max() <= 2          # missing values are never capped
    per_value = t.iloc[select(t, v, 10, caps={"artist": {"a": 1}})]
    assert (per_value["artist"] == "a").sum() <= 1 and len(per_value) == 10


def test_overlapping_windows_of_one_track_count_once():
    t = pd.DataFrame({"track_id": [1, 1, 1, 2], "start": [0.0, 2.0, 10.0, 0.0], "end": [10.0, 12.0, 20.0, 10.0],
                      "score": [0.9, 0.89, 0.8, 0.5]})
    v = _unit(np.eye(4))
    assert select(t, v, 4) == [0, 2, 3]                          # 2–12 s overlaps 0–10 s; 10–20 s does not
    assert select(t, v, 4, suppress_overlap=False) == [0, 1, 2, 3]


def test_contributions_sum_to_the_score_and_rank():
    rng = np.random.default_rng(1)
    t = pd.DataFrame({"track_id": np.arange(20), "start": 0.0, "end": 10.0, "similarity": rng.random(20),
                      "harmony": rng.random(20), "tempo_match": rng.random(20), "key_match": rng.random(20)})
    out = rerank(t, _unit(rng.standard_normal((20, 4))), Rerank(harmonic=0.2, tempo=0.1, key=0.3), k=8)
    contrib = out[[c for c in out.columns if c.startswith("contrib:")]]
    assert list(contrib.columns) == ["contrib:similarity", "contrib:harmony", "contrib:tempo_match",
                                     "contrib:key_match"]
    np.testing.assert_allclose(contrib.sum(axis=1), out["score"])
    np.testing.assert_allclose(out["contrib:key_match"], 0.3 * out["key_match"])
    assert out["rank"].tolist() == list(range(1, 9)) and out["score"].is_monotonic_decreasing  # λ = 1
    with pytest.raises(ParameterError, match="unknown factor"):
        score(t, {"loudness": 1.0})


def test_key_tempo_and_mood_factors():
    # circle of fifths: C vs C major, A minor (relative), G, F# (tritone), E minor (relative of G)
    assert key_compatibility(0, 0, [0, 9, 7, 6, 4], [0, 1, 0, 0, 1]).round(3).tolist() == [1, 1, 0.833, 0, 0.833]
    assert key_compatibility(-1, -1, [0], [0]).tolist() == [0]
    assert tempo_compatibility(120, [120, 240, 60, 180, np.nan]).round(3).tolist()[:3] == [1, 1, 1]
    assert tempo_compatibility(120, [180])[0] < 0.01 and tempo_compatibility(120, [np.nan])[0] == 0
    calm = mood_score("calm", np.array([0.0, 1.0]), np.array([0.5, 0.5]),
                      pd.DataFrame({"slow": [1.0, 0.0], "quiet": [0.9, 0.1]}))
    assert calm[0] > 0.9 and calm[1] < 0.1
    with pytest.raises(ParameterError, match="mood"):
        Rerank(mood="sleepy")


# -- recommendations on the session library --------------------------------------------------------------
def test_history_is_excluded_and_known_artists_counted(library):
    tracks = library.tracks
    history = tracks["track_id"].iloc[:8].tolist()
    out = recommend(library, ["9@4"], history=history, k=10, max_per_artist=None)
    assert len(out) == 10 and not set(out["track_id"]) & set(history + [9])
    known = set(tracks.set_index("track_id").loc[history + [9], "artist"])
    assert out["new_artist"].tolist() == (~out["artist"].isin(known)).tolist()
    assert out.attrs["discovery"] == pytest.approx(out["new_artist"].mean())
    assert out["track_id"].is_unique                                    # one moment per track by default
    assert (out["contrib:similarity"] + out["contrib:harmony"] + out["contrib:tempo_match"]
            + out["contrib:key_match"] + out["contrib:mood"]).round(9).equals(out["score"].round(9))
    inferred = out.attrs["mood_inferred"]                               # no mood given: the listener's, inferred
    assert out.attrs["mood"] == inferred["mood"] and inferred["likes"] == 1 and inferred["played"] == 8
    assert (out["contrib:mood"] == 0.3 * 0.5 * out["mood"]).all()        # at half the mood weight


def test_discovery_floor_arithmetic(library):
    tracks = library.tracks.set_index("track_id")
    liked = ["0@4", "8@4"]                                      # two tracks; their artists' others are candidates
    same_artist = tracks.index[tracks["artist"].isin(tracks.loc[[0, 8], "artist"])].difference([0, 8])
    base = recommend(library, liked, k=10, diversity=0.0, max_per_artist=None, discovery=None)
    for share in (0.5, 0.8, 1.0):
        out = recommend(library, liked, k=10, diversity=0.0, max_per_artist=None, discovery=share)
        assert out["new_artist"].sum() >= np.ceil(share * 10) and out.attrs["discovery"] == out["new_artist"].mean()
    assert len(same_artist) and out.attrs["discovery"] == 1.0 >= base.attrs["discovery"]


def _tight_pair(v, rows, seg_track):
    """Two moments of different tracks among ``rows`` with the highest cosine."""
    sim = v[rows] @ v[rows].T
    sim[seg_track[rows][:, None] == seg_track[rows][None, :]] = -2
    i, j = np.unravel_index(np.argmax(sim), sim.shape)
    return rows[i], rows[j]


def test_a_two_taste_listener_gets_both_tastes(library):
    v, seg = np.asarray(library.vectors()), library.segments
    seg_track = seg["track_id"].to_numpy()
    genre = seg["track_id"].map(library.tracks.set_index("track_id")["genre"]).to_numpy()
    pairs = {g: _tight_pair(v, np.flatnonzero(genre == g), seg_track) for g in ("classical", "techno")}
    rows = [r for pair in pairs.values() for r in pair]
    liked = [(int(seg_track[r]), float(seg["start"].iat[r])) for r in rows]
    out = recommend(library, liked, k=10)
    assert out.attrs["tastes"] == 2 and out.attrs["taste_weights"] == pytest.approx([0.5, 0.5], abs=0.2)
    shares = out["taste"].value_counts()                                   # each taste at most its share
    assert set(shares.index) == {0, 1} and shares.min() >= 3 and shares.max() <= 6
    assert {"classical", "techno"} <= set(out["genre"])
    got = v[out["segment_id"].to_numpy()]
    centroids = np.stack([v[rows[:2]].mean(axis=0), v[rows[2:]].mean(axis=0)])   # classical, techno likes
    nearest = [int(np.argmax((got[out["taste"].to_numpy() == t] @ centroids.T).mean(axis=0))) for t in (0, 1)]
    assert sorted(nearest) == [0, 1]          # each taste's moments are nearest to one of the two like groups
    mean = recommend(library, liked, k=10, n_tastes=1)                     # both averaged into one
    assert mean.attrs["tastes"] == 1
    assert tastes(v[rows], np.ones(4)).tolist() in ([0, 0, 1, 1], [1, 1, 0, 0])


def test_context_moods_and_time_of_day(library):
    assert context_mood(None, "evening") == ("calm", 0.5) and context_mood(None, 7) == ("bright", 0.5)
    assert context_mood(None, "dawn", times={"dawn": "calm"}) == ("calm", 0.5)
    with pytest.raises(ParameterError, match="hour"):
        context_mood(None, 25)
    calm = recommend(library, ["3@4"], k=8, mood="calm", mood_weight=2.0)
    energetic = recommend(library, ["3@4"], k=8, mood="energetic", mood_weight=2.0)
    assert calm["tempo"].mean() < energetic["tempo"].mean() and calm.attrs["mood"] == "calm"
    assert (calm["contrib:mood"] == 2.0 * calm["mood"]).all()


def test_search_rerank_options(library):
    hits = search(library, Query.moment(3, 4.0), k=6, exclude_same_track=True,
                  rerank=Rerank(diversity=0.3, harmonic=0.2, max_per_artist=1))
    assert len(hits) == 6 and hits["artist"].is_unique and 3 not in set(hits["track_id"])
    assert {"contrib:similarity", "contrib:harmony", "key", "tempo", "similarity"} <= set(hits.columns)
    with pytest.raises(ParameterError, match="by='segment'"):
        search(library, Query.moment(3, 4.0), k=6, by="track", rerank=Rerank())


# -- the command line and the protocol ----------------------------------------------------------------
def test_recommend_command(library, tmp_path):
    history = tmp_path / "played.csv"
    history.write_text("track_id,when\n1,2026-01-01\n2,2026-01-02\n")
    r = CliRunner().invoke(app, ["recommend", str(library.path), "--liked", "3@4", "--liked", "11@2", "--history",
                                 str(history), "-k", "5", "--mood", "calm", "--discovery", "0.4", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert len(out["moments"]) == 5 and not {m["track_id"] for m in out["moments"]} & {1, 2, 3, 11}
    assert sum(m["new_artist"] for m in out["moments"]) >= 2 and out["mood"] == "calm"
    bad = CliRunner().invoke(app, ["recommend", str(library.path), "--liked", "3@x"])
    assert bad.exit_code == 2 and "TRACK@SECONDS" in bad.output
    r = CliRunner().invoke(app, ["search", str(library.path), "--track", "3", "--at", "4", "-k", "4",
                                 "--diversity", "0.5", "--max-per-artist", "1", "--json"])
    assert r.exit_code == 0 and len({h["artist"] for h in json.loads(r.output)}) == 4


def test_simulated_listeners_and_the_protocol(library, tmp_path):
    from audiorag.evaluate.protocol import Protocol, segment_labels
    labels = segment_labels(library.tracks, library.segments, Protocol(label="genre"))
    people = listeners(library.tracks, library.segments, labels, n=8, seed=3)
    for p in people:
        assert 1 <= len(p["labels"]) <= 2 and {t for t, _ in p["liked"]} <= set(p["history"])
    settings = [s for s in settings_grid() if s["name"] in ("search", "d0.0-a2", "d0.9-a2", "d0.3-a2-disc0.34")]
    record, table = evaluate_recommend(library, n_listeners=8, seed=3, settings=settings)
    t = table.set_index("setting")
    assert record.kind == "recommend" and record.metrics["listeners"] == 8
    assert 0 < t.loc["search", "P@10"] <= 1 and t.loc["d0.9-a2", "ILD"] > t.loc["d0.0-a2", "ILD"]
    assert t.loc["d0.3-a2-disc0.34", "discovery"] >= 0.34 - 1e-9
    assert (t["ms"] > 0).all() and record.metrics["search/P@10"] == t.loc["search", "P@10"]

    r = CliRunner().invoke(app, ["eval", str(library.path), "--protocol", "recommend", "--queries", "3",
                                 "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "ev" / "recommend_tradeoff.png").exists() and "| search |" in (
        tmp_path / "ev" / "tradeoff.md").read_text()
