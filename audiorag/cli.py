"""The ``audiorag`` command line: the same functions the notebooks call.

``--json`` prints machine-readable output only (logs and progress go to stderr).

Failures never end in a traceback. An expected failure (an :class:`~audiorag.errors.AudioragError`,
a bad option value, a file that cannot be read or written) prints one line, ``error: ...``,
naming the option, value or file and what to do, and exits with status 2. Anything else is a
bug: one line names it and the log file that holds the traceback, and the exit status is 1.
Option values are checked, and output paths too, before any work starts.

>>> from typer.testing import CliRunner
>>> r = CliRunner().invoke(app, ["search", "/nonexistent", "--track", "0", "-k", "0"])
>>> r.exit_code, r.output.strip()
(2, 'error: -k must be >= 1, got 0')
"""

from __future__ import annotations

import datetime
import inspect
import json
import logging
import math
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperGroup

from .errors import AudioragError, ParameterError

log = logging.getLogger(__name__)


class _Group(TyperGroup):
    """The root command: maps every exception to one line and an exit status (see the module doc)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, windows_expand_args=True,
             **extra):
        try:
            code = super().main(args=args, prog_name=prog_name or "audiorag", complete_var=complete_var,
                                standalone_mode=False, windows_expand_args=windows_expand_args, **extra)
            code = code if isinstance(code, int) else 0
        except SystemExit as exc:  # sys.exit() inside a command
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException as exc:  # noqa: BLE001 - this is the one place every failure is reported
            code = report_failure(exc)
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Segment-level audio search: build a library, index it, search moments.")


def main(argv: list[str] | None = None) -> None:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and exit with its status.

    The console script ``audiorag`` (``audiorag.cli:app``) and ``python -m audiorag`` behave the
    same: every failure is one line, never a traceback.

    >>> try:
    ...     main(["info", "/nonexistent/library"])
    ... except SystemExit as stop:
    ...     stop.code
    2
    """
    sys.exit(app(args=argv, prog_name="audiorag", standalone_mode=False))


def report_failure(exc: BaseException) -> int:
    """Print one line for ``exc`` on stderr and return the exit status (2 expected, 1 a bug).

    Unexpected exceptions also write their traceback to a log file (:func:`crash_log`),
    whose path the line gives.
    """
    from pydantic import ValidationError
    # typer vendors its own click: recognise click's exceptions by class name
    if _is(exc, "NoArgsIsHelpError"):
        exc.show()
        return exc.exit_code
    if _is(exc, "UsageError"):
        ctx = getattr(exc, "ctx", None)
        where = f" (see: {' '.join(['audiorag', *ctx.command_path.split()[1:]])} --help)" if ctx is not None else ""
        return _say(f"{_one_line(exc.format_message())}{where}", 2)
    if _is(exc, "ClickException"):
        return _say(_one_line(exc.format_message()), exc.exit_code)
    if _is(exc, "Abort") or isinstance(exc, KeyboardInterrupt):
        return _say("interrupted", 130)
    if isinstance(exc, AudioragError):
        return _say(_one_line(str(exc)) or type(exc).__name__, 2)
    if isinstance(exc, ValidationError):
        return _say(_validation_line(exc), 2)
    if isinstance(exc, BrokenPipeError):
        return 1
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return _say(f"{where}{exc.strerror or exc} (details in {crash_log(exc)})", 2)
    if isinstance(exc, Exception):
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return _say(f"unexpected {type(exc).__name__}{': ' + text if text else ''} — this is a bug in audiorag; "
                    f"the traceback is in {crash_log(exc)}", 1)
    raise exc  # SystemExit / GeneratorExit: not ours to swallow


