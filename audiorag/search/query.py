"""The :class:`Query` (what to search for) and the one ``k`` validator.

A query is a value: an audio clip (a path or a float array with ``sr``, optionally its
``[start, end)`` span), a moment of an indexed track, a text, a hybrid of text and audio, or a
hummed phrase. Its clip is decoded once, on first use (:meth:`Query.clip`), and shared by every
consumer of one search (embedders, descriptors, melody) through :class:`audiorag.audio.Clip`.

>>> Query.moment(3, at=12.5).kind, Query.moment(3, at=12.5).at
('moment', 12.5)
>>> Query.hybrid("warm analog bass", Query.moment(3, at=12.5), alpha=0.7).alpha
0.7
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..audio import Clip, check_span, load_clip, valid_audio
from ..errors import ParameterError

KINDS = ("audio", "moment", "text", "hybrid", "hum")


def check_k(k, what: str) -> int:
    """``k`` as an int >= 1 (the number of results); ParameterError naming ``what`` otherwise.

    >>> check_k(0, "search")
    Traceback (most recent call last):
    ...
    audiorag.errors.ParameterError: search: k must be an integer >= 1, got 0
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ParameterError(f"{what}: k must be an integer >= 1, got {k!r}")
    return int(k)


@dataclass(frozen=True)
class Query:
    """What to search for. Build with :meth:`audio`, :meth:`moment`, :meth:`text`, :meth:`hybrid`, :meth:`hum`."""

    kind: str
    source: object = None
    sr: int | None = None
    start: float | None = None
    end: float | None = None
    track_id: int | None = None
    at: float | None = None
    #: hybrid queries: the audio part (an audio or moment Query) and the text weight
    audio_part: Query | None = None
    alpha: float | None = None
    #: the decoded clip per conditioning, once a consumer asked for it (see :meth:`clip`)
    _decoded: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def audio(cls, source, *, sr: int | None = None, start: float | None = None, end: float | None = None) -> Query:
        """A clip: a file path (optionally its ``[start, end)`` span) or a mono float array with ``sr``."""
        if isinstance(source, np.ndarray):
            if sr is None:
                raise ParameterError("Query.audio: an array query needs sr=")
            valid_audio(source)
        elif isinstance(source, (str, os.PathLike)):
            source = os.path.abspath(str(source))
        else:
            raise ParameterError(f"Query.audio: expected a path or numpy array, got {type(source).__name__}")
        check_span(start, end, what="Query.audio")
        return cls("audio", source, sr, start, end)

    @classmethod
    def text(cls, text: str) -> Query:
        """A description. Ranked in a tagger's tag space (see :mod:`audiorag.embedders.text`).

        >>> Query.text("gentle piano melody").kind
        'text'
        """
        if not isinstance(text, str) or not text.strip():
            raise ParameterError("Query.text: expected non-empty text")
        return cls("text", text.strip())

    @classmethod
    def hybrid(cls, text: str, audio, *, alpha: float = 0.7, sr: int | None = None,
               start: float | None = None, end: float | None = None) -> Query:
        """``alpha``·text + (1 − ``alpha``)·audio, for embedders with a text tower (CLAP).

        ``audio`` is a path or array (as :meth:`audio`, with ``sr``/``start``/``end``) or a
        ``Query.audio`` / ``Query.moment``; a multi-window clip contributes its mean vector.
        """
        if not 0.0 <= alpha <= 1.0:
            raise ParameterError(f"Query.hybrid: alpha must be in [0, 1], got {alpha}")
        part = audio if isinstance(audio, Query) else cls.audio(audio, sr=sr, start=start, end=end)
        if part.kind not in ("audio", "moment"):
            raise ParameterError(f"Query.hybrid: the audio part must be an audio or moment query, got {part.kind}")
        return cls("hybrid", cls.text(text).source, audio_part=part, alpha=float(alpha))

    @classmethod
    def hum(cls, source, *, sr: int | None = None, start: float | None = None, end: float | None = None) -> Query:
        """A hummed (sung, whistled) phrase: a path or mono array with ``sr``, optionally its ``[start, end)``;
        matched by melody in the ``melody`` embedding (see :mod:`audiorag.melody`).

        >>> Query.hum("hum.wav", start=1.0).kind
        'hum'
        """
        clip = cls.audio(source, sr=sr, start=start, end=end)
        return cls("hum", clip.source, clip.sr, clip.start, clip.end)

    @classmethod
    def moment(cls, track_id: int, at: float = 0.0) -> Query:
        """The library's own segment of ``track_id`` that starts at (or just before) ``at`` seconds."""
        if not (np.isfinite(at) and at >= 0):
            raise ParameterError(f"Query.moment: at must be a finite time >= 0 (seconds), got {at}")
        return cls("moment", track_id=int(track_id), at=float(at))

    @property
    def has_clip(self) -> bool:
        """True for queries made of audio (an audio or hum query, a hybrid of text and a clip)."""
        return self.kind in ("audio", "hum") or (self.kind == "hybrid" and self.audio_part.kind == "audio")

    def clip(self, conditioning=None) -> Clip:
        """The query's audio (:func:`audiorag.audio.load_clip`), decoded on first use and then kept;
        ``conditioning``: the library's (:func:`audiorag.library.conditioning`), so the clip is treated like
        its tracks."""
        if self.kind == "hybrid":
            return self.audio_part.clip(conditioning)
        if self.kind not in ("audio", "hum"):
            raise ParameterError(f"a {self.kind} query has no clip")
        if conditioning not in self._decoded:
            self._decoded[conditioning] = load_clip(self.source, sr=self.sr, start=self.start, end=self.end,
                                                    conditioning=conditioning)
        return self._decoded[conditioning]
