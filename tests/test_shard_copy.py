"""Copying a shard (``audiorag shards copy``, :mod:`audiorag.library.copies`) without Ray: the copy is the shard's
committed generation checked file by file, a copy again sends only what changed, a wrong destination or a
damaged transfer is refused and leaves the earlier copy current. Through Ray onto another node:
tests/test_ray.py::test_sharded_cli_on_a_cluster_started_with_ray_start."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from audiorag import Library
from audiorag.cli import app
from audiorag.datasets import resolve
from audiorag.embedders import get_embedder
from audiorag.errors import StorageError
from audiorag.library.copies import ShardReceiver, copy_shard
from audiorag.library.shards import ShardedLibrary
from audiorag.library.store import read_manifest


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    root = tmp_path_factory.mktemp("copy")
    rng = np.random.default_rng(5)
    t = np.arange(8 * 16000) / 16000
    for i in range(6):  # 6 tracks of 8 s: a tone and noise, each its own
        y = 0.3 * np.sin(2 * np.pi * 110 * (i + 1) * t) + 0.05 * rng.standard_normal(len(t))
        sf.write(root / f"t{i}.wav", y.astype(np.float32), 16000)
    lib = ShardedLibrary.create(root / "lib", 2, window=5, hop=2.5)
    lib.add(resolve(f"folder:{root}"), embedders=[get_embedder("features45")], workers=1)
    return root / "lib"


def _same_library(a: Library, b: Library) -> None:
    pd.testing.assert_frame_equal(a.tracks, b.tracks)
    pd.testing.assert_frame_equal(a.segments, b.segments)
    for e in a.embeddings():
        np.testing.assert_array_equal(np.asarray(a.vectors(e.key)), np.asarray(b.vectors(e.key)))


def test_a_copy_is_the_committed_generation_and_the_shard_is_placed_there(sharded, tmp_path):
    lib = ShardedLibrary.open(sharded)
    got = copy_shard(lib, 1, path=str(tmp_path / "c1"))
    shard = Library.open(lib.paths[1])
    copy = Library.open(tmp_path / "c1", settle=False)
    assert got["generation"] == shard.generation == copy.generation
    assert got["sent"] == len(read_manifest(shard.store.current)["files"]) > 5 and got["linked"] == 0
    assert got["bytes"] == sum(e["bytes"] for e in read_manifest(shard.store.current)["files"].values())
    assert read_manifest(copy.store.current) == read_manifest(shard.store.current)
    _same_library(shard, copy)
    assert copy.check() == []
    assert ShardedLibrary.open(sharded).placement(1) == {"node": None, "path": str(tmp_path / "c1")}
    again = copy_shard(lib, 1, path=str(tmp_path / "c1"))
    assert (again["sent"], again["linked"], again["generation"]) == (0, 0, shard.generation)
    lib.place(1)  # back to the shard's own directory


def test_copying_again_sends_only_what_changed(sharded, tmp_path):
    lib = ShardedLibrary.open(sharded)
    first = copy_shard(lib, 0, path=str(tmp_path / "c0"))
    Library.open(lib.paths[0]).build_index("features45", "HNSW16", name="hnsw")  # adds two files
    second = copy_shard(ShardedLibrary.open(sharded), 0, path=str(tmp_path / "c0"))
    assert second["generation"] == first["generation"] + 1
    assert second["sent"] == 2 and second["linked"] == first["sent"]
    shard, copy = Library.open(lib.paths[0]), Library.open(tmp_path / "c0", settle=False)
    _same_library(shard, copy)
    assert [p.name for p in (tmp_path / "c0").glob("gen-*")] == [copy.store.current.name]  # the old one pruned
    assert copy.check() == []
    lib.place(0)


def test_a_wrong_destination_is_refused_in_one_line(sharded, tmp_path):
    run = CliRunner().invoke
    assert run(app, ["shards", "copy", str(sharded), "--shard", "1", "--path", str(tmp_path / "c1")]).exit_code == 0
    cases = {("--shard", "0", "--path", str(tmp_path / "c1")): "holds a copy of shard-001",
             ("--shard", "0", "--path", str(sharded / "shard-000")): "that is the shard itself",
             ("--shard", "0", "--path", str(sharded.parent)): "not empty and not a copy of a shard",
             ("--shard", "2", "--path", str(tmp_path / "x")): "--shard must be 0..1",
             ("--shard", "0", "--path", str(tmp_path / "y"), "--node", "n1"): "give --ray-address"}
    for args, said in cases.items():
        out = run(app, ["shards", "copy", str(sharded), *args])
        assert out.exit_code == 2 and said in out.output and "Traceback" not in out.output, (args, out.output)
    ShardedLibrary.open(sharded).place(1)


def test_a_damaged_transfer_leaves_the_earlier_copy_current(sharded, tmp_path):
    lib = ShardedLibrary.open(sharded)
    copy_shard(lib, 1, path=str(tmp_path / "c1"))
    before = (tmp_path / "c1" / "CURRENT").read_text()
    shard = Library.open(lib.paths[1])
    manifest = read_manifest(shard.store.current)
    later = {**manifest, "generation": manifest["generation"] + 1}  # as if the shard had moved on
    rx = ShardReceiver(str(tmp_path / "c1"))
    origin = json.loads((tmp_path / "c1" / "copy.json").read_text())
    send = rx.begin(origin, (lib.paths[1] / "library.json").read_bytes(), f"gen-{later['generation']:06d}", later)
    assert send == []  # every file's sha256 is already in the copy: all linked
    rel = "tracks.parquet"
    rx.written.add(rel)  # received, but with one byte flipped
    data = bytearray((shard.store.current / rel).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (rx.new / rel).unlink()
    (rx.new / rel).write_bytes(bytes(data))
    with pytest.raises(StorageError, match="tracks.parquet does not match"):
        rx.finish()
    assert (tmp_path / "c1" / "CURRENT").read_text() == before and not rx.new.exists()
    _same_library(shard, Library.open(tmp_path / "c1", settle=False))
    lib.place(1)
