"""Loudness levelling (ITU-R BS.1770) and noise reduction of tracks and query clips: ``build --loudness LUFS
[--denoise]`` states them in library.json, and a query clip is conditioned like the library's tracks."""

import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from audiorag import Library
from audiorag.cli import app
from audiorag.descriptors.conditioning import Conditioning, denoise, integrated_loudness, level
from audiorag.errors import IncompatibleLibraryError, ParameterError
from audiorag.search import Query, search

SR = 22050


def _music(seed: int, seconds: float = 12.0) -> np.ndarray:
    """A few notes over a noise bed with a spectral envelope of its own: every seed sounds different."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    spec = np.fft.rfft(rng.standard_normal(n))
    spec *= np.interp(np.arange(len(spec)), np.linspace(0, len(spec), 12), rng.uniform(0, 1, 12)) ** 2
    y = np.fft.irfft(spec, n)
    y = 0.3 * y / np.abs(y).max()
    for k, f in enumerate(rng.uniform(110, 1500, 6)):
        on = (t >= k * seconds / 6) & (t < (k + 1) * seconds / 6)
        y += on * 0.5 * np.sin(2 * np.pi * f * t) * np.exp(-3 * (t - k * seconds / 6) * on)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


@pytest.mark.parametrize("gain_db", [-40.0, -30.0, -6.0, 0.0])
def test_levelling_brings_any_gain_to_the_target_loudness(gain_db):
    y = _music(1) * np.float32(10 ** (gain_db / 20))
    assert integrated_loudness(level(y, SR, -23.0), SR) == pytest.approx(-23.0, abs=0.05)
    assert level(np.zeros(SR, np.float32), SR, -23.0).max() == 0  # silence stays silence


def test_a_clip_shorter_than_one_bs1770_block_is_measured_on_its_content():
    y = _music(2, seconds=1.0)
    short = y[: int(0.2 * SR)]
    assert np.isfinite(integrated_loudness(short, SR))
    assert integrated_loudness(level(short, SR, -20.0), SR) == pytest.approx(-20.0, abs=0.1)


@pytest.mark.parametrize("sr", [16000, 22050, 44100])
def test_spectral_gating_removes_steady_noise_between_notes_and_keeps_the_notes(sr):
    t = np.arange(12 * sr) / sr
    notes = np.zeros(len(t), bool)
    clean = np.zeros(len(t))
    for k, f in enumerate(np.random.default_rng(3).uniform(110, 1500, 6)):
        on = (t >= 2 * k) & (t < 2 * k + 1)
        notes |= on
        clean += on * 0.5 * np.sin(2 * np.pi * f * t)
    noisy = (clean + np.random.default_rng(0).standard_normal(len(t)) * 0.05).astype(np.float32)
    out = denoise(noisy, sr)

    def db(x):
        return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)))
    assert db(out[~notes]) < db(noisy[~notes]) - 15  # the noise alone: at least 15 dB down
    assert db(out[notes]) > db(noisy[notes]) - 1.5  # the notes: within 1.5 dB
    assert db(out - clean) < db(noisy - clean) - 6  # closer to the clean signal


def test_conditioning_is_validated_and_stored_in_the_library(tmp_path):
    with pytest.raises(ParameterError, match="loudness must be a number of LUFS"):
        Conditioning(loudness=3.0)
    lib = Library.create(tmp_path / "lib", window=2, hop=1, conditioning=Conditioning(loudness=-23, denoise=True))
    assert json.loads((tmp_path / "lib" / "library.json").read_text())["conditioning"] == \
        {"loudness": -23.0, "denoise": True}
    assert Library.open(lib.path).conditioning == Conditioning(-23.0, True)
    assert Library.create(tmp_path / "lib", window=2, hop=1, exist_ok=True).conditioning == Conditioning(-23.0, True)
    with pytest.raises(IncompatibleLibraryError, match="made with conditioning"):
        Library.create(tmp_path / "lib", window=2, hop=1, exist_ok=True, conditioning=Conditioning(loudness=-14))
    assert Library.create(tmp_path / "plain").conditioning.is_identity


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Five distinct tracks and a copy of the first one 30 dB quieter."""
    root = tmp_path_factory.mktemp("levels")
    for i in range(5):
        sf.write(root / f"t{i}.wav", _music(10 + i), SR)
    sf.write(root / "t0-quiet.wav", _music(10) * np.float32(10 ** (-30 / 20)), SR)
    return root


