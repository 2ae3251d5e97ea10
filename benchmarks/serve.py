"""Load on ``audiorag serve``: throughput and latency percentiles per route and number of clients.

    python benchmarks/serve.py                     # the default library, 1/8/32 clients, 6 s per cell
    python benchmarks/serve.py --library LIB --seconds 10 --workers 2

On 127.0.0.1 only, in bounded loops (every cell stops after ``--seconds``; the script stops by itself):

1. in-process baselines, in this run: ``search()`` of a moment, of a 10 s WAV (decode + embed + search,
   from the upload's bytes) and of a text query, one after another on one thread (latency and queries/s);
2. a server (``audiorag serve``, ``--workers`` processes) under 1, 8 and 32 concurrent clients for
   moment search (``GET /search/moment``), upload search (``POST /search/audio``, a 10 s WAV) and
   text search (``POST /search/text``, when the library has a tagger or a text tower);
3. the same moment and upload load on a copy of the library while a build adds tracks to it
   (batches of generated files), counting the generations the server moved to.

The clients are `wrk <https://github.com/wg/wrk>`_ (C, one thread, keep-alive connections; Debian's
``wrk`` package) when it is installed, else Python threads with ``http.client`` (which take a core of
their own on a small machine: the record names the client). Every response that is not a 200 counts as
an error. The record (with ``uptime`` load before and after each cell: the machine is shared) goes to
``--out``; the table of ``docs/serve.md`` is printed (``make docs`` puts it there).
"""

# ruff: noqa: E402 - the thread settings below must precede the imports that load native libraries
from __future__ import annotations

import os

# as `audiorag serve` does: one native thread per search or embedding, so the in-process baselines run
# with the server's settings (set before faiss, torch or BLAS load)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import http.client
import io
import json
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from audiorag import Library, Query
from audiorag.audio import load
from audiorag.report import serve_load
from audiorag.search import search

DEMO_LIBRARY = "experiments/results/default/libraries/synthetic-96-w10-h2"  # made by `make demo`
OWN_LIBRARY = "experiments/results/serve-bench/synthetic-96"  # built here when the demo's is absent
DEFAULT_OUT = "experiments/results/serve-bench/serve.json"  # the record behind docs/serve.md's table
TEXTS = ["slow piano ballad", "fast techno beat", "guitar", "ambient choir", "drums and bass", "female singer",
         "classical strings", "rock", "quiet", "electronic synth"]


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def ensure_library(path: str | None) -> Path:
    """The library to serve: ``path``, the demo's, or one built here once (96 generated tracks, features45 and
    the musicnn-mtt tagger for text queries, Flat indexes) by ``audiorag build`` in a child process, so that this
    process's baselines do not run beside a model the build loaded."""
    if path:
        return Path(path)
    if (Path(DEMO_LIBRARY) / "library.json").exists():
        return Path(DEMO_LIBRARY)
    if not (Path(OWN_LIBRARY) / "library.json").exists():
        subprocess.run([sys.executable, "-m", "audiorag", "build", OWN_LIBRARY, "--dataset", "synthetic:96",
                        "--embedder", "features45", "--embedder", "musicnn-mtt", "--index", "Flat"], check=True)
    return Path(OWN_LIBRARY)


