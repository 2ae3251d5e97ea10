"""The benchmark scripts import names that still exist: they import audiorag lazily (inside functions, so a
``--help`` stays fast), so a renamed function would otherwise only be found when someone runs the benchmark."""

import ast
import importlib
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).parents[1] / "benchmarks").glob("*.py"))


def _imports(path: Path) -> list[tuple[str, str, int]]:
    """Every ``from audiorag... import name`` in the script, at any depth: (module, name, line)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "audiorag":
            out += [(node.module, alias.name, node.lineno) for alias in node.names]
    return out


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_audiorag_name_a_benchmark_imports_exists(script):
    missing = []
    for module, name, line in _imports(script):
        mod = importlib.import_module(module)
        if not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ModuleNotFoundError:
                missing.append(f"{script.name}:{line}: {module}.{name}")
    assert not missing, missing
