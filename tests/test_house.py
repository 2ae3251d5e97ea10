"""The house rules of the package, kept at zero: no import cycles between audiorag's modules, and no module
taking another module's private (``_name``) names. Every import is read with ``ast`` (module level and inside
functions), by the same rules as ``../shared/tools/house.py``: a package ``__init__`` that re-exports is not an
edge, and a private name is one leading underscore (``__dunder__`` aside) imported from another module.
"""

import ast
from pathlib import Path

import audiorag

PACKAGE = Path(audiorag.__file__).parent


def _modules(pkg: Path) -> dict[str, Path]:
    def name(f: Path) -> str:
        parts = list(f.relative_to(pkg.parent).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return {name(f): f for f in sorted(pkg.rglob("*.py"))}


def house(pkg: Path) -> tuple[list[str], list[list[str]]]:
    """``(private imports, import cycles)`` of the package at ``pkg``: each private import as
    ``"module imports source.name"``, each cycle as the sorted modules of a strongly connected component."""
    mods = _modules(pkg)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private = []
    for m, f in mods.items():
        is_pkg = f.name == "__init__.py"
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = m.split(".") if is_pkg else m.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                if src.split(".")[0] != pkg.name:
                    continue
                for a in node.names:
                    sub = f"{src}.{a.name}"
                    targets.append(sub if sub in mods else src)
                    if a.name.startswith("_") and not a.name.startswith("__") and sub not in mods and src != m:
                        private.append(f"{m} imports {src}.{a.name}")
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == pkg.name]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != m and mods[t].name != "__init__.py":
                    edges[m].add(t)
    return private, _cycles(edges)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of two or more modules (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_checker_finds_a_cycle_hidden_in_a_function_and_a_private_name(tmp_path):
    pkg = _write(tmp_path, {
        "pkg/__init__.py": "from .a import run\n",
        "pkg/a.py": "from .b import helper\ndef run():\n    return helper()\n",
        "pkg/b.py": "def helper():\n    from .a import run\n    return run\n",
        "pkg/c.py": "from .b import _secret\nfrom . import a\n",
        "pkg/sub/__init__.py": "from ..c import _SHARED\n",
    })
    private, cycles = house(pkg)
    assert sorted(private) == ["pkg.c imports pkg.b._secret", "pkg.sub imports pkg.c._SHARED"]
    assert cycles == [["pkg.a", "pkg.b"]]


def test_a_package_reexport_and_dunder_names_are_not_findings(tmp_path):
    pkg = _write(tmp_path, {
        "pkg/__init__.py": "from .a import run\nfrom .b import __version__\n",
        "pkg/a.py": "import pkg\nfrom . import b\n",
        "pkg/b.py": "__version__ = '1'\n",
    })
    assert house(pkg) == ([], [])


def test_audiorag_has_no_import_cycles():
    _, cycles = house(PACKAGE)
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_module_imports_another_modules_private_names():
    private, _ = house(PACKAGE)
    assert private == [], "private names taken across modules: " + "; ".join(private)