def _one_line(text: str) -> str:
    """A message as one line: its first line, then the others after a dash, separated by semicolons."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] + (" — " + "; ".join(lines[1:]) if len(lines) > 1 else "") if lines else ""


def _is(exc: BaseException, name: str) -> bool:
    return any(c.__name__ == name for c in type(exc).__mro__)


def _say(text: str, code: int) -> int:
    try:
        typer.echo(f"error: {text}", err=True)
    except OSError:
        pass
    return code


def _validation_line(exc) -> str:
    """A pydantic ``ValidationError`` as one line: the field and what was wrong."""
    parts = []
    for err in exc.errors()[:3]:
        field = ".".join(str(x) for x in err.get("loc", ())) or "value"
        parts.append(f"{field}: {err.get('msg', 'invalid')}")
    return "invalid value — " + "; ".join(parts)


def crash_log(exc: BaseException) -> Path | str:
    """Write ``exc``'s traceback (and the command line) to a new log file and return its path.

    The file goes to ``$AUDIORAG_CACHE/logs`` (default ``~/.cache/audiorag/logs``), else the
    system's temporary folder.
    """
    from . import __version__
    text = (f"audiorag {__version__}, python {sys.version.split()[0]}\ncommand: {' '.join(sys.argv)}\n"
            f"time: {datetime.datetime.now().isoformat(timespec='seconds')}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    name = f"crash-{datetime.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
    base = os.environ.get("AUDIORAG_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "audiorag")
    for folder in (os.path.join(base, "logs"), os.path.join(tempfile.gettempdir(), "audiorag-logs")):
        try:
            os.makedirs(folder, exist_ok=True)
            path = Path(folder) / name
            with open(path, "a") as f:
                f.write(text)
            return path
        except OSError:
            continue
    return "(no writable log folder; traceback not kept)"


def _print(obj, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str) if as_json else text)


# -- option checks: before any work starts, with the option named ----------------------------------

def _given(value, default):
    return default if value is None else value


def _number(option: str, value, *, minimum=None, maximum=None, above=None, below=None, unit: str = ""):
    """``value`` when it is finite and in range, else a :class:`ParameterError` naming ``option``.

    >>> _number("--hop", 2.0, above=0)
    2.0
    >>> _number("--window", float("inf"), above=0)
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


def _choice(option: str, value: str, choices) -> str:
    if value not in choices:
        raise ParameterError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _output_dir(option: str, path: Optional[Path]) -> Optional[Path]:
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


def _output_file(option: str, path: Optional[Path]) -> Optional[Path]:
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


def _conditions(option: str, items: List[str]) -> dict:
    """``COLUMN<op>VALUE`` items → the ``filters`` / ``subset`` mapping of :func:`audiorag.search.track_mask`."""
    from .search import parse_condition
    out: dict = {}
    for item in items:
        col, cond = parse_condition(item, option=option)
        out.setdefault(col, []).append(cond["value"] if cond["op"] == "=" else cond)
    return out


def _embedders(option: str, specs: List[str]) -> list:
    """Instantiate each ``NAME[:key=value,...]``; unknown parameters name the accepted ones."""
    from .embedders import get_embedder, parse_spec
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
    from .embedders import get_embedder
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


def _open_kw(wait: bool) -> dict:
    """``wait=True`` only when asked for (a second writer waits instead of being refused)."""
    return {"wait": True} if wait else {}


_WAIT_HELP = "when another process is changing the library, wait for it instead of stopping"


