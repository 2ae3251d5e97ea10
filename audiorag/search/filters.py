"""Filters on track columns: the ``where`` expressions of the CLI, the server, ``eval --only`` and the map.

A filter is a mapping ``{column: value | [values] | {"op": OP, "value": V} | [mixed]}`` evaluated by
:func:`track_mask`; :func:`parse_where` turns ``COLUMN<OP>VALUE`` texts into that mapping. Only
:func:`public_columns` may be filtered on, coloured by or counted by a client: a track's file path
(``uri``), its content hash and the decoding facts the library keeps for itself are never exposed.

>>> import pandas as pd
>>> t = pd.DataFrame({"track_id": [0, 1], "uri": ["/a.flac", "/b.flac"], "genre": ["rock", "jazz"],
...                   "duration": [30.0, 20.0], "content_hash": ["x", "y"]})
>>> public_columns(t)
['track_id', 'genre', 'duration']
>>> track_mask(t, parse_where(["genre=jazz"])).tolist()
[False, True]
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..errors import ParameterError

#: track columns the library keeps for itself: never filtered on, shown or counted for a client
PRIVATE_TRACK_COLUMNS = ("uri", "content_hash", "sample_rate", "channels")

#: comparison operators of a filter condition ``{"op": OP, "value": V}`` (and of ``COLUMN<OP>VALUE`` text)
OPERATORS = ("=", "!=", ">=", "<=", ">", "<")
_CONDITION = re.compile(r"^\s*([^<>=!]+?)\s*(==|!=|>=|<=|=|>|<)\s*(.*?)\s*$", re.DOTALL)


def public_columns(tracks: pd.DataFrame) -> list[str]:
    """The columns of ``tracks`` a client may see, filter on or group by (everything but
    :data:`PRIVATE_TRACK_COLUMNS`), in table order.

    >>> public_columns(pd.DataFrame(columns=["track_id", "uri", "artist", "sample_rate"]))
    ['track_id', 'artist']
    """
    return [str(c) for c in tracks.columns if c not in PRIVATE_TRACK_COLUMNS]


def parse_condition(text: str, *, option: str = "--where") -> tuple[str, dict]:
    """``"year>=2001"`` → ``("year", {"op": ">=", "value": "2001"})``; ``==`` is ``=``.

    >>> parse_condition("genre=rock"), parse_condition("year >= 2001")
    (('genre', {'op': '=', 'value': 'rock'}), ('year', {'op': '>=', 'value': '2001'}))
    """
    m = _CONDITION.match(text)
    if not m:
        raise ParameterError(f"{option} expects COLUMN=VALUE (or !=, >=, <=, >, <), got {text!r}")
    op = "=" if m.group(2) == "==" else m.group(2)
    return m.group(1), {"op": op, "value": m.group(3)}


def parse_where(items: list[str], *, option: str = "--where") -> dict:
    """``COLUMN<op>VALUE`` texts → the ``filters`` mapping of :func:`track_mask`: equalities on one column are
    alternatives, other conditions must all hold. ``option`` names the option in errors as the user typed it.

    >>> parse_where(["genre=rock", "genre=jazz", "year>2000"])
    {'genre': ['rock', 'jazz'], 'year': [{'op': '>', 'value': '2000'}]}
    """
    out: dict = {}
    for item in items:
        col, cond = parse_condition(item, option=option)
        out.setdefault(col, []).append(cond["value"] if cond["op"] == "=" else cond)
    return out


def track_mask(tracks: pd.DataFrame, filters: dict, *, what: str = "filter") -> np.ndarray:
    """Boolean mask of the ``tracks`` rows that pass every column's condition(s).

    ``filters`` maps a column to a value, a list of accepted values, a condition
    ``{"op": OP, "value": V}`` (``OP`` in :data:`OPERATORS`), or a list mixing both: the plain
    values of one column are alternatives (any may match), conditions must all hold. Values
    compare by the column's type: a numeric column as numbers (``"2001"`` matches ``2001.0``;
    text that is not a number is an error), other columns as text. Tracks without a value in
    the column never match.

    >>> t = pd.DataFrame({"year": [1999.0, 2001.0, None], "genre": ["rock", "jazz", "rock"]})
    >>> track_mask(t, {"year": "2001"}).tolist(), track_mask(t, {"year": {"op": "<", "value": 2001}}).tolist()
    ([False, True, False], [True, False, False])
    >>> track_mask(t, {"genre": ["rock", "pop"], "year": {"op": "!=", "value": "1999"}}).tolist()
    [False, False, False]
    """
    mask = np.ones(len(tracks), dtype=bool)
    for col, want in filters.items():
        if col not in tracks.columns:
            raise ParameterError(f"{what} on unknown column {col!r}; "
                                 f"track columns: {', '.join(map(str, tracks.columns))}")
        items = list(want) if isinstance(want, (list, tuple, set)) else [want]
        equal = [i for i in items if not isinstance(i, dict)]
        conditions = [i for i in items if isinstance(i, dict)]
        column = tracks[col]
        present = column.notna().to_numpy()
        col_mask = present.copy()
        for c in conditions:
            if set(c) != {"op", "value"} or c["op"] not in OPERATORS:
                raise ParameterError(f"{what} on {col!r}: a condition is {{'op': one of {OPERATORS}, 'value': V}}, "
                                     f"got {c!r}")
            if c["op"] == "=":
                equal.append(c["value"])
            else:
                col_mask &= _compare(column, c["op"], c["value"], col, what) & present
        if equal:
            col_mask &= np.logical_or.reduce([_compare(column, "=", v, col, what) for v in equal]) & present
        mask &= col_mask
    return mask


def _compare(column: pd.Series, op: str, value, col: str, what: str) -> np.ndarray:
    """``column OP value`` by the column's type (numbers as numbers, anything else as text)."""
    if pd.api.types.is_bool_dtype(column):
        truth = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        key = str(value).strip().lower()
        if key not in truth or op not in ("=", "!="):
            raise ParameterError(f"{what} on {col!r}: the column holds true/false; use {col}=true or {col}=false, "
                                 f"got {op}{value!r}")
        left, right = column.to_numpy(dtype=object), truth[key]
    elif pd.api.types.is_numeric_dtype(column):
        try:
            right = float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"{what} on {col!r}: the column holds numbers; {value!r} is not a number") from None
        if not np.isfinite(right):
            raise ParameterError(f"{what} on {col!r}: {value!r} is not a finite number")
        left = column.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        left = column.astype(object).map(lambda v: "" if v is None else str(v)).to_numpy(dtype=object)
        right = str(value)
    with np.errstate(invalid="ignore"):
        out = {"=": left == right, "!=": left != right, ">=": left >= right, "<=": left <= right,
               ">": left > right, "<": left < right}[op]
    return np.asarray(out, dtype=bool)
