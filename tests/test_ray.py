"""The Ray engine of the build (``--engine ray``): same results as the local engine, crash-safe, multi-node.

One local Ray (2 CPUs, loopback) serves the module; the cluster test starts its own two-node cluster
(``ray start --head`` + a second node, each ``--block``ed so that ending their processes ends the nodes).
Without ray installed the module is skipped, except under CI, where ray must be there.
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_tone

try:
    import ray
    import ray.util
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("ray is not installed (pip install 'audiorag[scale]')", allow_module_level=True)

from audiorag import Library
from audiorag.engines.ray import FAULT_ENV

RAY_BIN = Path(sys.executable).with_name("ray")


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    """A local Ray with 2 CPUs for the module; its workers see ``AUDIORAG_RAY_FAULT`` (a marker that
    exists: no fault until a test removes it). Yields (GCS address, marker path)."""
    marker = tmp_path_factory.mktemp("fault") / "worker-exited"
    marker.touch()
    old = os.environ.get(FAULT_ENV)
    os.environ[FAULT_ENV] = str(marker)
    ctx = ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20,
                   logging_level="ERROR", log_to_driver=False)
    try:
        yield ctx.address_info["gcs_address"], marker
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop(FAULT_ENV, None)
        else:
            os.environ[FAULT_ENV] = old


def _same(a: Library, b: Library, key: str, *, atol: float = 0.0) -> None:
    """The same vectors (bit-for-bit unless ``atol``) and the same tables (both read back from disk)."""
    a, b = Library.open(a.path), Library.open(b.path)
    for x, y in ((a.vectors(key), b.vectors(key)), (a.embedding(key).raw(), b.embedding(key).raw())):
        assert x.shape == y.shape
        if atol == 0:
            assert np.array_equal(x, y)
        else:  # relative to each row's scale (raw vectors are not normalised)
            err = np.abs(x - y).max(axis=1) / np.maximum(np.abs(y).max(axis=1), 1e-12)
            assert err.max() <= atol, f"max relative difference {err.max():.2e}"
    pd.testing.assert_frame_equal(a.tracks, b.tracks)
    pd.testing.assert_frame_equal(a.segments, b.segments)


def test_ray_equals_local_and_survives_a_dying_worker(library, corpus, ray_local, tmp_path):
    """features45 on the 24-track corpus: bit-for-bit the local build's vectors and tables, even though
    one worker actor exits mid-run (Ray restarts it and retries its batch)."""
    _, marker = ray_local
    marker.unlink()  # the next batch's worker exits once
    lib = Library.create(tmp_path / "lib", window=10, hop=2)
    report = lib.add(corpus, embedders=["features45"], progress=False, engine="ray")
    assert marker.exists()  # a worker did exit
    assert (report.added, report.failed) == (24, 0)
    _same(lib, library, "features45")


def test_ray_model_embedder_equals_local(ray_local, tmp_path):
    """aisfx (a torch model, batched across the files of a worker batch) gives the local pipeline's vectors
    to float rounding: the model is batch-invariant, but its numpy front end (a BLAS matmul) rounds
    differently in Ray's worker processes (last bits, ≈ 3e-8 here)."""
    files = [str(tmp_path / f"t{i}.wav") for i in range(4)]
    for i, f in enumerate(files):
        write_tone(f, seconds=5.0 + i, freq=220.0 * (i + 1))
    libs = []
    for engine in ("local", "ray"):
        lib = Library.create(tmp_path / engine, window=3, hop=1.5)
        report = lib.add(files, embedders=["aisfx"], progress=False, engine=engine)
        assert (report.added, report.failed) == (4, 0)
        libs.append(lib)
    key = libs[0].embeddings()[0].key
    assert libs[0].vectors(key).shape[0] >= 4 * 2
    _same(libs[1], libs[0], key, atol=1e-6)