def clip_wav(lib: Library, seconds: float = 10.0) -> bytes:
    """A 10 s span of one of the library's tracks as a 16-bit WAV (what a client uploads)."""
    uri = lib.tracks["uri"].iloc[len(lib.tracks) // 2]
    y, sr = load(uri, offset=5.0, duration=seconds)
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def multipart(fields: dict, file: bytes) -> tuple[bytes, str]:
    boundary = "audiorag-bench-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="clip.wav"\r\n'
                 f"Content-Type: audio/wav\r\n\r\n".encode() + file + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def percentiles(times: list[float]) -> dict:
    if not times:
        return {"p50_ms": None, "p99_ms": None}
    ms = np.asarray(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def in_process(lib: Library, embedder: str, wav: bytes, moments: list, text_embedder: str | None,
               repeats: int, seconds: float) -> dict:
    """``search()`` in this process, one query after another on one thread: the baselines the server's
    figures are compared with (``per_s``: queries a second that one thread answers). Moments run for
    ``seconds`` (a cell's length: the load of a shared machine varies), the others ``repeats`` times."""
    out = {}
    kinds = {"moment": lambda i: search(lib, Query.moment(*moments[i % len(moments)]), embedder=embedder, k=10),
             "upload": lambda i: _upload_in_process(lib, wav, embedder)}
    if text_embedder:
        kinds["text"] = lambda i: search(lib, Query.text(TEXTS[i % len(TEXTS)]), embedder=text_embedder, k=10)
    for kind, fn in kinds.items():
        fn(0)  # warm caches and models
        times = []
        stop = time.perf_counter() + seconds
        while len(times) < repeats or (kind == "moment" and time.perf_counter() < stop):
            t0 = time.perf_counter()
            fn(len(times))
            times.append(time.perf_counter() - t0)
        out[kind] = {"n": len(times), **percentiles(times), "per_s": round(len(times) / sum(times), 1),
                     "load": load_avg()}
    return out


def _upload_in_process(lib, wav: bytes, embedder: str):
    y, sr = load(io.BytesIO(wav))
    return search(lib, Query.audio(y, sr=sr), embedder=embedder, k=10)


class Server:
    """``audiorag serve`` in a child process on a free loopback port, ready when every worker process has
    said so (its warm-up done: ``/health`` answers while a process warms, and a cell measured meanwhile
    would time the warm-up's models loading beside the requests)."""

    def __init__(self, library: Path, workers: int):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "AUDIORAG_TOKEN"}
        self.log = tempfile.NamedTemporaryFile(prefix="serve-bench-", suffix=".log")
        self.proc = subprocess.Popen([sys.executable, "-m", "audiorag", "serve", str(library), "--port",
                                      str(self.port), "--workers", str(workers)], env=env, stderr=self.log)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and self.proc.poll() is None:
            if Path(self.log.name).read_text(errors="replace").count("ready: ") >= workers:
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not get ready within 300 s: {Path(self.log.name).read_text()[-500:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def request(port: int, method: str, path: str, body: bytes | None = None, ctype: str | None = None,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": ctype} if ctype else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        if own:
            conn.close()


#: wrk's script: the cell's requests (a file: METHOD, path, content type, body file; one a line) in turn on
#: every connection; each answer that is not a 200 counted, the generations named by the 200s collected
WRK_SCRIPT = r"""
local reqs, threads, i = {}, {}, 0
bad, gens = 0, ""
setup = function(thread) table.insert(threads, thread) end
init = function(args)
  for line in io.lines(args[1]) do
    local m, p, c, f = line:match("^(%S+)\t([^\t]*)\t([^\t]*)\t([^\t]*)$")
    local body, headers = nil, {}
    if f ~= "" then local h = io.open(f, "rb"); body = h:read("*a"); h:close() end
    if c ~= "" then headers["Content-Type"] = c end
    reqs[#reqs + 1] = wrk.format(m, p, headers, body)
  end
end
request = function() i = i + 1; return reqs[(i % #reqs) + 1] end
response = function(status, headers, body)
  if status ~= 200 then bad = bad + 1; return end
  local g = body:match('"generation":(%d+)')
  if g and not gens:find("," .. g .. ",", 1, true) then gens = gens .. "," .. g .. "," end
end
done = function(summary, latency, requests)
  local n, g = 0, ""
  for _, t in ipairs(threads) do n = n + t:get("bad"); g = g .. t:get("gens") end
  local e = summary.errors
  io.write(string.format('WRK {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "not_200": %d, ' ..
    '"socket_errors": %d, "generations": "%s"}\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), n, e.connect + e.read + e.write + e.timeout, g))
end
"""


def client_name() -> str:
    """The load generator this run uses: wrk when installed, else Python threads."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return "python http.client threads"
    version = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.split()
    return f"wrk {version[1] if len(version) > 1 else ''} (1 thread)".replace("  ", " ")


def load_cell(port: int, make, clients: int, seconds: float) -> dict:
    """``clients`` keep-alive connections sending ``make(i)`` requests for ``seconds``: throughput of 200s,
    latency percentiles, errors (answers that are not 200), generations served; wrk when installed."""
    before = load_avg()
    run = _wrk_cell if shutil.which("wrk") else _python_cell
    out = run(port, make, clients, seconds)
    return {"clients": clients, **out, "load_before": before, "load_after": load_avg()}


def _wrk_cell(port: int, make, clients: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="serve-bench-wrk-") as tmp:
        lines, bodies = [], {}
        for i in range(500):
            method, path, body, ctype = make(i)
            name = ""
            if body is not None:
                name = bodies.setdefault(body, str(Path(tmp) / f"body{len(bodies)}"))
                Path(name).write_bytes(body)
            lines.append(f"{method}\t{path}\t{ctype or ''}\t{name}")
        requests = Path(tmp) / "requests.tsv"
        requests.write_text("\n".join(dict.fromkeys(lines)) + "\n")
        script = Path(tmp) / "cell.lua"
        script.write_text(WRK_SCRIPT)
        r = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "60s", "-s", str(script),
                            f"http://127.0.0.1:{port}", "--", str(requests)], capture_output=True, text=True)
    found = json.loads(next(line[4:] for line in r.stdout.splitlines() if line.startswith("WRK ")))
    ok = found["requests"] - found["not_200"]
    return {"requests": found["requests"], "errors": found["not_200"] + found["socket_errors"], "error_examples": [],
            "per_s": round(ok / (found["duration_us"] / 1e6), 1), "p50_ms": round(found["p50_us"] / 1000, 2),
            "p99_ms": round(found["p99_us"] / 1000, 2),
            "generations": sorted(int(g) for g in found["generations"].split(",") if g)}


def _python_cell(port: int, make, clients: int, seconds: float) -> dict:
    stop = time.monotonic() + seconds
    times: list[float] = []
    errors: list[str] = []
    generations: set = set()
    lock = threading.Lock()

    def client(c: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = c
        while time.monotonic() < stop:
            method, path, body, ctype = make(i)
            i += clients
            t0 = time.perf_counter()
            try:
                status, data = request(port, method, path, body, ctype, conn=conn)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                status, data = None, str(exc).encode()
            took = time.perf_counter() - t0
            with lock:
                if status == 200:
                    times.append(took)
                    generations.add(json.loads(data).get("generation"))
                else:
                    errors.append(f"{status}: {data[:120]!r}")
        conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"requests": len(times) + len(errors), "errors": len(errors), "error_examples": sorted(set(errors))[:3],
            "per_s": round(len(times) / wall, 1), **percentiles(times),
            "generations": sorted(g for g in generations if g is not None)}


def warm(port: int, make) -> None:
    """Requests on 16 connections, so that every server process answers some (the kernel hands each
    connection to one process; a process's first upload compiles librosa's numba functions: seconds, not
    part of steady-state latency)."""
    load_cell(port, make, 16, 4.0)


def grow(library: Path, stop: threading.Event, log: list) -> None:
    """Add one generated 8 s track at a time to ``library`` until ``stop`` (one build, so one new
    generation, each)."""
    folder = Path(tempfile.mkdtemp(prefix="serve-bench-grow-"))
    rng = np.random.default_rng(0)
    batch = 0
    while not stop.is_set():
        t = np.arange(22050 * 8) / 22050
        y = 0.3 * np.sin(2 * np.pi * rng.uniform(80, 900) * t) + 0.05 * rng.standard_normal(len(t))
        sf.write(folder / f"grow-{batch}.wav", y.astype(np.float32), 22050)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "audiorag", "build", str(library), "--dataset", f"folder:{folder}",
                            "--wait"], capture_output=True, text=True)
        log.append({"batch": batch, "seconds": round(time.perf_counter() - t0, 2), "exit": r.returncode,
                    "error": r.stderr.strip().splitlines()[-1] if r.returncode else None})
        batch += 1
    shutil.rmtree(folder, ignore_errors=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--library", default=None, help=f"default: {DEMO_LIBRARY} if present, else {OWN_LIBRARY}")
    ap.add_argument("--embedder", default="features45")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=6.0, help="length of each load cell")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="server processes")
    ap.add_argument("--repeats", type=int, default=30, help="in-process baseline: upload/text runs (moments: a cell's "
                                                            "length)")
    ap.add_argument("--kinds", default="moment,upload,text", help="which queries to load (text: when it can)")
    ap.add_argument("--no-build", action="store_true", help="skip the load during a build")
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    library = ensure_library(args.library)
    lib = Library.open(library)
    emb = lib.embedding(args.embedder)
    complete = [e for e in lib.embeddings() if e.n_segments == len(lib.segments)]  # not one a build is filling
    text_emb = next((e.key for e in complete if e.has_text), None) or next((e.key for e in complete if e.tag_names),
                                                                           None)
    segs = lib.segments[lib.segments["track_id"] >= 0]
    rows = np.random.default_rng(0).choice(len(segs), min(500, len(segs)), replace=False)
    moments = [(int(segs["track_id"].iat[r]), float(segs["start"].iat[r]) + 0.5) for r in rows]
    wav = clip_wav(lib)
    upload, ctype = multipart({"k": "10", "embedder": emb.key}, wav)
    record = {"library": str(library), "embedding": emb.key, "n_segments": int(len(segs)), "text_embedding": text_emb,
              "upload_bytes": len(wav), "workers": args.workers, "seconds_per_cell": args.seconds,
              "client": client_name(),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "load_start": load_avg()}
    print(f"in-process baselines ({emb.key}, {len(segs)} segments) ...", flush=True)
    record["in_process"] = in_process(lib, emb.key, wav, moments, text_emb, args.repeats, args.seconds)
    kinds = {"moment": lambda i: ("GET", "/search/moment?track={}&at={}&k=10&embedder={}".format(
        *moments[i % len(moments)], emb.key), None, None),
             "upload": lambda i: ("POST", "/search/audio", upload, ctype)}
    if text_emb:
        kinds["text"] = lambda i: ("POST", "/search/text", json.dumps(
            {"text": TEXTS[i % len(TEXTS)], "k": 10, "embedder": text_emb}).encode(), "application/json")
    kinds = {k: v for k, v in kinds.items() if k in args.kinds.split(",")}
    clients = [int(c) for c in args.clients.split(",")]
    server = Server(library, args.workers)
    record["served"] = {}
    try:
        for kind, make in kinds.items():
            warm(server.port, make)
            for c in clients:
                cell = load_cell(server.port, make, c, args.seconds)
                record["served"].setdefault(kind, []).append(cell)
                print(f"  {kind:7s} {c:3d} clients: {cell['per_s']:7.1f}/s  p50 {cell['p50_ms']} ms  "
                      f"p99 {cell['p99_ms']} ms  errors {cell['errors']}  load {cell['load_after']}", flush=True)
    finally:
        server.stop()
    record["during_build"] = {} if args.no_build else during_build(
        library, args, {k: kinds[k] for k in ("moment", "upload") if k in kinds})
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    record["load_end"] = load_avg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(serve_load(Path.cwd()) if args.out == DEFAULT_OUT else json.dumps(record["served"], indent=1))
    print(f"record: {args.out}")


def during_build(library: Path, args, kinds: dict) -> dict:
    """Moment and upload load (8 clients) on a copy of the library while builds add tracks to it."""
    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    try:
        copy = work / "lib"
        shutil.copytree(library, copy, symlinks=True)
        server = Server(copy, args.workers)
        stop, builds = threading.Event(), []
        grower = threading.Thread(target=grow, args=(copy, stop, builds))
        out = {}
        try:
            grower.start()  # a build takes tens of seconds: it is under way while the workers warm up
            for make in kinds.values():
                warm(server.port, make)
            for kind, make in kinds.items():
                cell = load_cell(server.port, make, 8, max(args.seconds, 30.0))
                out[kind] = cell
                print(f"  during a build: {kind:7s} 8 clients: {cell['per_s']:7.1f}/s  p50 {cell['p50_ms']} ms  "
                      f"p99 {cell['p99_ms']} ms  errors {cell['errors']}  generations {cell['generations']}",
                      flush=True)
        finally:
            stop.set()
            grower.join()
            server.stop()
        out["builds"] = builds
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
