"""Cut tracks into timestamped windows ("moments").

Windows are ``window`` seconds long and start every ``hop`` seconds. What happens to
audio after the last full window is the explicit ``tail`` policy:

- ``"drop"``: ignored;
- ``"pad"``: one more window at the next hop, full length, zero-padded past the end;
- ``"keep-short"``: one more window at the next hop, ending at the end of the track.

A track shorter than one window always gets exactly one segment starting at 0
(ending at its duration, or at ``window`` with ``"pad"``).

Examples
--------
>>> seg = Segmentation(window=10.0, hop=2.0, tail="keep-short")
>>> starts, ends = seg.windows(31.0)
>>> starts[-2:].tolist(), ends[-2:].tolist()
([20.0, 22.0], [30.0, 31.0])
>>> Segmentation(window=10.0, hop=2.0, tail="drop").windows(4.0)
(array([0.]), array([4.]))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .errors import ParameterError

TAIL_POLICIES = ("drop", "pad", "keep-short")
_EPS = 1e-9


@dataclass(frozen=True)
class Segmentation:
    """Window length, hop (seconds) and tail policy of a library."""

    window: float = 10.0
    hop: float = 2.0
    tail: str = "keep-short"

    def __post_init__(self):
        for name in ("window", "hop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ParameterError(f"Segmentation: {name} must be a number of seconds, got {value!r}")
            if not (np.isfinite(value) and value > 0):
                raise ParameterError(f"Segmentation: {name} must be a finite number of seconds > 0, got {value}")
        if self.hop > self.window:
            raise ParameterError(f"Segmentation: hop ({self.hop}) larger than window ({self.window}) leaves gaps")
        if self.tail not in TAIL_POLICIES:
            raise ParameterError(f"Segmentation: tail must be one of {TAIL_POLICIES}, got {self.tail!r}")
        object.__setattr__(self, "window", float(self.window))
        object.__setattr__(self, "hop", float(self.hop))

    def to_dict(self) -> dict:
        """``{"window": ..., "hop": ..., "tail": ...}`` (as stored in ``library.json``).

        >>> Segmentation(4, 2).to_dict()
        {'window': 4.0, 'hop': 2.0, 'tail': 'keep-short'}
        """
        return asdict(self)

    def windows(self, duration: float) -> tuple[np.ndarray, np.ndarray]:
        """Start and end times (float64 seconds) of the windows of a track of ``duration`` seconds."""
        if not (duration > 0 and np.isfinite(duration)):
            raise ParameterError(f"windows: duration must be finite and > 0, got {duration}")
        if duration < self.window - _EPS:
            return np.zeros(1), np.array([self.window if self.tail == "pad" else float(duration)])
        n_full = int(np.floor((duration - self.window + _EPS) / self.hop)) + 1
        starts = np.arange(n_full) * self.hop
        ends = starts + self.window
        if self.tail != "drop" and ends[-1] < duration - _EPS:
            tail_start = n_full * self.hop
            tail_end = tail_start + self.window if self.tail == "pad" else float(duration)
            starts, ends = np.append(starts, tail_start), np.append(ends, tail_end)
        return starts, ends


def segment_table(track_ids, durations, seg: Segmentation, *, first_segment_id: int = 0) -> pd.DataFrame:
    """Segments of many tracks, in track order: ``segment_id, track_id, start, end``.

    >>> segment_table([7, 8], [12.0, 5.0], Segmentation(10, 5)).values.tolist()
    [[0.0, 7.0, 0.0, 10.0], [1.0, 7.0, 5.0, 12.0], [2.0, 8.0, 0.0, 5.0]]
    """
    parts = [seg.windows(float(d)) for d in durations]
    counts = [len(s) for s, _ in parts]
    n = int(sum(counts))
    starts = np.concatenate([s for s, _ in parts]) if parts else np.zeros(0)
    ends = np.concatenate([e for _, e in parts]) if parts else np.zeros(0)
    return pd.DataFrame({
        "segment_id": np.arange(first_segment_id, first_segment_id + n, dtype=np.int64),
        "track_id": np.repeat(np.asarray(track_ids, dtype=np.int64), counts),
        "start": starts.astype(np.float64),
        "end": ends.astype(np.float64),
    })


def cut(y: np.ndarray, sr: int, starts, ends) -> list[np.ndarray]:
    """Slice mono audio into the given windows; windows past the end are zero-padded to their length.

    >>> [len(w) for w in cut(np.ones(25), 10, [0.0, 1.0], [2.0, 3.0])]
    [20, 20]
    """
    out = []
    for s, e in zip(starts, ends):
        a, b = int(round(s * sr)), int(round(e * sr))
        w = y[a:b]
        if len(w) < b - a:
            w = np.pad(w, (0, b - a - len(w)))
        out.append(w)
    return out
