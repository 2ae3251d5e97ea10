"""FMA and Freesound recipes against real HTTP servers on loopback."""

import hashlib
import io
import json
import logging
import socket
import zipfile

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from servers import Server, freesound_api
from typer.testing import CliRunner

from audiorag import Library
from audiorag.cli import app
from audiorag.datasets import fma, freesound, resolve
from audiorag.datasets.fetch import download
from audiorag.errors import DownloadError, ParameterError

SR = 22050
runner = CliRunner()


def _mp3(seconds: float, freq: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * (2 + seed % 3) * t))
    y += 0.02 * rng.standard_normal(len(t))
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), SR, format="MP3")
    return buf.getvalue()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- downloads -------------------------------------------------------------------------------
def test_download_resumes_after_a_dropped_connection(tmp_path):
    data = bytes(np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8))
    with Server() as srv:
        srv.files["/big.bin"] = data
        srv.drop_once.add("/big.bin")
        path = download(srv.url + "/big.bin", tmp_path / "big.bin", sha1=hashlib.sha1(data).hexdigest(), progress=False)
        ranges = [h.get("Range") for p, h in srv.log if p == "/big.bin"]
    assert path.read_bytes() == data
    assert ranges[0] is None and ranges[1].startswith("bytes=")  # the second request resumed the part
    assert 0 < int(ranges[1][6:-1]) <= len(data) // 2
    assert not (tmp_path / "big.bin.part").exists()


def test_checksum_mismatch_is_clear_and_removes_the_partial_file(tmp_path):
    with Server() as srv:
        srv.files["/f.zip"] = b"x" * 1000
        with pytest.raises(DownloadError, match="does not match the published .* partial file was removed"):
            download(srv.url + "/f.zip", tmp_path / "f.zip", sha1="0" * 40, progress=False)
    assert not (tmp_path / "f.zip").exists() and not (tmp_path / "f.zip.part").exists()


