"""A real browser for the tests: Debian's ``chromium`` driven by Playwright's Python API, and a
JupyterLab server on a free loopback port.

Playwright's own browser download is not reachable here, so the system browser is launched through
``executable_path``. ``make browser`` (run by ``.ci/run``) installs it with apt-get when missing; without it
the browser tests skip, except under CI (``$CI`` set), where a missing browser fails them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_path() -> str | None:
    """The system Chromium (``$AUDIORAG_CHROMIUM`` overrides), or None."""
    override = os.environ.get("AUDIORAG_CHROMIUM")
    if override:
        return override
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def require_browser():
    """Skip (or, under CI, fail) unless Playwright and a Chromium are installed; return the browser path."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    path = chromium_path()
    if path is None:
        missing.append("chromium (make browser)")
    if missing:
        why = "browser tests need " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    """Wait until something listens on ``port``; fail with the server's log if ``proc`` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"server did not listen on port {port} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def jupyter_lab(root: Path, state: Path):
    """A JupyterLab server for ``root`` on a free loopback port, with a token and no browser of its own.

    Its configuration, runtime files and workspaces live under ``state`` (nothing of the user's is read
    or written). Yields the base URL including the token; stops the server on exit.
    """
    port, token = free_port(), os.urandom(8).hex()
    settings = state / "settings"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(state / "config"), JUPYTER_RUNTIME_DIR=str(state / "runtime"),
               JUPYTER_PLATFORM_DIRS="1", IPYTHONDIR=str(state / "ipython"), JUPYTERLAB_SETTINGS_DIR=str(settings))
    # a notebook starts its kernel without asking; no news pop-up over the screenshots
    for name, value in {"notebook-extension/tracker": {"autoStartDefaultKernel": True},
                        "apputils-extension/notification": {"fetchNews": "false"}}.items():
        path = settings / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    log = state / "jupyter.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--IdentityProvider.token={token}",
           f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={root}",
           f"--LabApp.workspaces_dir={state / 'workspaces'}", "--LabApp.news_url=",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_port(port, proc, log)
        yield f"http://127.0.0.1:{port}", token
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def chromium(executable: str, **launch):
    """A headless Chromium (Playwright) whose audio may play without a user gesture; yields the browser."""
    from playwright.sync_api import sync_playwright
    args = ["--no-sandbox", "--autoplay-policy=no-user-gesture-required", *launch.pop("args", [])]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=args, **launch)
        try:
            yield browser
        finally:
            browser.close()