@app.command()
def build(library: Path = typer.Argument(..., help="library directory (created if missing)"),
          dataset: str = typer.Option("synthetic", help="synthetic[:N[:SEED]] or folder:PATH"),
          labels: Optional[Path] = typer.Option(None, help="CSV with a 'path' column + metadata columns"),
          label_from_folder: bool = typer.Option(False, help="folder datasets: label = first sub-folder"),
          label_regex: Optional[str] = typer.Option(None, help="folder datasets: label = first group of this "
                                                    "regex on the file name, e.g. '^([a-z]+)_'"),
          fma_root: Optional[Path] = typer.Option(None, help="fma:SUBSET datasets: where `data fetch` put FMA"),
          embedder: List[str] = typer.Option(["features45"], help="embedder NAME[:key=value,...] (repeatable), "
                                             "e.g. mert:layer=all or clap:model=/models/clap-htsat-unfused"),
          window: Optional[float] = typer.Option(None, help="window length, seconds (new library: 10; "
                                                 "an existing one keeps its own)"),
          hop: Optional[float] = typer.Option(None, help="hop between windows, seconds (new library: 2)"),
          tail: Optional[str] = typer.Option(None, help="drop | pad | keep-short (new library: keep-short)"),
          index: List[str] = typer.Option(["Flat"], help="FAISS factory string, or auto (repeatable)"),
          max_memory: Optional[str] = typer.Option(None, help="auto: memory budget of the index, e.g. 640MB, 2GB"),
          target_recall: float = typer.Option(0.95, help="recall@10 the search parameters are tuned to"),
          workers: Optional[int] = typer.Option(None, help="worker processes (default: all cores)"),
          wait: bool = typer.Option(False, "--wait", help=_WAIT_HELP),
          as_json: bool = typer.Option(False, "--json", help="print the build report as JSON only")):
    """Add a dataset's new files to LIBRARY, embed them, and (re)build indexes."""
    from .datasets import resolve
    from .library import Library
    from .segment import TAIL_POLICIES, Segmentation
    # every option first: a bad value must not cost a whole build
    if (library / "library.json").exists():  # an existing library keeps its segmentation unless told otherwise
        seg = Library.open(library).segmentation
        window, hop, tail = _given(window, seg.window), _given(hop, seg.hop), _given(tail, seg.tail)
    window, hop, tail = _given(window, 10.0), _given(hop, 2.0), _given(tail, "keep-short")
    _number("--window", window, above=0, unit=" (seconds)")
    _number("--hop", hop, above=0, unit=" (seconds)")
    _choice("--tail", tail, TAIL_POLICIES)
    try:
        Segmentation(window=window, hop=hop, tail=tail)
    except ParameterError as exc:
        reason = str(exc).removeprefix("Segmentation: ")
        raise ParameterError(f"--window {window:g} / --hop {hop:g}: {reason}") from None
    _number("--target-recall", target_recall, above=0, maximum=1)
    if workers is not None and workers < 1:
        raise ParameterError(f"--workers must be >= 1, got {workers}")
    budget = _bytes(max_memory) if max_memory else None
    options = {"labels": labels, "label_from_folder": label_from_folder, "label_regex": label_regex, "root": fma_root}
    source = resolve(dataset, **{k: v for k, v in options.items() if v})
    embedders = _embedders("--embedder", embedder)
    _check_factories(index, embedders)
    _output_dir("LIBRARY", library)

    lib = Library.create(library, window=window, hop=hop, tail=tail, exist_ok=True, **_open_kw(wait))
    report = lib.add(source, embedders=embedders, workers=workers, progress=not as_json)
    if len(lib.tracks) == 0:
        first = f"; first: {report.errors[0]['uri']}: {report.errors[0]['message']}" if report.errors else ""
        raise AudioragError(f"no track could be added from {dataset!r}: {report.summary()}{first} "
                            "— check the files (`audiorag info LIBRARY` lists every failure)")
    sidecars = [_current_index(lib, e.key, f) or lib.build_index(e.key, f, max_memory=budget,
                                                                  target_recall=target_recall)
                for e in embedders for f in index]
    out = {**report.__dict__, "library": str(library),
           "indexes": [{k: s[k] for k in ("name", "factory", "n", "build_seconds")} for s in sidecars]}
    lines = [report.summary()] + [f"  {e['uri']}: [{e['stage']}] {e['message']}" for e in report.errors]
    lines += [f"index {s['name']} ({s['factory']}): {s['n']} vectors, built in {s['build_seconds']:.2f}s"
              for s in sidecars]
    _print(out, as_json, "\n".join(lines))


def _check_factories(factories: List[str], embedders: list) -> None:
    """Each ``--index`` factory string must be one FAISS accepts for each embedder's dimension."""
    from .index.factory import empty_index
    for f in factories:
        if f == "auto":
            continue
        for e in embedders:
            dim = getattr(e, "dim", None)
            if isinstance(dim, int) and dim > 0:
                try:
                    empty_index(f, dim)
                except ParameterError as exc:  # FAISS's message starts with a C++ signature: keep its reason
                    reason = re.sub(r"Error in .*? at \S+:\d+: ", "", str(exc))
                    raise ParameterError(f"--index {f!r}: {reason}") from None


def _index_line(i: dict) -> str:
    q = i.get("quality") or {}
    line = f"  index {i['name']} ({i['factory']}): {i['n']} vectors, {i.get('bytes_per_segment', '?')} B/segment"
    if q:
        line += f", recall@10 {q['recall@10']:.3f} at {i['search_params'] or 'exact'}, p99 {q['latency_p99_ms']:.2f} ms"
    if "resident_bytes" in i:
        line += f"; mapped {i['mapped_bytes'] / 1e6:.1f} MB, resident {i['resident_bytes'] / 1e6:.1f} MB"
    if i.get("error"):
        line += f"; cannot be opened: {i['error']}"
    return line


