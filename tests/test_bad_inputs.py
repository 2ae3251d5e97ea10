"""A corpus of bad and odd inputs: every good file is a source, every bad one fails with its reason,
everything that cannot be a source is recorded once; and every CLI command meets bad values with
one line and exit status 2, never a traceback."""

import errno
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import permissions_enforced
from typer.testing import CliRunner

from audiorag.audio import load, load_with_hash
from audiorag.cli import app
from audiorag.datasets.folder import FolderDataset
from audiorag.errors import AudioDecodeError

SR = 22050
runner = CliRunner()


def encoded(fmt: str, subtype: str, seconds: float = 2.0, freq: float = 440.0, sr: int = SR) -> bytes:
    rng = np.random.default_rng(int(freq))
    t = np.arange(int(seconds * sr)) / sr
    y = (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def put(path, data: bytes) -> str:
    """Write ``data`` at ``path`` (str or bytes: names that are not UTF-8) and return the path as str."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return os.fsdecode(path)


def link(target, name) -> str:
    os.makedirs(os.path.dirname(name), exist_ok=True)
    os.symlink(target, name)
    return os.fsdecode(name)


def build_corpus(tmp_path: Path) -> dict:
    """The corpus and what is expected of each item."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    wav, flac = encoded("WAV", "PCM_16"), encoded("FLAC", "PCM_16", freq=330)
    ogg, mp3 = encoded("OGG", "VORBIS", freq=550), encoded("MP3", "MPEG_LAYER_III", freq=660)
    good = [put(str(root / "good" / "tone.wav"), wav), put(str(root / "good" / "tone.flac"), flac),
            put(str(root / "good" / "tone.ogg"), ogg), put(str(root / "good" / "tone.mp3"), mp3),
            # names that are not valid UTF-8 (a file, and a file in such a folder)
            put(os.path.join(os.fsencode(root), b"caf\xe9 \xff.wav"), encoded("WAV", "PCM_16", freq=770)),
            put(os.path.join(os.fsencode(root), b"d\xe9j\xe0", b"inner.flac"), encoded("FLAC", "PCM_16", freq=880))]
    put(str(outside / "o.ogg"), encoded("OGG", "VORBIS", freq=990))
    put(str(outside / "far" / "far.wav"), encoded("WAV", "PCM_16", freq=1100))
    good += [link("../good/tone.wav", str(root / "links" / "in.wav")),          # inside, relative
             link(str(outside / "o.ogg"), str(root / "links" / "out.ogg")),     # outside the root
             os.fsdecode(str(root / "outdir" / "far.wav"))]                     # in a linked folder outside
    link(str(outside / "far"), str(root / "outdir"))
    (root / "notes.txt").write_text("not audio, not a source")
    link("nothing.txt", str(root / "links" / "gone.txt"))  # a dangling link to no audio: not ours to report

    nan = io.BytesIO()
    sf.write(nan, np.full(800, np.nan, np.float32), SR, format="WAV", subtype="FLOAT")
    nochannels = bytearray(wav)
    at = nochannels.find(b"fmt ")
    nochannels[at + 10:at + 12] = struct.pack("<H", 0)
    header_only = io.BytesIO()
    sf.write(header_only, np.zeros(0, np.float32), SR, format="WAV")
    bad = {put(str(root / "bad" / "cut.wav"), wav[: len(wav) * 6 // 10]): "truncated: the header declares",
           put(str(root / "bad" / "cut.flac"), flac[: len(flac) * 6 // 10]): "truncated or corrupt.*lost sync",
           put(str(root / "bad" / "cut.ogg"), ogg[: len(ogg) * 6 // 10]): "truncated: .*Ogg",
           put(str(root / "bad" / "cut.mp3"), mp3[: len(mp3) * 6 // 10]): "truncated: the header promises 44100 frames",
           put(str(root / "bad" / "nan.wav"), nan.getvalue()): "non-finite samples",
           put(str(root / "bad" / "empty.wav"), b""): "empty file \\(0 bytes\\)",
           put(str(root / "bad" / "text.wav"), b"these are words, not samples\n" * 20): "unreadable audio",
           put(str(root / "bad" / "nochannels.wav"), bytes(nochannels)): "(?i)channel count is zero",
           put(str(root / "bad" / "noframes.wav"), header_only.getvalue()): "empty audio \\(0 samples\\)",
           put(os.path.join(os.fsencode(root), b"bad", b"cut \xff.mp3"), mp3[:1500]): "truncated"}
    problems = {link("nowhere.wav", str(root / "links" / "dangling.wav")): "DanglingSymlink",
                link("..", str(root / "links" / "loop")): "SymlinkLoop",
                link("self.flac", str(root / "links" / "self.flac")): "SymlinkLoop"}
    problems.update({p: "NotARegularFile" for p in special_files(root / "special")})
    return {"root": root, "good": good, "bad": bad, "problems": problems}


def special_files(folder: Path) -> list[str]:
    """A FIFO, a link to it, a socket (and /dev/null's twin where this process may make devices), all named
    as audio: none may be opened as a source (a FIFO would block a build for ever)."""
    import socket
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "pipe.wav")
    os.symlink("pipe.wav", folder / "to-pipe.flac")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "socket.ogg"))
    sock.close()
    out = [str(folder / n) for n in ("pipe.wav", "to-pipe.flac", "socket.ogg")]
    try:
        os.mknod(folder / "null.mp3", 0o600 | __import__("stat").S_IFCHR, os.makedev(1, 3))
        out.append(str(folder / "null.mp3"))
    except OSError:
        pass
    return out


def test_a_fifo_socket_or_device_is_recorded_with_its_kind_and_the_build_finishes(tmp_path):
    folder = tmp_path / "audio"
    put(str(folder / "tone.wav"), encoded("WAV", "PCM_16"))
    special = special_files(folder)
    pd.DataFrame({"path": ["pipe.wav", "tone.wav"], "genre": ["x", "y"]}).to_csv(folder / "labels.csv", index=False)
    ds = FolderDataset(folder, labels=folder / "labels.csv")
    assert [s.uri for s in ds.sources()] == [str(folder / "tone.wav")]
    assert sorted(p["uri"] for p in ds.problems) == sorted(special)
    assert any("named pipe (FIFO), not a regular file" in p["message"] for p in ds.problems)
    assert any("socket, not a regular file" in p["message"] for p in ds.problems)
    r = subprocess.run([sys.executable, "-m", "audiorag", "build", str(tmp_path / "lib"), "--dataset",
                        f"folder:{folder}", "--labels", str(folder / "labels.csv"), "--workers", "1", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["added"] == 1 and report["failed"] == len(special)
    for bad in (str(folder / "pipe.wav"), "/proc/self/status", str(folder / "socket.ogg")):
        for reader in (load, load_with_hash):
            with pytest.raises(AudioDecodeError, match="not a regular file|empty file"):
                reader(bad)
    r = runner.invoke(app, ["search", str(tmp_path / "lib"), "--audio", "/proc/self/status"])
    assert r.exit_code == 2 and r.output.strip().splitlines() == ["error: /proc/self/status: empty file (0 bytes)"]


def test_every_file_is_accounted_for(tmp_path):
    c = build_corpus(tmp_path)
    ds = FolderDataset(c["root"], label_from_folder=True)
    sources = ds.sources()
    uris = [s.uri for s in sources]
    assert len(uris) == len(set(uris))
    assert sorted(uris) == sorted(c["good"] + list(c["bad"]))
    assert {p["uri"]: p["error"] for p in ds.problems} == c["problems"]
    assert len(ds.problems) == len(c["problems"])  # each recorded once
    assert all(p["stage"] == "scan" and p["message"] for p in ds.problems)
    assert ds.sources() and len(ds.problems) == len(c["problems"])  # a second scan does not add records

    labels = {os.path.relpath(s.uri, c["root"]): s.metadata.get("label") for s in sources}
    assert labels["links/out.ogg"] == "links"  # the link's own folder, not its target's
    assert labels["outdir/far.wav"] == "outdir"
    assert labels[os.fsdecode(b"d\xe9j\xe0/inner.flac")] == "d\\xe9j\\xe0"  # a label is text: shown escaped

    for uri in c["good"]:
        y, sr = load(uri)
        assert sr == SR and abs(len(y) - 2 * SR) < 0.05 * SR and np.isfinite(y).all(), uri
        assert load_with_hash(uri)[2].startswith("sha256:")
    for uri, reason in c["bad"].items():
        for reader in (load, load_with_hash):
            with pytest.raises(AudioDecodeError, match=reason) as err:
                reader(uri)
            str(err.value).encode("utf-8")  # printable and storable, whatever the file's name
    assert ds.content_hash() == FolderDataset(c["root"]).content_hash()


def test_labels_csv_matches_links_and_escaped_names(tmp_path):
    c = build_corpus(tmp_path)
    rows = [{"path": "links/out.ogg", "label": "via-link"},
            {"path": "caf\\xe9 \\xff.wav", "label": "escaped"},  # as audiorag displays such a name
            {"path": "gone.wav", "label": "missing"}]
    pd.DataFrame(rows).to_csv(c["root"] / "labels.csv", index=False)
    sources = {os.path.relpath(s.uri, c["root"]): s.metadata for s in
               FolderDataset(c["root"], labels=c["root"] / "labels.csv").sources()}
    assert sources["links/out.ogg"]["label"] == "via-link"
    assert sources[os.fsdecode(b"caf\xe9 \xff.wav")]["label"] == "escaped"
    assert sources["gone.wav"] == {"label": "missing"}  # kept, so that the build records it


def test_unreadable_folder_and_file_are_recorded(tmp_path):
    root = tmp_path / "root"
    ok = put(str(root / "open" / "a.wav"), encoded("WAV", "PCM_16"))
    put(str(root / "locked" / "hidden.wav"), encoded("WAV", "PCM_16"))
    secret = put(str(root / "open" / "secret.wav"), encoded("WAV", "PCM_16"))
    os.chmod(root / "locked", 0)
    os.chmod(secret, 0)
    try:
        with permissions_enforced():
            try:
                os.listdir(root / "locked")
                pytest.skip("this file system ignores permissions")
            except PermissionError:
                pass
            ds = FolderDataset(root)
            assert sorted(s.uri for s in ds.sources()) == [ok, secret]
            assert [(p["uri"], p["error"]) for p in ds.problems] == [(str(root / "locked"), "PermissionError")]
            assert "cannot be read" in ds.problems[0]["message"]
            with pytest.raises(AudioDecodeError, match="cannot read file \\(Permission denied\\)"):
                load(secret)
            ds.content_hash()  # unreadable files do not stop it
    finally:
        os.chmod(root / "locked", 0o755)
        os.chmod(secret, 0o644)


# -- the command line ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A library of 8 three-second tones with a text label (two unlabelled) and a numeric year."""
    base = tmp_path_factory.mktemp("tiny")
    rows = []
    for i in range(8):
        name = f"t{i}.wav"
        put(str(base / "audio" / name), encoded("WAV", "PCM_16", seconds=3.0, freq=200 + 150 * i))
        rows.append({"path": f"audio/{name}", "genre": ["low", "high", ""][i % 3],
                     "year": 2000 + i % 2 if i != 5 else None})
    pd.DataFrame(rows).to_csv(base / "labels.csv", index=False)
    lib = base / "lib"
    r = runner.invoke(app, ["build", str(lib), "--dataset", f"folder:{base / 'audio'}", "--labels",
                            str(base / "labels.csv"), "--window", "1", "--hop", "1", "--workers", "1", "--json"])
    assert r.exit_code == 0, r.output
    return {"lib": lib, "base": base}


def bad_invocations(lib: Path, base: Path) -> list[tuple[list[str], str]]:
    """(arguments, a fragment the one error line must hold)."""
    L, new = str(lib), str(base / "new-lib")
    a_file, a_dir = str(base / "labels.csv"), str(base / "audio")
    missing = str(base / "no" / "such" / "folder")
    return [
        (["nosuchcommand"], "No such command"),
        (["build", new, "--window", "inf"], "--window"), (["build", new, "--window", "nan"], "--window"),
        (["build", new, "--window", "abc"], "--window"), (["build", new, "--hop", "0"], "--hop"),
        (["build", new, "--hop", "20", "--window", "10"], "hop"), (["build", new, "--tail", "cut"], "--tail"),
        (["build", new, "--workers", "-3"], "--workers"), (["build", new, "--target-recall", "2"], "--target-recall"),
        (["build", new, "--max-memory", "lots"], "--max-memory"),
        (["build", new, "--max-resident", "-5MB"], "--max-resident"),
        (["build", new, "--embedder", "features45:foo=1"], "n_fft"), (["build", new, "--embedder", "nosuch"], "nosuch"),
        (["build", new, "--embedder", "features45:n_fft"], "key=value"),
        (["build", new, "--index", "Bogus99"], "--index"), (["build", new, "--dataset", f"folder:{missing}"], missing),
        (["build", new, "--dataset", "nosuch:thing"], "unknown dataset"), (["build", a_file], "not a folder"),
        (["build", new, "--dataset", f"folder:{a_dir}", "--label-regex", "(["], "label_regex"),
        (["remove", missing, "0"], "no audiorag library"), (["remove", L, "abc"], "track_id"),
        (["default", missing], "no audiorag library"), (["default", L, "nosuch"], "no embedding 'nosuch'"),
        (["search", L], "give --audio"), (["search", L, "--track", "0", "--at", "99999"], "beyond the end"),
        (["search", L, "--track", "0", "--at", "nan"], "--at"), (["search", L, "--track", "0", "--at", "-1"], "--at"),
        (["search", L, "--track", "999"], "--track 999"), (["search", L, "--track", "0", "-k", "0"], "-k"),
        (["search", L, "--track", "0", "--alpha", "2"], "--alpha"),
        (["search", L, "--track", "0", "--by", "album"], "--by"),
        (["search", L, "--track", "0", "--where", "year=abc"], "not a number"),
        (["search", L, "--track", "0", "--where", "colour=red"], "track columns"),
        (["search", L, "--track", "0", "--where", "=x"], "--where"),
        (["search", L, "--audio", str(base / "none.wav")], "cannot read file"),
        (["search", L, "--audio", str(base / "audio" / "t0.wav"), "--start", "2", "--end", "1"], "--end"),
        (["search", L, "--audio", str(base / "audio" / "t0.wav"), "--start", "inf"], "--start"),
        (["search", L, "--audio", str(base / "audio" / "t0.wav"), "--start", "50"], "beyond the end"),
        (["info", missing], "no audiorag library"), (["info", a_file], a_file), (["check", missing], "no audiorag"),
        (["eval", L, "-k", "0"], "-k"), (["eval", L, "-k", "a,b"], "-k"), (["eval", L, "--queries", "0"], "--queries"),
        (["eval", L, "--depth", "0"], "--depth"), (["eval", L, "--moment-queries", "-1"], "--moment-queries"),
        (["eval", L, "--label", "mood"], "not a track column"), (["eval", L, "--only", "mood=sad"], "track columns"),
        (["eval", L, "--only", "year>=abc"], "not a number"), (["eval", L, "--out", a_file], "--out"),
        (["eval", L, "--export-run", a_dir], "--export-run"), (["eval", L, "--export-run", missing + "/run.txt"],
                                                                "does not exist"),
        (["eval", L, "--export-qrels", a_dir], "--export-qrels"), (["eval", L, "--label", "label"], "not a track"),
        (["sweep", str(base / "none.yaml")], "none.yaml"), (["sweep", a_file], "not a valid sweep"),
        (["data", "fetch", "nosuch", "--to", missing], "NAME"), (["data", "fetch", "freesound", "--to", missing],
                                                                  "--query"),
        (["data", "fetch", "freesound", "--to", a_file, "--query", "rain"], "--to"),
        (["data", "fetch", "fma-small", "--to", missing, "--max", "0"], "--max"),
        (["analyse", L, "--clusters", "spectral:3"], "unknown clustering"), (["analyse", L, "--ks", "a-b"], "--ks"),
        (["analyse", L, "--ks", "5-2"], "--ks"), (["analyse", L, "--anomalies", "0.7"], "--anomalies"),
        (["analyse", L, "--anomalies", "nan"], "--anomalies"), (["analyse", L, "--level", "album"], "--level"),
        (["analyse", L, "--maps", "mds"], "--maps"), (["analyse", L, "--out", a_file], "--out"),
        (["analyse", L, "--write-column", "c"], "--write-column"),
        (["analyse", L, "--label", "mood", "--out", str(base / "an")], "mood"),
        (["recommend", L, "--liked", "0@x"], "TRACK@SECONDS"), (["recommend", L, "--liked", "999@1"], "[999]"),
        (["recommend", L, "--liked", "0@1", "--diversity", "2"], "--diversity"),
        (["recommend", L, "--liked", "0@1", "--mood", "sleepy"], "--mood"),
        (["recommend", L, "--liked", "0@1", "--history", missing], "--history"),
        (["identify", L, "--audio", str(base / "none.wav")], "cannot read file"),
        (["identify", L, "--audio", str(base / "audio" / "t0.wav"), "-k", "0"], "-k"),
        (["identify", L, "--audio", str(base / "audio" / "t0.wav"), "--start", "2", "--end", "1"], "--end"),
        (["identify", L, "--audio", str(base / "audio" / "t0.wav")], "no fingerprints"),
        (["probe", L, "--model", "svm"], "--model"), (["probe", L, "--folds", "-1"], "--folds"),
        (["probe", L, "--level", "album"], "--level"), (["probe", L, "--label", "mood"], "'mood'"),
        (["project", L, "--label", "genre", "--method", "pca"], "--method"),
        (["project", L, "--label", "mood"], "'mood'"),
        (["serve", L, "--max-upload", "lots"], "--max-upload"), (["serve", L, "--timeout", "0s"], "--timeout"),
        (["serve", L, "--host", "0.0.0.0"], "token"), (["serve", L, "--workers", "0"], "--workers"),
        (["serve", missing], "no audiorag library"),
        (["describe", L], "give exactly one of"), (["describe", L, "--track", "999", "--at", "0"], "999"),
        (["describe", L, "--track", "0", "--at", "-1"], "--at"), (["describe", L, "--all"], "--out"),
        (["describe", L, "--audio", str(base / "none.wav")], "none.wav"),
        (["describe", L, "--track", "0", "--at", "1", "--llm", "http://127.0.0.1:9"], "--llm-model"),
        (["fuse", L, "features45"], "at least two"), (["fuse", L, "features45", "nosuch"], "nosuch"),
        (["models", "verify", "features45:foo=1"], "n_fft"), (["models", "verify", "nosuch"], "nosuch"),
        (["models", "--bogus"], "--bogus"),
    ]


def test_every_command_meets_bad_values_with_one_line(tiny):
    lib, base = tiny["lib"], tiny["base"]
    before = sorted(p.name for p in base.iterdir())
    tried = set()
    for args, fragment in bad_invocations(lib, base):
        r = runner.invoke(app, args)
        out = r.output
        assert r.exit_code == 2, (args, r.exit_code, out)
        assert "Traceback" not in out, (args, out)
        lines = [line for line in out.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, out)
        assert fragment in lines[0], (args, fragment, lines[0])
        sub = args[0] in ("data", "models") and len(args) > 1 and not args[1].startswith("-")
        tried.add(" ".join(args[:2]) if sub else args[0])
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert commands | {"data fetch", "models", "models verify"} <= tried
    assert sorted(p.name for p in base.iterdir()) == before  # nothing was created: checked before any work


def test_where_and_only_compare_typed_values(tiny):
    lib = str(tiny["lib"])
    hits = json.loads(runner.invoke(app, ["search", lib, "--track", "0", "-k", "50", "--where", "year=2001",
                                          "--json"]).stdout)
    assert hits and {h["year"] for h in hits} == {2001.0}  # a float column holding 2001.0 matches 2001
    hits = json.loads(runner.invoke(app, ["search", lib, "--track", "0", "-k", "50", "--where", "year<2001",
                                          "--where", "genre!=low", "--json"]).stdout)
    assert hits and all(h["year"] == 2000.0 and h["genre"] != "low" for h in hits)
    r = runner.invoke(app, ["eval", lib, "--only", "year>=2001", "--moment-queries", "0", "--json"])
    assert r.exit_code == 0, r.output
    record = json.loads(r.stdout)
    assert record["dataset"]["n_tracks"] == 3
    assert record["protocol"]["subset"] == {"year": [{"op": ">=", "value": "2001"}]}


def test_eval_with_unlabelled_tracks_goes_on(tiny, tmp_path):
    r = runner.invoke(app, ["eval", str(tiny["lib"]), "--moment-queries", "0", "--out", str(tmp_path / "o"),
                            "--export-run", str(tmp_path / "run.txt"), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)["metrics"]
    assert m["n_unlabelled"] == 2 and m["n_unlabelled_segments"] == 6
    assert (tmp_path / "o" / "metrics.json").exists() and (tmp_path / "run.txt").stat().st_size > 0


def test_check_and_wait_reach_the_library(tiny):
    lib = str(tiny["lib"])
    r = runner.invoke(app, ["check", lib, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["remaining"] == 0
    r = runner.invoke(app, ["build", lib, "--dataset", f"folder:{tiny['base'] / 'audio'}", "--window", "1",
                            "--hop", "1", "--workers", "1", "--wait", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["added"] == 0


def test_unexpected_errors_print_one_line_and_keep_the_traceback(tmp_path, monkeypatch):
    from audiorag.embedders import _REGISTRY, register

    @register("broken-for-test")
    def broken(**params):
        raise RuntimeError("boom: the embedder could not start")

    try:
        monkeypatch.setenv("AUDIORAG_CACHE", str(tmp_path / "cache"))
        r = runner.invoke(app, ["models", "verify", "broken-for-test"])
        assert r.exit_code == 1 and "Traceback" not in r.output
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: unexpected RuntimeError: boom"), r.output
        log = Path(lines[0].rsplit("the traceback is in ", 1)[1])
        assert log.parent == tmp_path / "cache" / "logs"
        text = log.read_text()
        assert "Traceback (most recent call last)" in text and "RuntimeError: boom" in text

        (tmp_path / "not-a-folder").write_text("")  # no log folder can be made there: the temp folder it is
        monkeypatch.setenv("AUDIORAG_CACHE", str(tmp_path / "not-a-folder"))
        r = runner.invoke(app, ["models", "verify", "broken-for-test"])
        log = Path(r.output.strip().rsplit("the traceback is in ", 1)[1])
        try:
            assert log.parent == Path(tempfile.gettempdir()) / "audiorag-logs" and "RuntimeError" in log.read_text()
        finally:
            log.unlink()
            try:
                log.parent.rmdir()  # when no other log is kept there
            except OSError:
                pass
    finally:
        _REGISTRY.pop("broken-for-test", None)


def test_console_script_and_module_give_one_line(tmp_path):
    script = Path(sys.executable).with_name("audiorag")
    env = {**os.environ, "AUDIORAG_CACHE": str(tmp_path)}
    for cmd in ([str(script)], [sys.executable, "-m", "audiorag"]):
        if not Path(cmd[0]).exists():
            continue
        p = subprocess.run(cmd + ["search", str(tmp_path / "nolib"), "--track", "0", "--at", "nan"],
                           capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 2 and "Traceback" not in p.stdout + p.stderr, (cmd, p.stderr)
        assert p.stderr.strip().splitlines() == ["error: --at must be a finite number (seconds), got nan"]


def test_errno_of_a_dangling_link_is_enoent(tmp_path):
    # the scan tells dangling links from loops by errno; make sure the platform agrees
    os.symlink(tmp_path / "missing", tmp_path / "a")
    os.symlink(tmp_path / "b", tmp_path / "b")
    for name, code in (("a", errno.ENOENT), ("b", errno.ELOOP)):
        with pytest.raises(OSError) as err:
            os.stat(tmp_path / name)
        assert err.value.errno == code


def test_library_api_rejects_non_finite_values():
    from audiorag.errors import ParameterError
    from audiorag.search import Query
    from audiorag.segment import Segmentation
    for kw in ({"window": float("inf")}, {"hop": float("nan")}, {"window": "10"}, {"hop": 0}):
        with pytest.raises(ParameterError):
            Segmentation(**kw)
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ParameterError, match="at must be a finite time"):
            Query.moment(0, at=bad)
        with pytest.raises(ParameterError, match="start must be a finite time"):
            Query.audio("x.wav", start=bad)
    with pytest.raises(ParameterError, match="alpha"):
        Query.hybrid("piano", Query.moment(0, 1.0), alpha=float("nan"))


def _shapes(lib: Path) -> list[tuple[str, str, str]]:
    """(file relative to the library, content of another shape, the field the error must name)."""
    gen = (lib / "CURRENT").read_text().strip()
    m = json.loads((lib / gen / "manifest.json").read_text())
    first = next(iter(m["files"]))
    return [
        (f"{gen}/manifest.json", "[]", "the whole file"),
        (f"{gen}/manifest.json", json.dumps({**m, "files": list(m["files"])}), "field files"),
        (f"{gen}/manifest.json", json.dumps({**m, "generation": "1"}), "field generation"),
        (f"{gen}/manifest.json", json.dumps({**m, "files": {**m["files"], first: {"bytes": -1}}}),
         f"field files.{first}"),
        (f"{gen}/manifest.json", json.dumps({k: v for k, v in m.items() if k != "files"}), "field files"),
        ("library.json", "[1, 2]", "the whole file"),
        ("library.json", json.dumps({"format_version": 2}), "field segmentation"),
        ("library.json", json.dumps({"format_version": 2, "segmentation": {"window": "1", "hop": 1, "tail": "x"}}),
         "field segmentation.window"),
        ("CURRENT", "gen-x\n", "CURRENT"), ("CURRENT", "", "CURRENT"), ("CURRENT", "gen-999999\n", "gen-999999")]


def test_a_library_file_of_another_shape_is_one_line_naming_the_file_and_field(tiny, tmp_path):
    import shutil
    for i, (rel, content, field) in enumerate(_shapes(tiny["lib"])):
        lib = tmp_path / f"lib{i}"
        shutil.copytree(tiny["lib"], lib)
        (lib / rel).write_text(content)
        for args in (["info", lib], ["search", lib, "--track", "0", "--at", "1"], ["check", lib],
                     ["build", lib, "--dataset", f"folder:{tiny['base'] / 'audio'}", "--workers", "1"]):
            r = runner.invoke(app, [str(a) for a in args])
            lines = r.output.strip().splitlines()
            where = f"{args[0]} with {rel} = {content[:60]!r}: {r.output}"
            if args[0] == "check":  # a report: the problem's line, then what --repair would do (exit 1)
                assert r.exit_code in (1, 2) and "Traceback" not in r.output, where
            else:
                assert len(lines) == 1 and r.exit_code == 2, where
            assert "Error" not in lines[0].split(":")[0], where
            assert Path(rel).name in lines[0] and field in lines[0], where


def test_random_json_in_library_files_never_crashes_open_or_check(tiny, tmp_path):
    import shutil

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from audiorag import Library
    from audiorag.errors import AudioragError
    from audiorag.library.check import check_path
    lib = tmp_path / "lib"
    shutil.copytree(tiny["lib"], lib)
    gen = (lib / "CURRENT").read_text().strip()
    real = {"library.json": json.loads((lib / "library.json").read_text()),
            f"{gen}/manifest.json": json.loads((lib / gen / "manifest.json").read_text())}
    leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    values = st.recursive(leaves, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c,
                                                                                      max_size=3), max_leaves=10)

    def mutated(obj):  # the real file with one key's value replaced, removed, or the whole file random
        keys = st.sampled_from(sorted(obj))
        return st.one_of(values, st.tuples(keys, values).map(lambda kv: {**obj, kv[0]: kv[1]}),
                         keys.map(lambda k: {x: v for x, v in obj.items() if x != k}))

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(sorted(real)).flatmap(lambda f: st.tuples(st.just(f), mutated(real[f]))))
    def opens_or_one_clear_error(case):
        rel, obj = case
        (lib / rel).write_text(json.dumps(obj))
        try:
            for step in (lambda: Library.open(lib).info(), lambda: check_path(lib)):
                try:
                    step()
                except AudioragError as exc:
                    assert "\n" not in str(exc) and exc.__class__.__name__ != "AudioragError"
        finally:
            for f, o in real.items():
                (lib / f).write_text(json.dumps(o))

    opens_or_one_clear_error()


# -- property tests (hypothesis) for the parsers of user input that are not HTTP ------------------------------
def _property(max_examples=200):
    from hypothesis import HealthCheck, settings
    return settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck))


def test_any_dataset_spec_is_a_dataset_or_one_clear_error(tmp_path):
    from hypothesis import given
    from hypothesis import strategies as st

    from audiorag.datasets import resolve
    from audiorag.errors import AudioragError
    kinds = st.sampled_from(["synthetic", "melodic", "folder", "fma", "freesound", "x", ""])
    rests = st.one_of(st.text(max_size=12), st.integers(-5, 10**12).map(str),
                      st.tuples(st.integers(-3, 10**6), st.integers(-3, 2**70)).map(lambda t: f"{t[0]}:{t[1]}"))

    @_property()
    @given(kinds, st.sampled_from([":", "::", ""]), rests)
    def clear(kind, sep, rest):
        try:
            ds = resolve(f"{kind}{sep}{rest}", root=str(tmp_path))
        except AudioragError as exc:
            assert "\n" not in str(exc) and str(exc)
            return
        assert ds.id
    clear()


def test_any_embedder_spec_parses_or_is_one_parameter_error():
    from hypothesis import example, given
    from hypothesis import strategies as st

    from audiorag.embedders import parse_spec
    from audiorag.errors import ParameterError
    names = st.from_regex(r"[a-z][a-z0-9_@-]{0,10}", fullmatch=True)
    keys = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
    scalars = st.one_of(st.integers(-10**6, 10**6), st.from_regex(r"[a-z][a-z0-9/._-]{0,10}", fullmatch=True))

    @_property()
    @given(st.text(max_size=30))
    @example("a:b=[")
    @example("mert:layer=*x")
    @example("a:b=!!python/int 3")
    @example('a:b="')
    def never_crashes(text):
        try:
            name, params = parse_spec(text)
        except ParameterError as exc:
            assert "\n" not in str(exc)
            return
        assert isinstance(name, str) and isinstance(params, dict)

    @_property()
    @given(names, st.dictionaries(keys, scalars, max_size=4))
    def round_trips(name, params):
        spec = name + (":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")
        assert parse_spec(spec) == (name, params)
    never_crashes()
    round_trips()


def test_any_liked_moment_is_a_finite_moment_or_one_parameter_error():
    import math

    from hypothesis import given
    from hypothesis import strategies as st

    from audiorag.errors import ParameterError
    from audiorag.recommend import parse_moment

    @_property()
    @given(st.one_of(st.text(max_size=20),
                     st.tuples(st.integers(-10, 10**20), st.floats()).map(lambda t: f"{t[0]}@{t[1]}")))
    def clear(text):
        try:
            track, at = parse_moment(text)
        except ParameterError as exc:
            assert "\n" not in str(exc)
            return
        assert isinstance(track, int) and math.isfinite(at) and at >= 0
    clear()
    assert parse_moment("12@30.5") == (12, 30.5)


def test_any_time_span_decodes_that_span_or_is_one_clear_error(tmp_path):
    from hypothesis import given
    from hypothesis import strategies as st

    from audiorag.errors import AudioragError
    path = put(str(tmp_path / "t.wav"), encoded("WAV", "PCM_16", seconds=2.0))
    spans = st.one_of(st.none(), st.floats(), st.floats(0, 3))

    @_property(150)
    @given(st.one_of(st.floats(), st.floats(0, 3)), spans)
    def clear(offset, duration):
        try:
            y, sr = load(path, offset=offset, duration=duration)
        except AudioragError as exc:
            assert "\n" not in str(exc)
            return
        want = (2.0 - offset) if duration is None else min(duration, 2.0 - offset)
        assert abs(len(y) / sr - want) <= 1 / sr + 1e-9
    clear()


def test_any_start_and_end_on_the_command_line_is_an_answer_or_exit_2(tiny):
    from hypothesis import given
    from hypothesis import strategies as st
    numbers = st.one_of(st.floats().map(repr), st.text(max_size=6), st.integers(-5, 50).map(str))

    @_property(25)
    @given(numbers, numbers)
    def clear(start, end):
        r = runner.invoke(app, ["search", str(tiny["lib"]), "--audio", str(tiny["base"] / "audio" / "t1.wav"),
                                "--start", start, "--end", end, "-k", "2", "--json"])
        assert r.exit_code in (0, 2) and (r.exit_code == 0 or len(r.output.strip().splitlines()) == 1), r.output
    clear()


def test_any_where_expression_parses_or_is_one_clear_error_and_what_the_schema_allows_evaluates():
    """The `where` parser (CLI, server, `eval --only`, the map) on random expressions: a mapping or a ParameterError,
    never another exception; every item the server's schema pattern accepts evaluates to a mask without error
    (the schema's promise: what it allows is answered, not refused)."""
    import re

    import pandas as pd
    from hypothesis import given
    from hypothesis import strategies as st

    from audiorag.errors import ParameterError
    from audiorag.search.filters import parse_where, track_mask
    from audiorag.serve.contract import where_pattern
    tracks = pd.DataFrame({"track_id": [0, 1, 2], "uri": ["/a", "/b", "/c"], "genre": ["rock", "jazz", None],
                           "year": [1999.0, 2001.0, None], "live": [True, False, True], "bpm": [120, 90, 100]})
    pattern = where_pattern(tracks)
    spaces = st.text(" \t\n\r\x0b\x0c", max_size=3)
    numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10**20, 10**20).map(str),
                        st.from_regex(r"[+-]?[0-9]{1,15}(\.[0-9]{0,15})?([eE][+-]?[0-9]{1,2})?", fullmatch=True))
    values = st.one_of(numbers, st.text(max_size=12), st.sampled_from(["true", "No", "rock", "", "1e999"]))
    columns = st.one_of(st.sampled_from(["genre", "year", "live", "bpm", "uri", "track_id", "nope", ""]),
                        st.text(max_size=8))
    ops = st.sampled_from(["=", "==", "!=", ">=", "<=", ">", "<", "=>", "", "~"])
    items = st.one_of(st.tuples(spaces, columns, spaces, ops, spaces, values, spaces).map("".join),
                      st.text(max_size=30))

    @_property(300)
    @given(st.lists(items, min_size=1, max_size=3))
    def check(where):
        try:
            filters = parse_where(where)
        except ParameterError:
            assert not all(re.search(pattern, w) for w in where), where  # the schema allowed what parsing refused
            return
        try:
            mask = track_mask(tracks, filters)
        except ParameterError:
            assert not all(re.search(pattern, w) for w in where), where  # allowed by the schema, refused here
            return
        assert mask.dtype == bool and len(mask) == len(tracks)
    check()
