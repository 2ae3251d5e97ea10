"""Exceptions raised by audiorag.

Every error derives from :class:`AudioragError`, so callers can catch one type.

Examples
--------
>>> from audiorag.errors import AudioragError, ParameterError
>>> issubclass(ParameterError, AudioragError)
True
"""


class AudioragError(Exception):
    """Root of all audiorag errors."""


class ParameterError(AudioragError, ValueError):
    """A parameter has an invalid value or type."""


class AudioDecodeError(AudioragError):
    """An audio file or array could not be decoded or failed validation.

    The message names the item (file path or ``<array>``) and the reason.
    """

    def __init__(self, item: str, reason: str):
        self.item = str(item)
        self.reason = reason
        super().__init__(f"{self.item}: {reason}")


class UnusableClipError(AudioDecodeError):
    """A query clip that decodes but cannot be searched with: empty, too short, or samples far beyond ±1."""


class IncompatibleLibraryError(AudioragError):
    """A library, its vectors or an index were made with a different configuration."""


class LibraryNotFoundError(AudioragError):
    """No audiorag library exists at the given path."""


class UnknownEmbedderError(AudioragError, KeyError):
    """An embedder name is not registered, or not present in a library."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DownloadError(AudioragError):
    """A download failed: unreachable server, HTTP error, or a checksum mismatch."""


class WeightsNotFoundError(AudioragError, FileNotFoundError):
    """A model's weights are not on this machine; the message says what to get and where to put it."""


class LibraryLockedError(AudioragError):
    """Another process is changing the library; the message names it (pid, host, since)."""


class LibraryDamagedError(AudioragError):
    """A file of a library is missing, truncated or unreadable; the message names it and suggests
    ``audiorag check LIBRARY``."""


class StorageError(AudioragError, OSError):
    """A file could not be written (no space left, no permission); the message names it."""


class MissingDependencyError(AudioragError, ImportError):
    """An optional package is not installed; the message names it and the extra that installs it."""


class CheckpointFormatError(AudioragError):
    """A TF checkpoint file is not in the expected format."""


class LLMError(AudioragError):
    """The LLM endpoint could not be reached or gave no usable answer."""
