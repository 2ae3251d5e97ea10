import numpy as np
import pytest

from audiorag.datasets.synthetic import plan, render_track
from audiorag.embedders import Embedder, get_embedder, list_embedders
from audiorag.embedders.features import FEATURE_NAMES
from audiorag.embedders.validate import validate
from audiorag.errors import ParameterError, UnknownEmbedderError
from audiorag.segment import Segmentation

#: hub models have no weights here; tests/test_hub_models.py and tests/test_text_music_models.py validate them
#: with tiny local models
OFFLINE = [n for n in list_embedders() if n not in ("clap", "mert", "wav2vec2", "hubert", "clamp3", "ttmr")]
#: the pretrained models take tens of seconds each on 2 cores: the slow lane
VALIDATED = [n if n == "features45" else pytest.param(n, marks=pytest.mark.slow) for n in OFFLINE]


@pytest.mark.parametrize("name", VALIDATED)
def test_validator_white_noise_odd_lengths(name):
    """hear-validator style, every embedder with weights here: shape, float32, finite, normalisable,
    deterministic, and batching does not change a window's vector."""
    report = validate(get_embedder(name))
    assert report.ok, report.summary()
    assert len(report.checks) == 5 * 5 + 2


def test_validator_catches_a_broken_embedder():
    class Flaky(Embedder):
        name, sample_rate, dim = "flaky", 8000, 3
        calls = 0

        def embed(self, batch):
            Flaky.calls += 1
            return np.full((len(batch), 3), Flaky.calls, np.float32)   # not deterministic, accepts NaN

    report = validate(Flaky(), lengths=(1.0,))
    failed = {c.name for c in report.failures}
    assert failed == {"deterministic 1s", "NaN input rejected", "batch == one by one 1s"}
    assert "FAILED" in report.summary()


def test_registry_errors():
    with pytest.raises(UnknownEmbedderError, match="features45"):
        get_embedder("nope")
    with pytest.raises(ParameterError):
        get_embedder("features45", n_fft=0)
    assert get_embedder("features45").key != get_embedder("features45", n_mels=64).key
    assert len(FEATURE_NAMES) == 45


@pytest.mark.slow
def test_pooled_equals_per_window_away_from_edges():
    """Frame features computed once per track and pooled == features of each window alone.

    Stated tolerance: frames whose STFT frame straddles a window edge (2 of ~431 per side) see
    different context, so every non-tempo dimension agrees within 0.075 of that feature's
    frame-level standard deviation (median error < 0.01); the tempo estimate, whose 8 s
    autocorrelation window sees outside the window in the pooled version, is identical in at
    least 75 % of interior windows. Windows touching the track's ends are left out.
    """
    e = get_embedder("features45")
    starts, ends = Segmentation(10, 2).windows(30.0)
    errors, same_tempo = [], []
    for spec in plan(16, 0)[:8]:
        y = render_track(spec)
        pooled = e.embed_track(y, starts, ends)
        direct = np.vstack([e.embed(y[int(a * e.sample_rate):int(b * e.sample_rate)][None])
                            for a, b in zip(starts, ends)])
        frames, _ = e.frame_features(y)
        fs = frames.std(axis=0)
        scale = np.concatenate([fs[:13], fs[:13], fs[13:25], fs[25:28], fs[28:30], fs[29:30]])
        errors.append(np.abs(pooled - direct)[1:-1, :44] / scale)
        same_tempo += list(pooled[1:-1, 44] == direct[1:-1, 44])
    errors = np.concatenate(errors)
    assert errors.max() < 0.075
    assert np.median(errors) < 0.01
    assert np.mean(same_tempo) >= 0.75


def test_features_measure_what_they_say():
    e = get_embedder("features45")
    sr = e.sample_rate
    t = np.arange(4 * sr) / sr
    low = e.embed((0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None])[0]
    high = e.embed((0.5 * np.sin(2 * np.pi * 3520 * t)).astype(np.float32)[None])[0]
    assert high[38] > 10 * low[38]                      # spectral centroid
    assert np.argmax(low[26:38]) == 9                   # chroma: 220 Hz is an A
    assert low[42] == pytest.approx(0.5 / np.sqrt(2), rel=0.05)  # RMS of a sine
    clicks = np.zeros(8 * sr, np.float32)
    clicks[:: int(sr * 60 / 120)] = 1.0                 # 120 BPM click track
    assert e.embed(clicks[None])[0, 44] == pytest.approx(120, rel=0.03)


def test_frame_mfcc_and_chroma_match_librosa():
    """features45's own framing and sparse mel product give librosa's MFCCs and STFT chroma."""
    import librosa
    e = get_embedder("features45")
    y = render_track(plan(8, 0)[3])
    frames, _ = e.frame_features(y)
    mel = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=2048, hop_length=512, n_mels=128, pad_mode="constant")
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=None), n_mfcc=13).T
    np.testing.assert_allclose(frames[:, :13], mfcc, atol=1e-3 * np.abs(mfcc).max())
    chroma = librosa.feature.chroma_stft(y=y, sr=22050, n_fft=2048, hop_length=512, tuning=0.0, pad_mode="constant").T
    np.testing.assert_allclose(frames[:, 13:25], chroma, atol=1e-4)


def test_shared_spectral_shape_and_zcr_match_librosa():
    import librosa

    from audiorag.embedders.features import spectral_shape, zero_crossing_rate
    y = render_track(plan(8, 0)[3])
    mag = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
    freqs = librosa.fft_frequencies(sr=22050, n_fft=2048)
    centroid, rolloff, bandwidth = spectral_shape(mag, freqs)
    np.testing.assert_allclose(centroid, librosa.feature.spectral_centroid(S=mag, freq=freqs)[0], rtol=1e-5)
    np.testing.assert_array_equal(rolloff, librosa.feature.spectral_rolloff(S=mag, freq=freqs)[0])
    np.testing.assert_allclose(bandwidth, librosa.feature.spectral_bandwidth(S=mag, freq=freqs)[0], rtol=1e-5)
    zcr = zero_crossing_rate(y, 2048, 512, mag.shape[1])
    np.testing.assert_array_equal(zcr, librosa.feature.zero_crossing_rate(y, frame_length=2048, hop_length=512)[0])
