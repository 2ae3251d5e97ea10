"""The ingest engines' public contract: a Job and FileTasks in, one FileResult per file out, no library needed."""

import numpy as np
import pytest
from conftest import write_tone

from audiorag import Library, engines
from audiorag.audio import load_with_hash
from audiorag.embedders import get_embedder
from audiorag.engines import FileTask, Job
from audiorag.errors import ParameterError
from audiorag.segment import Segmentation


@pytest.fixture
def files(tmp_path):
    paths = [str(tmp_path / f"tone{i}.wav") for i in range(3)]
    for i, p in enumerate(paths):
        write_tone(p, seconds=4.0 + i, freq=220.0 * (i + 1))
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    return paths + [str(tmp_path / "broken.wav")]


def test_an_engine_run_without_a_library_gives_the_vectors_a_library_stores(files, tmp_path):
    seg = Segmentation(2, 1)
    job = Job(seg, [get_embedder("features45")])
    results = list(engines.run([FileTask(f) for f in files], job, workers=2, progress=False))
    assert [r.uri for r in results] == files  # task order
    assert [r.status for r in results] == ["ok", "ok", "ok", "error"]
    assert results[-1].error["stage"] == "decode" and results[-1].error["error"] == "AudioDecodeError"
    key = job.embedders[0].key
    for r in results[:3]:
        assert r.raw[key].shape == (len(seg.windows(r.duration)[0]), 45)
        assert r.descriptors["tonic"].shape == (len(seg.windows(r.duration)[0]),) and r.landmarks is None
    lib = Library.create(tmp_path / "lib", window=2, hop=1)
    lib.add(files, embedders=["features45"], workers=2, progress=False)
    stored = lib.embedding(key).raw()
    assert np.array_equal(stored, np.concatenate([r.raw[key] for r in results[:3]]))


def test_known_and_changed_content_are_named_per_file(files):
    digest = load_with_hash(files[0])[2]
    job = Job(Segmentation(2, 1), [get_embedder("features45")], known_hashes=frozenset({digest}),
              descriptors=False, fingerprints=True)
    dup, changed, fresh = engines.run([FileTask(files[0]), FileTask(files[1], "sha256:" + "0" * 64),
                                       FileTask(files[2])], job, workers=1, progress=False)
    assert (dup.status, dup.content_hash, dup.raw) == ("duplicate", digest, {})
    assert changed.status == "error" and "content changed since it was added" in changed.error["message"]
    assert fresh.status == "ok" and fresh.descriptors is None
    hashes, frames, n_frames = fresh.landmarks
    assert len(hashes) == len(frames) > 0 and n_frames > frames.max()


def test_an_unknown_engine_is_refused_before_any_work():
    with pytest.raises(ParameterError, match="engine must be 'local' or 'ray', got 'spark'"):
        engines.run([], Job(Segmentation(2, 1)), engine="spark")
