"""The first queries a fresh server answers: ``audiorag serve`` with and without its start-up warm-up.

    .venv/bin/python benchmarks/first_query.py                 # builds an 8-track features45 + melody library
    .venv/bin/python benchmarks/first_query.py --library LIB

Each run starts a new server process with an empty compiled-code cache (``NUMBA_CACHE_DIR`` a new empty folder,
as on a fresh install), waits until ``/health`` answers ``ok`` (with warm-up: until it stops saying
``warming``), then times the first query of each kind the library offers (an upload, a hum, a moment, a text)
and a second upload. Both servers run in this one run, one after the other; the machine's load is recorded.
The record goes to ``--out``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import soundfile as sf

from audiorag import Library
from audiorag.analysis.records import git_commit, machine

OWN_LIBRARY = "experiments/results/first-query/lib"
DEFAULT_OUT = "experiments/results/first-query/first.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", type=Path, help=f"a library (default: {OWN_LIBRARY}, built when absent)")
    ap.add_argument("--out", type=Path, default=Path(DEFAULT_OUT))
    args = ap.parse_args()
    path = args.library or Path(OWN_LIBRARY)
    if args.library is None and not (path / "library.json").exists():
        subprocess.run([sys.executable, "-m", "audiorag", "build", str(path), "--dataset", "synthetic:8",
                        "--embedder", "features45", "--embedder", "melody"], check=True)
    lib = Library.open(path)
    kinds = {e.kind for e in lib.embeddings()}
    texts = any(e.has_text or e.is_tagger for e in lib.embeddings())
    wav = _wav(str(lib.tracks["uri"].iloc[min(2, len(lib.tracks) - 1)]), seconds=6)
    track = int(lib.tracks["track_id"].iloc[0])
    queries = [("upload", "POST", "/search/audio", {"files": {"file": ("q.wav", wav)}, "data": {"k": 5}})]
    if "melody" in kinds:
        queries.append(("hum", "POST", "/search/hum", {"files": {"file": ("q.wav", wav)}, "data": {"k": 5}}))
    queries.append(("moment", "GET", f"/search/moment?track={track}&at=3&k=5", {}))
    if texts:
        queries.append(("text", "POST", "/search/text", {"json": {"text": "slow piano", "k": 5}}))
    queries.append(("upload again", *queries[0][1:]))
    runs = [_run(path, warm, queries) for warm in (False, True)]
    record = {"benchmark": "first-query", "git_commit": git_commit(), "machine": machine().model_dump(),
              "library": str(path), "tracks": len(lib.tracks), "embeddings": [e.key for e in lib.embeddings()],
              "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"| server | ready after (s) | {' | '.join(name for name, *_ in queries)} | load |")
    print(f"|---|---|{'---|' * len(queries)}---|")
    for r in runs:
        cells = " | ".join(f"{r['first_s'][name]:.2f}" for name, *_ in queries)
        print(f"| {'warm-up' if r['warm'] else 'no warm-up'} | {r['ready_s']:.1f} | {cells} | {r['load']:.1f} |")
    print(f"record: {args.out}")


def _run(path: Path, warm: bool, queries) -> dict:
    """One fresh server (empty numba cache): seconds until ready, then each query's seconds and status."""
    with tempfile.TemporaryDirectory() as cache:
        port = _free_port()
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "AUDIORAG_TOKEN": ""}
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "audiorag", "serve", str(path), "--port", str(port),
                                 "--warm" if warm else "--no-warm"], env=env, stderr=subprocess.PIPE, text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    if httpx.get(base + "/health").json()["status"] == "ok":
                        break
                except httpx.HTTPError:
                    if proc.poll() is not None:
                        raise SystemExit(f"the server stopped: {proc.stderr.read()}") from None
                time.sleep(0.05)
            ready = time.monotonic() - t0
            first, status = {}, {}
            for name, method, url, kw in queries:
                t = time.monotonic()
                r = httpx.request(method, base + url, timeout=600, **kw)
                first[name], status[name] = round(time.monotonic() - t, 3), r.status_code
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {"warm": warm, "ready_s": round(ready, 2), "first_s": first, "status": status,
            "load": round(os.getloadavg()[0], 2)}


def _wav(uri: str, seconds: float) -> bytes:
    y, sr = sf.read(uri, dtype="float32", frames=int(seconds * sf.info(uri).samplerate))
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV")
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    from audiorag.errors import AudioragError
    try:
        main()
    except AudioragError as exc:  # a library that is not there or cannot be read: one line
        raise SystemExit(f"error: {exc}") from None
