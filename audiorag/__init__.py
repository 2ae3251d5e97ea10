"""audiorag: segment-level ("moment") audio and music semantic search, measured.

``import audiorag`` is cheap: it loads the exceptions only. :class:`Library` and :class:`Query`
(and with them numpy, pandas, FAISS) are imported on first use (PEP 562), and embedders load
their frameworks (librosa, torch) only when one is asked for.

>>> import audiorag
>>> sorted(n for n in audiorag.__all__ if n[0].isupper())[:3]
['AudioDecodeError', 'AudioragError', 'IncompatibleLibraryError']
>>> audiorag.Library.__name__
'Library'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import (
    AudioDecodeError,
    AudioragError,
    IncompatibleLibraryError,
    LibraryNotFoundError,
    MissingDependencyError,
    ParameterError,
    UnknownEmbedderError,
)

__version__ = "0.1.0"

#: public names imported on first access: name -> module that defines it
_LAZY = {"Library": ".library", "Query": ".search"}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .library import Library
    from .search import Query

__all__ = ["Library", "Query", "AudioragError", "AudioDecodeError", "IncompatibleLibraryError",
           "LibraryNotFoundError", "MissingDependencyError", "ParameterError", "UnknownEmbedderError",
           "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
