"""The README's 5-minute tour, run as printed (its ```bash block is read from README.md at test time, so the
text cannot drift from what works) in a fresh clone: the notebook step as JupyterLab runs it (kernel in
``notebooks/``), then again after the README's second embedding, with the server's default query."""

import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser import wait_for_port

ROOT = Path(__file__).resolve().parents[1]


def tour_block(readme: str) -> list[str]:
    """The command lines of the ```bash block under "A 5-minute tour"."""
    section = readme.split("## A 5-minute tour", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def as_jupyterlab(line: str, out: Path) -> str:
    """``jupyter lab NB  # set P = "V"`` → the same notebook executed with the kernel in notebooks/ (where
    JupyterLab starts it) and the parameter the comment says to set."""
    notebook = line.split()[2]
    params = re.findall(r'set (\w+) = "([^"]+)"', line)
    assert params, f"the tour's jupyter line names no parameter to set: {line}"
    sets = " ".join(f"-p {name} {shlex.quote(value)}" for name, value in params)
    return f"papermill --cwd notebooks {notebook} {out} {sets} --no-progress-bar"


def run_script(lines: list[str], clone: Path, env: dict, log: Path) -> str:
    script = "set -euo pipefail\nPS4='+ $(date +%s) '\nset -x\n" + "\n".join(lines) + "\n"
    r = subprocess.run(["bash", "-c", script], cwd=clone, env=env, capture_output=True, text=True, timeout=3600)
    log.write_text(r.stdout + r.stderr)
    assert r.returncode == 0, f"tour failed (log {log}):\n{(r.stdout + r.stderr)[-4000:]}"
    return r.stdout + r.stderr


def kernel_config(clone: Path, ipython_dir: Path) -> Path:
    """The kernel configuration `make install` writes into .venv/etc/ipython (this test's environment was
    not made by `make install`): the same file, in an IPython profile of its own."""
    make = (clone / "Makefile").read_text()
    assert "cp notebooks/ipython_kernel_config.py $(VENV)/etc/ipython/" in make  # what `make install` does
    (ipython_dir / "profile_default").mkdir(parents=True)
    shutil.copy(clone / "notebooks" / "ipython_kernel_config.py", ipython_dir / "profile_default")
    return ipython_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_the_readme_tour_runs_as_printed_in_a_fresh_clone_then_with_a_second_embedding(tmp_path):
    clone = tmp_path / "audiorag"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    (clone / ".venv").symlink_to(Path(sys.prefix))  # what `make install` creates: this test's environment
    readme = (clone / "README.md").read_text()
    lines = tour_block(readme)
    jupyter = [i for i, line in enumerate(lines) if line.startswith("jupyter lab ")]
    assert len(jupyter) == 1, "the tour opens one notebook in JupyterLab"
    lines[jupyter[0]] = as_jupyterlab(lines[jupyter[0]], tmp_path / "02-first.ipynb")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(clone), "LANG": "C.UTF-8",
           "IPYTHONDIR": str(kernel_config(clone, tmp_path / "ipython"))}

    out = run_script(lines, clone, env, tmp_path / "tour-1.log")
    assert (clone / "experiments/results/explore/hits.csv").exists()  # out_dir read from the root...
    assert not (clone / "notebooks/experiments").exists()              # ...not from the kernel's notebooks/
    first = json.loads((clone / "my-eval/metrics.json").read_text())
    assert "IPKernelApp" not in out

    # the README's next step: a second embedding; then the same commands, naming none
    second = re.search(r"`(audiorag build my-lib [^`]*--embedder musicnn-mtt)`", readme).group(1)
    again = [line for line in lines if not line.startswith("audiorag build ")]
    again[again.index(lines[jupyter[0]])] = as_jupyterlab(tour_block(readme)[jupyter[0]], tmp_path / "02-again.ipynb")
    out = run_script([lines[0], second, *again[1:]], clone, env, tmp_path / "tour-2.log")
    assert "musicnn-mtt" in out and "(default" in out  # info lists both and says which one is used
    after = json.loads((clone / "my-eval/metrics.json").read_text())
    assert after["embedder"]["key"] == first["embedder"]["key"]
    assert (clone / "experiments/results/explore/hits.csv").exists()

    port = free_port()
    serve_log = tmp_path / "serve.log"
    with serve_log.open("w") as log:
        proc = subprocess.Popen([str(clone / ".venv/bin/audiorag"), "serve", "my-lib", "--port", str(port)],
                                cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, serve_log, timeout=300)
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            health = get(f"{base}/health")
            if health.get("status") != "warming":
                break
            time.sleep(1)
        stats = get(f"{base}/stats")
        assert len(stats["embeddings"]) == 2 and stats["default_embedding"] == first["embedder"]["key"]
        found = get(f"{base}/search/moment?track=3&at=12&k=5")
        assert found["embedding"] == stats["default_embedding"] and len(found["hits"]) == 5
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    untracked = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout
    assert untracked == "", f"the tour leaves files git does not ignore:\n{untracked}"
