import numpy as np
import pytest
import soundfile as sf

from audiorag.audio import info, load, load_with_hash, normalise, valid_audio
from audiorag.errors import AudioDecodeError, ParameterError
from conftest import SR, write_tone


@pytest.mark.parametrize("fmt,ext,exact", [("WAV", "wav", True), ("FLAC", "flac", True),
                                           ("OGG", "ogg", False), ("MP3", "mp3", False)])
def test_decodes_each_format(tmp_path, fmt, ext, exact):
    path = tmp_path / f"tone.{ext}"
    ref = write_tone(path, seconds=2.0, format=fmt)
    y, sr = load(path)
    assert sr == SR and y.dtype == np.float32
    if exact:
        assert len(y) == len(ref)
        np.testing.assert_allclose(y, ref, atol=1e-4)  # 16-bit quantisation
    else:  # lossy codecs: length within encoder padding, spectrum peak at 440 Hz
        assert abs(len(y) - len(ref)) < 0.1 * SR
        spectrum = np.abs(np.fft.rfft(y[: SR]))
        assert abs(np.argmax(spectrum) * SR / SR - 440) < 2


def test_stereo_mixdown_resample_and_span(tmp_path):
    path = tmp_path / "st.wav"
    t = np.arange(3 * 44100) / 44100
    left, right = np.sin(2 * np.pi * 300 * t), np.zeros_like(t)
    sf.write(path, np.stack([left, right], 1).astype(np.float32), 44100, subtype="FLOAT")
    y, sr = load(path, sr=22050, offset=1.0, duration=1.5)
    assert sr == 22050 and len(y) == int(1.5 * 22050)
    assert np.abs(y).max() == pytest.approx(0.5, abs=0.01)  # mono = mean of channels
    stereo, _ = load(path, mono=False)
    assert stereo.shape == (2, 3 * 44100)
    full, _ = load(path, offset=1.0, duration=1.5)
    np.testing.assert_allclose(full, (left[44100:44100 + 66150] / 2).astype(np.float32), atol=1e-6)


def test_normalisation():
    y = np.array([0.1, -0.2, 0.05], dtype=np.float32)
    assert np.abs(normalise(y, "peak")).max() == pytest.approx(0.99)
    rms = np.sqrt(np.mean(normalise(y, "rms", target_db=-20) ** 2))
    assert 20 * np.log10(rms) == pytest.approx(-20, abs=1e-4)
    with pytest.raises(ParameterError):
        normalise(y, "lufs")


def test_truncated_files_are_rejected_with_reason(tmp_path):
    for fmt, ext in [("WAV", "wav"), ("FLAC", "flac"), ("MP3", "mp3")]:
        good = tmp_path / f"good.{ext}"
        write_tone(good, seconds=3.0, format=fmt)
        data = good.read_bytes()
        bad = tmp_path / f"cut.{ext}"
        bad.write_bytes(data[: len(data) // 2])
        with pytest.raises(AudioDecodeError) as err:
            load(bad)
        assert err.value.item == str(bad)
        assert "truncated" in err.value.reason or "lost sync" in err.value.reason


def test_zero_length_and_garbage(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty file"):
        load_with_hash(empty)
    with pytest.raises(AudioDecodeError, match="unreadable"):
        load(empty)
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    with pytest.raises(AudioDecodeError, match=r"notes\.wav: unreadable audio"):
        load(text)
    with pytest.raises(AudioDecodeError):
        info(text)
    no_samples = tmp_path / "nosamples.wav"
    sf.write(no_samples, np.zeros(0, np.float32), SR)
    with pytest.raises(AudioDecodeError, match="empty audio"):
        load(no_samples)


def test_wrong_extension_is_decoded_by_content(tmp_path):
    path = tmp_path / "really_flac.wav"
    ref = write_tone(path, seconds=1.0, format="FLAC")
    y, _ = load(path)
    np.testing.assert_allclose(y, ref, atol=1e-4)


def test_nan_and_bad_arrays(tmp_path):
    path = tmp_path / "nan.wav"
    y = np.zeros(1000, np.float32)
    y[10] = np.nan
    sf.write(path, y, SR, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match="non-finite"):
        load(path)
    with pytest.raises(AudioDecodeError, match="floating-point"):
        valid_audio(np.zeros(10, dtype=np.int16))
    with pytest.raises(AudioDecodeError, match="zero channels"):
        valid_audio(np.zeros((0, 10), dtype=np.float32))
    with pytest.raises(AudioDecodeError, match="shape"):
        valid_audio(np.zeros((1, 2, 3), dtype=np.float32))


def test_hash_is_content_not_name(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    write_tone(a)
    b.write_bytes(a.read_bytes())
    assert load_with_hash(a)[2] == load_with_hash(b)[2]
    write_tone(b, freq=441)
    assert load_with_hash(a)[2] != load_with_hash(b)[2]
