"""describe: descriptors of generated audio with known key and tempo, tags of the stored tagger, the
neighbourhood's label votes, the template summary, the CLI (one moment, a clip, --all with resume), and the
optional LLM summary against a fake OpenAI-compatible server on 127.0.0.1."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf
from test_descriptors import progression
from typer.testing import CliRunner

from audiorag import Library, Query
from audiorag.cli import app
from audiorag.describe import Description, LLMError, brightness_hz, describe, dynamics_db, llm_summary, statements
from audiorag.errors import ParameterError

SR = 22050
#: (tonic, minor, bpm, genre) of the generated tracks
TRACKS = [(9, True, 90, "a"), (0, False, 120, "b"), (7, False, 100, "a"), (2, True, 130, "b"), (9, True, 95, "a"),
          (5, False, 125, "b")]


def _track(tonic, minor, bpm, seed):
    """A triad progression with a noise click on every beat."""
    y = progression(tonic, minor, bar=1.5, repeats=2)
    for t in np.arange(0, len(y) / SR - 0.1, 60 / bpm):
        y[int(t * SR):int(t * SR) + 150] += 0.2 * np.random.default_rng(seed).standard_normal(150)
    return y


@pytest.fixture(scope="module")
def described(tmp_path_factory):
    """Six 12 s tracks with known keys and tempi and a genre label; features45 + musicnn-mtt, Flat."""
    root = tmp_path_factory.mktemp("describe")
    for i, (tonic, minor, bpm, _) in enumerate(TRACKS):
        sf.write(root / f"t{i}.wav", _track(tonic, minor, bpm, i), SR)
    lib = Library.create(root / "lib", window=4, hop=2)
    lib.add(sorted(root.glob("*.wav")), embedders=["features45", "musicnn-mtt"], progress=False, workers=1)
    lib.build_index("features45", "Flat")
    number = lib.tracks["uri"].str.extract(r"t(\d)\.wav")[0].astype(int)
    lib.set_track_column("genre", dict(zip(lib.tracks["track_id"], [TRACKS[n][3] for n in number])))
    return Library.open(lib.path), dict(zip(lib.tracks["track_id"], number))


def test_brightness_and_dynamics_of_generated_audio():
    t = np.arange(2 * SR) / SR
    assert brightness_hz(np.sin(2 * np.pi * 500 * t).astype("float32"), SR) == pytest.approx(500, rel=0.02)
    assert brightness_hz(np.sin(2 * np.pi * 3000 * t).astype("float32"), SR) == pytest.approx(3000, rel=0.02)
    assert np.isnan(brightness_hz(np.zeros(SR, np.float32), SR))
    steady = np.sin(2 * np.pi * 440 * t).astype("float32")
    assert dynamics_db(steady, SR) == pytest.approx(0, abs=0.1)
    step = steady * np.where(t < 1, 1.0, 10 ** (-12 / 20)).astype("float32")        # a 12 dB step
    assert dynamics_db(step, SR) == pytest.approx(12, abs=0.2)


def test_a_moment_uses_the_stored_descriptors_tags_and_neighbourhood(described):
    lib, number = described
    tid = next(t for t, n in number.items() if n == 0)                               # A minor, 90 BPM, genre a
    d = describe(lib, Query.moment(tid, at=4.0), k=3)
    seg = d.query["segment_id"]
    stored = lib.descriptors().iloc[seg]
    assert d.descriptors_from == "library" and d.key == stored["key"] == "A minor" and d.mode == "minor"
    assert d.key_confidence == pytest.approx(stored["key_confidence"], abs=1e-4)
    assert d.tempo == pytest.approx(90, rel=0.03)
    assert (d.query["start"], d.query["end"]) == (4.0, 8.0)
    tagger = next(e for e in lib.embeddings() if e.tag_names)
    probs = d.tags[tagger.key]
    assert len(probs) == 10 and list(probs.values()) == sorted(probs.values(), reverse=True)
    row = dict(zip(tagger.tag_names, tagger.tags()[seg]))
    assert all(p == pytest.approx(row[t], abs=1e-4) for t, p in probs.items())
    assert d.instruments["drums"] == pytest.approx(max(row[t] for t in ("drums", "beat", "beats")), abs=1e-4)
    assert d.voice["no voice"] == pytest.approx(max(row[t] for t in ("no vocals", "no vocal", "no voice")), abs=1e-4)
    nb = d.neighbourhood
    assert len(nb["neighbours"]) == 3 and tid not in {n["track_id"] for n in nb["neighbours"]}
    genre = nb["labels"]["genre"]
    scores = {}
    for n in nb["neighbours"]:
        scores[n["genre"]] = scores.get(n["genre"], 0) + max(n["score"], 0)
    assert genre["votes"] == pytest.approx({g: s / sum(scores.values()) for g, s in scores.items()}, abs=1e-3)
    assert genre["agreement"] == max(genre["votes"].values()) and genre["own"] == "a"
    assert json.loads(json.dumps(d.to_dict()))["summary"] == d.summary


def test_every_statement_states_a_number_of_the_description(described):
    lib, _ = described
    d = describe(lib, Query.moment(int(lib.tracks["track_id"].iloc[1]), at=2.0), k=4)
    flat = d.to_dict()
    assert len(d.statements) >= 8
    for s in d.statements:
        value = flat
        for part in s["field"].split("."):
            value = value[part]
        assert s["value"] == value
        assert any(f"{value:.{n}f}" in s["text"] for n in (0, 1, 2)), s


def test_template_sentences():
    d = Description(query={}, key="C major", key_confidence=0.31, tempo=99.6, loudness_db=-31.0, dynamics_db=12.5,
                    brightness_hz=2500.0, instruments={"piano": 0.7, "drums": 0.1},
                    voice={"voice": 0.05, "no voice": 0.6},
                    neighbourhood={"neighbours": [{}] * 10,
                                   "labels": {"genre": {"top": "jazz", "count": 7, "agreement": 0.68}}})
    assert [s["text"] for s in statements(d)] == [
        "Key unclear, perhaps C major (key confidence 0.31).", "About 100 BPM.", "Quiet loudness (-31.0 dBFS).",
        "Wide-ranging dynamics (12.5 dB range).", "Bright timbre (spectral centroid 2500 Hz).",
        "Instruments: piano (0.70).", "Probably instrumental (voice 0.05).",
        "7 of the 10 nearest moments are genre jazz (weighted agreement 0.68)."]


def test_a_clip_is_described_by_the_same_functions_and_models(described, tmp_path):
    lib, number = described
    tid = next(t for t, n in number.items() if n == 3)                               # D minor, 130 BPM
    uri = lib.tracks.set_index("track_id").at[tid, "uri"]
    d = describe(lib, Query.audio(uri), k=3)                                        # the whole 12 s file
    assert d.descriptors_from == "clip" and d.key == "D minor" and d.tempo == pytest.approx(130, rel=0.03)
    assert tid not in {n["track_id"] for n in d.neighbourhood["neighbours"]}
    tagger = next(e for e in lib.embeddings() if e.tag_names)
    row = lib.tags(track_id=tid, embedder=tagger.key).iloc[0]                        # mean of its stored windows
    assert all(p == pytest.approx(row[t], abs=2e-3) for t, p in d.tags[tagger.key].items())
    y = _track(4, False, 110, 9)                                                    # E major, not in the library
    d = describe(lib, Query.audio(y, sr=SR), k=2)
    assert d.key == "E major" and d.tempo == pytest.approx(110, rel=0.03) and len(d.neighbourhood["neighbours"]) == 2
    with pytest.raises(ParameterError, match="moment or audio"):
        describe(lib, Query.text("piano"))


class _FakeLLM(BaseHTTPRequestHandler):
    """An OpenAI-compatible ``/chat/completions``: answers from ``server.replies`` (status codes or text)."""

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, dict(self.headers), body))
        reply = self.server.replies.pop(0) if self.server.replies else "fine"
        if isinstance(reply, int):
            self.send_error(reply)
            return
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_llm():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeLLM)
    server.requests, server.replies = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_llm_summary_prompt_carries_the_neighbours_and_failures_are_clear(described, fake_llm):
    lib, _ = described
    server, url = fake_llm
    d = describe(lib, Query.moment(int(lib.tracks["track_id"].iloc[0]), at=0.0), k=3)
    server.replies = [503, "A calm minor-key moment."]                                # one retry
    answer = llm_summary(d, url, "tiny-model", token="s3cret", backoff=0.01)
    assert answer["answer"] == "A calm minor-key moment." and d.llm is answer and len(server.requests) == 2
    path, headers, body = server.requests[-1]
    assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer s3cret"
    assert body["model"] == "tiny-model" and answer["model"] == "tiny-model" and answer["time"].endswith("Z")
    prompt = body["messages"][-1]["content"]
    assert prompt == answer["prompt"] and d.key in prompt
    for n in d.neighbourhood["neighbours"]:
        assert f'"track_id": {n["track_id"]}' in prompt and f'"genre": "{n["genre"]}"' in prompt
    server.replies = [400]
    with pytest.raises(LLMError, match=r"chat/completions: HTTP 400"):
        llm_summary(d, url, "tiny-model", backoff=0.01)
    server.replies = [500, 500, 500]
    with pytest.raises(LLMError, match="unreachable after 3 attempts: HTTP 500"):
        llm_summary(d, url, "tiny-model", retries=2, backoff=0.01)
    closed = f"http://127.0.0.1:{server.server_address[1] + 1 if server.server_address[1] < 65535 else 1}/v1"
    with pytest.raises(LLMError, match="unreachable after 2 attempts"):
        llm_summary(d, closed, "tiny-model", retries=1, backoff=0.01, timeout=2)


def test_cli_describes_a_moment_a_clip_and_every_track_with_resume(described, fake_llm, tmp_path, monkeypatch):
    lib, number = described
    server, url = fake_llm
    runner = CliRunner()
    tid = int(lib.tracks["track_id"].iloc[2])
    r = runner.invoke(app, ["describe", str(lib.path), "--track", str(tid), "--at", "3", "--k", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["query"]["segment_id"] == lib.segments.index[lib.segments["track_id"] == tid][1]
    assert len(out["neighbourhood"]["neighbours"]) == 2 and out["summary"].startswith("In ")
    monkeypatch.setenv("AUDIORAG_LLM_TOKEN", "tok")
    uri = lib.tracks.set_index("track_id").at[tid, "uri"]
    server.replies = ["Bright and steady."]
    r = runner.invoke(app, ["describe", str(lib.path), "--audio", uri, "--end", "4", "--llm", url,
                            "--llm-model", "m"])
    assert r.exit_code == 0, r.output
    assert "About " in r.stdout and r.stdout.rstrip().endswith("LLM (m): Bright and steady.")
    assert server.requests[-1][1]["Authorization"] == "Bearer tok"
    for args, message in ((["--track", "0", "--audio", uri], "exactly one of"), (["--all"], "--all needs --out"),
                          (["--track", "0", "--llm", url], "go together"), (["--track", "0", "--k", "0"], "--k")):
        r = runner.invoke(app, ["describe", str(lib.path), *args])
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
    r = runner.invoke(app, ["describe", str(lib.path), "--track", "0", "--llm", "http://127.0.0.1:9/v1",
                            "--llm-model", "m", "--llm-retries", "0", "--llm-timeout", "2"])
    assert r.exit_code == 2 and r.output.strip().count("\n") == 0 and "unreachable after 1 attempts" in r.output

    target = tmp_path / "all.jsonl"
    r = runner.invoke(app, ["describe", str(lib.path), "--all", "--out", str(target), "--k", "2"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert sorted(x["track_id"] for x in lines) == sorted(lib.tracks["track_id"])
    assert all(x["query"]["start"] <= x["query"]["at"] == 6.0 for x in lines)       # 12 s tracks: the middle
    target.write_text("\n".join(json.dumps(x) for x in lines[:-2]) + "\n")         # two lost: only they are redone
    r = runner.invoke(app, ["describe", str(lib.path), "--all", "--out", str(target), "--k", "2"])
    assert r.exit_code == 0 and "2 described, 4 already in" in r.output, r.output
    again = [json.loads(line) for line in target.read_text().splitlines()]
    assert sorted(x["track_id"] for x in again) == sorted(lib.tracks["track_id"]) and again[-1] == lines[-1]
