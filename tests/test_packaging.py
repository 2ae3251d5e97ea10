"""The package as users get it: a light import with no global side effects, ``python -m audiorag``, package data
found through importlib.resources (one copy in the source tree), a wheel that runs a sweep outside the checkout,
and ``make clean`` that keeps the tracked result records."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from audiorag import experiments

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "faiss", "librosa", "sklearn", "matplotlib", "transformers", "numba")


def python(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, **kw)


def test_import_is_light_and_changes_nothing_global():
    out = python(
        "import json, os, sys; env = dict(os.environ); import audiorag, audiorag.embedders; "
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]; "
        "changed = sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k)); "
        "lib = audiorag.Library.__name__; "
        "print(json.dumps({'heavy': heavy, 'env': changed, 'lib': lib, 'emb': 'features45' in "
        "audiorag.embedders.list_embedders()}))",
        env={k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))})
    assert json.loads(out.stdout) == {"heavy": [], "env": [], "lib": "Library", "emb": True}


#: run first in a subprocess: ``import torch`` fails as it does where torch is not installed
NO_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTorch())
"""


def test_without_torch_model_embedders_say_what_to_install():
    """torch absent (as without the models extra): features45, the library and the build still work."""
    out = python(
        NO_TORCH + "import audiorag.engines; "
        "from audiorag.embedders import get_embedder; from audiorag.errors import MissingDependencyError; "
        "assert get_embedder('features45').dim == 45\n"
        "for name in ('aisfx', 'musicnn-mtt', 'clap', 'mert'):\n"
        "    try:\n"
        "        get_embedder(name)\n"
        "    except MissingDependencyError as exc:\n"
        "        print(exc)\n")
    lines = out.stdout.splitlines()
    assert lines == [f"{n} needs torch, which is not installed: pip install 'audiorag[models]'"
                     for n in ("aisfx", "musicnn-mtt", "clap", "mert")]


def test_python_dash_m_audiorag():
    out = subprocess.run([sys.executable, "-m", "audiorag", "--help"], capture_output=True, text=True, check=True)
    assert "Usage: audiorag" in out.stdout and "sweep" in out.stdout


def test_package_data_is_the_source_tree_files():
    """In the source tree the packaged notebooks and sweeps are links to the user-facing files, so the two
    cannot drift; every notebook and every sweep a user sees is shipped."""
    assert experiments.NOTEBOOKS.resolve() == (ROOT / "notebooks").resolve()
    shipped = sorted(p.name for p in experiments.NOTEBOOKS.glob("*.ipynb"))
    assert shipped == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")) and len(shipped) == 6
    for name, path in experiments.packaged_sweeps().items():
        assert path.resolve() == (ROOT / "experiments" / f"{name}.yaml").resolve()
    text = (ROOT / "pyproject.toml").read_text()
    assert '"notebooks/*.ipynb", "sweeps/*.yaml"' in text


def test_make_clean_keeps_tracked_records(tmp_path):
    """``make clean`` removes what git ignores under experiments/results, never a tracked record."""
    shutil.copy(ROOT / "Makefile", tmp_path)
    shutil.copy(ROOT / ".gitignore", tmp_path)
    records = tmp_path / "experiments" / "results"
    (records / "index-bench").mkdir(parents=True)
    (records / "index-bench" / "index-n100000.json").write_text("{}")
    (records / "index-bench" / "run.log").write_text("ignored")
    (records / "default" / "libraries" / "x").mkdir(parents=True)
    (records / "default" / "libraries" / "x" / "vectors.npy").write_text("ignored")
    (records / "mine").mkdir()
    (records / "mine" / "new.json").write_text("ignored too: results/* is")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "Makefile", ".gitignore", "experiments/results/index-bench/index-n100000.json"],
                   cwd=tmp_path, check=True)
    subprocess.run(["make", "clean", f"VENV={tmp_path / 'venv'}"], cwd=tmp_path, check=True, capture_output=True)
    assert (records / "index-bench" / "index-n100000.json").exists()
    assert not (records / "index-bench" / "run.log").exists() and not (records / "default" / "libraries").exists()
    assert not (records / "mine").exists()


@pytest.mark.slow
def test_wheel_installs_and_runs_a_sweep_outside_the_checkout(tmp_path):
    """Build the wheel, install it (no deps) in a fresh venv that sees this venv's packages through a .pth
    file, and run ``audiorag sweep`` on a tiny grid from a directory outside the checkout."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True)
    wheel = next(dist.glob("audiorag-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    vpy = venv / "bin" / "python"
    site = Path(subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    deps = Path(subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "deps.pth").write_text(f"{deps}\n")  # a plain path: the editable install's own .pth is not run
    subprocess.run([sys.executable, "-m", "pip", "--python", str(vpy), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)

    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", experiments.NOTEBOOKS_ENV)}
    where = subprocess.run([str(vpy), "-c", "import audiorag.experiments as e; print(e.__file__, e.NOTEBOOKS)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(str(site) in w for w in where), where  # the wheel's code and notebooks, not the checkout's

    (work / "tiny.yaml").write_text(json.dumps({
        "name": "tiny", "dataset": "synthetic:8",
        "grid": {"embedders": ["features45"], "indexes": ["Flat"], "segmentations": [{"window": 5, "hop": 5}],
                 "protocols": [{"name": "t", "label": "genre", "ks": [1, 5], "queries": "sample", "n_queries": 8,
                                "moment_queries": 2, "latency_queries": 4}]}}))
    run = subprocess.run([str(venv / "bin" / "audiorag"), "sweep", "tiny.yaml"], cwd=work, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    out = work / "experiments" / "results" / "tiny"
    cell = out / "cells" / "features45-flat-w5-h5-t"
    assert not list((out / "cells").glob("*/error.json")), run.stdout
    record = json.loads((cell / "metrics.json").read_text())
    assert record["git_commit"] is None   # not a checkout: no commit recorded, no error
    assert (cell / "03_evaluate.ipynb").exists() and (out / "quality_vs_latency.png").exists()
    assert "without encryption" not in run.stderr
    help_ = subprocess.run([str(vpy), "-m", "audiorag", "--help"], cwd=work, env=env, capture_output=True, text=True)
    assert help_.returncode == 0 and "sweep" in help_.stdout
