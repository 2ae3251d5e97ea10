"""Musical descriptors: key accuracy on generated triad progressions (stated), tempo, loudness, harmony;
stored at build time as segment columns usable by search filters; backfilled into older libraries."""

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from audiorag import Library, Query
from audiorag.descriptors.tonal import PITCH_CLASSES, describe, estimate_key, harmonic_similarity, key_name, parse_key
from audiorag.errors import ParameterError
from audiorag.search import search

SR = 22050
MAJOR = [(0, 4, 7), (5, 9, 12), (7, 11, 14), (0, 4, 7)]     # I  IV V I
MINOR = [(0, 3, 7), (5, 8, 12), (7, 11, 14), (0, 3, 7)]     # i  iv V i (harmonic minor)


def _note(freq, seconds):
    t = np.arange(int(seconds * SR)) / SR
    y = sum(k ** -1.0 * np.sin(2 * np.pi * freq * k * t) for k in range(1, 7))  # six harmonics
    return y * np.minimum(t / 0.01, 1) * np.exp(-t / 1.5)


def progression(tonic: int, minor: bool, *, bar: float = 1.0, repeats: int = 2, chords=None) -> np.ndarray:
    """Triads (+ the root an octave below) of a I–IV–V–I (or i–iv–V–i) progression in ``tonic``."""
    bars = []
    for _ in range(repeats):
        for chord in chords or (MINOR if minor else MAJOR):
            root = 48 + tonic
            notes = [root + i for i in chord] + [root - 12 + chord[0]]
            bars.append(sum(_note(440 * 2 ** ((m - 69) / 12), bar) for m in notes))
    y = np.concatenate(bars)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


@pytest.mark.parametrize("profiles, floor", [("temperley", 1.0), ("krumhansl", 0.85)])
def test_key_accuracy_on_triad_progressions(profiles, floor):
    # measured: temperley 24/24 = 1.00, krumhansl 21/24 = 0.875 (it takes C, C#, D# major for their dominant)
    right = 0
    for tonic in range(12):
        for minor in (False, True):
            d = describe(progression(tonic, minor), SR, [0.0], [8.0], profiles=profiles)
            right += (int(d["tonic"][0]), int(d["mode"][0])) == (tonic, int(minor))
            assert 0 < d["key_confidence"][0] <= 1
    assert right / 24 >= floor


@pytest.mark.parametrize("bpm", [72, 90, 128, 174])
def test_tempo_of_click_tracks(bpm):
    y = np.zeros(SR * 10, np.float32)
    click = np.random.default_rng(0).standard_normal(200).astype(np.float32) * 0.5
    for t in np.arange(0, 9.9, 60 / bpm):
        y[int(t * SR):int(t * SR) + 200] += click
    tempo = describe(y, SR, [0.0, 2.0], [8.0, 10.0])["tempo"]
    assert np.all(np.abs(tempo / bpm - 1) < 0.03), tempo


def test_loudness_and_silence():
    y = 0.5 * np.sin(2 * np.pi * 440 * np.arange(SR * 4) / SR).astype(np.float32)
    y[2 * SR:] = 0
    d = describe(y, SR, [0.0, 2.0], [2.0, 4.0])
    assert d["loudness_db"][0] == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.01)   # −9.03 dBFS
    assert d["loudness_db"][1] < -60                       # silence (the resampler rings a little into it)


def test_harmony_is_key_relative_and_tells_progressions_apart():
    h_c = describe(progression(0, False, repeats=1), SR, [0.0], [4.0])["harmony"][0]
    h_e = describe(progression(4, False, repeats=1), SR, [0.0], [4.0])["harmony"][0]    # same, in E
    other = [(0, 4, 7), (9, 12, 16), (2, 5, 9), (7, 11, 14)]                             # I vi ii V
    h_o = describe(progression(0, False, repeats=1, chords=other), SR, [0.0], [4.0])["harmony"][0]
    same, different = harmonic_similarity(h_c, h_e[None])[0], harmonic_similarity(h_c, h_o[None])[0]
    assert same > 0.95 and different < same - 0.05, (same, different)
    assert harmonic_similarity(h_c, np.roll(h_c.reshape(4, 12), 1, axis=0).ravel()[None])[0] == pytest.approx(1)


