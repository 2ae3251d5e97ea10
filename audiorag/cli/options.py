"""The option checks and output every command shares: numbers in range, choices, output paths, embedder
specs, ``--wait`` and ``--json``. Each check returns the value or raises a
:class:`~audiorag.errors.ParameterError` naming the option, before any work starts."""

from __future__ import annotations

import inspect
import json
import math
import os
import re
from pathlib import Path

import typer

from ..errors import ParameterError


def show(obj, as_json: bool, text: str) -> None:
    """Print ``obj`` as indented JSON with ``--json``, else ``text``."""
    typer.echo(json.dumps(obj, indent=2, default=str) if as_json else text)


def given(value, default):
    """``value`` unless the option was not given (None).

    >>> given(None, 10), given(0, 10)
    (10, 0)
    """
    return default if value is None else value


def number(option: str, value, *, minimum=None, maximum=None, above=None, below=None, unit: str = ""):
    """``value`` when it is finite and in range, else a :class:`ParameterError` naming ``option``.

    >>> number("--hop", 2.0, above=0)
    2.0
    >>> number("--window", float("inf"), above=0)
    Traceback (most recent call last):
    ...
    audiorag.errors.ParameterError: --window must be a finite number, got inf
    """
    if value is None:
        return value
    if not math.isfinite(value):
        raise ParameterError(f"{option} must be a finite number{unit}, got {value}")
    if minimum is not None and value < minimum:
        raise ParameterError(f"{option} must be >= {minimum}{unit}, got {value}")
    if above is not None and value <= above:
        raise ParameterError(f"{option} must be > {above}{unit}, got {value}")
    if maximum is not None and value > maximum:
        raise ParameterError(f"{option} must be <= {maximum}{unit}, got {value}")
    if below is not None and value >= below:
        raise ParameterError(f"{option} must be < {below}{unit}, got {value}")
    return value


def choice(option: str, value: str, choices) -> str:
    """``value`` when it is one of ``choices``, else a :class:`ParameterError` naming ``option``.

    >>> choice("--tail", "pad", ("pad", "drop"))
    'pad'
    """
    if value not in choices:
        raise ParameterError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
    return value


def output_dir(option: str, path: Path | None) -> Path | None:
    """An output folder: it may exist (as a folder) or be created under a writable folder."""
    if path is None:
        return None
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ParameterError(f"{option} {path}: exists and is not a folder; give a folder path")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ParameterError(f"{option} {path}: {probe} is a file, so the folder cannot be created there")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ParameterError(f"{option} {path}: {probe} is not writable; choose another folder")
    return path


def output_file(option: str, path: Path | None) -> Path | None:
    """An output file: not a folder, in an existing writable folder, writable itself if it exists."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise ParameterError(f"{option} {path}: is a folder; give a file path, e.g. {path / 'run.txt'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ParameterError(f"{option} {path}: the folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ParameterError(f"{option} {path}: not writable; choose another path")
    return path


def embedders(option: str, specs: list[str]) -> list:
    """Instantiate each ``NAME[:key=value,...]``; unknown parameters name the accepted ones."""
    from ..embedders import get_embedder, parse_spec
    out = []
    for spec in specs:
        name, params = parse_spec(spec)
        try:
            out.append(get_embedder(name, **params))
        except TypeError as exc:
            bad = re.search(r"unexpected keyword argument '([^']+)'", str(exc))
            accepted = _accepted_params(name)
            if bad:
                raise ParameterError(f"{option} {spec!r}: {name} has no parameter {bad.group(1)!r}; it accepts "
                                     f"{', '.join(accepted) if accepted else 'no parameters'}") from None
            raise ParameterError(f"{option} {spec!r}: {exc}") from None
    return out


def _accepted_params(name: str) -> list[str] | None:
    """The keyword parameters of a registered embedder's class (its ``__init__`` chain)."""
    from ..embedders import get_embedder
    try:
        cls = type(get_embedder(name))
    except Exception:  # noqa: BLE001 - only used to improve a message
        return None
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        params = inspect.signature(init).parameters.values()
        names += [p.name for p in params if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return sorted(set(names))


def open_kw(wait: bool) -> dict:
    """``wait=True`` only when asked for (a second writer waits instead of being refused)."""
    return {"wait": True} if wait else {}


#: the help of every ``--wait`` option
WAIT_HELP = "when another process is changing the library, wait for it instead of stopping"


def weights(text: str) -> list[float]:
    """``"0.7,0.3"`` → ``[0.7, 0.3]``.

    >>> weights("0.7, 0.3")
    [0.7, 0.3]
    """
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ParameterError(f"--weights expects comma-separated numbers like 0.7,0.3, got {text!r}") from None


def index_line(i: dict) -> str:
    """One line of ``info`` for an index (its sidecar ``i``): size, measured quality, refinement, memory."""
    q = i.get("quality") or {}
    line = f"  index {i['name']} ({i['factory']}): {i['n']} vectors, {i.get('bytes_per_segment', '?')} B/segment"
    if q:
        line += f", recall@10 {q['recall@10']:.3f} at {i['search_params'] or 'exact'}, p99 {q['latency_p99_ms']:.2f} ms"
    if i.get("refine"):
        exact = "exactly " if i["refine"].get("exact") else ""
        line += f", re-ranked {exact}from {i['refine']['source']} ({i['refine']['disk_bytes'] / 1e6:.1f} MB on disk)"
    if "resident_bytes" in i:
        line += f"; mapped {i['mapped_bytes'] / 1e6:.1f} MB, resident {i['resident_bytes'] / 1e6:.1f} MB"
    if i.get("error"):
        line += f"; cannot be opened: {i['error']}"
    return line