def test_unreachable_url_fails_fast_with_a_clear_message(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/"
    with pytest.raises(DownloadError, match="cannot reach .*Connection refused"):
        download(url + "x.zip", tmp_path / "x.zip", progress=False)
    r = runner.invoke(app, ["data", "fetch", "fma-small", "--to", str(tmp_path), "--url", url])
    assert r.exit_code == 2 and "cannot reach" in r.output and "fma_metadata.zip" in r.output


# -- FMA -------------------------------------------------------------------------------------
FMA_IDS = [2, 3, 5, 10, 20, 26, 30, 46, 99134]


def _fma_mirror():
    """fma_metadata.zip (tracks.csv with the real two-row header, genres.csv) and fma_small.zip."""
    rows = []
    for i, tid in enumerate(FMA_IDS):
        rock = i % 2 == 0
        rows.append({("album", "id"): 100 + i // 2, ("album", "title"): f"Album {i // 2}",
                     ("artist", "id"): 10 + i // 2, ("artist", "name"): f"Artist {i // 2}",
                     ("set", "split"): "test" if i >= 4 else "training", ("set", "subset"): "small",
                     ("track", "duration"): 30, ("track", "genre_top"): "Rock" if rock else "Electronic",
                     ("track", "genres"): "[12]" if rock else "[15, 236]", ("track", "genres_all"): "[12]",
                     ("track", "license"): "Attribution", ("track", "listens"): 10 * i,
                     ("track", "title"): f"Song {tid}"})
    rows.append({**rows[0], ("set", "subset"): "medium", ("track", "title"): "Medium only"})
    tracks = pd.DataFrame(rows, index=pd.Index(FMA_IDS + [999], name="track_id"))
    tracks.columns = pd.MultiIndex.from_tuples(tracks.columns)
    genres = pd.DataFrame({"genre_id": [12, 15, 236], "#tracks": [5, 4, 4], "parent": [0, 0, 15],
                           "title": ["Rock", "Electronic", "Ambient Electronic"], "top_level": [12, 15, 15]})
    meta = io.BytesIO()
    with zipfile.ZipFile(meta, "w") as z:
        z.writestr("fma_metadata/tracks.csv", tracks.to_csv())
        z.writestr("fma_metadata/genres.csv", genres.to_csv(index=False))
    audio = io.BytesIO()
    with zipfile.ZipFile(audio, "w") as z:
        for i, tid in enumerate(FMA_IDS):
            name = f"fma_small/{tid:06d}"[:13] + f"/{tid:06d}.mp3"
            body = b"" if tid in fma.KNOWN_BAD else _mp3(12.0, 220 if i % 2 == 0 else 880, i)
            z.writestr(name, body)
    return {"metadata": meta.getvalue(), "small": audio.getvalue()}


def test_tracks_csv_header_layout_is_the_real_one():
    text = zipfile.ZipFile(io.BytesIO(_fma_mirror()["metadata"])).read("fma_metadata/tracks.csv").decode()
    first, second, third = text.splitlines()[:3]
    assert first.startswith(",album,album,artist") and second.startswith(",id,title,id,name")
    assert third.startswith("track_id,,,")


def test_fma_end_to_end_fetch_build_eval(tmp_path, caplog):
    archives = _fma_mirror()
    sums = {k: hashlib.sha1(v).hexdigest() for k, v in archives.items()}
    root = tmp_path / "fma"
    with Server() as srv:
        srv.files["/fma/fma_metadata.zip"] = archives["metadata"]
        srv.files["/fma/fma_small.zip"] = archives["small"]
        srv.drop_once.add("/fma/fma_small.zip")
        fma.fetch("small", root, url=srv.url + "/fma", checksums=sums, progress=False)
    assert (root / "fma_small" / "000" / "000002.mp3").exists()
    with caplog.at_level(logging.WARNING):
        sources = resolve("fma:small", root=root).sources()
    assert len(sources) == len(FMA_IDS) and "99134 is known to be bad" in caplog.text
    meta = {s.metadata["track_id"]: s.metadata for s in sources}
    assert meta[5]["genres"] == json.dumps(["Rock"])
    assert meta[3]["genres"] == json.dumps(["Electronic", "Ambient Electronic"])
    assert meta[3]["artist"] == "Artist 0" and meta[30]["split"] == "test"
    lib = tmp_path / "lib"
    r = runner.invoke(app, ["build", str(lib), "--dataset", "fma:small", "--fma-root", str(root), "--window", "5",
                            "--hop", "2.5", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert (report["added"], report["failed"]) == (8, 1) and report["errors"][0]["uri"].endswith("099134.mp3")
    tracks = Library.open(lib).tracks
    assert sorted(tracks["track_id"]) == sorted(set(FMA_IDS) - {99134})  # FMA's own ids
    assert {"genre_top", "split", "artist", "license", "title"} <= set(tracks.columns)
    r = runner.invoke(app, ["eval", str(lib), "--label", "genre_top", "--exclude-same", "artist",
                            "--only", "split=test",
                            "--moment-queries", "3", "--json"])
    assert r.exit_code == 0, r.output
    record = json.loads(r.stdout)
    assert record["protocol"]["subset"] == {"split": ["test"]} and record["dataset"]["n_tracks"] == 4
    assert record["metrics"]["segment/P@1"] == 1.0  # in this mirror genres are far apart (220 Hz vs 880 Hz)
    r = runner.invoke(app, ["search", str(lib), "--track", "2", "--at", "0", "-k", "2", "--exclude-same-track",
                            "--by", "track"])
    assert "genre top" in r.output and "license" in r.output  # the table humanises headings


# -- Freesound -------------------------------------------------------------------------------
def _sounds(url):
    out = []
    for i in range(7):
        sid = 1000 + i
        kind = "kick" if i < 5 else "snare"
        out.append({"id": sid, "name": f"{kind} {i}", "tags": ["drum", kind],
                    "username": f"user{i % 2}", "license": "http://creativecommons.org/publicdomain/zero/1.0/",
                    "duration": 1.5, "url": f"https://freesound.org/s/{sid}/",
                    "previews": {"preview-hq-mp3": f"{url}/previews/{sid}.mp3"}})
    return out


@pytest.mark.slow
def test_freesound_pagination_throttling_dedup_and_tracks(tmp_path, caplog):
    with Server() as srv:
        sounds = _sounds(srv.url)
        for i, s in enumerate(sounds):
            srv.files[f"/previews/{s['id']}.mp3"] = _mp3(1.5, 200 + 100 * i, i)
        freesound_api(srv, sounds, token="s3cret", throttle_every=2, retry_after="1")
        client = freesound.FreesoundClient("s3cret", url=srv.url + "/apiv2/")
        with caplog.at_level(logging.DEBUG):
            results = client.search("kick", max_results=10, page_size=2)
        assert [r["id"] for r in results] == [1000, 1001, 1002, 1003, 1004]
        searches = [h for p, h in srv.log if p == "/apiv2/search/"]
        assert len(searches) == 5  # 3 pages + 2 throttled (429 with Retry-After) retried
        root = freesound.fetch("kick", tmp_path / "fs", client=client, max_results=10)
        previews = [p for p, _ in srv.log if p.startswith("/previews/")]
        freesound.fetch("kick", tmp_path / "fs", client=client, max_results=10)
        assert [p for p, _ in srv.log if p.startswith("/previews/")] == previews  # nothing downloaded twice
        with pytest.raises(DownloadError, match="rejected the token"):
            freesound.FreesoundClient("wrong", url=srv.url + "/apiv2/").search("kick")
    assert "s3cret" not in caplog.text and "s3cret" not in repr(client)
    manifest = pd.read_csv(root / "freesound.csv")
    assert manifest["freesound_id"].tolist() == [1000, 1001, 1002, 1003, 1004]
    assert set(manifest["artist"]) == {"user0", "user1"} and (manifest["query"] == "kick").all()
    assert "s3cret" not in (root / "freesound.csv").read_text()
    lib = Library.create(tmp_path / "lib", window=1, hop=0.5)
    lib.add(resolve(f"freesound:{root}"), embedders=["features45"], workers=1, progress=False)
    assert len(lib.tracks) == 5 and lib.tracks["license"].str.contains("publicdomain").all()


def test_throttle_keeps_the_documented_limits(monkeypatch):
    now = {"t": 0.0}
    slept = []
    throttle = freesound.Throttle(per_minute=60, per_day=2000, clock=lambda: now["t"],
                                  sleep=lambda s: (slept.append(s), now.__setitem__("t", now["t"] + s)))
    for _ in range(61):
        throttle.wait()
        now["t"] += 0.01
    assert len(slept) == 1 and 59 < slept[0] <= 60
    monkeypatch.delenv("FREESOUND_TOKEN", raising=False)
    with pytest.raises(ParameterError, match="FREESOUND_TOKEN"):
        freesound.FreesoundClient(None, url="http://127.0.0.1:1/")


# -- folder labels ---------------------------------------------------------------------------
def test_folder_labels_from_subfolders_and_filename_regex(tmp_path):
    for rel in ["kicks/k1.wav", "kicks/deep/k2.wav", "snares/s1.wav", "bd_haus.flac", "sn_dub.flac", "misc.wav"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    by_folder = {s.uri.split(str(tmp_path) + "/")[1]: s.metadata for s in
                 resolve(f"folder:{tmp_path}", label_from_folder=True).sources()}
    assert by_folder["kicks/deep/k2.wav"] == {"label": "kicks"} and by_folder["bd_haus.flac"] == {}
    by_name = {s.uri.rsplit("/", 1)[1]: s.metadata for s in
               resolve(f"folder:{tmp_path}", label_regex=r"^(?P<label>[a-z]+)_(?P<group>\w+)\.").sources()}
    assert by_name["bd_haus.flac"] == {"label": "bd", "group": "haus"} and by_name["misc.wav"] == {}
    with pytest.raises(ParameterError, match="bad label_regex"):
        resolve(f"folder:{tmp_path}", label_regex="(")
