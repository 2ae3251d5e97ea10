import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import SR, write_tone

from audiorag import IncompatibleLibraryError, Library, LibraryNotFoundError, ParameterError
from audiorag.datasets.synthetic import SyntheticDataset


def _folder_with_bad_files(root, rng):
    root.mkdir()
    for i in range(4):
        y = (0.2 * rng.standard_normal(int((12 + 3 * i) * SR))).astype(np.float32)
        sf.write(root / f"good{i}.flac", y, SR)
    (root / "zero.wav").write_bytes(b"")
    (root / "text.mp3").write_text("not audio at all")
    nan = np.zeros(SR, np.float32)
    nan[5] = np.nan
    sf.write(root / "nan.wav", nan, SR, subtype="FLOAT")
    data = (root / "good0.flac").read_bytes()
    (root / "truncated.flac").write_bytes(data[: len(data) // 3])
    return root


def test_bad_files_are_recorded_and_never_stop_the_build(tmp_path, rng):
    folder = _folder_with_bad_files(tmp_path / "audio", rng)
    lib = Library.create(tmp_path / "lib", window=5, hop=2.5)
    report = lib.add(folder, embedders=["features45"], workers=2, progress=False)
    assert (report.added, report.failed) == (4, 4)
    errors = lib.errors()
    assert sorted(os.path.basename(u) for u in errors["uri"]) == ["nan.wav", "text.mp3", "truncated.flac", "zero.wav"]
    reasons = dict(zip(errors["uri"].map(os.path.basename), errors["message"]))
    assert "empty file" in reasons["zero.wav"] and "non-finite" in reasons["nan.wav"]
    assert "unreadable" in reasons["text.mp3"]
    lines = (lib.data / "errors.jsonl").read_text().splitlines()
    assert {"uri", "stage", "error", "message"} <= set(json.loads(lines[0]))
    # segments: durations 12, 15, 18, 21 s at 5 s / 2.5 s with keep-short tails
    assert len(lib.segments) == 4 + 5 + 7 + 8
    assert lib.vectors("features45").shape == (24, 45)
    assert np.allclose(np.linalg.norm(lib.vectors("features45"), axis=1), 1, atol=1e-5)


def test_incremental_add_by_content_hash(tmp_path, rng):
    folder = tmp_path / "audio"
    folder.mkdir()
    for i in range(3):
        write_tone(folder / f"t{i}.wav", seconds=6 + i, freq=200 * (i + 1))
    lib = Library.create(tmp_path / "lib", window=4, hop=2)
    assert lib.add(folder, embedders=["features45"], workers=1, progress=False).added == 3
    raw_before = np.array(lib.embedding("features45").raw())
    shutil.copy(folder / "t0.wav", folder / "copy_of_t0.wav")
    write_tone(folder / "t3.wav", seconds=9, freq=900)
    report = Library.open(tmp_path / "lib").add(folder, workers=1, progress=False)  # existing embedders by default
    assert (report.added, report.duplicates, report.duplicate_files) == (1, 3, 1)  # 3 unchanged files, 1 copy
    assert report.errors[0]["message"] == f"duplicate of {folder / 't0.wav'}"
    lib = Library.open(tmp_path / "lib")
    assert lib.tracks["track_id"].tolist() == [0, 1, 2, 3]
    raw_after = np.array(lib.embedding("features45").raw())
    np.testing.assert_array_equal(raw_after[: len(raw_before)], raw_before)  # old rows untouched
    assert len(raw_after) == len(lib.segments)
    # standardisation is refitted on the whole library and vectors follow
    emb = lib.embedding("features45")
    assert emb.meta["standardisation"]["n_fitted"] == len(lib.segments)


def test_new_embedding_covers_existing_tracks(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    for i in range(2):
        write_tone(folder / f"t{i}.wav", seconds=5, freq=300 + 100 * i)
    lib = Library.create(tmp_path / "lib", window=2, hop=1)
    lib.add(folder, embedders=["features45"], workers=1, progress=False)
    key = lib.embed("features45", n_mels=64, workers=1, progress=False)
    assert len(lib.embeddings()) == 2
    assert lib.vectors(key).shape == (len(lib.segments), 45)
    with pytest.raises(ParameterError, match="ambiguous"):
        lib.vectors("features45")


def test_the_first_embedding_built_is_the_default_until_another_is_set(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    for i in range(2):
        write_tone(folder / f"t{i}.wav", seconds=5, freq=300 + 100 * i)
    lib = Library.create(tmp_path / "lib", window=2, hop=1)
    lib.add(folder, embedders=["features45"], workers=1, progress=False)
    first = lib.embedding().key
    second = lib.embed("features45", n_mels=64, workers=1, progress=False)
    reopened = Library.open(tmp_path / "lib")
    assert reopened.embedding().key == first == reopened.default_embedding == reopened.info()["default_embedding"]
    assert json.loads((tmp_path / "lib" / "library.json").read_text())["default_embedding"] == first
    assert reopened.set_default_embedding(second) == second
    assert Library.open(tmp_path / "lib").embedding().key == second
    np.testing.assert_array_equal(Library.open(tmp_path / "lib").vectors(), lib.vectors(second))


def test_a_library_without_a_stored_default_uses_its_first_embedding(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    write_tone(folder / "a.wav", seconds=5)
    lib = Library.create(tmp_path / "lib", window=2, hop=1)
    lib.add(folder, embedders=["features45"], workers=1, progress=False)
    first = lib.embedding().key
    time.sleep(1.1)  # "created" has one-second resolution
    lib.embed("features45", n_mels=64, workers=1, progress=False)
    meta = json.loads((tmp_path / "lib" / "library.json").read_text())
    del meta["default_embedding"]  # as written by audiorag before defaults were stored
    (tmp_path / "lib" / "library.json").write_text(json.dumps(meta))
    assert Library.open(tmp_path / "lib").embedding().key == first


def test_incompatible_configurations_are_refused(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    write_tone(folder / "a.wav", seconds=5)
    lib = Library.create(tmp_path / "lib", window=2, hop=1)
    lib.add(folder, embedders=["features45"], workers=1, progress=False)
    with pytest.raises(IncompatibleLibraryError, match="segmentation"):
        Library.create(tmp_path / "lib", window=3, hop=1, exist_ok=True)
    with pytest.raises(ParameterError, match="already exists"):
        Library.create(tmp_path / "lib", window=2, hop=1)
    # vectors made with another segmentation are never mixed in
    desc = lib.embedding().path / "embedder.json"
    meta = json.loads(desc.read_text())
    meta["segmentation"]["hop"] = 0.5
    desc.write_text(json.dumps(meta))
    with pytest.raises(IncompatibleLibraryError, match="refusing to mix"):
        Library.open(tmp_path / "lib").vectors("features45")
    with pytest.raises(LibraryNotFoundError):
        Library.open(tmp_path / "nowhere")


BUILD_SCRIPT = textwrap.dedent("""
    import sys
    from audiorag import Library
    from audiorag.datasets.synthetic import SyntheticDataset
    lib = Library.create(sys.argv[1], window=10, hop=2, exist_ok=True)
    lib.add(SyntheticDataset(12, seed=3), embedders=["features45"], workers=1, progress=False, batch_tracks=2)
""")


@pytest.mark.slow
def test_build_killed_midway_resumes_to_identical_vectors(tmp_path, cache):
    SyntheticDataset(12, seed=3).generate()
    script = tmp_path / "build.py"
    script.write_text(BUILD_SCRIPT)
    env = {**os.environ, "AUDIORAG_CACHE": str(cache)}
    reference = tmp_path / "reference"
    subprocess.run([sys.executable, str(script), str(reference)], check=True, env=env)

    for kill_after_batches in (1, 3):
        killed = tmp_path / f"killed{kill_after_batches}"
        proc = subprocess.Popen([sys.executable, str(script), str(killed)], env=env)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if len(list(killed.glob("gen-*/staging/add-*.parquet"))) >= kill_after_batches:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not list(killed.glob("gen-*/tracks.parquet")), "the build finished before it could be killed"
        subprocess.run([sys.executable, str(script), str(killed)], check=True, env=env)
        a, b = Library.open(reference), Library.open(killed)
        pd.testing.assert_frame_equal(a.segments, b.segments)
        assert a.tracks["content_hash"].tolist() == b.tracks["content_hash"].tolist()
        np.testing.assert_array_equal(np.asarray(a.vectors("features45")), np.asarray(b.vectors("features45")))
        assert not (b.data / "staging").exists() and b.check() == []
