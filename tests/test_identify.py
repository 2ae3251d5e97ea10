"""Identifying the exact moment of a degraded clip with landmark fingerprints (audiorag.identify).

Generated music that never repeats (``audiorag.evaluate.identify.music``) stands in for recordings:
every moment has one right answer. Clips are degraded the way the issue measures (noise, low-pass,
MP3, time stretch, speed change) and must be found at the right offset.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from audiorag import Library
from audiorag.cli import app
from audiorag.descriptors import landmarks
from audiorag.errors import AudioDecodeError, ParameterError
from audiorag.evaluate.identify import DEGRADATIONS, degrade, music, stretch_of
from audiorag.identify import identify
from audiorag.index import fingerprints

SR = 22050
runner = CliRunner()


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """Six 30 s tracks to index and two that stay out of the library."""
    root = tmp_path_factory.mktemp("identify")
    (root / "in").mkdir()
    for i in range(6):
        sf.write(root / "in" / f"m{i}.flac", music(30, SR, seed=i), SR)
    for i in (100, 101):
        sf.write(root / f"out{i}.wav", music(20, SR, seed=i), SR)
    return root


@pytest.fixture(scope="module")
def lib(audio):
    lib = Library.create(audio / "lib", window=5, hop=2.5)
    lib.add(audio / "in", embedders=["features45"], fingerprint=True, workers=1, progress=False)
    lib.build_index("features45", "Flat")
    return lib


def _clip(audio, track, at, seconds=10.0):
    y, sr = sf.read(audio / "in" / f"m{track}.flac", dtype="float32")
    return y[int(at * sr): int((at + seconds) * sr)]


@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_each_degradation_is_identified_at_the_right_offset_with_its_stretch(lib, audio, kind):
    for track, at in ((1, 7.3), (4, 16.85)):
        clip = degrade(_clip(audio, track, at), SR, kind, rng=np.random.default_rng(track))
        found = identify(lib, clip, sr=SR)
        assert len(found) == 1, (kind, track, found.attrs)
        hit = found.iloc[0]
        assert int(hit.track_id) == track and hit.uri.endswith(f"m{track}.flac")
        assert abs(hit.offset - at) <= 0.5, (kind, hit.offset, at)
        assert abs(hit.stretch / stretch_of(kind) - 1) <= 0.01, (kind, hit.stretch)
        assert hit.score >= 12 and 0.15 <= hit.confidence <= 1


def test_short_clips_and_array_spans_are_found_too(lib, audio):
    y, _ = sf.read(audio / "in" / "m2.flac", dtype="float32")
    found = identify(lib, y, sr=SR, start=12.0, end=15.0)  # 3 s
    assert (int(found.track_id.iloc[0]), round(float(found.offset.iloc[0]))) == (2, 12)
    found = identify(lib, str(audio / "in" / "m3.flac"), start=20.5, end=25.5)  # a file span, 5 s
    assert int(found.track_id.iloc[0]) == 3 and abs(found.offset.iloc[0] - 20.5) <= 0.5


def test_a_clip_of_an_unindexed_track_says_no_match(lib, audio):
    for name in ("out100.wav", "out101.wav"):
        for at in (0.0, 6.0):
            found = identify(lib, str(audio / name), start=at, end=at + 10)
            assert found.empty and list(found.columns) == ["track_id", "uri", "offset", "stretch", "score",
                                                           "confidence"]
            assert "no track aligns" in found.attrs["reason"]


def test_bad_input_gives_a_clear_result_or_error(lib, audio, tmp_path):
    silence = identify(lib, np.zeros(SR * 5, np.float32), sr=SR)
    assert silence.empty and "no landmarks" in silence.attrs["reason"]
    short = identify(lib, _clip(audio, 1, 3.0, seconds=0.5), sr=SR)
    assert short.empty and "at least 1 s" in short.attrs["reason"]
    noise = identify(lib, np.random.default_rng(0).standard_normal(SR * 10).astype(np.float32) * 0.3, sr=SR)
    assert noise.empty
    with pytest.raises(AudioDecodeError, match="non-finite"):
        identify(lib, np.full(SR, np.nan, np.float32), sr=SR)
    with pytest.raises(ParameterError, match="sr="):
        identify(lib, np.zeros(SR, np.float32))
    plain = Library.create(tmp_path / "plain")
    with pytest.raises(ParameterError, match="--fingerprint"):
        identify(plain, np.zeros(SR, np.float32), sr=SR)
    for args, expected in (([str(audio / "lib"), "--audio", str(tmp_path / "nope.wav")], "nope.wav"),
                           ([str(tmp_path / "plain"), "--audio", str(audio / "out100.wav")], "no fingerprints"),
                           ([str(audio / "lib"), "--audio", str(audio / "out100.wav"), "--start", "5", "--end", "2"],
                            "--end (2.0) must be after --start (5.0)")):
        r = runner.invoke(app, ["identify", *args])
        assert r.exit_code == 2 and expected in r.output and "Traceback" not in r.output, r.output
    sf.write(tmp_path / "silence.wav", np.zeros(SR * 4, np.float32), SR)
    r = runner.invoke(app, ["identify", str(audio / "lib"), "--audio", str(tmp_path / "silence.wav")])
    assert r.exit_code == 0 and r.output.startswith("no match: the clip has no landmarks"), r.output


def test_cli_identify_json_and_search_from_the_identified_moment(lib, audio, tmp_path):
    sf.write(tmp_path / "rec.wav", degrade(_clip(audio, 5, 11.0), SR, "noise-10dB"), SR)
    r = runner.invoke(app, ["identify", str(audio / "lib"), "--audio", str(tmp_path / "rec.wav"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["matches"][0]["track_id"] == 5 and abs(out["matches"][0]["offset"] - 11.0) <= 0.5
    r = runner.invoke(app, ["search", str(audio / "lib"), "--audio", str(tmp_path / "rec.wav"), "--identify",
                            "-k", "3", "--json"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.output[r.output.index("["):])
    assert hits[0]["track_id"] == 5 and hits[0]["start"] <= 16.0 <= hits[0]["end"]  # the clip's middle
    r = runner.invoke(app, ["search", str(audio / "lib"), "--audio", str(audio / "out100.wav"), "--identify"])
    assert r.exit_code == 2 and "no match" in r.output


def test_eval_protocol_identify_writes_a_record(lib, tmp_path):
    r = runner.invoke(app, ["eval", str(lib.path), "--protocol", "identify", "--queries", "2",
                            "--out", str(tmp_path / "ev"), "--json"])
    assert r.exit_code == 0, r.output
    record = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert record["kind"] == "identify" and record["metrics"]["clean/10s/moment@1"] == 1.0
    assert {"stretch+5%/3s/track@1", "noise-0dB/5s/latency_p50_ms"} <= set(record["metrics"])


def test_fingerprints_follow_add_remove_replace_and_backfill(audio, tmp_path):
    files = sorted((audio / "in").glob("*.flac"))
    lib = Library.create(tmp_path / "lib", window=5, hop=2.5)
    lib.add(files[:2], embedders=["features45"], workers=1, progress=False)  # no fingerprints yet
    assert not (lib.data / "fingerprints").exists()
    lib.add(files[2:4], fingerprint=True, workers=1, progress=False)  # the first two are backfilled
    lib.add(files[4:], workers=1, progress=False)  # later adds follow without being asked
    post = fingerprints.Postings(lib.data / "fingerprints")
    assert sorted(post.tracks[:, 0].tolist()) == list(range(6)) and post.meta["n_tracks"] == 6
    for track in (0, 3, 5):
        assert int(identify(lib, _clip(audio, track, 9.0), sr=SR).track_id.iloc[0]) == track
    lib.remove([3])
    assert identify(lib, _clip(audio, 3, 9.0), sr=SR).empty
    assert int(identify(lib, _clip(audio, 5, 9.0), sr=SR).track_id.iloc[0]) == 5
    lib.replace(5, audio / "out100.wav")  # same track id, new audio
    assert identify(lib, _clip(audio, 5, 9.0), sr=SR).empty
    y, _ = sf.read(audio / "out100.wav", dtype="float32")
    assert int(identify(lib, y[SR * 4: SR * 14], sr=SR).track_id.iloc[0]) == 5
    assert lib.check() == []


def test_a_library_of_fingerprints_alone_skips_descriptors_until_its_first_embedding(audio, lib, tmp_path):
    """Identification ingest decodes and fingerprints only; the first embedding describes every track, as a
    library built with the embedder from the start has them."""
    from audiorag.library import descriptors
    prints = Library.create(tmp_path / "prints", window=5, hop=2.5)
    prints.add(audio / "in", fingerprint=True, workers=1, progress=False)
    assert len(descriptors.missing_tracks(prints)) == 6 and not (prints.data / "descriptors").exists()
    assert int(identify(prints, _clip(audio, 4, 12.0), sr=SR).track_id.iloc[0]) == 4
    prints.embed("features45", workers=1, progress=False)
    assert descriptors.missing_tracks(prints).empty
    pd.testing.assert_frame_equal(prints.descriptors(), lib.descriptors())
    assert prints.check() == []


def test_postings_are_sorted_arrays_that_merge_and_drop_tracks(tmp_path):
    d = tmp_path / "fp"
    fingerprints.create(d)
    fingerprints.write_part(d, "a", [10, 11], [(np.array([5, 5, 7], np.uint32), np.array([1, 2, 3], np.uint32), 50),
                                               (np.array([5], np.uint32), np.array([4], np.uint32), 20)])
    fingerprints.consolidate(d)
    fingerprints.write_part(d, "b", [12], [(np.array([7, 1], np.uint32), np.array([9, 0], np.uint32), 30)])
    assert fingerprints.pending(d) and fingerprints.track_ids(d) == [10, 11, 12]
    fingerprints.consolidate(d)
    post = fingerprints.Postings(d)
    assert post.postings.dtype == np.uint32 and isinstance(post.postings, np.memmap)
    which, frames = post.lookup(np.array([5, 7], np.uint32))
    tracks, local = post.locate(frames)
    assert sorted(zip(which.tolist(), tracks.tolist(), local.tolist())) == [
        (0, 10, 1), (0, 10, 2), (0, 11, 4), (1, 10, 3), (1, 12, 9)]
    assert fingerprints.remove(d, [10]) == 1
    post = fingerprints.Postings(d)
    which, frames = post.lookup(np.array([5, 7, 1], np.uint32))
    assert sorted(zip(which.tolist(), post.locate(frames)[0].tolist())) == [(0, 11), (1, 12), (2, 12)]
    assert os.path.getsize(d / "postings.npy") - 128 == 4 * 3  # 4 bytes per posting


def test_landmark_hashes_survive_speed_and_tempo_changes():
    y = music(20, landmarks.SR, seed=3)
    h, f = landmarks.fingerprint(y, landmarks.SR)

    def aligned(other, stretch=1.0):
        """The share of ``other``'s hashes found in ``y``'s at the frame the stretch maps them to (up to a
        constant shift of a few frames: the phase vocoder delays the audio a little)."""
        oh, of = landmarks.fingerprint(other, landmarks.SR)
        delta = of[:, None] / stretch - f[None]
        return max(((oh[:, None] == h[None]) & (np.abs(delta - shift) <= 1.5)).any(axis=1).mean()
                   for shift in range(-8, 9))

    chance = aligned(music(20, landmarks.SR, seed=4))
    assert chance < 0.01  # another piece: its hashes (nearly) never land at an aligned frame
    assert aligned(degrade(y, landmarks.SR, "speed+3%"), 1 / 1.03) > max(10 * chance, 0.1)  # bands shift together
    assert aligned(degrade(y, landmarks.SR, "stretch+5%"), 1.05) > max(10 * chance, 0.02)  # time ratios hold
    assert 25 <= len(h) / 20 <= 80  # hashes per second: what keeps the postings under 1 MB per hour


def test_a_build_killed_at_any_commit_resumes_to_the_same_fingerprints(audio, tmp_path):
    """Kill ``add --fingerprint`` (as kill -9) at several file-system changes; the re-run must give
    postings equal to an uninterrupted build's, and ``check`` must find nothing."""
    files = [str(p) for p in sorted((audio / "in").glob("*.flac"))[:3]]
    script = textwrap.dedent(f"""
        import sys
        from audiorag import Library, io
        lib = Library.create(sys.argv[1], window=5, hop=2.5, exist_ok=True)
        lib.add({files!r}, fingerprint=True, workers=1, progress=False, batch_tracks=1)
        print(io.fault_count())
    """)

    def build(path, fault_at=None):
        env = {**os.environ, "AUDIORAG_FAULT_AT": str(fault_at or 10 ** 9), "AUDIORAG_FAULT": "kill"}
        return subprocess.run([sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True,
                              timeout=300)

    def state(path):
        lib = Library.open(path)
        post = fingerprints.Postings(lib.data / "fingerprints")
        return lib.tracks["track_id"].tolist(), post.tracks.tolist(), np.asarray(post.postings).tobytes(), lib.check()

    clean = build(tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr
    expected = state(tmp_path / "clean")
    n = int(clean.stdout.split()[-1])
    for at in (n // 3, 2 * n // 3):
        path = tmp_path / f"killed-{at}"
        assert build(path, at).returncode == 137
        assert build(path).returncode == 0
        assert state(path) == expected, at
        shutil.rmtree(path)
