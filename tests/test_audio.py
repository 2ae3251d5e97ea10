import numpy as np
import pytest
import soundfile as sf
from conftest import SR, write_tone

from audiorag.audio import info, load, load_with_hash, normalise, valid_audio
from audiorag.errors import AudioDecodeError, ParameterError


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


# what libsndfile 1.2.2 does with a cut file, and what load() makes of it:
#   WAV/AIFF/AU  header frames shrink to what is there; extra_info says "data : N (should be M)"
#   FLAC         header frames stay; reading fails with "flac decoder lost sync"
#   OGG (Vorbis, Opus)  frames come from the last complete page, so the cut is silent: the
#                stream lacks its end-of-stream page (or its last page is incomplete)
#   MP3          frames from the Xing/LAME header stay; fewer decode
@pytest.mark.parametrize("fmt,subtype,ext,reason", [
    ("WAV", "PCM_16", "wav", "header declares"), ("AIFF", "PCM_16", "aiff", "header declares"),
    ("AU", "PCM_16", "au", "header declares"), ("FLAC", "PCM_16", "flac", "lost sync"),
    ("OGG", "VORBIS", "ogg", "Ogg"), ("OGG", "OPUS", "opus", "Ogg"), ("MP3", "MPEG_LAYER_III", "mp3", "only")])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_files_are_rejected_with_reason(tmp_path, rng, fmt, subtype, ext, reason, keep):
    sr = 48000 if subtype == "OPUS" else SR
    y = (0.3 * np.sin(2 * np.pi * 440 * np.arange(4 * sr) / sr) + 0.05 * rng.standard_normal(4 * sr)).astype("float32")
    good = tmp_path / f"good.{ext}"
    sf.write(good, y, sr, format=fmt, subtype=subtype)
    assert abs(len(load(good)[0]) - len(y)) < 0.05 * sr  # the whole file decodes
    data = good.read_bytes()
    bad = tmp_path / f"cut.{ext}"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(AudioDecodeError) as err:
        load(bad)
    assert err.value.item == str(bad)
    assert "truncated" in err.value.reason and reason in err.value.reason, err.value.reason
    with pytest.raises(AudioDecodeError, match="truncated"):
        load_with_hash(bad)


def test_truncated_mp3_names_both_lengths(tmp_path):
    good = tmp_path / "good.mp3"
    write_tone(good, seconds=3.0, format="MP3")
    bad = tmp_path / "cut.mp3"
    bad.write_bytes(good.read_bytes()[:-len(good.read_bytes()) // 3])
    with pytest.raises(AudioDecodeError, match=r"promises 66150 frames, only \d+ decode"):
        load(bad)


def test_zero_channels_and_non_finite_samples(tmp_path):
    import struct
    path = tmp_path / "nochannels.wav"
    write_tone(path, seconds=0.5)
    data = bytearray(path.read_bytes())
    fmt = data.find(b"fmt ")
    data[fmt + 10:fmt + 12] = struct.pack("<H", 0)  # the channel count field
    path.write_bytes(bytes(data))
    with pytest.raises(AudioDecodeError, match="(?i)channel count is zero"):
        load(path)
    inf = tmp_path / "inf.wav"
    y = np.zeros((800, 2), np.float32)
    y[100:110, 1] = np.inf
    sf.write(inf, y, SR, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match="non-finite samples .*10 of 800 frames, the first at frame 100"):
        load(inf, mono=False)


def test_silence_is_audio(tmp_path):
    path = tmp_path / "silence.flac"
    sf.write(path, np.zeros(SR, np.float32), SR)
    for method in (None, "peak", "rms"):
        y, _ = load(path, normalize=method)
        assert len(y) == SR and not y.any()


def test_names_that_are_not_utf8_and_file_objects(tmp_path):
    import os
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9 \xff.wav")
    ref = write_tone(tmp_path / "plain.wav", seconds=1.0)
    os.rename(tmp_path / "plain.wav", raw)  # soundfile cannot create such a name itself
    name = os.fsdecode(raw)  # str with lone surrogates (PEP 383)
    y, sr = load(name)
    np.testing.assert_allclose(y, ref, atol=1e-4)
    assert info(name).frames == len(ref) and load_with_hash(name)[0].shape == ref.shape
    with open(name, "rb") as f:
        assert len(load(f)[0]) == len(ref)
    assert len(load(open(name, "rb").read())[0]) == len(ref)  # bytes already read
    cut = raw[:-4] + b"-cut.wav"
    with open(cut, "wb") as f:
        f.write(open(raw, "rb").read()[:1000])
    with pytest.raises(AudioDecodeError) as err:
        load(os.fsdecode(cut))
    assert err.value.item.endswith("caf\\xe9 \\xff-cut.wav")  # displayed escaped, never a UnicodeEncodeError
    str(err.value).encode("utf-8")


def test_bad_parameters():
    for kw in ({"offset": float("nan")}, {"offset": -1.0}, {"duration": float("inf")}, {"duration": 0}, {"sr": 0}):
        with pytest.raises(ParameterError):
            load("x.wav", **kw)
    with pytest.raises(AudioDecodeError, match="cannot read file"):
        load("/nonexistent/x.wav")


def test_zero_length_and_garbage(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty file"):
        load_with_hash(empty)
    with pytest.raises(AudioDecodeError, match="empty file"):
        load(empty)
    with pytest.raises(AudioDecodeError, match="empty file"):
        info(empty)
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