def test_key_names_round_trip_and_errors():
    for tonic in range(12):
        for mode in (0, 1):
            assert parse_key(key_name(tonic, mode)) == (tonic, mode)
    assert parse_key("Eb minor") == (PITCH_CLASSES.index("D#"), 1) and parse_key("Am") == (9, 1)
    with pytest.raises(ParameterError, match="not a key"):
        parse_key("H dur")
    with pytest.raises(ParameterError, match=r"\[n, 12\]"):
        estimate_key(np.ones((2, 11)))


@pytest.fixture(scope="module")
def tonal_library(tmp_path_factory):
    """Six 12 s files with known keys and tempi (a click on every beat), features45, Flat."""
    root = tmp_path_factory.mktemp("tonal")
    keys = [(9, True), (0, False), (7, False), (2, True), (9, True), (5, False)]
    for i, (tonic, minor) in enumerate(keys):
        y = progression(tonic, minor, bar=1.5, repeats=2)
        beat = 60 / (80 + 20 * i)                       # 80, 100, ..., 180 BPM
        for t in np.arange(0, len(y) / SR - 0.1, beat):
            y[int(t * SR):int(t * SR) + 150] += 0.2 * np.random.default_rng(i).standard_normal(150)
        sf.write(root / f"t{i}.wav", y, SR)
    lib = Library.create(root / "lib", window=4, hop=2)
    lib.add(sorted(root.glob("*.wav")), embedders=["features45"], progress=False, workers=1)
    lib.build_index("features45", "Flat")
    return lib, keys


def test_descriptors_are_stored_at_build_and_filter_search(tonal_library):
    lib, keys = tonal_library
    desc = lib.descriptors()
    assert len(desc) == len(lib.segments) and desc["key"].notna().all()
    track_of = dict(zip(lib.tracks["track_id"], lib.tracks["uri"].str.extract(r"t(\d)\.wav")[0].astype(int)))
    per_track = desc.groupby(lib.segments["track_id"].to_numpy())["key"].agg(lambda s: s.mode()[0])
    expected = {t: key_name(keys[track_of[t]][0], int(keys[track_of[t]][1])) for t in per_track.index}
    assert (per_track == pd.Series(expected)).mean() >= 0.8
    assert lib.descriptors(harmony=True).shape == (len(lib.segments), 48)

    hits = search(lib, Query.moment(0, 0.0), k=50, filters={"key": "a min"})   # any spelling of A minor
    assert len(hits) and set(desc.loc[hits["segment_id"], "key"]) == {"A minor"}
    fast = search(lib, Query.moment(0, 0.0), k=50, filters={"tempo": {"op": ">=", "value": "140"}})
    assert len(fast) and (desc.loc[fast["segment_id"], "tempo"] >= 140).all()
    with pytest.raises(ParameterError, match="holds numbers"):
        search(lib, Query.moment(0, 0.0), k=5, filters={"tempo": {"op": ">=", "value": "fast"}})


def test_a_library_without_descriptors_gets_them_on_the_next_add(tonal_library, tmp_path):
    import shutil

    from audiorag import io
    lib, _ = tonal_library
    old = tmp_path / "old"
    shutil.copytree(lib.path, old)
    copy = Library.open(old)
    with copy.store.transaction():      # a library made before descriptors existed
        io.remove(copy.data / "descriptors")
    copy = Library.open(old)
    assert copy.descriptors()["key"].isna().all()
    files = sorted(lib.path.parent.glob("*.wav"))
    report = copy.add(files, progress=False, workers=1)
    assert report.added == 0 and report.duplicates == len(files)
    assert copy.descriptors().equals(lib.descriptors()) and copy.check() == []


def test_mirex_score_weights():
    from audiorag.descriptors.tonal import mirex_score
    # reference A minor (9, 1): A minor, D minor (fifth below), E minor, C major (relative), A major (parallel)
    est_t, est_m = np.array([9, 2, 4, 0, 9, 0, 4]), np.array([1, 1, 1, 0, 0, 1, 0])
    assert mirex_score(est_t, est_m, 9, 1).tolist() == [1.0, 0.5, 0.5, 0.3, 0.2, 0.0, 0.0]
    assert mirex_score(21, 0, 9, 0) == 1.0                       # pitch classes modulo 12