def _library(root, path, conditioning):
    lib = Library.create(path, window=4, hop=2, conditioning=conditioning)
    lib.add(sorted(root.glob("*.wav")), embedders=["features45"], workers=1, progress=False)
    lib.build_index("features45", "Flat")
    return lib


def test_with_levelling_a_30_db_quieter_copy_and_its_original_find_each_other_first(pair, tmp_path):
    levelled = _library(pair, tmp_path / "levelled", Conditioning(loudness=-23))
    plain = _library(pair, tmp_path / "plain", None)
    uris = {u.rsplit("/", 1)[1]: t for u, t in zip(levelled.tracks["uri"], levelled.tracks["track_id"])}
    quiet, original = uris["t0-quiet.wav"], uris["t0.wav"]
    for a, b in ((quiet, original), (original, quiet)):
        hit = search(levelled, Query.moment(a, at=4.0), k=1, by="track", exclude_same_track=True)
        assert hit["track_id"].iloc[0] == b and hit["score"].iloc[0] > 0.99  # 16-bit: the copy lost 5 bits
    # without levelling the copy is further from its original (features45 keeps the level in its RMS/MFCC-0)
    unlevelled = search(plain, Query.moment(quiet, at=4.0), k=5, by="track", exclude_same_track=True)
    assert unlevelled.set_index("track_id")["score"].get(original, -1.0) < 0.99

    # a query clip is levelled as the library's tracks were: the quiet array finds the original's moment
    y = _music(10)[4 * SR: 8 * SR] * np.float32(10 ** (-30 / 20))
    hits = search(levelled, Query.audio(y, sr=SR), k=1)
    assert hits["track_id"].iloc[0] in (original, quiet) and hits["start"].iloc[0] == 4.0
    assert hits["score"].iloc[0] > 0.95  # levelled on its own 4 s, the track on its 12 s: gains differ a little

    # describe measures a clip as the library's tracks were conditioned: the quiet copy's loudness is the original's
    from audiorag.describe import describe
    quiet_clip = describe(levelled, Query.audio(str(pair / "t0-quiet.wav"), start=4, end=8), k=3)
    loud_clip = describe(levelled, Query.audio(str(pair / "t0.wav"), start=4, end=8), k=3)
    assert quiet_clip.loudness_db == pytest.approx(loud_clip.loudness_db, abs=1.0)
    assert describe(plain, Query.audio(str(pair / "t0-quiet.wav"), start=4, end=8), k=3).loudness_db \
        < loud_clip.loudness_db - 20


def test_build_options_are_checked_and_an_existing_library_keeps_its_conditioning(pair, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["build", str(tmp_path / "lib"), "--dataset", f"folder:{pair}", "--loudness", "5"])
    assert r.exit_code == 2 and "--loudness must be <= 0.0 (LUFS), got 5.0" in r.output
    assert not (tmp_path / "lib").exists()
    r = runner.invoke(app, ["build", str(tmp_path / "lib"), "--dataset", f"folder:{pair}", "--window", "4",
                            "--hop", "2", "--loudness", "-23", "--workers", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert Library.open(tmp_path / "lib").info()["conditioning"] == {"loudness": -23.0, "denoise": False}
    r = runner.invoke(app, ["build", str(tmp_path / "lib"), "--dataset", f"folder:{pair}", "--denoise"])
    assert r.exit_code == 2 and "made with conditioning" in r.output
