"""audiorag serve: every route through FastAPI's TestClient and a real uvicorn process on loopback;
limits, the token, CORS, path traversal, a bad-input corpus sent to every route (never a 5xx)."""

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from audiorag import Library, Query
from audiorag.audio import load
from audiorag.search import search
from audiorag.serve import Settings, create_app
from audiorag.serve.warm import queries

SR = 22050
GENRES = ["drone", "drone", "pulse", "pulse", "noise"]


def _track(i: int, seconds: float = 12.0) -> np.ndarray:
    """Distinct generated tracks: a tone per track, a pulse for some, noise for the last."""
    rng = np.random.default_rng(i)
    t = np.arange(int(seconds * SR)) / SR
    y = 0.3 * np.sin(2 * np.pi * 110 * (i + 1) * t) * (1 + (GENRES[i] == "pulse") * np.sign(np.sin(2 * np.pi * 2 * t)))
    if GENRES[i] == "noise":
        y = 0.3 * rng.standard_normal(len(t))
    return (y + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def _wav(y: np.ndarray, sr: int = SR, **kw) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", **kw)
    return buf.getvalue()


def _make_library(root) -> Library:
    audio = root / "audio"
    audio.mkdir(parents=True)
    for i in range(len(GENRES)):
        sf.write(audio / f"t{i}.wav", _track(i), SR)
    lib = Library.create(root / "lib", window=4, hop=2)
    lib.add(str(audio), embedders=["features45"], workers=1, progress=False)
    lib.build_index("features45", "Flat")
    ids = lib.tracks.sort_values("uri")["track_id"].tolist()
    lib.set_track_column("genre", dict(zip(ids, GENRES)))
    lib.set_track_column("year", dict(zip(ids, [1999.0, 2001.0, 2005.0, 2010.0, 2020.0])))
    return Library.open(root / "lib")


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return _make_library(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def client(lib):
    with TestClient(create_app(Settings(str(lib.path), max_clip=20, warm=False)), raise_server_exceptions=False) as c:
        yield c


def test_a_server_warms_every_query_kind_before_health_says_ok(lib, tmp_path):
    """At start a server runs one query of each kind the library offers (/health: "warming" meanwhile), on
    the library's own audio; a library with a melody embedding warms hums too."""
    with TestClient(create_app(Settings(str(lib.path)))) as c:
        assert c.get("/health").json()["status"] in ("warming", "ok")
        assert c.app.state.warmer.ready.wait(120)
        assert c.get("/health").json()["status"] == "ok"
        took = c.app.state.warmer.took
    key = lib.embedding("features45").key
    assert set(took) == {f"{key} moment", f"{key} audio", f"{key} audio+rerank"}
    assert all(0 < t < 120 for t in took.values())
    # a melody embedding adds a hum; an empty library has nothing to warm (and says ready)
    copy = Library.open(shutil.copytree(lib.path, tmp_path / "lib"))
    copy.embed("melody", progress=False)
    assert {kind for _, kind, _, _ in queries(copy)} == {"moment", "audio", "audio+rerank", "hum"}
    empty = Library.create(tmp_path / "empty", window=4, hop=2)
    with TestClient(create_app(Settings(str(empty.path)))) as c:
        assert c.app.state.warmer.ready.wait(30) and c.app.state.warmer.took == {}


def _by_uri(lib, name: str) -> int:
    return int(lib.tracks.loc[lib.tracks["uri"].str.endswith(name), "track_id"].iloc[0])


def test_routes_answer_with_the_library(lib, client):
    assert client.get("/health").json() == {"status": "ok", "version": client.app.version, "library": "lib",
                                            "generation": lib.generation}
    stats = client.get("/stats").json()
    assert (stats["tracks"], stats["segments"]) == (5, len(lib.segments))
    assert stats["labels"] == {"genre": {"drone": 2, "pulse": 2, "noise": 1}}
    assert client.get("/stats?column=year").json()["labels"] == {"year": {str(y): 1 for y in
                                                                          (1999.0, 2001.0, 2005.0, 2010.0, 2020.0)}}
    (emb,) = stats["embeddings"]
    assert (emb["name"], emb["dim"], emb["text"], emb["indexes"][0]["factory"]) == ("features45", 45, None, "Flat")
    assert 45 * 4 <= emb["indexes"][0]["bytes_per_segment"] < 45 * 4 * 1.1  # float32 rows + the index header
    page = client.get("/tracks?limit=2&offset=1").json()
    assert page["total"] == 5 and [t["track_id"] for t in page["tracks"]] == sorted(lib.tracks["track_id"])[1:3]
    assert "uri" not in json.dumps(page) and str(lib.path.parent) not in json.dumps(page)
    typed = client.get("/tracks", params={"where": ["year>=2005", "genre!=noise"]}).json()  # numbers as numbers
    assert [t["metadata"]["year"] for t in typed["tracks"]] == [2005.0, 2010.0]
    assert client.get("/tracks", params={"where": ["genre=drone", "genre=noise"]}).json()["total"] == 3
    tid = _by_uri(lib, "t2.wav")
    one = client.get(f"/tracks/{tid}").json()
    assert (one["file"], one["duration"], one["metadata"]["genre"]) == ("t2.wav", 12.0, "pulse")


def test_moment_search_returns_what_search_returns(lib, client):
    tid = _by_uri(lib, "t1.wav")
    for params in ({"k": 4}, {"k": 3, "by": "track"}, {"k": 5, "exclude_same_track": True},
                   {"k": 3, "where": ["genre=pulse"]}):
        body = client.get("/search/moment", params={"track": tid, "at": 5.0, **params}).json()
        filters = {"genre": "pulse"} if "where" in params else None
        expected = search(lib, Query.moment(tid, 5.0), k=params["k"], by=params.get("by", "segment"),
                          exclude_same_track=params.get("exclude_same_track", False), filters=filters)
        assert [h["segment_id"] for h in body["hits"]] == expected["segment_id"].tolist(), params
        np.testing.assert_allclose([h["score"] for h in body["hits"]], expected["score"], atol=1e-6)
    from audiorag.rerank import Rerank
    body = client.get("/search/moment", params={"track": tid, "at": 5.0, "k": 3,
                                                "rerank": "diversity=0.5,max_per_track=1,tempo=0.2"}).json()
    expected = search(lib, Query.moment(tid, 5.0), k=3, rerank=Rerank(diversity=0.5, max_per_track=1, tempo=0.2))
    assert [h["segment_id"] for h in body["hits"]] == expected["segment_id"].tolist()
    assert len({h["track_id"] for h in body["hits"]}) == 3  # one moment per track
    for bad in ("diversity=2", "speed=1", "diversity", "max_per_track=x", "mood=angry"):
        r = client.get("/search/moment", params={"track": tid, "rerank": bad})
        assert r.status_code == 422 and r.json()["detail"].startswith("rerank"), (bad, r.text)
    hit = client.get("/search/moment", params={"track": tid, "at": 5.0, "k": 1}).json()["hits"][0]
    assert (hit["track_id"], hit["start"], hit["end"], hit["file"]) == (tid, 4.0, 8.0, "t1.wav")
    assert hit["audio"] == f"/tracks/{tid}/audio?start=4&end=8" and hit["metadata"]["genre"] == "drone"


def test_answers_joined_from_track_cards_are_the_search_table_s_and_the_schema_s(lib, client):
    """Moment and upload answers join the hits' columns (hit_columns) to track cards made once per generation,
    with no table and no pydantic on the request path: the same hits, field for field, as search()'s table
    gives, and JSON that the SearchResult model validates without changing a value."""
    import pandas as pd

    from audiorag.search import hit_columns, with_metadata
    from audiorag.serve.answers import column_hits, table_hits
    from audiorag.serve.models import SearchResult
    tid = _by_uri(lib, "t1.wav")
    queries = [Query.moment(tid, 5.0), Query.moment(_by_uri(lib, "t4.wav"), 0.0),
               Query.audio(_track(3)[2 * SR:9 * SR], sr=SR)]
    for query in queries:
        for options in ({"k": 4}, {"k": 3, "by": "track"}, {"k": 5, "exclude_same_track": True},
                        {"k": 3, "filters": {"genre": "pulse"}}, {"k": 50}):
            table = search(lib, query, **options)
            ctx, cols = hit_columns(lib, query, **options)
            pd.testing.assert_frame_equal(with_metadata(ctx, cols), table)
            assert column_hits(lib, cols) == table_hits(table), (query.kind, options)
            assert len(table) and table["genre"].notna().all()  # hits with their tracks' columns
    for params in ({"k": 4}, {"k": 3, "by": "track"}, {"k": 5, "exclude_same_track": True, "where": "year>=2005"},
                   {"k": 3, "rerank": "diversity=0.5,max_per_track=1"}):
        r = client.get("/search/moment", params={"track": tid, "at": 5.0, **params})
        body = r.json()
        assert r.headers["content-type"] == "application/json"
        assert SearchResult.model_validate(body).model_dump(mode="json") == body, params
        assert body["hits"] and all(h["file"].startswith("t") and "uri" not in h["metadata"] for h in body["hits"])
    plain = client.get("/search/moment", params={"track": tid, "at": 5.0, "k": 4}).json()["hits"]
    assert plain == table_hits(search(lib, Query.moment(tid, 5.0), k=4))
    assert [h["metadata"]["genre"] for h in plain[:1]] == ["drone"] and plain[0]["tags"] is None


def test_upload_search_finds_the_clip_and_trusts_the_decoder_not_the_content_type(lib, client):
    tid = _by_uri(lib, "t3.wav")
    clip = _wav(_track(3)[6 * SR:10 * SR])
    for ctype in ("audio/wav", "text/plain", "application/octet-stream"):
        r = client.post("/search/audio", files={"file": ("clip.txt", clip, ctype)}, data={"k": "3"})
        assert r.status_code == 200, r.text
        top = r.json()["hits"][0]
        assert (top["track_id"], top["start"]) == (tid, 6.0) and top["score"] > 0.99
    whole = _wav(_track(3))  # a span of an upload, matched as a sequence of windows
    r = client.post("/search/audio", files={"file": ("t.wav", whole)}, data={"start": "2", "end": "10", "k": "2"})
    expected = search(lib, Query.audio(load(io.BytesIO(whole))[0], sr=SR, start=2, end=10), k=2)
    assert [h["segment_id"] for h in r.json()["hits"]] == expected["segment_id"].tolist()
    assert r.json()["query"]["seconds"] == 8.0


def test_upload_limits_size_duration_and_decoding(lib, tmp_path):
    app = create_app(Settings(str(lib.path), max_upload=100_000, max_clip=5))
    with TestClient(app, raise_server_exceptions=False) as c:
        long = _wav(np.zeros(6 * 8000, np.float32), 8000, subtype="PCM_U8")  # 48 kB, 6 s
        r = c.post("/search/audio", files={"file": ("a.wav", long)})
        assert r.status_code == 413 and "6.0 s long, the limit is 5 s" in r.json()["detail"]
        assert c.post("/search/audio", files={"file": ("a.wav", long)}, data={"end": "4"}).status_code == 200
        big = _wav(np.zeros(6 * SR, np.float32))  # 265 kB: past the limit and its allowance for form fields
        r = c.post("/search/audio", files={"file": ("a.wav", big)})
        assert r.status_code == 413 and r.json()["error"] == "too_large"

        def chunks():  # no Content-Length: the limit is met while reading
            for _ in range(100):
                yield b"x" * 10_000
        r = c.post("/search/audio", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413
        r = c.post("/search/audio", files={"file": ("a.wav", b"RIFF\x00\x00garbage" * 20)})
        assert r.status_code == 415 and r.json() == {"error": "undecodable_audio",
                                                     "detail": "upload: unreadable audio (Format not recognised)"}
        cut = _wav(_track(0)[: 2 * SR])[:-20_000]
        r = c.post("/search/audio", files={"file": ("a.wav", cut)})
        assert r.status_code == 415 and "truncated" in r.json()["detail"]
        nan = _wav(np.full(SR, np.nan, np.float32), subtype="FLOAT")
        r = c.post("/search/audio", files={"file": ("a.wav", nan)})
        assert r.status_code == 415 and "non-finite" in r.json()["detail"]


def test_audio_of_a_moment_with_ranges_and_formats(lib, client):
    tid = _by_uri(lib, "t1.wav")
    r = client.get(f"/tracks/{tid}/audio", params={"start": 2, "end": 5})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav" and r.headers["accept-ranges"] == "bytes"
    y, sr = sf.read(io.BytesIO(r.content), dtype="float32")
    assert sr == SR and len(y) == 3 * SR
    np.testing.assert_allclose(y, _track(1)[2 * SR:5 * SR], atol=1 / 32767 + 1e-6)
    part = client.get(f"/tracks/{tid}/audio", params={"start": 2, "end": 5}, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == r.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(r.content)}"
    tail = client.get(f"/tracks/{tid}/audio", params={"start": 2, "end": 5}, headers={"Range": "bytes=-10"})
    assert tail.content == r.content[-10:]
    bad = client.get(f"/tracks/{tid}/audio", params={"start": 2, "end": 5}, headers={"Range": "bytes=999999999-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(r.content)}"
    for fmt, rate in (("ogg", SR), ("mp3", SR)):
        r = client.get(f"/tracks/{tid}/audio", params={"start": 1, "end": 4, "format": fmt})
        assert r.status_code == 200 and r.headers["content-type"] == {"ogg": "audio/ogg", "mp3": "audio/mpeg"}[fmt]
        info = sf.info(io.BytesIO(r.content))
        assert info.samplerate == rate and abs(info.duration - 3.0) < 0.1, (fmt, info.duration)
    whole = client.get(f"/tracks/{tid}/audio")
    assert sf.info(io.BytesIO(whole.content)).duration == pytest.approx(12.0)
    for params, field, status in (({"start": 13}, "start", 416), ({"start": 5, "end": 4}, "end", 416),
                                  ({"format": "flac"}, "format", 422)):
        r = client.get(f"/tracks/{tid}/audio", params=params)
        assert r.status_code == status and r.json()["detail"].startswith(field), r.text


def test_path_traversal_is_impossible(lib, client, tmp_path):
    secret = b"root:x:0:0:secret"
    attempts = ["/tracks/../../etc/passwd", "/tracks/..%2F..%2Fetc%2Fpasswd/audio", "/tracks/%2e%2e%2f%2e%2e/audio",
                "/tracks//etc/passwd/audio", "/tracks/%2Fetc%2Fpasswd/audio", "/tracks/0/audio/../../../etc/passwd",
                "/tracks/0%2F..%2F..%2Fetc%2Fpasswd/audio", "/tracks/0/audio?format=../../etc/passwd",
                "/tracks/-1/audio", "/tracks/0x1/audio", "/tracks/1e3/audio", "/tracks/%00/audio",
                "/tracks/..%252F..%252Fetc/audio", "/static/../../etc/passwd", "/..%2f..%2fetc%2fpasswd"]
    for url in attempts:
        r = client.get(url)
        assert r.status_code in (404, 422) and b"root:" not in r.content and r.json()["error"], url
    # a track file swapped for a link to another file, or for another file: refused, the bytes never sent
    work = tmp_path / "copy"
    shutil.copytree(lib.path.parent / "audio", work / "audio")
    copy = Library.create(work / "lib", window=4, hop=2)
    copy.add(str(work / "audio"), embedders=["features45"], workers=1, progress=False)
    copy.build_index("features45", "Flat")
    outside = tmp_path / "outside.wav"
    outside.write_bytes(_wav(_track(4)))
    with TestClient(create_app(Settings(str(work / "lib"))), raise_server_exceptions=False) as c:
        t0, t1, t2 = (_by_uri(copy, f"t{i}.wav") for i in range(3))
        assert c.get(f"/tracks/{t0}/audio?end=1").status_code == 200
        (work / "audio" / "t0.wav").unlink()
        (work / "audio" / "t0.wav").symlink_to(outside)
        r = c.get(f"/tracks/{t0}/audio?end=1")
        assert r.status_code == 409 and r.json()["error"] == "file_changed"
        (work / "audio" / "t1.wav").write_bytes(outside.read_bytes())
        assert c.get(f"/tracks/{t1}/audio?end=1").status_code == 409
        (work / "audio" / "t2.wav").unlink()
        r = c.get(f"/tracks/{t2}/audio?end=1")
        assert r.status_code == 410 and str(work) not in r.text
        (work / "audio" / "t3.wav").write_bytes(secret)
        assert secret not in c.get(f"/tracks/{_by_uri(copy, 't3.wav')}/audio").content


def test_token_cors_and_bind(lib):
    with TestClient(create_app(Settings(str(lib.path), token="s3cret"))) as c:
        assert c.get("/health").status_code == 200
        for url in ("/stats", "/tracks", "/tracks/0/audio", "/docs", "/openapi.json", "/nowhere"):
            assert c.get(url).status_code == 401, url
        r = c.get("/stats", headers={"Authorization": "Bearer wrong"})
        assert (r.status_code, r.json()["error"], r.headers["www-authenticate"]) == (401, "unauthorized", "Bearer")
        basic = {"Authorization": "Basic s3cret"}
        assert c.post("/search/audio", content=b"x" * 10**6, headers=basic).status_code == 401
        assert c.get("/stats", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        r = c.get("/stats", headers={"Origin": "https://evil.example", "Authorization": "Bearer s3cret"})
        assert "access-control-allow-origin" not in r.headers  # CORS off by default
    app = create_app(Settings(str(lib.path), cors_origins=("https://lab.example",)))
    with TestClient(app) as c:
        pre = {"Origin": "https://lab.example", "Access-Control-Request-Method": "POST"}
        r = c.options("/search/audio", headers=pre)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://lab.example"
        r = c.options("/search/audio", headers={**pre, "Origin": "https://evil.example"})
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
        assert c.get("/health", headers={"Origin": "https://lab.example"}).headers["access-control-allow-origin"]


def test_a_new_generation_is_served_and_requests_go_on_during_a_build(tmp_path):
    lib = _make_library(tmp_path)
    with TestClient(create_app(Settings(str(lib.path)))) as c:
        before = c.get("/health").json()["generation"]
        extra = tmp_path / "more"
        extra.mkdir()
        sf.write(extra / "new.wav", _track(0, 8.0)[::-1].copy(), SR)
        writer = Library.open(lib.path)
        writer.add(str(extra), progress=False, workers=1)
        assert c.get("/health").json()["generation"] > before
        assert c.get("/stats").json()["tracks"] == 6
        new = _by_uri(writer, "new.wav")
        hit = c.get("/search/moment", params={"track": new, "at": 2, "k": 1}).json()["hits"][0]
        assert (hit["track_id"], hit["file"]) == (new, "new.wav")


def test_a_form_field_sent_twice_is_refused_unless_it_is_repeatable(client):
    good = _wav(_track(2, 3.0))
    twice = client.post("/search/audio", files=[("file", ("a.wav", good)), ("file", ("b.wav", good))])
    assert twice.status_code == 422 and twice.json()["detail"].startswith("file: sent more than once"), twice.text
    k = client.post("/search/audio", files={"file": ("a.wav", good)}, data={"k": ["3", "4"]})
    assert k.status_code == 422 and k.json()["detail"].startswith("k: sent more than once")
    where = client.post("/search/audio", files={"file": ("a.wav", good)}, data={"where": ["year>=1999", "year<=2030"]})
    assert where.status_code == 200 and len(where.json()["hits"]) == 10


def test_a_new_generation_is_prepared_once_in_a_thread_while_the_event_loop_goes_on(tmp_path):
    import asyncio
    import threading

    from audiorag.serve.state import Libraries
    writer = Library.create(tmp_path / "lib", window=2, hop=1)
    prepared = []

    def prepare(lib):  # slow on purpose: the event loop must keep running meanwhile
        prepared.append((lib.generation, threading.current_thread() is threading.main_thread()))
        time.sleep(0.3)

    libs = Libraries(writer.path, prepare=prepare)
    before = libs.current()
    writer.set_track_column("mood", {})  # a commit: a new generation

    async def requests():
        ticks, done = 0, asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)
        tick = asyncio.create_task(ticker())
        got = await asyncio.gather(*(libs.latest() for _ in range(5)))
        done.set()
        await tick
        return got, ticks
    got, ticks = asyncio.run(requests())
    assert {id(lib) for lib in got} == {id(got[0])} and got[0] is not before
    assert got[0].generation == before.generation + 1 and prepared == [(got[0].generation, False)]
    assert ticks >= 10  # the loop answered other work during the 0.3 s preparation
    assert asyncio.run(libs.latest()) is got[0] and len(prepared) == 1


# -- the bad-input corpus --------------------------------------------------------------------------

_BAD_VALUES = ["", " ", "abc", "-1", "-0.0", "nan", "NaN", "inf", "-inf", "1e999", "9" * 40, "0x10", "1,5", "true",
               "../../etc/passwd", "%2e%2e%2f", "/etc/passwd", "' OR 1=1 --", "<script>alert(1)</script>", "é🎵",
               "\u202e", "null", "[]", "{}", "a" * 5000]


def _audio_corpus() -> dict:
    y = _track(2, 2.0)
    ogg = io.BytesIO()
    sf.write(ogg, y, SR, format="OGG", subtype="VORBIS")
    return {"empty": b"", "garbage": os.urandom(4000), "text": b"hello, not audio\n" * 50,
            "wav header only": _wav(np.zeros(0, np.float32)), "truncated wav": _wav(y)[:-30000],
            "nan floats": _wav(np.full(1000, np.inf, np.float32), subtype="FLOAT"),
            "one sample": _wav(np.zeros(1, np.float32)), "rate 1 Hz": _wav(np.zeros(8, np.float32), 1),
            "cut ogg": ogg.getvalue()[:-500], "json": b'{"a": 1}', "zip": b"PK\x03\x04" + b"\x00" * 100,
            "mp3 junk": b"ID3\x04\x00\x00\x00\x00\x00\x00" + os.urandom(2000)}


def _corpus(tid: int) -> list:
    """(route, method, url, request kwargs) for every route and every bad value of each of its inputs."""
    out = []
    gets = {"/stats": {"column": "genre"}, "/tracks": {"offset": 0, "limit": 5, "where": "genre=drone"},
            f"/tracks/{tid}": {}, f"/tracks/{tid}/audio": {"start": 0, "end": 2, "format": "wav"},
            "/search/moment": {"track": tid, "at": 1, "k": 3, "by": "segment", "embedder": "features45",
                               "index": "flat", "exclude_same_track": "false", "where": "genre=drone",
                               "rerank": "diversity=0.2"}}
    for path, params in gets.items():
        route = "/tracks/{id}/audio" if path.endswith("/audio") else "/tracks/{id}" if path.startswith("/tracks/") \
            else path
        for name in params:
            out += [(route, "GET", path, {"params": {**params, name: v}}) for v in _BAD_VALUES]
        out += [(route, "GET", path.replace(str(tid), v), {}) for v in _BAD_VALUES if v.strip() and "/" not in v
                and "%" not in v] if "{id}" in route else []
        out += [(route, "GET", path, {"params": params, "headers": {"Range": r}}) for r in
                ("bytes=5-1", "bytes=-0", "bytes=abc", "bytes=0-1,5-9", "pages=1-2", "bytes=" + "9" * 40 + "-")]
    texts = [{"text": v} for v in _BAD_VALUES] + [
        {}, {"text": 5}, {"text": ["a"]}, {"text": "piano", "k": 0}, {"text": "piano", "k": "x"},
        {"text": "piano", "by": "album"}, {"text": "piano", "where": "x"}, {"text": "piano", "extra": 1},
        {"text": "piano", "embedder": "nope"}, {"text": "piano", "where": ["genre~x"]}]
    out += [("/search/text", "POST", "/search/text", {"json": b}) for b in texts]
    out += [("/search/text", "POST", "/search/text", {"content": c, "headers": {"Content-Type": t}}) for c, t in
            ((b"{", "application/json"), (b"text=piano", "application/x-www-form-urlencoded"),
             (b"\xff\xfe", "application/json"), (b"[]", "application/json"), (b"null", "application/json"))]
    good = _wav(_track(2, 3.0))
    for path, fields in (("/search/audio", {"k": "3"}), ("/search/hybrid", {"text": "piano", "alpha": "0.5"}),
                         ("/search/hum", {"k": "3"}), ("/identify", {"k": "1"})):
        out += [(path, "POST", path, {"files": {"file": (name, data, "audio/wav")}, "data": fields})
                for name, data in _audio_corpus().items()]
        names = ("start", "end", "k") if path == "/identify" else ("start", "end", "k", "by", "embedder", "index",
                                                                    "where", "rerank")
        for name in (*names, *fields):
            out += [(path, "POST", path, {"files": {"file": ("a.wav", good)}, "data": {**fields, name: v}})
                    for v in _BAD_VALUES]
        out += [(path, "POST", path, kw) for kw in (
            {}, {"data": fields}, {"content": b"--x\r\nbroken", "headers": {"Content-Type": "multipart/form-data"}},
            {"content": good, "headers": {"Content-Type": "audio/wav"}},
            {"files": {"other": ("a.wav", good)}, "data": fields},
            {"files": [("file", ("a.wav", good)), ("file", ("b.wav", good))], "data": fields})]
    out += [("/search/hybrid", "POST", "/search/hybrid", {"data": {"text": "piano", "track": v}}) for v in _BAD_VALUES]
    liked = {"liked": [f"{tid}@2"], "k": 3}
    for name in ("liked", "history", "k", "diversity", "max_per_track", "max_per_artist", "harmonic", "mood",
                 "time_of_day", "discovery", "embedder", "index"):
        out += [("/recommend", "POST", "/recommend", {"json": {**liked, name: v}}) for v in
                [*_BAD_VALUES, [v for v in _BAD_VALUES[:5]], -5, 1e308, None, {"a": 1}]]
    out += [("/recommend", "POST", "/recommend", {"json": {**liked, "liked": [f"{tid}@{v}", f"{v}@1"]}})
            for v in _BAD_VALUES]
    out += [(p, m, p, {}) for p, m in (("/health", "POST"), ("/search/moment", "POST"), ("/search/audio", "GET"),
                                       ("/tracks", "DELETE"), ("/nowhere", "GET"))]
    return out


def test_bad_input_corpus_never_gets_a_server_error(lib, client):
    tid = int(lib.tracks["track_id"].iloc[1])
    seen: dict = defaultdict(Counter)
    for route, method, url, kw in _corpus(tid):
        r = client.request(method, url, **kw)
        seen[route][r.status_code] += 1
        assert r.status_code < 500, (route, url, kw.get("params") or kw.get("data") or kw.get("json"), r.text)
        if r.status_code >= 400:
            body = r.json()
            assert set(body) == {"error", "detail"} and body["detail"], (url, body)
    summary = {route: dict(sorted(codes.items())) for route, codes in sorted(seen.items())}
    print("\nbad-input corpus, requests per route and status codes:\n" + json.dumps(summary, indent=1))
    assert sum(sum(c.values()) for c in seen.values()) > 1200 and len(seen) >= 12


# -- text queries, where the library can take them --------------------------------------------------

@pytest.mark.slow
def test_text_and_hybrid_routes_on_a_library_with_a_text_tower(tmp_path, lib):
    from random_models import save_model

    from audiorag.embedders import get_embedder
    model = save_model("clap", tmp_path / "clap")
    (tmp_path / "audio").mkdir()
    for i in range(3):
        sf.write(tmp_path / "audio" / f"t{i}.wav", _track(i, 6.0), SR)
    text_lib = Library.create(tmp_path / "lib", window=4, hop=2)
    text_lib.add(str(tmp_path / "audio"), embedders=[get_embedder("clap", model=str(model))], workers=1,
                 progress=False)
    text_lib.build_index(None, "Flat")
    with TestClient(create_app(Settings(str(text_lib.path))), raise_server_exceptions=False) as c:
        r = c.post("/search/text", json={"text": "slow piano", "k": 4})
        assert r.status_code == 200, r.text
        expected = search(text_lib, Query.text("slow piano"), k=4)
        assert [h["segment_id"] for h in r.json()["hits"]] == expected["segment_id"].tolist()
        tid = _by_uri(text_lib, "t1.wav")
        fields = {"text": "slow piano", "track": str(tid), "at": "2", "alpha": "0.5", "k": "3"}
        r = c.post("/search/hybrid", data=fields)
        expected = search(text_lib, Query.hybrid("slow piano", Query.moment(tid, 2.0), alpha=0.5), k=3)
        assert [h["segment_id"] for h in r.json()["hits"]] == expected["segment_id"].tolist()
        clip = {"file": ("a.wav", _wav(_track(1, 4)))}
        r = c.post("/search/hybrid", data={"text": "drums", "alpha": "0.3"}, files=clip)
        expected = search(text_lib, Query.hybrid("drums", _track(1, 4), sr=SR, alpha=0.3), k=10)
        assert [h["segment_id"] for h in r.json()["hits"]] == expected["segment_id"].tolist()
        for name, data in _audio_corpus().items():  # the uploads reach the decoder here (not a 409 first)
            r = c.post("/search/hybrid", data={"text": "drums"}, files={"file": ("a.wav", data)})
            # audio too short to search with is refused as such (422); what does not decode is 415
            assert r.status_code == {"one sample": 422, "rate 1 Hz": 200}.get(name, 415), (name, r.text)
    with TestClient(create_app(Settings(str(lib.path)))) as c:  # features45 alone: no text tower, no tagger
        r = c.post("/search/text", json={"text": "slow piano"})
        assert r.status_code == 409 and r.json()["error"] == "no_text_embedding" and "features45" in r.json()["detail"]
        r = c.post("/search/hybrid", data={"text": "x", "track": "0"})
        assert r.status_code == 409


# -- a real server --------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raw(port: int, head: bytes, body: bytes = b"", wait: float = 10.0) -> bytes:
    """Send ``head`` + ``body`` and read what the server answers (until it closes or ``wait`` passes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(head + body)
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
                if b"\r\n\r\n" in got and b"}" in got:
                    break
        except TimeoutError:
            pass
    return got


def test_real_server_starts_answers_limits_and_stops(lib):
    port = _free_port()
    env = {**os.environ, "AUDIORAG_TOKEN": ""}
    cmd = [sys.executable, "-m", "audiorag", "serve", str(lib.path), "--port", str(port), "--max-upload", "1MB",
           "--timeout", "2s"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                health = json.load(urllib.request.urlopen(base + "/health", timeout=1))
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.1)
        assert health["generation"] == lib.generation
        tid = _by_uri(lib, "t1.wav")
        body = json.load(urllib.request.urlopen(f"{base}/search/moment?track={tid}&at=5&k=2", timeout=10))
        assert body["hits"][0]["track_id"] == tid
        # 413 while 99 MB of the announced body were never sent
        head = (b"POST /search/audio HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: 100000000\r\n\r\n")
        answer = _raw(port, head, b"--b\r\n" + b"x" * 1000)
        assert answer.startswith(b"HTTP/1.1 413") and b'"too_large"' in answer
        # a client that stops sending half-way through its upload is cut off at the deadline
        head = head.replace(b"100000000", b"500000")
        t0 = time.monotonic()
        answer = _raw(port, head, b"--b\r\n" + b"x" * 1000)
        assert answer.startswith(b"HTTP/1.1 504") and 1.5 < time.monotonic() - t0 < 8, answer[:200]
        assert urllib.request.urlopen(base + "/health", timeout=5).status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
    assert code == 0
    r = subprocess.run([sys.executable, "-m", "audiorag", "serve", str(lib.path), "--host", "0.0.0.0"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not a loopback address" in r.stderr and "token" in r.stderr


# -- hum, identify, recommend: thin routes over audiorag.melody, .identify, .recommend ----------------

@pytest.fixture(scope="module")
def melodic(tmp_path_factory):
    """Four generated melodic 20 s tracks with features45, the melody embedding and fingerprints."""
    from audiorag.datasets.melodic import MelodicDataset
    root = tmp_path_factory.mktemp("melodic")
    ds = MelodicDataset(4, seed=3, duration=20.0, root=root / "audio")
    ds.generate()
    lib = Library.create(root / "lib", window=10, hop=2)
    lib.add(ds, embedders=["features45", "melody"], fingerprint=True, workers=1, progress=False)
    for emb in lib.embeddings():
        lib.build_index(emb.key, "Flat")
    return Library.open(root / "lib")


def test_hum_identify_and_recommend_routes(melodic, lib):
    from audiorag.evaluate.hum import hums
    from audiorag.identify import identify
    from audiorag.recommend import recommend
    features = melodic.embedding("features45").key
    # a long deadline: the first hum compiles the aligner (numba), which takes long on a busy machine
    with TestClient(create_app(Settings(str(melodic.path), timeout=600)), raise_server_exceptions=False) as c:
        (y, info), = hums(melodic, 1, seed=5)
        r = c.post("/search/hum", files={"file": ("hum.wav", _wav(y))}, data={"k": "3"})
        assert r.status_code == 200, r.text
        expected = search(melodic, Query.hum(y, sr=SR), k=3)
        assert [h["segment_id"] for h in r.json()["hits"]] == expected["segment_id"].tolist()
        assert r.json()["embedding"] == melodic.embedding("melody").key
        noise = np.random.default_rng(0).standard_normal(3 * SR).astype(np.float32) * 0.01
        r = c.post("/search/hum", files={"file": ("hum.wav", _wav(noise))})
        assert r.status_code == 422 and "melody" in r.json()["detail"]

        tid = int(melodic.tracks["track_id"].iloc[2])
        clip, _ = load(melodic.tracks["uri"].iloc[2], offset=6.0, duration=8.0)
        r = c.post("/identify", files={"file": ("clip.wav", _wav(clip))})
        assert r.status_code == 200, r.text
        (match,) = r.json()["matches"]
        expected = identify(melodic, clip, sr=SR).iloc[0]
        assert (match["track_id"], match["offset"]) == (tid, pytest.approx(float(expected["offset"])))
        assert abs(match["offset"] - 6.0) < 0.1 and match["audio"].startswith(f"/tracks/{tid}/audio?start=6")
        r = c.post("/identify", files={"file": ("quiet.wav", _wav(np.zeros(2 * SR, np.float32)))})
        assert r.status_code == 200 and r.json()["matches"] == [] and "no landmarks" in r.json()["reason"]
        for name, data in _audio_corpus().items():  # uploads reach the decoder and the matchers here
            for path in ("/search/hum", "/identify"):
                r = c.post(path, files={"file": ("a.wav", data)})
                assert r.status_code in (200, 415, 422), (path, name, r.text)

        body = {"liked": [f"{tid}@4"], "k": 3, "embedder": features, "diversity": 0.2}
        r = c.post("/recommend", json=body)
        assert r.status_code == 200, r.text
        expected = recommend(melodic, [(tid, 4.0)], k=3, embedder=features, diversity=0.2)
        assert [h["segment_id"] for h in r.json()["hits"]] == expected["segment_id"].tolist()
        assert all(h["track_id"] != tid for h in r.json()["hits"])  # liked tracks are not recommended
        inferred = expected.attrs["mood_inferred"]  # no mood given: the listener's, estimated and stated
        assert inferred is not None and inferred["likes"] == 1
        assert r.json()["mood_inferred"] == {k: inferred[k] for k in r.json()["mood_inferred"]}
        assert r.json()["mood"] == expected.attrs["mood"]
        given = c.post("/recommend", json={**body, "mood": "calm"}).json()
        assert given["mood"] == "calm" and given["mood_inferred"] is None
        for bad, field in (({**body, "liked": ["x@y"]}, "liked"), ({**body, "liked": ["999@1"]}, "999"),
                           ({**body, "mood": "angry"}, "mood"), ({**body, "k": 0}, "k"),
                           ({**body, "liked": []}, "liked"), ({**body, "history": ["a"]}, "history")):
            r = c.post("/recommend", json=bad)
            assert r.status_code in (404, 422) and r.status_code < 500, (bad, r.text)
            assert field in r.json()["detail"], (bad, r.text)
    with TestClient(create_app(Settings(str(lib.path)))) as c:  # features45 only: neither melody nor fingerprints
        assert c.post("/search/hum", files={"file": ("a.wav", _wav(_track(0, 3)))}).json()["error"] == \
            "no_melody_embedding"
        assert c.post("/identify", files={"file": ("a.wav", _wav(_track(0, 3)))}).json()["error"] == "no_fingerprints"


# -- trust (#29): no folders in any answer, bounded Range, the served file's identity, the contract ----------

def _folders(lib) -> list[str]:
    return sorted({str(lib.path), str(lib.path.parent), *(os.path.dirname(str(u)) for u in lib.tracks["uri"])},
                  key=len, reverse=True)


def test_no_answer_of_any_route_shows_the_library_or_file_folders(lib, client, tmp_path):
    tid = int(lib.tracks["track_id"].iloc[1])
    private = ("uri", "content_hash", "sample_rate", "channels")
    requests = [("GET", "/map", {"params": {"colour": c}}) for c in (*private, "genre", None)]
    requests += [("GET", "/stats", {"params": {"column": c}}) for c in (*private, "genre")]
    requests += [("GET", "/tracks", {"params": {"where": f"{c}=x"}}) for c in private]
    requests += [("GET", "/search/moment", {"params": {"track": tid, "where": f"{c}=x"}}) for c in private]
    requests += [("GET", f"/tracks/{tid}/audio", {"params": p}) for p in (
        {"end": 0.00001}, {"start": 1e-7, "end": 2e-7}, {"start": 11.99999}, {"start": 12}, {"end": 1},
        {"start": 3.4e307, "format": "ogg"})]
    requests += [("GET", url, {}) for url in ("/health", "/stats", "/tracks", f"/tracks/{tid}", "/openapi.json",
                                              "/tracks/999999", "/search/moment?track=999999")]
    requests += [("GET", "/search/moment", {"params": {"track": tid, "k": 3, "by": b}}) for b in ("segment", "track")]
    requests += [("POST", "/search/audio", {"files": {"file": ("a.wav", data)}})
                 for data in [_wav(_track(1, 3.0)), *_audio_corpus().values()]]
    requests += [("POST", p, {"files": {"file": ("a.wav", _wav(_track(1, 3.0)))}}) for p in ("/search/hum",
                                                                                          "/identify")]
    requests += [("POST", "/search/text", {"json": {"text": "x"}}), ("POST", "/recommend", {"json": {
        "liked": [f"{tid}@2"], "k": 3}}), ("POST", "/search/hybrid", {"data": {"text": "x", "track": str(tid)}})]
    statuses = Counter()
    for method, url, kw in requests:
        r = client.request(method, url, **kw)
        statuses[r.status_code] += 1
        assert r.status_code < 500, (url, kw, r.text)
        seen = r.text + json.dumps(dict(r.headers))
        for folder in _folders(lib):
            assert folder not in seen, (url, kw, folder, r.text[:300])
        assert not any(lib.tracks["content_hash"].map(lambda h: h in seen)), (url, kw)  # noqa: B023
    assert statuses[200] >= 10 and statuses[422] >= 15 and statuses[416] >= 4, statuses
    for c in private:  # refused as what they are: columns a client has no business with
        assert client.get("/map", params={"colour": c}).status_code == 422
        assert client.get("/stats", params={"column": c}).status_code == 422
    one = client.get(f"/tracks/{tid}").json()
    assert not set(one["metadata"]) & set(private) and set(one["metadata"]) == {"genre", "year"}
    hit = client.get("/search/moment", params={"track": tid, "k": 1}).json()["hits"][0]
    assert not set(hit["metadata"]) & set(private)
    # a stored file that no longer decodes: its name at most, never its folder
    work = tmp_path / "copy"
    shutil.copytree(lib.path.parent / "audio", work / "audio")
    copy = Library.create(work / "lib", window=4, hop=2)
    copy.add(str(work / "audio"), embedders=["features45"], workers=1, progress=False)
    with TestClient(create_app(Settings(str(work / "lib"))), raise_server_exceptions=False) as c:
        t0 = _by_uri(copy, "t0.wav")
        for params in ({"end": 0.00001}, {"start": 11.99999}):
            r = c.get(f"/tracks/{t0}/audio", params=params)
            assert r.status_code == 416 and str(work) not in r.text, r.text


def test_where_with_an_empty_key_value_is_a_clear_error_not_a_crash(lib, client):
    from audiorag.errors import ParameterError
    from audiorag.search.filters import parse_where
    tid = int(lib.tracks["track_id"].iloc[0])
    for where in ("key=", "key= ", "key=  "):
        with pytest.raises(ParameterError, match="not a key"):
            search(lib, Query.moment(tid, 1.0), k=2, filters=parse_where([where]))
        for r in (client.get("/search/moment", params={"track": tid, "where": where}),
                  client.post("/search/audio", files={"file": ("a.wav", _wav(_track(0, 3.0)))},
                              data={"where": where})):
            assert r.status_code == 422 and r.json()["detail"].startswith("where"), r.text
    r = client.get("/search/moment", params={"track": tid, "where": "key=A minor"})
    assert r.status_code == 200, r.text


def test_an_upload_of_huge_finite_samples_is_refused_with_a_4xx(client):
    huge = _wav(np.full(SR, 1e30, np.float32), subtype="FLOAT")
    r = client.post("/search/audio", files={"file": ("a.wav", huge)})
    assert r.status_code == 422 and r.json()["detail"].startswith("file: samples reach 1e+30"), r.text
    quiet = _wav(np.full(SR, 1.5, np.float32) * np.sign(np.sin(np.arange(SR))), subtype="FLOAT")
    assert client.post("/search/audio", files={"file": ("a.wav", quiet)}).status_code == 200  # a little over 1


def test_range_headers_of_any_size_are_answered_without_a_server_error(lib, client):
    tid = _by_uri(lib, "t1.wav")
    url = f"/tracks/{tid}/audio?start=2&end=5"
    size = len(client.get(url).content)
    for header, status in (("bytes=0-" + "9" * 4301, 206), ("bytes=" + "9" * 4301 + "-", 416),
                           ("bytes=-" + "9" * 4301, 206), ("bytes=" + "0" * 5000 + "1-2", 206),
                           ("bytes=9-3", 200), ("bytes=0-1,5-9", 200), ("bytes=١-٢".encode(), 200)):
        r = client.get(url, headers={"Range": header})
        assert r.status_code == status, (header[:30], r.status_code, r.text[:200])
        if status == 206:
            assert int(r.headers["content-length"]) == len(r.content) <= size


def test_range_parser_properties():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from audiorag.serve.media import parse_range
    digits = st.text("0123456789", max_size=40)

    @settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(size=st.integers(0, 10**7), first=digits, last=digits, junk=st.text(max_size=30))
    def check(size, first, last, junk):
        whole = (0, size - 1, False)
        if not first and not last:
            expected = whole
        elif not first:  # the last N bytes
            n = int(last)
            expected = (max(0, size - n), size - 1, True) if n > 0 and size else None
        elif last and int(last) < int(first):
            expected = whole  # not a valid range: ignored
        else:
            expected = (int(first), min(int(last) if last else size - 1, size - 1), True) \
                if int(first) < size else None
        assert parse_range(f"bytes={first}-{last}", size) == expected
        for header in (junk, f"bytes={first}-{last}{junk}", f"{junk}bytes={first}-{last}"):
            span = parse_range(header, size)  # anything at all: a span inside the file, the whole file or 416
            assert span is None or span == whole or (span[2] and 0 <= span[0] <= span[1] < size)
    check()


def test_a_file_rewritten_with_its_mtime_restored_is_not_streamed_as_the_track(lib, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(lib.path.parent / "audio", work / "audio")
    copy = Library.create(work / "lib", window=4, hop=2)
    copy.add(str(work / "audio"), embedders=["features45"], workers=1, progress=False)
    path = work / "audio" / "t0.wav"
    with TestClient(create_app(Settings(str(work / "lib"))), raise_server_exceptions=False) as c:
        tid = _by_uri(copy, "t0.wav")
        assert c.get(f"/tracks/{tid}/audio", params={"end": 1}).status_code == 200  # verified and remembered
        st = os.stat(path)
        other = _wav(_track(4))  # the same length, another sound, written in place (same inode)
        assert len(other) == st.st_size
        with open(path, "r+b") as fh:
            fh.write(other)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert (os.stat(path).st_ino, os.stat(path).st_size, os.stat(path).st_mtime_ns) == \
            (st.st_ino, st.st_size, st.st_mtime_ns)
        r = c.get(f"/tracks/{tid}/audio", params={"end": 2})
        assert r.status_code == 409 and r.json()["error"] == "file_changed", r.status_code


def test_the_openapi_schema_describes_what_the_server_answers(lib, client):
    schema = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in json.dumps(schema)
    assert set(schema["components"]["schemas"]["ErrorBody"]["properties"]) == {"error", "detail"}
    ops = {(m.upper(), p): op for p, item in schema["paths"].items() for m, op in item.items()}
    for op in ops.values():
        for status in ("400", "413", "422", "503", "504"):
            assert op["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
    assert {"404", "409", "410", "416"} <= set(ops["GET", "/tracks/{track_id}/audio"]["responses"])
    for path in ("/search/audio", "/search/hybrid", "/search/hum", "/identify"):
        assert "415" in ops["POST", path]["responses"], path

    def param(method, path, name):
        op = ops[method, path]
        found = {p["name"]: p["schema"] for p in op.get("parameters", [])}
        for content in op.get("requestBody", {}).get("content", {}).values():
            ref = content["schema"].get("$ref", "").rsplit("/", 1)[-1]
            found.update(schema["components"]["schemas"].get(ref, content["schema"]).get("properties", {}))
        field = found[name]
        branch = next((b for b in [field, *field.get("anyOf", [])] if b.get("type") in ("string", "array")), field)
        return branch.get("items", branch)
    key = lib.embedding("features45").key
    assert param("GET", "/search/moment", "embedder")["enum"] == [key, "features45"]
    assert param("POST", "/search/audio", "index")["enum"] == ["flat"]
    assert param("GET", "/stats", "column")["enum"] == ["track_id", "duration", "genre", "year"]
    assert param("GET", "/map", "colour")["enum"] == ["track_id", "duration", "genre", "year"]
    where = param("GET", "/tracks", "where")["pattern"]
    import re
    assert re.search(where, "year>=2001") and not re.search(where, "year=abc") and not re.search(where, "uri=x")
    assert re.search(param("GET", "/search/moment", "where")["pattern"], "key=A minor")
    assert "rerank" not in schema["components"]["schemas"]["TextQuery"]["properties"]
    rerank = param("GET", "/search/moment", "rerank")
    assert re.search(rerank["pattern"], "diversity=0.3,max_per_artist=2,mood=calm")
    file = ops["POST", "/search/hybrid"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    file = schema["components"]["schemas"][file.rsplit("/", 1)[1]]["properties"]["file"]
    assert file["type"] == "string" and "anyOf" not in file  # bytes, not string-or-null
    # inputs the schema allows are taken: the largest outliers share, a plain form field as the clip
    assert param("GET", "/map", "outliers")["exclusiveMaximum"] == 0.5
    assert client.get("/map", params={"outliers": 0.4999}).status_code == 200
    r = client.post("/search/audio", data={"file": "not audio"})
    assert r.status_code == 415 and r.json()["error"] == "undecodable_audio", r.text
    r = client.post("/search/audio", data={"k": "2"}, files={"file": ("a.wav", _wav(_track(1, 3.0)))})
    assert r.status_code == 200 and len(r.json()["hits"]) == 2
    # and each 4xx a route answers is in its schema
    tid = int(lib.tracks["track_id"].iloc[0])
    for method, path, url, kw in (("GET", "/tracks/{track_id}/audio", f"/tracks/{tid}/audio",
                                   {"headers": {"Range": "bytes=99999999-"}}),
                                  ("GET", "/tracks/{track_id}", "/tracks/999", {}),
                                  ("POST", "/search/hybrid", "/search/hybrid", {"data": {"text": "x"}}),
                                  ("POST", "/search/audio", "/search/audio", {"data": {"file": "x"}}),
                                  ("GET", "/search/moment", "/search/moment", {"params": {"track": "x"}})):
        r = client.request(method, url, **kw)
        assert str(r.status_code) in ops[method, path]["responses"], (url, r.status_code)


def test_a_kept_alive_connection_goes_on_after_every_kind_of_error(lib):
    import http.client
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "audiorag", "serve", str(lib.path), "--port", str(port)],
                            env={**os.environ, "AUDIORAG_TOKEN": ""}, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.1)
        tid = int(lib.tracks["track_id"].iloc[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        boundary = "b0undary"
        huge = _wav(np.full(SR // 4, 1e30, np.float32), subtype="FLOAT")
        form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n".encode()
                + huge + f"\r\n--{boundary}--\r\n".encode())
        asks = [("GET", f"/tracks/{tid}/audio", None, {"Range": "bytes=0-" + "9" * 4301}),
                ("GET", f"/search/moment?track={tid}&where=key%3D", None, {}),
                ("POST", "/search/audio", form, {"Content-Type": f"multipart/form-data; boundary={boundary}"}),
                ("GET", f"/tracks/{tid}/audio?end=0.00001", None, {}), ("GET", "/tracks/999", None, {}),
                ("GET", f"/tracks/{tid}/audio", None, {"Range": "bytes=999999999-"}),
                ("GET", "/map?colour=uri", None, {})]
        statuses = []
        for method, url, body, headers in asks:
            conn.request(method, url, body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            statuses.append(r.status)
            conn.request("GET", "/health")  # the same connection still answers
            assert conn.getresponse().read() and conn.sock is not None, url
        assert statuses == [206, 422, 422, 416, 404, 416, 422], statuses
        # a port in use: one line, exit 2 (not uvicorn's "ERROR:" and exit 3)
        r = subprocess.run([sys.executable, "-m", "audiorag", "serve", str(lib.path), "--port", str(port)],
                           env={**os.environ, "AUDIORAG_TOKEN": ""}, capture_output=True, text=True, timeout=60)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode == 2 and "ERROR:" not in r.stderr and "cannot listen there" in lines[-1], r.stderr
        assert len(lines) == 1, r.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    r = subprocess.run([sys.executable, "-m", "audiorag", "serve", str(lib.path), "--host", "no-such-host.invalid",
                        "--token", "t"], env=os.environ, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "ERROR:" not in r.stderr and "cannot listen there" in r.stderr, r.stderr


def test_a_moment_beyond_the_end_of_its_track_is_a_time_outside_the_audio(lib, client):
    """Schema-valid times past a track's end (found by schemathesis: `at=1e16`, `liked: ["3@901468327"]`)
    answer 416 like any time outside the audio, naming the field and the track's length — not 422."""
    tid = _by_uri(lib, "t1.wav")
    for r, field in ((client.get(f"/search/moment?track={tid}&at=1e16"), "at"),
                     (client.post("/recommend", json={"liked": [f"{tid}@901468327.0262"]}), "liked[0]")):
        assert r.status_code == 416, r.text
        assert r.json()["error"] == "range_not_satisfiable" and r.json()["detail"].startswith(f"{field}: ")
        assert f"beyond the end of track {tid} (12 s)" in r.json()["detail"]
    assert client.get(f"/search/moment?track={tid}&at=12").status_code == 200  # the end itself is a moment


def test_names_outside_the_schemas_enums_are_refused_before_the_upload_is_looked_at(lib, client):
    """Found by schemathesis: an upload with `embedder=__not_in_enum__` and an empty span answered 416 (the span,
    checked first) where a request the schema refuses must be refused as such (422), whatever its clip."""
    wav = _wav(_track(1, 3.0))
    for field in ("embedder", "index"):
        r = client.post("/search/audio", files={"file": ("q.wav", wav)},
                        data={field: "__not_in_enum__", "start": "0.99999", "end": "1e-72"})
        assert r.status_code == 422 and r.json()["detail"].startswith(f"{field}: '__not_in_enum__' is not one of")
    r = client.get(f"/search/moment?track={_by_uri(lib, 't1.wav')}&embedder=__not_in_enum__")
    assert r.status_code == 422 and "features45" in r.json()["detail"]
    ok = client.post("/search/audio", files={"file": ("q.wav", wav)}, data={"embedder": "features45", "index": "flat"})
    assert ok.status_code == 200, ok.text
    # found by schemathesis: a field sent empty was read as left out (FastAPI's default); its enum or type refuses it
    for path, field in (("/search/audio", "embedder"), ("/search/audio", "by"), ("/search/hum", "index"),
                        ("/identify", "k"), ("/search/hybrid", "start")):
        data = {field: "", **({"text": "drone"} if path == "/search/hybrid" else {})}
        r = client.post(path, files={"file": ("q.wav", wav)}, data=data)
        assert r.status_code == 422 and r.json()["detail"] == f"{field}: empty value; leave the field out for its " \
            "default", (path, field, r.text)


def test_json_bodies_are_read_as_strictly_as_the_schema_states(lib, client):
    """Found by schemathesis: `"discovery": false` was read as 0.0 (pydantic's lax mode); a boolean or a text is
    not a number, while 3.0 is the integer 3 and 1 the number 1.0 (as JSON Schema reads them)."""
    liked = [f"{_by_uri(lib, 't1.wav')}@5"]
    for body, field in (({"liked": liked, "discovery": False}, "discovery"), ({"liked": liked, "k": True}, "k"),
                        ({"liked": liked, "k": 2.5}, "k"), ({"liked": liked, "history": ["1"]}, "history"),
                        ({"liked": liked, "history": [False]}, "history"), ({"liked": liked, "k": "3"}, "k"),
                        ({"liked": liked, "time_of_day": -112537}, "time_of_day"),
                        ({"liked": liked, "time_of_day": "7"}, "time_of_day"), ({"liked": [True]}, "liked")):
        r = client.post("/recommend", json=body)
        assert r.status_code == 422 and r.json()["detail"].startswith(field), (body, r.text)
    for body in ({"liked": liked, "diversity": 1, "k": 3.0, "max_per_track": 2.0}, {"liked": liked, "time_of_day": 7},
                 {"liked": liked, "time_of_day": "night", "mood": "calm"}):
        assert client.post("/recommend", json=body).status_code == 200, body
    assert client.post("/search/text", json={"text": "drone", "k": True}).status_code == 422


def test_warm_up_takes_its_clip_from_the_first_track_whose_file_still_decodes(tmp_path):
    from audiorag.serve.warm import queries
    for i in range(2):
        sf.write(tmp_path / f"w{i}.wav", _track(i, 6.0), SR)
    lib = Library.create(tmp_path / "lib", window=4, hop=2)
    lib.add([tmp_path / "w0.wav", tmp_path / "w1.wav"], embedders=["features45"], workers=1, progress=False)
    first = lib.tracks.sort_values("track_id")
    Path(first["uri"].iloc[0]).unlink()
    warmed = queries(Library.open(tmp_path / "lib"))
    assert [k for _, k, _, _ in warmed] == ["moment", "audio", "audio+rerank"]
    assert warmed[0][2].track_id == int(first["track_id"].iloc[1])  # the moment of the track that decodes
