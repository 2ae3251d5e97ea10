"""The query side's one clip loader (every query decodes its clip once), embedding kinds, the LLM client's
origin and deadline, and quiet factors."""

import io
import json
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf
from conftest import SR

from audiorag import audio
from audiorag.audio import MIN_CLIP_SECONDS, load_clip
from audiorag.describe import Description, llm_summary
from audiorag.errors import AudioDecodeError, LLMError, ParameterError
from audiorag.rerank import Rerank, tempo_compatibility
from audiorag.search import Query, hum_contour, search


def _wav(y, subtype="PCM_16"):
    buf = io.BytesIO()
    sf.write(buf, y, SR, format="WAV", subtype=subtype)
    return buf.getvalue()


def test_one_loader_reads_paths_bytes_and_arrays_alike(tmp_path):
    y = (0.3 * np.sin(np.arange(3 * SR) / 9)).astype(np.float32)
    (tmp_path / "a.wav").write_bytes(_wav(y, "FLOAT"))
    clips = [load_clip(tmp_path / "a.wav", start=1.0, end=2.5), load_clip(_wav(y, "FLOAT"), start=1.0, end=2.5),
             load_clip(y, sr=SR, start=1.0, end=2.5), load_clip(np.stack([y, y]), sr=SR, start=1.0, end=2.5)]
    for c in clips:
        assert c.sr == SR and c.start == 1.0 and len(c.y) == int(1.5 * SR)
        np.testing.assert_array_equal(c.y, clips[0].y)
    assert clips[0].at(16000) is clips[0].at(16000) and len(clips[0].at(16000)) == 24000


@pytest.mark.parametrize("make, reason", [
    (lambda: np.zeros(0, np.float32), "empty audio"),
    (lambda: np.zeros(int(MIN_CLIP_SECONDS * SR) - 1, np.float32), "too short"),
    (lambda: np.full(SR, np.nan, np.float32), "non-finite"),
    (lambda: np.full(SR, 1e30, np.float32), "samples reach 1e\\+30: not audio"),
])
def test_bad_clips_are_one_clear_error(make, reason):
    with pytest.raises(AudioDecodeError, match=reason):
        load_clip(make(), sr=SR)


def test_a_float_wav_of_1e30_is_refused_by_every_query_path(library, tmp_path):
    path = tmp_path / "huge.wav"
    path.write_bytes(_wav(np.full(2 * SR, 1e30, np.float32), "FLOAT"))
    for run in (lambda: search(library, Query.audio(path)), lambda: hum_contour(Query.hum(path)),
                lambda: search(library, Query.audio(path), rerank=Rerank(tempo=0.3))):
        with pytest.raises(AudioDecodeError, match="huge.wav: samples reach 1e\\+30"):
            run()
    with pytest.raises(ParameterError, match="sr="):
        load_clip(np.zeros(SR, np.float32))


def test_the_shortest_clip_is_searched_and_re_ranked_without_warnings(library):
    y = (0.3 * np.sin(np.arange(int(MIN_CLIP_SECONDS * SR) + 1) / 7)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hits = search(library, Query.audio(y, sr=SR), k=3, rerank=Rerank(tempo=0.3, key=0.3, diversity=0.2))
    assert len(hits) == 3


def test_a_re_ranked_hybrid_clip_query_decodes_its_clip_once(tmp_path, corpus, monkeypatch):
    """The text tower, the clip's windows, the re-ranking descriptors: one decode, one resample per rate."""
    from random_models import save_model

    from audiorag import Library
    from audiorag.embedders import get_embedder
    lib = Library.create(tmp_path / "lib", window=10, hop=5)
    lib.add(corpus.sources()[:3], embedders=[get_embedder("clap", model=str(save_model("clap", tmp_path / "m")))],
            workers=1, progress=False)
    key = lib.embeddings()[0].key
    lib.build_index(key, "Flat")
    uri = lib.tracks["uri"].iloc[1]
    decodes, rates = [], []
    real_load, real_resample = audio._load, audio.resample
    monkeypatch.setattr(audio, "_load", lambda *a, **kw: decodes.append(a[1]) or real_load(*a, **kw))
    monkeypatch.setattr(audio, "resample", lambda y, a, b: rates.append((a, b)) or real_resample(y, a, b))
    clip = Query.audio(uri, start=2.0, end=14.0)
    options = Rerank(tempo=0.2, key=0.2, harmonic=0.2, diversity=0.3)
    hits = search(lib, Query.hybrid("slow piano", clip, alpha=0.4), embedder=key, k=3, rerank=options)
    assert len(hits) == 3 and len(decodes) == 1 and rates == [(SR, 48000)]
    hits = search(lib, clip, embedder=key, k=3, rerank=options)            # its windows and its descriptors
    assert len(hits) == 3 and hits["tempo_match"].notna().all()
    assert len(decodes) == 1 and sorted(rates) == [(SR, 11025), (SR, 48000)]   # once per rate


def test_embeddings_say_what_kind_they_are(library):
    emb = library.embedding("features45")
    assert emb.kind == "audio" and emb.is_primary and not emb.is_tagger


def test_tempo_compatibility_of_unknown_or_zero_tempi_is_zero_and_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = tempo_compatibility(np.array([0.0, 120.0, np.nan, 120.0]), np.array([120.0, 0.0, 120.0, 240.0]))
    assert out.tolist() == [0.0, 0.0, 0.0, 1.0]


# -- the LLM client: only the given origin gets the token; a total deadline per attempt -------------------
class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append(dict(self.headers))
        self.server.behave(self)

    def log_message(self, *args):
        pass


@pytest.fixture
def servers():
    started = []

    def start(behave):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.seen, server.behave, server.daemon_threads = [], behave, True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}"
    yield start
    for s in started:
        s.shutdown()
        s.server_close()


def _answer(handler):
    data = json.dumps({"choices": [{"message": {"content": "fine"}}]}).encode()
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def test_the_llm_token_never_follows_a_redirect_to_another_origin(servers):
    other, other_url = servers(_answer)

    def redirect(handler):
        handler.send_response(307)
        handler.send_header("Location", f"{other_url}/v1/chat/completions")
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    first, url = servers(redirect)
    with pytest.raises(LLMError, match="HTTP 307 redirect to .* not followed"):
        llm_summary(Description(query={}), f"{url}/v1", "m", token="s3cret", backoff=0.01)
    assert first.seen[0]["Authorization"] == "Bearer s3cret" and other.seen == []


def test_the_llm_timeout_is_a_total_deadline_per_attempt(servers):
    def trickle(handler):  # a valid answer, one byte a second
        data = json.dumps({"choices": [{"message": {"content": "slow"}}]}).encode()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        try:
            for b in data:
                handler.wfile.write(bytes([b]))
                handler.wfile.flush()
                time.sleep(1.0)
        except OSError:
            pass
    _, url = servers(trickle)
    t0 = time.monotonic()
    with pytest.raises(LLMError, match="unreachable after 2 attempts: no complete answer within 1.5 s"):
        llm_summary(Description(query={}), f"{url}/v1", "m", timeout=1.5, retries=1, backoff=0.01)
    assert time.monotonic() - t0 < 8      # two attempts of 1.5 s, not one second per byte (> 50 s)