def _bytes(text: str) -> float:
    """``"640MB"`` → 6.4e8; plain numbers are bytes.

    >>> _bytes("640MB"), _bytes("2 GiB")
    (640000000.0, 2000000000.0)
    """
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)I?B?\s*", text.upper())
    try:
        value = float(m.group(1)) if m else None
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        raise ParameterError(f"--max-memory: expected a size like 640MB or 2GB, got {text!r}")
    return value * 1000 ** " KMGT".index(m.group(2) or " ")


def _current_index(lib, embedding: str, factory: str):
    """The sidecar of an up-to-date index of that name (kept in step by add/remove), else None."""
    from .index import index_name, load_index
    try:
        return load_index(lib, lib.embedding(embedding), index_name(factory)).sidecar
    except AudioragError:
        return None


@app.command()
def remove(library: Path = typer.Argument(..., help="library directory"),
           track_id: List[int] = typer.Argument(..., help="track ids to remove"),
           wait: bool = typer.Option(False, "--wait", help=_WAIT_HELP),
           as_json: bool = typer.Option(False, "--json", help="print as JSON only")):
    """Remove tracks from LIBRARY: their segments leave every index (updated in place where it can)."""
    from .library import Library
    n = Library.open(library, **_open_kw(wait)).remove(track_id)
    _print({"removed": n}, as_json, f"removed {n} tracks")


@app.command()
def search(library: Path = typer.Argument(..., help="library directory"),
           audio: Optional[Path] = typer.Option(None, help="query audio file"),
           start: Optional[float] = typer.Option(None, help="query span start (s), with --audio"),
           end: Optional[float] = typer.Option(None, help="query span end (s), with --audio"),
           track: Optional[int] = typer.Option(None, help="query with a moment of this indexed track"),
           at: float = typer.Option(0.0, help="moment time (s), with --track"),
           text: Optional[str] = typer.Option(None, help="a description: text tower (clap) or a tagger's tag space; "
                                              "with --audio/--track, a hybrid query"),
           alpha: float = typer.Option(0.7, help="hybrid queries: weight of the text (1 - alpha: the audio)"),
           embedder: Optional[str] = typer.Option(None, help="embedding name or key (default: the only one)"),
           index: Optional[str] = typer.Option(None, help="index name (default: flat or the only one)"),
           k: int = typer.Option(10, "-k", help="number of hits"),
           exclude_same_track: bool = typer.Option(False, help="leave out the query's own track"),
           by: str = typer.Option("segment", help="segment | track (aggregate hits per track)"),
           where: List[str] = typer.Option([], help="metadata filter COLUMN=VALUE, or !=, >=, <=, >, < (repeatable; "
                                                    "numeric columns compare as numbers)"),
           as_json: bool = typer.Option(False, "--json", help="print hits as JSON only")):
    """Search LIBRARY with an audio clip (--audio), a moment of an indexed track (--track --at)
    or a description (--text)."""
    from .library import Library
    from .search import Query
    from .search import search as run_search
    if audio is not None and track is not None or audio is None and track is None and text is None:
        raise ParameterError("give --audio FILE or --track ID, and/or --text TEXT (both: a hybrid query)")
    if k < 1:
        raise ParameterError(f"-k must be >= 1, got {k}")
    _number("--start", start, minimum=0, unit=" (seconds)")
    _number("--end", end, above=0, unit=" (seconds)")
    if start is not None and end is not None and end <= start:
        raise ParameterError(f"--end ({end}) must be after --start ({start})")
    _number("--at", at, minimum=0, unit=" (seconds)")
    _number("--alpha", alpha, minimum=0, maximum=1)
    _choice("--by", by, ("segment", "track"))
    filters = _conditions("--where", where)
    lib = Library.open(library)
    if track is not None:
        _check_moment(lib, track, at)
    clip = (Query.audio(audio, start=start, end=end) if audio is not None
            else Query.moment(track, at) if track is not None else None)
    query = clip if text is None else Query.text(text) if clip is None else Query.hybrid(text, clip, alpha=alpha)
    hits = run_search(lib, query, embedder=embedder, k=k, index=index, exclude_same_track=exclude_same_track,
                      filters=filters or None, by=by)
    cols = [c for c in ("rank", "track_id", "start", "end", "score", "uri") + tuple(
        c for c in hits.columns if c in ("genre", "genre_top", "label", "artist", "title", "license", "n_segments"))
        if c in hits.columns] + [c for c in hits.columns if c.startswith("tag:")]
    matched = hits.attrs.get("matched_tags")
    header = "matched tags: " + ", ".join(f"{t} ({w:.2f})" for t, w in matched.items()) + "\n" if matched else ""
    out = {"matched_tags": matched, "hits": hits.to_dict("records")} if matched else hits.to_dict("records")
    _print(out, as_json, header + (hits[cols].to_string(index=False) if len(hits) else "(no hits)"))


