"""The command line's core: the root command that turns every failure into one line, and the option
checks every command shares (numbers, choices, output paths, conditions, embedder specs)."""

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

import typer
from typer.core import TyperGroup

from ..errors import AudioragError, ParameterError

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
    from .. import __version__
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


def _output_dir(option: str, path: Path | None) -> Path | None:
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


def _output_file(option: str, path: Path | None) -> Path | None:
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


def _embedders(option: str, specs: list[str]) -> list:
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


def _open_kw(wait: bool) -> dict:
    """``wait=True`` only when asked for (a second writer waits instead of being refused)."""
    return {"wait": True} if wait else {}


_WAIT_HELP = "when another process is changing the library, wait for it instead of stopping"


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="log progress details to stderr")):
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")

