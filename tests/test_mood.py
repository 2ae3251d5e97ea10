"""Mood from audio (audiorag.descriptors.mood): on generated music whose mode, tempo and level are set, the
estimate follows them; stored per segment, filterable (`mood=calm`), reported by describe, inferred by
recommend; on real samples, ambient pads are calmer than drum loops."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from audiorag import Library, Query
from audiorag.cli import app
from audiorag.describe import describe as describe_moment
from audiorag.descriptors.mood import MOODS, QUADRANTS, estimate
from audiorag.descriptors.tonal import describe
from audiorag.errors import ParameterError
from audiorag.recommend import recommend
from audiorag.search import search

SR = 22050


def _note(freq, seconds):
    t = np.arange(int(seconds * SR)) / SR
    return sum(k ** -1.0 * np.sin(2 * np.pi * freq * k * t) for k in range(1, 6)) * np.minimum(t / 0.01, 1) * \
        np.exp(-t / 1.0)


def clip(minor: bool, bpm: float, level_db: float, seconds: float = 12.0, seed: int = 0) -> np.ndarray:
    """I–IV–V–I (i–iv–V–i) triads in A, two beats each, a noise hit every half beat, at an RMS level."""
    chords = [(0, 3, 7), (5, 8, 12), (7, 11, 14), (0, 3, 7)] if minor else [(0, 4, 7), (5, 9, 12), (7, 11, 14),
                                                                          (0, 4, 7)]
    beat, y, rng = 60 / bpm, np.zeros(int(seconds * SR)), np.random.default_rng(seed)
    for i, t in enumerate(np.arange(0, seconds - 2 * beat, 2 * beat)):
        c = chords[i % 4]
        part = sum(_note(440 * 2 ** ((57 + m - 69) / 12), 2 * beat) for m in (*c, c[0] - 12))
        a = int(t * SR)
        y[a:a + len(part)] += part[: len(y) - a]
    peak = np.abs(y).max()
    for t in np.arange(0, seconds - 0.1, beat / 2):
        a = int(t * SR)
        y[a:a + 600] += peak * rng.standard_normal(600) * np.exp(-np.arange(600) / 150)
    return (y * 10 ** (level_db / 20) / np.sqrt(np.mean(y ** 2))).astype(np.float32)


GRID = [(minor, bpm, level) for minor in (False, True) for bpm in (70, 150) for level in (-35, -15)]


@pytest.fixture(scope="module")
def grid():
    out = {}
    for minor, bpm, level in GRID:
        m = estimate(describe(clip(minor, bpm, level), SR, [0.0], [12.0]))
        out[minor, bpm, level] = {k: v[0] for k, v in m.items()}
    return out


def test_the_estimate_follows_mode_tempo_and_level(grid):
    for minor, bpm, level in GRID:
        m = grid[minor, bpm, level]
        assert (m["valence"] < 0.3) if minor else (m["valence"] > 0.7), (minor, bpm, level, m)
        if bpm == 70:
            assert m["arousal"] < grid[minor, 150, level]["arousal"] - 0.05
        if level == -35:
            assert m["arousal"] < grid[minor, bpm, -15]["arousal"] - 0.1
    # measured arousal: slow and quiet 0.24, fast and loud 0.55 (150 BPM is read as 100); the corners' words
    assert [grid[k]["mood"] for k in [(False, 70, -35), (False, 150, -15), (True, 70, -35), (True, 150, -15)]] == \
        ["calm", "happy", "sad", "dark"]
    assert grid[False, 70, -35]["mood_confidence"] > 0.4 > grid[False, 70, -15]["mood_confidence"]   # 0.51, 0.18
    assert set(QUADRANTS.values()) <= set(MOODS)


@pytest.fixture(scope="module")
def mood_library(tmp_path_factory):
    """Four 12 s clips at the corners of the grid, features45, Flat, 4 s windows."""
    root = tmp_path_factory.mktemp("mood")
    corners = [(False, 70, -35), (False, 150, -15), (True, 70, -35), (True, 150, -15)]
    for i, (minor, bpm, level) in enumerate(corners):
        sf.write(root / f"m{i}.wav", clip(minor, bpm, level, seed=i), SR)
    lib = Library.create(root / "lib", window=4, hop=2)
    lib.add(sorted(root.glob("*.wav")), embedders=["features45"], progress=False, workers=1)
    lib.build_index("features45", "Flat")
    return lib


def _track(lib, i):
    return int(lib.tracks.loc[lib.tracks["uri"].str.endswith(f"m{i}.wav"), "track_id"].iloc[0])


def test_mood_is_stored_filterable_and_described(mood_library):
    lib = mood_library
    desc = lib.descriptors()
    assert {"valence", "arousal", "mood", "mood_confidence", "onset_rate", "centroid_hz"} <= set(desc.columns)
    per_track = desc.groupby(lib.segments["track_id"].to_numpy())["mood"].agg(lambda s: s.mode()[0])
    assert [per_track[_track(lib, i)] for i in range(4)] == ["calm", "happy", "sad", "dark"]
    hits = search(lib, Query.moment(_track(lib, 1), 0.0), k=50, filters={"mood": "calm"})
    assert len(hits) and set(desc.loc[hits["segment_id"], "mood"]) == {"calm"}
    same = search(lib, Query.moment(_track(lib, 1), 0.0), k=50, filters={"mood": " Calm"})  # as the user types it
    assert same["segment_id"].tolist() == hits["segment_id"].tolist()
    with pytest.raises(ParameterError, match="'elated' is not one of happy, calm, sad, dark"):  # not "no hits"
        search(lib, Query.moment(_track(lib, 1), 0.0), k=50, filters={"mood": ["calm", "elated"]})
    sure = search(lib, Query.moment(_track(lib, 1), 0.0), k=50,
                  filters={"arousal": {"op": "<", "value": "0.3"}})
    assert len(sure) and (desc.loc[sure["segment_id"], "arousal"] < 0.3).all()

    import re

    from audiorag.serve.contract import where_pattern
    pattern = where_pattern(lib.tracks, desc.reset_index(drop=True))       # the REST API's `where` takes it too
    assert re.match(pattern, "mood=calm") and re.match(pattern, "arousal<0.3") and not re.match(pattern, "arousal<x")

    d = describe_moment(lib, Query.moment(_track(lib, 2), 4.0))
    row = desc.iloc[d.query["segment_id"]]
    assert d.mood == row["mood"] == "sad" and d.valence == pytest.approx(row["valence"], abs=1e-4)
    assert any(s["field"] == "mood_confidence" and s["text"].startswith("Mood: sad") for s in d.statements)
    c = describe_moment(lib, Query.audio(str(lib.tracks.loc[lib.tracks["track_id"] == _track(lib, 0), "uri"].iloc[0]
                                              .removeprefix("file://"))))
    assert c.descriptors_from == "clip" and c.mood == "calm"


def test_recommend_infers_the_listeners_mood_and_says_so(mood_library, tmp_path):
    lib = mood_library
    calm = _track(lib, 0)
    out = recommend(lib, [f"{calm}@0", f"{calm}@4"], k=3, mood_weight=2.0)
    inferred = out.attrs["mood_inferred"]
    assert out.attrs["mood"] == inferred["mood"] == "calm" and inferred["likes"] == 2 and inferred["played"] == 0
    assert "contrib:mood" in out.columns
    dark = recommend(lib, [f"{calm}@0"], history=[_track(lib, 3)] * 1, k=3, mood="dark")
    assert dark.attrs["mood"] == "dark" and dark.attrs["mood_inferred"] is None
    quiet = recommend(lib, [f"{calm}@0"], k=3, infer_mood=False)
    assert quiet.attrs["mood"] is None and "contrib:mood" not in quiet.columns

    res = CliRunner().invoke(app, ["recommend", str(lib.path), "--liked", f"{calm}@0", "-k", "2"])
    assert res.exit_code == 0, res.output
    assert "mood calm (inferred from 1 liked moment(s) and 0 played track(s): valence" in res.output
    res = CliRunner().invoke(app, ["search", str(lib.path), "--track", str(calm), "--at", "0", "--where", "mood=sad",
                                   "-k", "3", "--json"])
    assert res.exit_code == 0, res.output
    hits = json.loads(res.output)
    hits = hits["hits"] if isinstance(hits, dict) else hits
    assert hits and {h["track_id"] for h in hits} == {_track(lib, 2)}


SONIC_PI = Path("/usr/share/sonic-pi/samples")


@pytest.mark.skipif(not SONIC_PI.exists(), reason="sonic-pi-samples not installed (apt-get install sonic-pi-samples)")
def test_ambient_samples_are_calmer_than_drum_loops():
    from audiorag.audio import load
    arousal = {}
    for prefix in ("ambi_", "loop_"):
        values = []
        for path in sorted(SONIC_PI.glob(f"{prefix}*.flac")):
            y, sr = load(path)
            values.append(estimate(describe(y, sr, [0.0], [len(y) / sr]))["arousal"][0])
        arousal[prefix] = float(np.mean(values))
    assert arousal["ambi_"] < arousal["loop_"] - 0.1, arousal
