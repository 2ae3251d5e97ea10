"""Tables for people on a terminal: one number format per column, headings that say what a column holds,
a legend line where one needs explaining, file names instead of paths (``--json`` keeps the full path),
and never wider than 100 columns (the widest text column is shortened with "…")."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

WIDTH = 100

#: column → (heading, format): the columns search, recommend and identify print
COMMON = {"rank": ("rank", "{:d}"), "track_id": ("track", "{:d}"), "start": ("start s", "{:.1f}"),
          "end": ("end s", "{:.1f}"), "offset": ("at s", "{:.2f}"), "uri": ("file", "file"),
          "n_segments": ("moments", "{:d}"), "tempo": ("bpm", "{:.0f}")}


def text_table(df: pd.DataFrame, columns: dict[str, tuple[str, str | None]], *, legend: str = "",
               width: int = WIDTH) -> str:
    """``df``'s ``columns`` (name → (heading, format)) as aligned text: a format is ``"{:.3f}"``-style,
    ``"file"`` (a path shown by its file name) or None (text); columns absent from ``df`` are skipped.

    >>> df = pd.DataFrame({"track_id": [3, 12], "score": [0.91234, 0.5], "uri": ["/a/b/song.flac", "/x.wav"]})
    >>> print(text_table(df, {"track_id": ("track", "{:d}"), "score": ("cosine", "{:.3f}"),
    ...                       "uri": ("file", "file")}, legend="cosine: similarity of the moments"))
    track  cosine  file
        3   0.912  song.flac
       12   0.500  x.wav
    cosine: similarity of the moments
    """
    shown = {c: spec for c, spec in columns.items() if c in df.columns}
    cells = {heading: [_cell(v, fmt) for v in df[c]] for c, (heading, fmt) in shown.items()}
    numeric = {heading for c, (heading, fmt) in shown.items() if fmt not in (None, "file")}
    while True:
        sizes = {h: max([len(h), *map(len, vals)]) for h, vals in cells.items()}
        over = sum(sizes.values()) + 2 * len(sizes) - width
        text = [h for h in cells if h not in numeric and sizes[h] > len(h) + 1]
        if over <= 0 or not text:
            break
        widest = max(text, key=sizes.get)
        keep = max(len(widest) + 1, sizes[widest] - over)
        cells[widest] = [v if len(v) <= keep else v[: keep - 1] + "…" for v in cells[widest]]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(sizes[h]) if h in numeric else v.ljust(sizes[h])
                         for h, v in zip(cells, values)).rstrip()
    rows = [line(list(cells))] + [line([cells[h][i] for h in cells]) for i in range(len(df))]
    return "\n".join(rows + ([legend] if legend else []))


def _cell(value, fmt: str | None) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "–"
    if fmt == "file":
        return Path(str(value)).name
    if fmt is None:
        return str(value)
    try:
        return f"{int(value)}" if fmt == "{:d}" else fmt.format(float(value))
    except (TypeError, ValueError):  # a text value in a numeric column (e.g. a free metadata column)
        return str(value)
