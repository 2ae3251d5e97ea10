"""audiorag: segment-level ("moment") audio and music semantic search, measured.

>>> import audiorag
>>> sorted(n for n in audiorag.__all__ if n[0].isupper())[:3]
['AudioDecodeError', 'AudioragError', 'IncompatibleLibraryError']
"""

__version__ = "0.1.0"

from .errors import (AudioDecodeError, AudioragError, IncompatibleLibraryError,  # noqa: E402
                     LibraryNotFoundError, ParameterError, UnknownEmbedderError)
from .library import Library  # noqa: E402
from .search import Query  # noqa: E402

__all__ = ["Library", "Query", "AudioragError", "AudioDecodeError", "IncompatibleLibraryError",
           "LibraryNotFoundError", "ParameterError", "UnknownEmbedderError", "__version__"]