def test_ray_bad_file_is_an_error_record(ray_local, tmp_path):
    """A file that does not decode is the same error record as locally; the others are built."""
    folder = tmp_path / "audio"
    folder.mkdir()
    for i in range(3):
        write_tone(folder / f"tone{i}.wav", seconds=4.0, freq=300.0 + 100 * i)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    libs = []
    for engine in ("local", "ray"):
        lib = Library.create(tmp_path / engine, window=2, hop=1)
        report = lib.add(sorted(str(p) for p in folder.iterdir()), embedders=["features45"], progress=False,
                         engine=engine)
        assert (report.added, report.failed) == (3, 1)
        assert report.errors[0]["uri"].endswith("broken.wav") and report.errors[0]["stage"] == "decode"
        libs.append((lib, [(e["uri"], e["stage"], e["error"], e["message"]) for e in report.errors]))
    (local, local_errors), (ray_lib, ray_errors) = libs
    assert ray_errors == local_errors
    _same(ray_lib, local, "features45")


def test_driver_killed_then_resumed(library, corpus, ray_local, tmp_path):
    """``audiorag build --engine ray`` SIGKILLed after its first committed batch; re-run on Ray: the
    vectors of an uninterrupted local build."""
    gcs, _ = ray_local
    path = tmp_path / "lib"
    cmd = [sys.executable, "-m", "audiorag", "build", str(path), "--dataset", "synthetic:24:7",
           "--engine", "ray", "--ray-address", gcs, "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while not _committed_batch(path):
            assert proc.poll() is None, f"the build ended before its first commit: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "no batch committed within 120 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    report = Library.open(path).add(corpus, progress=False, engine="ray")
    lib = Library.open(path)
    assert len(lib.tracks) == 24 and report.failed == 0
    assert 0 < report.added < 24  # the committed batch was kept, not redone
    _same(lib, library, "features45")


def test_without_ray(tmp_path):
    """``import audiorag`` and the local build never import ray; ``--engine ray`` without it: one line, exit 2."""
    code = ("import sys; sys.modules['ray'] = None\n"
            "import audiorag, audiorag.engines, audiorag.cli\n"
            "from audiorag.cli import main\n"
            "main(['build', sys.argv[1], '--engine', 'ray'])")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "lib")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("--engine ray needs ray, which is not installed: "
                                                 "pip install 'audiorag[scale]'"), out.stderr
    assert not (tmp_path / "lib").exists()  # refused before any work
    out = subprocess.run([sys.executable, "-c", "import sys, audiorag, audiorag.engines, audiorag.cli; "
                          "print('ray' in sys.modules)"], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_unreachable_cluster_is_one_line(tmp_path):
    """A ``--ray-address`` where nothing listens: one line at once, before any work (Ray would retry for minutes)."""
    port = _free_port()  # bound then closed: nothing listens there
    out = subprocess.run([sys.executable, "-m", "audiorag", "build", str(tmp_path / "lib"), "--dataset",
                          str(tmp_path), "--engine", "ray", "--ray-address", f"127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"error: --ray-address 127.0.0.1:{port}: no Ray cluster answers there (Connection refused)"], out.stderr
    assert not (tmp_path / "lib").exists()


def _committed_batch(path: Path) -> bool:
    """The library's committed generation (``CURRENT``) holds a staged batch."""
    try:
        current = (path / "CURRENT").read_text().strip()
    except FileNotFoundError:
        return False
    return bool(current) and any((path / current / "staging").glob("add-*.parquet"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(procs) -> None:
    """End the ``ray start --block`` processes this test started (each tears its node down), bounded."""
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """A cluster started as a user starts one: ``ray start --head`` and a second node with ``ray start --address``
    (1 CPU each, on this machine, their own token). Yields (address, environment for its clients, log path)."""
    # this machine's own address: Ray swaps 127.0.0.1 for it in every address it is given
    host = ray.util.get_node_ip_address()
    address = f"{host}:{_free_port()}"
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay under 107 bytes
    logs = tmp_path_factory.mktemp("ray-start") / "ray-start.log"
    procs = []
    common = ["--num-cpus", "1", "--block", "--disable-usage-stats", "--object-store-memory", str(128 * 2**20)]
    try:
        with open(logs, "w") as log:
            procs.append(subprocess.Popen([str(RAY_BIN), "start", "--head", "--node-ip-address", host,
                                           "--port", address.split(":")[1], "--temp-dir", str(temp),
                                           "--include-dashboard", "false", *common],
                                          stdout=log, stderr=subprocess.STDOUT, env=env))
            _wait_for_nodes(address, 1, procs, logs, env)
            procs.append(subprocess.Popen([str(RAY_BIN), "start", "--address", address, "--node-ip-address", host,
                                           *common], stdout=log, stderr=subprocess.STDOUT, env=env))
            _wait_for_nodes(address, 2, procs, logs, env)
        yield address, env, logs
    finally:
        _stop(procs)
        shutil.rmtree(temp, ignore_errors=True)


def test_two_node_cluster(library, started, tmp_path):
    """``build --engine ray --ray-address`` on a cluster of two nodes processes files on both and gives the
    local build's vectors."""
    address, env, _ = started
    path = tmp_path / "lib"
    out = subprocess.run([sys.executable, "-m", "audiorag", "-v", "build", str(path), "--dataset", "synthetic:24:7",
                          "--engine", "ray", "--ray-address", address, "--json"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    nodes = re.search(r"ray: (\d+) files on (\d+) node\(s\): (\{.*\})", out.stderr)
    assert nodes, out.stderr[-3000:]
    per_node = eval(nodes.group(3))  # {node id: files}
    assert int(nodes.group(1)) == 24 and len(per_node) == 2 and all(n > 0 for n in per_node.values())
    _same(Library.open(path), library, "features45")


def test_sharded_cli_on_a_cluster_started_with_ray_start(started, tmp_path):
    """The sharded library's commands as a user types them against that cluster: copy a shard to the second
    node (placed there), see its actor run there, search through the actors (the local fan-out's answer),
    stop the actors."""
    address, env, _ = started

    def cli(*args, code=0):
        out = subprocess.run([sys.executable, "-m", "audiorag", *map(str, args)], capture_output=True, text=True,
                             timeout=300, env=env)
        assert out.returncode == code, out.stderr[-3000:]
        return out

    lib = tmp_path / "lib"
    cli("build", lib, "--dataset", "synthetic:24:7", "--shards", "2", "--embedder", "features45")
    probe = ("import json, ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False); "
             "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive'] "
             "and 'node:__internal_head__' not in n['Resources']]))")
    out = subprocess.run([sys.executable, "-c", probe, address], capture_output=True, text=True, timeout=120, env=env)
    (worker,) = json.loads(out.stdout.splitlines()[-1])
    copied = json.loads(cli("shards", "copy", lib, "--shard", "1", "--node", worker, "--path", tmp_path / "copy-1",
                            "--ray-address", address, "--json").stdout)
    assert copied["node"] == worker and copied["sent"] > 5 and copied["path"] == str(tmp_path / "copy-1")
    assert (tmp_path / "copy-1" / "CURRENT").read_text() == (lib / "shard-001" / "CURRENT").read_text()
    where = json.loads(cli("shards", "where", lib, "--ray-address", address, "--json").stdout)
    assert where[1]["node"] == worker and where[1]["placed"] == {"node": worker, "path": str(tmp_path / "copy-1")}
    query = ["search", lib, "--track", "3", "--at", "2", "-k", "8", "--json"]
    local = json.loads(cli(*query).stdout)
    remote = cli(*query, "--ray-address", address)
    assert json.loads(remote.stdout) == local and len(local) == 8 and "did not answer" not in remote.stderr
    assert "stopped 2 shard actors" in cli("shards", "stop", lib, "--ray-address", address).stderr


def _wait_for_nodes(address: str, n: int, procs: list, log: Path, env: dict, timeout: float = 120) -> None:
    """Until the cluster at ``address`` lists ``n`` alive nodes (asked from a fresh process)."""
    probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False); "
             "print(sum(x['Alive'] for x in ray.nodes()))")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), f"`ray start` ended: {log.read_text()[-2000:]}"
        try:
            out = subprocess.run([sys.executable, "-c", probe, address], capture_output=True, text=True,
                                 timeout=60, env=env)
        except subprocess.TimeoutExpired:
            continue
        if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        time.sleep(1)
    raise AssertionError(f"the Ray cluster at {address} did not reach {n} node(s) in {timeout:.0f} s")
