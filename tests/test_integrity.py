"""A library cannot be corrupted: one writer, commits that survive a kill at any write, damage reported.

The fault sweeps run ``tests/faults.py`` in a fresh process: for add, embed (a new embedding of
the tracks present), remove, replace and an index build, a child is killed (``kill``) or gets
"No space left on device" (``enospc``) at every one of the operation's file-system changes, the
operation is run again, and the library must equal the one an uninterrupted run gives.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import permissions_enforced, write_tone, write_tones

from audiorag import Library
from audiorag.errors import LibraryDamagedError, LibraryLockedError, StorageError
from audiorag.search import Query, search

HERE = Path(__file__).parent


def _distinct(path, *, seed, seconds, sr=22050):
    """Noise with a spectral envelope and tones of its own: every file sounds different."""
    import soundfile as sf
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(int(seconds * sr)))
    spec *= np.interp(np.arange(len(spec)), np.linspace(0, len(spec), 12), rng.uniform(0, 1, 12)) ** 2
    y = np.fft.irfft(spec)
    t = np.arange(len(y)) / sr
    y = y / np.abs(y).max() + 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t)
    sf.write(str(path), (0.4 * y / np.abs(y).max()).astype(np.float32), sr)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small library (3 tracks, features45, a Flat index) and files for the operations."""
    root = tmp_path_factory.mktemp("integrity")
    files = write_tones(root / "audio", 6)
    lib = Library.create(root / "base", window=2, hop=1)
    lib.add(files[:3], embedders=["features45"], workers=1, progress=False)
    lib.build_index("features45", "Flat")
    return root