def _check_moment(lib, track: int, at: float) -> None:
    """``--track`` must be in the library and ``--at`` within it."""
    tracks = lib.tracks
    row = tracks[tracks["track_id"] == track]
    if row.empty:
        raise ParameterError(f"--track {track}: no such track in {lib.path} "
                             f"(ids {int(tracks['track_id'].min())}..{int(tracks['track_id'].max())})"
                             if len(tracks) else f"--track {track}: the library has no tracks")
    duration = float(row["duration"].iloc[0]) if "duration" in row.columns else math.inf
    if at > duration:
        raise ParameterError(f"--at {at:g}: beyond the end of track {track} ({duration:g}s)")


@app.command()
def info(library: Path = typer.Argument(..., help="library directory"),
         memory: bool = typer.Option(False, help="open every index memory-mapped and report resident memory"),
         as_json: bool = typer.Option(False, "--json", help="print as JSON only")):
    """Describe LIBRARY: segmentation, counts, embeddings, indexes (measured recall, latency, size), errors."""
    from .library import Library
    d = Library.open(library).info(memory=memory)
    lines = [f"library {d['path']} (format {d['format_version']}, dataset {d['dataset']})",
             f"segmentation: window {d['segmentation']['window']}s, hop {d['segmentation']['hop']}s, "
             f"tail {d['segmentation']['tail']}",
             f"{d['tracks']} tracks ({d['hours']} h), {d['segments']} segments, {d['errors']} failed items"]
    for e in d["embeddings"]:
        lines.append(f"embedding {e['key']}: dim {e['dim']}, {e['n_segments']} vectors, "
                     f"{e['missing_tracks']} tracks missing")
        lines += [_index_line(i) for i in e["indexes"]]
    if memory:
        lines.append(f"process resident memory {d['resident_bytes'] / 1e6:.1f} MB")
    _print(d, as_json, "\n".join(lines))


@app.command()
def check(library: Path = typer.Argument(..., help="library directory"),
          repair: bool = typer.Option(False, "--repair", help="rebuild what can be derived (vectors, indexes, an "
                                                              "interrupted build's consolidation)"),
          wait: bool = typer.Option(False, "--wait", help=_WAIT_HELP),
          as_json: bool = typer.Option(False, "--json", help="print the problems as JSON only")):
    """Verify LIBRARY: files against the manifest, tables, arrays, indexes. One line per problem;
    exit status 0 when none remain, 1 when some do."""
    from .library.check import check_path
    problems = check_path(library, repair=repair, **_open_kw(wait))
    remaining = [p for p in problems if not p.get("repaired")]
    lines = [f"{p.get('file', '?')}: {p.get('problem', '?')}"
             + {True: " — repaired", False: " — cannot be repaired", None: ""}.get(p.get("repaired"), "")
             for p in problems]
    if not problems:
        lines = [f"{library}: no problems found"]
    elif remaining and not repair:
        lines.append(f"{len(remaining)} problem(s); `audiorag check {library} --repair` rebuilds what can be derived")
    elif remaining:
        lines.append(f"{len(remaining)} problem(s) remain; re-run the build for what cannot be derived")
    _print({"library": str(library), "problems": problems, "remaining": len(remaining)}, as_json, "\n".join(lines))
    if remaining:
        raise typer.Exit(1)


