"""The command line's core: the root command that turns every failure into one line. The option checks
every command shares are :mod:`audiorag.cli.options`."""

from __future__ import annotations

import datetime
import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path

import typer
from typer.core import TyperGroup

from ..errors import AudioragError

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


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="log progress details to stderr")):
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")