def _sweep(base, operation, kinds=("kill", "enospc")):
    work = base / f"work-{operation}"
    work.mkdir(exist_ok=True)
    spec = {"work": str(work), "base": str(base / "base"), "operation": operation, "kinds": list(kinds),
            "add": [str(base / "audio" / f"t{i}.wav") for i in range(3, 6)], "remove": 1,
            "replace": [2, str(base / "audio" / "t5.wav")]}
    (work / "spec.json").write_text(json.dumps(spec))
    subprocess.run([sys.executable, str(HERE / "faults.py"), str(work / "spec.json"), str(work / "out.json")],
                   check=True, timeout=1200, cwd=HERE)
    return json.loads((work / "out.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("operation", ["add", "embed", "remove", "replace", "index"])
def test_every_write_point_killed_or_out_of_space_resumes_to_the_same_library(base, operation):
    out = _sweep(base, operation)
    print(f"{operation}: {out['points']} write points, {len(out['results'])} faults injected")
    ref = out["reference"]
    assert ref["problems"] == [] and out["points"] >= 10
    for r in out["results"]:
        where = f"{operation}: {r['kind']} at write {r['n']} of {out['points']}"
        # the fault stopped the operation: killed, or a clear StorageError (exit 3) — never another exception;
        # except a full disk while deleting old generations after a commit: logged, the next writer deletes them
        pruning = r["exit"] == 0 and r["kind"] == "enospc" and re.fullmatch(r"remove .*/gen-\d+", r["hit"])
        assert r["exit"] == (137 if r["kind"] == "kill" else 3) or pruning, f"{where}: {r['hit']}"
        assert r["rerun"] == 0, where
        assert r["digest"] == ref["digest"], where
        assert r["problems"] == [] and r["leftovers"] == [], where
        assert r["errors"] == ref["errors"], where


@pytest.mark.slow
def test_a_second_writer_is_refused_naming_the_holder_or_waits(tmp_path):
    lib = Library.create(tmp_path / "lib", window=2, hop=1)
    script = textwrap.dedent(f"""
        import sys, time
        from audiorag import Library
        lib = Library.open({str(tmp_path / 'lib')!r})
        with lib.store.lock():
            print("locked", flush=True)
            time.sleep(float(sys.argv[1]))
    """)
    holder = subprocess.Popen([sys.executable, "-c", script, "60"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    write_tone(tmp_path / "a.wav", seconds=3)
    with pytest.raises(LibraryLockedError, match=rf"pid {holder.pid} on .* since "):
        lib.add([tmp_path / "a.wav"], embedders=["features45"], workers=1, progress=False)
    assert len(Library.open(lib.path).tracks) == 0
    threading.Timer(1.0, holder.kill).start()  # the holder dies: the OS releases its lock
    t0 = time.monotonic()
    waiting = Library.open(lib.path, wait=True)
    report = waiting.add([tmp_path / "a.wav"], embedders=["features45"], workers=1, progress=False)
    assert report.added == 1 and time.monotonic() - t0 > 0.5  # it waited for the holder, then went on
    holder.wait(10)


@pytest.mark.slow
def test_two_concurrent_builds_serialise_and_every_clip_finds_itself(tmp_path):
    folders = []
    for k in range(2):
        d = tmp_path / f"audio{k}"
        d.mkdir()
        for i in range(4):
            _distinct(d / f"t{i}.wav", seed=10 * k + i, seconds=5 + i)
        folders.append(d)
    Library.create(tmp_path / "lib", window=2, hop=1)
    script = textwrap.dedent("""
        import sys
        from audiorag import Library
        Library.open(sys.argv[1], wait=True).add(sys.argv[2], embedders=["features45"], workers=1,
                                                 progress=False, batch_tracks=1)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "lib"), str(d)]) for d in folders]
    assert [p.wait(300) for p in procs] == [0, 0]
    lib = Library.open(tmp_path / "lib")
    assert len(lib.tracks) == 8 and len(lib.vectors("features45")) == len(lib.segments)
    assert lib.check() == []
    lib.build_index("features45", "Flat")
    for tid, uri in zip(lib.tracks["track_id"], lib.tracks["uri"]):
        hit = search(lib, Query.audio(uri, start=0.0, end=2.0), embedder="features45", k=1)
        assert hit["track_id"].iloc[0] == tid and hit["start"].iloc[0] == 0.0


def test_readers_keep_their_generation_while_a_writer_commits(base, tmp_path):
    import shutil
    shutil.copytree(base / "base", tmp_path / "lib")
    reader = Library.open(tmp_path / "lib")
    before = (reader.generation, len(reader.tracks), np.asarray(reader.vectors("features45")).copy())
    writer = Library.open(tmp_path / "lib")
    writer.add([base / "audio" / "t3.wav"], workers=1, progress=False)
    assert (reader.generation, len(reader.tracks)) == before[:2]  # one consistent generation
    np.testing.assert_array_equal(np.asarray(reader.vectors("features45")), before[2])
    assert len(reader.reload().tracks) == 4 and reader.generation > before[0]


def _damage(lib, rel, how):
    path = lib.data / rel
    data = path.read_bytes()
    os.unlink(path)  # a new inode: the previous generation keeps its copy
    path.write_bytes(data[: len(data) // 2] if how == "truncate" else b"\0" * 16 + data[16:])


@pytest.mark.parametrize("rel,how,repairable", [
    ("tracks.parquet", "truncate", False),
    ("segments.parquet", "garble", False),
    ("embeddings/{key}/vectors.npy", "truncate", True),
    ("embeddings/{key}/raw.npy", "garble", False),
    ("embeddings/{key}/tracks.npz", "truncate", True),
    ("embeddings/{key}/index-flat.faiss", "truncate", True),
    ("embeddings/{key}/index-flat.json", "garble", True),
])
def test_damaged_files_are_named_and_check_repairs_what_can_be_derived(base, tmp_path, rel, how, repairable):
    import shutil
    shutil.copytree(base / "base", tmp_path / "lib")
    lib = Library.open(tmp_path / "lib")
    key = lib.embedding("features45").key
    expected = np.asarray(lib.vectors("features45")).copy()
    rel = rel.format(key=key)
    _damage(lib, rel, how)
    problems = Library.open(lib.path).check()
    assert any(p["file"].endswith(rel) for p in problems), problems
    if rel.endswith((".parquet", "vectors.npy", "raw.npy", ".faiss", ".json")):
        with pytest.raises(LibraryDamagedError, match=r"audiorag check"):
            fresh = Library.open(lib.path)
            _ = fresh.tracks, fresh.segments, np.asarray(fresh.embedding(key).raw()), fresh.vectors(key)
            search(fresh, Query.moment(0, at=0.0), embedder=key)
    fixed = Library.open(lib.path).check(repair=True)
    mine = [p for p in fixed if p["file"].endswith(rel)]
    assert mine and all(p["repaired"] is repairable for p in mine), fixed
    if repairable:
        again = Library.open(lib.path)
        assert again.check() == []
        np.testing.assert_allclose(np.asarray(again.vectors(key)), expected, atol=1e-6)
        if "index-flat" in rel and rel.endswith(".faiss"):
            hit = search(again, Query.moment(0, at=0.0), embedder=key, k=1)
            assert hit["track_id"].iloc[0] == 0


def test_read_only_library_gives_a_clear_error_and_leaves_nothing(base, tmp_path):
    import shutil

    shutil.copytree(base / "base", tmp_path / "lib")
    lib = Library.open(tmp_path / "lib")
    for d, _, _ in os.walk(tmp_path / "lib"):
        os.chmod(d, 0o555)
    os.chmod(tmp_path / "lib" / "lock", 0o444)
    try:
        with permissions_enforced():
            with pytest.raises(StorageError, match=r"lock: Permission denied — is the library read-only"):
                lib.add([base / "audio" / "t3.wav"], workers=1, progress=False)
            assert len(lib.tracks) == 3 and len(search(lib, Query.moment(0, at=0.0), k=2)) == 2  # still readable
    finally:
        for d, _, _ in os.walk(tmp_path / "lib"):
            os.chmod(d, 0o755)
        os.chmod(tmp_path / "lib" / "lock", 0o644)
    assert Library.open(tmp_path / "lib").check() == []
    assert not [p for p in Path(tmp_path / "lib").rglob("*") if ".tmp-" in p.name]


def test_full_disk_mid_write_is_a_storage_error_and_leaves_no_temporary_files(base, tmp_path, monkeypatch):
    import shutil
    shutil.copytree(base / "base", tmp_path / "lib")
    lib = Library.open(tmp_path / "lib")
    monkeypatch.setenv("AUDIORAG_FAULT", "enospc")
    monkeypatch.setenv("AUDIORAG_FAULT_AT", "9")
    from audiorag import io
    monkeypatch.setitem(io._FAULT, "count", 0)
    with pytest.raises(StorageError, match="No space left on device"):
        lib.add([base / "audio" / "t3.wav"], workers=1, progress=False)
    monkeypatch.delenv("AUDIORAG_FAULT_AT")
    assert not [p for p in Path(lib.path).rglob("*") if ".tmp-" in p.name]
    assert Library.open(lib.path).add([base / "audio" / "t3.wav"], workers=1, progress=False).added == 1


def test_format_1_library_moves_into_generations(base, tmp_path):
    import shutil
    src = Library.open(base / "base")
    flat = tmp_path / "old"
    shutil.copytree(src.data, flat)
    (flat / "manifest.json").unlink()
    meta = json.loads((base / "base" / "library.json").read_text())
    (flat / "library.json").write_text(json.dumps({**meta, "format_version": 1}))
    lib = Library.open(flat)
    assert lib.generation == 1 and len(lib.tracks) == 3 and lib.check() == []
    np.testing.assert_array_equal(np.asarray(lib.vectors("features45")), np.asarray(src.vectors("features45")))


def test_every_file_of_a_bad_corpus_is_indexed_or_recorded_once_and_errors_follow_the_files(tmp_path):
    from test_bad_inputs import build_corpus, encoded

    from audiorag.io import encode_path
    c = build_corpus(tmp_path)
    lib = Library.create(tmp_path / "lib", window=1, hop=0.5)
    report = lib.add(c["root"], embedders=["features45"], workers=2, progress=False)
    contents = {load_hash(u) for u in c["good"]}
    assert report.added == len(contents) and report.failed == len(c["bad"]) + len(c["problems"])
    assert set(lib.tracks["uri"]) <= {encode_path(u) for u in c["good"]}  # links to one file: added once
    assert set(lib.tracks["content_hash"]) == contents
    recorded = lib.errors()
    failing = recorded[recorded["stage"] != "duplicate"]
    assert sorted(failing["uri"]) == sorted(encode_path(u) for u in list(c["bad"]) + list(c["problems"]))
    # the link to a good file inside the corpus holds the same bytes: recorded as a duplicate of it, not lost
    duplicate = recorded[recorded["stage"] == "duplicate"]
    assert list(duplicate["uri"]) == [encode_path(str(c["root"] / "links" / "in.wav"))]
    assert duplicate["message"].iloc[0] == f"duplicate of {encode_path(str(c['root'] / 'good' / 'tone.wav'))}"
    assert len(Library.open(lib.path).vectors("features45")) == len(lib.segments)

    again = Library.open(lib.path).add(c["root"], workers=2, progress=False)  # nothing new: nothing doubles
    assert (again.added, again.failed) == (0, report.failed) and len(Library.open(lib.path).errors()) == len(recorded)

    fixed = next(u for u in c["bad"] if u.endswith("cut.wav"))
    Path(fixed).write_bytes(encoded("WAV", "PCM_16", freq=1234))
    edited = next(u for u in c["good"] if u.endswith("tone.flac"))
    before = lib.reload().tracks.set_index("uri").loc[encode_path(edited)]
    Path(edited).write_bytes(encoded("FLAC", "PCM_16", freq=1500))
    third = Library.open(lib.path).add(c["root"], workers=2, progress=False)
    lib = Library.open(lib.path)
    assert (third.added, third.replaced) == (1, 1)
    assert encode_path(fixed) not in set(lib.errors()["uri"])  # a fixed file leaves the errors
    after = lib.tracks.set_index("uri").loc[encode_path(edited)]
    assert after["track_id"] == before["track_id"] and after["content_hash"] != before["content_hash"]
    assert len(lib.tracks) == report.added + 1 and lib.check() == []


def load_hash(uri):
    from audiorag.audio import load_with_hash
    return load_with_hash(uri)[2]


def test_a_failed_change_leaves_nothing_behind_in_memory(base, tmp_path, monkeypatch):
    import shutil

    from audiorag import io
    shutil.copytree(base / "base", tmp_path / "lib")
    lib = Library.open(tmp_path / "lib")
    monkeypatch.setenv("AUDIORAG_FAULT", "enospc")
    monkeypatch.setenv("AUDIORAG_FAULT_AT", "15")  # after the tables were rewritten inside the change
    monkeypatch.setitem(io._FAULT, "count", 0)
    with pytest.raises(StorageError):
        lib.remove([1])
    monkeypatch.delenv("AUDIORAG_FAULT_AT")
    assert 1 in lib.tracks["track_id"].tolist()  # the failed change's tables are gone with it
    lib.set_track_column("mood", {0: "calm"})  # the next change starts from the committed state
    again = Library.open(lib.path)
    assert len(again.tracks) == 3 and again.check() == []


def test_missing_files_are_damage_not_emptiness(base, tmp_path):
    import shutil
    shutil.copytree(base / "base", tmp_path / "lib")
    lib = Library.open(tmp_path / "lib")
    (lib.data / "tracks.parquet").unlink()
    (lib.embedding("features45").path / "vectors.npy").unlink()
    fresh = Library.open(lib.path)
    with pytest.raises(LibraryDamagedError, match="tracks.parquet: missing"):
        _ = fresh.tracks
    with pytest.raises(LibraryDamagedError, match="vectors.npy: missing"):
        fresh.embedding("features45").vectors()
    fixed = fresh.check(repair=True)
    assert {p["file"].split("/", 1)[1]: p["repaired"] for p in fixed} == {
        "tracks.parquet": False, f"embeddings/{fresh.embedding('features45').key}/vectors.npy": True}
    after = Library.open(lib.path).check()  # what could not be restored is still reported, never forgotten
    assert [p["file"].split("/", 1)[1] for p in after] == ["tracks.parquet"]


def test_file_names_round_trip_whatever_their_bytes():
    import random

    from audiorag.io import decode_path, encode_path
    r = random.Random(0)
    alphabet = [0x5C, 0xE9, 0xC3, 0xA9, 0xFF, 0x61, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80, 0x78]
    for _ in range(5000):
        name = os.fsdecode(bytes(r.choice(alphabet) for _ in range(r.randint(1, 10))))
        text = encode_path(name)
        assert decode_path(text) == name and text.encode("utf-8")


def test_damage_of_the_same_size_is_not_carried_into_a_new_generation(base, tmp_path):
    import shutil
    shutil.copytree(base / "base", tmp_path / "lib")
    lib = Library.open(tmp_path / "lib")
    raw = lib.embedding("features45").path / "raw.npy"
    data = bytearray(raw.read_bytes())
    data[-8:] = b"\x7f" * 8  # one value garbled in place: same size, same inode
    raw.write_bytes(bytes(data))
    with pytest.raises(LibraryDamagedError, match="raw.npy: content differs"):
        Library.open(lib.path).add([base / "audio" / "t3.wav"], workers=1, progress=False)
    assert len(Library.open(lib.path).tracks) == 3
    assert any(p["file"].endswith("raw.npy") for p in Library.open(lib.path).check())


def test_a_garbled_current_is_reported_and_repaired(base, tmp_path):
    import shutil

    from audiorag.library.check import check_path
    shutil.copytree(base / "base", tmp_path / "lib")
    (tmp_path / "lib" / "CURRENT").write_text("garbage\n")
    with pytest.raises(LibraryDamagedError, match="CURRENT: 'garbage' is not a generation name"):
        Library.open(tmp_path / "lib")
    assert [p["file"] for p in check_path(tmp_path / "lib")] == ["CURRENT"]
    assert [p["repaired"] for p in check_path(tmp_path / "lib", repair=True)] == [True]
    lib = Library.open(tmp_path / "lib")
    assert len(lib.tracks) == 3 and lib.check() == []


# -- the repair matrix: damage to CURRENT and the generations never costs a complete generation ---------------
@pytest.fixture(scope="module")
def three_generations(base):
    """A library whose last three commits are kept as generations (readers pinned them): 1, 2, 3 tracks."""
    import shutil
    root = base / "three"
    lib = Library.create(root, window=2, hop=1)
    readers = []
    for i in range(3):
        lib.add([base / "audio" / f"t{i}.wav"], embedders=["features45"], workers=1, progress=False)
        readers.append(Library.open(root))  # pins the generation just committed: it is not pruned
    gens = [r.generation for r in readers]
    for r in [*readers, lib]:
        r.close()
    for extra in set(root.glob("gen-*")) - {root / f"gen-{g:06d}" for g in gens}:  # pinned by the writer
        shutil.rmtree(extra)
    assert sorted(p.name for p in root.glob("gen-*")) == [f"gen-{g:06d}" for g in gens]
    return root, gens


def _cli(*args):
    from typer.testing import CliRunner

    from audiorag.cli import app
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.output


def _complete(root):
    from audiorag.library.store import generations, incomplete
    return {p.name for _, p in generations(root) if incomplete(p) is None}


def _damage_generations(root, gens, what):
    first, middle, last = (root / f"gen-{g:06d}" for g in gens)
    if what == "CURRENT missing":
        (root / "CURRENT").unlink()
    elif what == "CURRENT empty":
        (root / "CURRENT").write_text("")
    elif what == "CURRENT garbage":
        (root / "CURRENT").write_text("\x00garbage ✓\n")
    elif what == "CURRENT older":
        (root / "CURRENT").write_text(first.name + "\n")
    elif what == "CURRENT beyond the newest":
        (root / "CURRENT").write_text(f"gen-{gens[-1] + 5:06d}\n")
    elif what == "CURRENT names a staging directory":
        staging = root / f"gen-{gens[-1] + 1:06d}"
        (staging / "staging").mkdir(parents=True)
        (staging / "tracks.parquet").write_bytes((last / "tracks.parquet").read_bytes()[:100])
        (root / "CURRENT").write_text(staging.name + "\n")
    elif what == "manifest truncated":
        m = last / "manifest.json"
        m.write_text(m.read_text()[: len(m.read_text()) // 2])
    elif what == "manifest of the wrong shape":
        m = last / "manifest.json"
        m.write_text(json.dumps({**json.loads(m.read_text()), "files": ["tracks.parquet"]}))
    elif what == "current generation's table deleted":
        (last / "tracks.parquet").unlink()
    elif what == "an older generation's table deleted":
        (middle / "tracks.parquet").unlink()
    else:
        raise ValueError(what)


DAMAGES = {  # damage → how many tracks the newest complete generation holds (the third's damage leaves the second)
    "CURRENT missing": 3, "CURRENT empty": 3, "CURRENT garbage": 3, "CURRENT older": 3,
    "CURRENT beyond the newest": 3, "CURRENT names a staging directory": 3, "manifest truncated": 2,
    "manifest of the wrong shape": 2, "current generation's table deleted": 2, "an older generation's table deleted": 3}


@pytest.mark.parametrize("what", list(DAMAGES))
def test_repair_matrix_check_then_repair_keeps_every_complete_generation_and_opens_the_newest(
        three_generations, tmp_path, what):
    import shutil
    src, gens = three_generations
    root = tmp_path / "lib"
    shutil.copytree(src, root)
    _damage_generations(root, gens, what)
    complete = _complete(root)
    before = sorted(p.name for p in root.iterdir())
    code, out = _cli("check", root)
    assert sorted(p.name for p in root.iterdir()) == before, f"check without --repair changed {root}"
    assert code in (0, 1) and "Traceback" not in out, out
    code, out = _cli("check", root, "--repair")
    assert code == 0, out
    newest = max(complete)
    current = (root / "CURRENT").read_text().strip()
    assert current == newest, out
    assert {g for g in complete if g >= current} <= {p.name for p in root.iterdir()}, out  # none deleted
    if what == "CURRENT older":  # the older ones stay until the next change, for --to
        assert complete <= {p.name for p in root.iterdir()}
    lib = Library.open(root)
    assert len(lib.tracks) == DAMAGES[what] and lib.generation == int(newest.split("-")[1])
    assert _cli("check", root) == (0, f"{root}: no problems found\n")
    lib.add([src.parent / "audio" / "t3.wav"], workers=1, progress=False)  # writers work again
    assert len(Library.open(root).tracks) == DAMAGES[what] + 1


def test_check_to_goes_back_to_a_chosen_generation_and_keeps_the_newer_ones(three_generations, tmp_path):
    import shutil
    src, gens = three_generations
    root = tmp_path / "lib"
    shutil.copytree(src, root)
    first, last = f"gen-{gens[0]:06d}", f"gen-{gens[-1]:06d}"
    code, out = _cli("check", root, "--repair", "--to", first)
    assert code == 0 and f"now names {first}" in out and f"kept as {last}.kept" in out, out
    assert len(Library.open(root).tracks) == 1 and (root / f"{last}.kept" / "manifest.json").exists()
    code, out = _cli("check", root, "--to", "gen-999999")
    assert code == 2 and "--to gen-999999: no such generation" in out


def test_writers_never_delete_newer_complete_generations(three_generations, tmp_path):
    import shutil
    src, gens = three_generations
    root = tmp_path / "lib"
    shutil.copytree(src, root)
    (root / "CURRENT").write_text(f"gen-{gens[0]:06d}\n")  # the library: CURRENT at the oldest of three
    with pytest.raises(LibraryDamagedError, match="are newer and complete; run `audiorag check"):
        Library.open(root).add([src.parent / "audio" / "t3.wav"], workers=1, progress=False)
    assert _complete(src) <= _complete(root)


def test_a_writer_killed_between_its_manifest_and_the_switch_is_made_current(three_generations, tmp_path):
    import shutil
    src, gens = three_generations
    root = tmp_path / "lib"
    shutil.copytree(src, root)
    shutil.rmtree(root / f"gen-{gens[-1]:06d}")
    (root / "CURRENT").write_text(f"gen-{gens[1]:06d}\n")
    shutil.copytree(src / f"gen-{gens[-1]:06d}", root / f"gen-{gens[1] + 1:06d}")  # complete, just after CURRENT
    m = root / f"gen-{gens[1] + 1:06d}" / "manifest.json"
    m.write_text(json.dumps({**json.loads(m.read_text()), "generation": gens[1] + 1, "parent": f"gen-{gens[1]:06d}"}))
    # a reader sees what the next change will work on: the dead writer's generation (a user who re-runs the
    # command after `info` must not be told the track it shows is "not in this library")
    before = sorted(p.name for p in root.iterdir())
    code, out = _cli("check", root)  # check changes nothing, not even this: it reports it
    assert sorted(p.name for p in root.iterdir()) == before and (root / "CURRENT").read_text().strip() == \
        f"gen-{gens[1]:06d}" and code in (0, 1), out
    from audiorag.library.store import Store
    with Store(root).lock(recover=False):  # a live writer holds the lock: readers do not touch its work
        assert Library.open(root).generation == gens[1]
    assert len(Library.open(root).tracks) == 3 and Library.open(root).generation == gens[1] + 1
    Library.open(root).add([src.parent / "audio" / "t3.wav"], workers=1, progress=False)
    assert len(Library.open(root).tracks) == 4  # the three of the rolled-forward generation and the new one


def test_a_lock_a_child_of_this_writer_still_holds_is_waited_for_not_refused(tmp_path):
    """A forked worker lets go of the lock when it first runs; on a loaded machine that can come after its parent
    takes the lock again. A child holding the parent's lock file (here: a `sleep` given the open file) is waited
    for; the lock is taken once the child lets go, and nothing is refused."""
    import subprocess
    lib = Library.create(tmp_path / "lib", window=2, hop=1)
    with lib.store.lock():
        child = subprocess.Popen(["sleep", "1"], pass_fds=[lib.store._fd])
    try:
        with lib.store.transaction() as gen:
            assert child.poll() is not None  # the lock came free only when the child ended
            (gen / "note.txt").write_text("the build goes on")
        assert lib.generation == 1
    finally:
        child.kill()
        child.wait()


def test_a_build_never_locks_itself_out_through_its_worker_processes(tmp_path):
    """Issue #29 item 3: a pool's workers forked while the build held the writers' lock shared its open
    file (a flock belongs to the open file): a worker still alive when the build took the lock again
    made the build "being changed by" its own pid. Forked children now let go of the lock."""
    from audiorag.engines.local import map_pool
    lib = Library.create(tmp_path / "lib", window=2, hop=1)
    with lib.store.lock():
        results = map_pool(abs, [-1, -2, -3, -4], workers=2, desc="x", progress=False)
        assert next(results) == 1  # the workers are forked, and stay until the generator is closed
    try:
        with lib.store.transaction() as gen:
            (gen / "note.txt").write_text("the build goes on")
        assert lib.generation == 1 and not lib.store.busy()
    finally:
        results.close()