@app.command("eval")
def eval_(library: Path = typer.Argument(..., help="library directory"),
          embedder: Optional[str] = typer.Option(None, help="embedding name or key (default: the only one)"),
          index: Optional[str] = typer.Option(None, help="index name (default: flat or the only one)"),
          label: str = typer.Option("genre", help="track column whose equal values count as relevant "
                                                  "(tracks without a value are left out and counted)"),
          exclude_same: List[str] = typer.Option([], help="also exclude candidates sharing this column (repeatable)"),
          k: str = typer.Option("1,5,10", "-k", help="cut-offs, comma-separated"),
          queries: Optional[int] = typer.Option(None, help="a seeded sample of N query segments (default: all)"),
          per_track: bool = typer.Option(False, "--per-track", help="one query per track (its central segment)"),
          only: List[str] = typer.Option([], help="evaluate only tracks with COLUMN=VALUE (or !=, >=, <=, >, <), "
                                                  "e.g. split=test (repeatable)"),
          seed: int = typer.Option(0, help="seed of every sample"),
          depth: int = typer.Option(1000, help="ranked list depth for mAP and the exported run"),
          moment_queries: int = typer.Option(100, help="clips for moment localisation accuracy (0: skip)"),
          out: Optional[Path] = typer.Option(None, help="write metrics.json (and per-query.csv) here"),
          export_run: Optional[Path] = typer.Option(None, help="write the ranked lists as a TREC run file"),
          export_qrels: Optional[Path] = typer.Option(None, help="write the relevance judgements as TREC qrels"),
          as_json: bool = typer.Option(False, "--json", help="print the record as JSON only")):
    """Measure retrieval on LIBRARY: P@k, R@k, nDCG@k, mAP, MRR (segment and track level), moment accuracy, latency."""
    from .evaluate import Protocol, evaluate
    from .library import Library
    ks = _cutoffs(k)
    if queries is not None and queries < 1:
        raise ParameterError(f"--queries must be >= 1, got {queries}")
    if depth < 1:
        raise ParameterError(f"--depth must be >= 1, got {depth}")
    if depth < ks[-1]:
        raise ParameterError(f"--depth ({depth}) must be at least the largest -k ({ks[-1]})")
    if moment_queries < 0:
        raise ParameterError(f"--moment-queries must be >= 0, got {moment_queries}")
    subset = _conditions("--only", only)
    _output_dir("--out", out)
    _output_file("--export-run", export_run)
    _output_file("--export-qrels", export_qrels)
    protocol = Protocol(label=label, exclude_same=exclude_same, ks=ks, seed=seed, depth=depth, subset=subset or None,
                        queries="per-track" if per_track else ("sample" if queries else "all"),
                        n_queries=queries, moment_queries=moment_queries)
    ev = evaluate(Library.open(library), embedder=embedder, index=index, protocol=protocol)
    if out:
        ev.record.write(out)
        ev.per_query.to_csv(out / "per-query.csv", index=False)
    if export_run:
        ev.export_run(export_run)
    if export_qrels:
        ev.export_qrels(export_qrels)
    m = ev.record.metrics
    lines = [f"{ev.record.embedder['key']} on {ev.record.dataset['id']} ({protocol.describe()}), "
             f"{ev.record.timings['n_queries']} queries, index {ev.record.index['factory']}"]
    if m.get("n_unlabelled"):
        lines.append(f"  {int(m['n_unlabelled'])} tracks without a {label!r} value left out")
    for level in ("segment", "track"):
        lines.append(f"  {level:8s} " + "  ".join(f"P@{x}={m[f'{level}/P@{x}']:.4f}" for x in ks)
                     + f"  mAP={m[f'{level}/mAP']:.4f}  nDCG@{ks[-1]}={m[f'{level}/nDCG@{ks[-1]}']:.4f}"
                     + f"  MRR={m[f'{level}/MRR']:.4f}")
    lines.append(f"  chance P={m['chance/P']:.4f}")
    if "moment/accuracy" in m:
        lines.append(f"  moment accuracy (±{m['moment/tolerance_s']:g}s) {m['moment/accuracy']:.4f}")
    lines.append(f"  latency p50 {m['latency/p50_ms']:.2f} ms, p95 {m['latency/p95_ms']:.2f} ms, "
                 f"p99 {m['latency/p99_ms']:.2f} ms")
    _print(ev.record.model_dump(mode="json"), as_json, "\n".join(lines))


