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

from ._app import app, crash_log, main, report_failure

# Each module registers its commands on ``app``; `audiorag --help` lists them in this order.
# isort: off
from . import library, query, experiment, data  # noqa: F401, E402
from . import serve  # noqa: F401, E402
from . import compare  # noqa: F401, E402
from . import recommend  # noqa: F401, E402
from . import identify  # noqa: F401, E402
from . import hum  # noqa: F401, E402
from . import describe  # noqa: F401, E402
from . import shards  # noqa: F401, E402
# isort: on

__all__ = ["app", "crash_log", "main", "report_failure"]