def _cutoffs(text: str) -> list[int]:
    """``"1,5,10"`` → ``[1, 5, 10]``; each an integer >= 1.

    >>> _cutoffs("10, 1")
    [1, 10]
    """
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ParameterError(f"-k expects comma-separated integers like 1,5,10, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise ParameterError(f"-k: every cut-off must be an integer >= 1, got {text!r}")
    return sorted(set(ks))


@app.command()
def sweep(config: Path = typer.Argument(..., help="sweep YAML (experiments/<name>.yaml) or a packaged sweep's name"),
          output: Optional[Path] = typer.Option(None, help="output directory (default: the file's, or "
                                                          "experiments/results/<name>)"),
          summary_only: bool = typer.Option(False, "--summary-only",
                                            help="only rebuild the summary from finished cells")):
    """Run a sweep: papermill per grid cell (skipping cells already done), then summary.parquet/.md and plots."""
    from .experiments import SweepConfig, closing_note, run_sweep, summarise
    cfg = SweepConfig.load(config)
    root = Path(output or cfg.output or f"experiments/results/{cfg.name}")
    _output_dir("--output", root)
    summary = summarise(root) if summary_only else run_sweep(cfg, output=root)
    typer.echo(closing_note(cfg, summary, output=root))


data_app = typer.Typer(no_args_is_help=True, help="Fetch datasets: FMA archives, Freesound previews.")
app.add_typer(data_app, name="data")

_DATASETS = ("fma-small", "fma-medium", "fma-large", "fma-full", "freesound")


@data_app.command("fetch")
def data_fetch(name: str = typer.Argument(..., help="fma-small | fma-medium | fma-large | fma-full | freesound"),
               to: Path = typer.Option(..., help="destination folder"),
               query: Optional[str] = typer.Option(None, help="freesound: text query"),
               max_results: int = typer.Option(150, "--max", help="freesound: at most this many sounds"),
               filter: Optional[str] = typer.Option(None, help="freesound: filter, e.g. 'duration:[0 TO 5]'"),
               token: Optional[str] = typer.Option(None, help="freesound: API token (default $FREESOUND_TOKEN)"),
               url: Optional[str] = typer.Option(None, help="mirror / API base URL (default: the official one)")):
    """Download a dataset (resumable; re-running continues where it stopped)."""
    _choice("NAME", name, _DATASETS)
    if max_results < 1:
        raise ParameterError(f"--max must be >= 1, got {max_results}")
    if name == "freesound" and not (query and query.strip()):
        raise ParameterError("freesound needs --query TEXT")
    _output_dir("--to", to)
    if name.startswith("fma-"):
        from .datasets import fma
        root = fma.fetch(name[4:], to, url=url)
        typer.echo(f"FMA {name[4:]} in {root}; build with: "
                   f"audiorag build LIB --dataset fma:{name[4:]} --fma-root {root}")
    else:
        from .datasets import freesound
        root = freesound.fetch(query, to, max_results=max_results, filter=filter, token=token, url=url)
        typer.echo(f"Freesound previews in {root}; build with: audiorag build LIB --dataset freesound:{root}")


@app.command()
def analyse(library: Path = typer.Argument(..., help="library directory"),
            embedder: Optional[str] = typer.Option(None, help="embedding name or key (default: the only one)"),
            clusters: str = typer.Option("kmeans:8,hdbscan",
                                         help="comma-separated: kmeans:K, dbscan:EPS, hdbscan[:MIN]"),
            ks: str = typer.Option("2-20", help="k-sweep range for KMeans silhouette, e.g. 2-20 (empty: none)"),
            anomalies: float = typer.Option(0.1, help="share of items flagged as outliers (0: no anomaly analysis)"),
            label: Optional[str] = typer.Option("genre", help="track column for purity, NMI, composition, tagging "
                                                             "(tracks without a value are not scored)"),
            level: str = typer.Option("segment", help="segment | track (one mean vector per track)"),
            maps: str = typer.Option("pca,tsne", help="projections: pca, tsne, umap (comma-separated)"),
            write_column: Optional[str] = typer.Option(None, help="track level: store the first clustering as this "
                                                                  "track column (a search filter)"),
            seed: int = typer.Option(0, help="seed of every clustering, sample and projection"),
            out: Path = typer.Option(Path("experiments/results/analyse"), help="output directory"),
            wait: bool = typer.Option(False, "--wait", help=_WAIT_HELP + " (with --write-column)"),
            as_json: bool = typer.Option(False, "--json", help="print the metrics as JSON only")):
    """Clusters (silhouette, purity, NMI, k-sweep, composition), outliers, maps and kNN tagging of one embedding."""
    from .analysis import analyse as run
    from .analysis import clusters as C
    from .library import Library
    specs = [c.strip() for c in clusters.split(",") if c.strip()]
    for spec in specs:
        C.parse(spec)
    k_range = _k_range(ks)
    if anomalies != 0:
        _number("--anomalies", anomalies, above=0, below=0.5)
    _choice("--level", level, ("segment", "track"))
    projections = [m.strip() for m in maps.split(",") if m.strip()]
    for m in projections:
        _choice("--maps", m, ("pca", "tsne", "umap"))
    if write_column is not None and (level != "track" or not specs):
        raise ParameterError("--write-column needs --level track and at least one --clusters entry")
    _output_dir("--out", out)
    result = run(Library.open(library, **_open_kw(wait)), embedder=embedder, level=level, label=label or None,
                 clusters=specs, ks=k_range, contamination=anomalies, maps=projections, seed=seed, out_dir=out,
                 write_column=write_column)
    m = result.record.metrics
    lines = [f"{k:<40} {v:.4f}" for k, v in m.items()] + [f"written to {out}"]
    _print(m, as_json, "\n".join(lines))


def _k_range(text: str) -> range:
    """``"2-20"`` → ``range(2, 21)``; ``"8"`` → ``range(8, 9)``; ``""`` → no sweep.

    >>> _k_range("2-5"), _k_range("")
    (range(2, 6), range(0, 0))
    """
    if not text.strip():
        return range(0)
    lo, _, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise ParameterError(f"--ks expects a range like 2-20, got {text!r}") from None
    if not 2 <= a <= b:
        raise ParameterError(f"--ks: need 2 <= first <= last, got {text!r}")
    return range(a, b + 1)


models_app = typer.Typer(help="Registered embedders: are their weights here (where, size, identity)? Verify one.")
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def models(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="print as JSON only")):
    """List every registered embedder and whether its weights are available locally."""
    if ctx.invoked_subcommand is not None:
        return
    from .embedders import list_embedders, weights_status
    rows = []
    for name in list_embedders():
        try:
            rows.append(weights_status(name))
        except AudioragError as exc:  # e.g. its framework is not installed: say so in its row
            rows.append({"name": name, "family": "?", "text_tower": False, "tags": 0, "available": False,
                         "where": None, "bytes": None, "identity": None, "message": str(exc)})
    lines = [f"{'embedder':<13}{'weights':<10}{'MB':>8}  {'identity':<20}  where"]
    for r in rows:
        size = f"{r['bytes'] / 1e6:.1f}" if r["bytes"] else "-"
        ident = (r["identity"] or "-").removeprefix("sha256:")[:16]
        extra = " (text tower)" if r["text_tower"] else f" ({r['tags']} tags)" if r["tags"] else ""
        where = r["where"] or "missing — " + r["message"].splitlines()[0].split("Looked in: ")[-1]
        state = "ok" if r["available"] else "MISSING"
        lines.append(f"{r['name']:<13}{state:<10}{size:>8}  {ident:<20}  {where}{extra}")
    missing = [r for r in rows if not r["available"]]
    if missing:
        lines.append("\nto get missing weights:\n" + missing[0]["message"].split("\n", 1)[-1])
    _print(rows, as_json, "\n".join(lines))


@models_app.command("verify")
def models_verify(spec: str = typer.Argument(..., help="embedder NAME[:key=value,...], e.g. clap:model=/models/clap"),
                  as_json: bool = typer.Option(False, "--json", help="print the report as JSON only")):
    """Load the embedder's weights and run the validator (white noise of odd lengths, text if it has a tower)."""
    from dataclasses import asdict

    from .embedders.validate import validate
    embedder = _embedders("SPEC", [spec])[0]
    report = validate(embedder)
    _print({**asdict(report), "ok": report.ok}, as_json, report.summary())
    if not report.ok:
        raise typer.Exit(1)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="log progress details to stderr")):
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":
    main()
