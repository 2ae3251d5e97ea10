"""The search command: audio clips, moments, text and hybrid queries."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from ..errors import ParameterError
from ._app import (
    _choice,
    _conditions,
    _number,
    _print,
    app,
)


@app.command()
def search(library: Path = typer.Argument(..., help="library directory"),
           audio: Path | None = typer.Option(None, help="query audio file"),
           start: float | None = typer.Option(None, help="query span start (s), with --audio"),
           end: float | None = typer.Option(None, help="query span end (s), with --audio"),
           track: int | None = typer.Option(None, help="query with a moment of this indexed track"),
           at: float = typer.Option(0.0, help="moment time (s), with --track"),
           text: str | None = typer.Option(None, help="a description: text tower (clap) or a tagger's tag space; "
                                              "with --audio/--track, a hybrid query"),
           alpha: float = typer.Option(0.7, help="hybrid queries: weight of the text (1 - alpha: the audio)"),
           embedder: str | None = typer.Option(None, help="embedding name or key (default: the only one)"),
           index: str | None = typer.Option(None, help="index name (default: flat or the only one)"),
           k: int = typer.Option(10, "-k", help="number of hits"),
           exclude_same_track: bool = typer.Option(False, help="leave out the query's own track"),
           by: str = typer.Option("segment", help="segment | track (aggregate hits per track)"),
           where: list[str] = typer.Option([], help="metadata filter COLUMN=VALUE, or !=, >=, <=, >, < (repeatable; "
                                                    "numeric columns compare as numbers)"),
           as_json: bool = typer.Option(False, "--json", help="print hits as JSON only")):
    """Search LIBRARY with an audio clip (--audio), a moment of an indexed track (--track --at)
    or a description (--text)."""
    from ..library import Library
    from ..search import Query
    from ..search import search as run_search
    if audio is not None and track is not None or audio is None and track is None and text is None:
        raise ParameterError("give --audio FILE or --track ID, and/or --text TEXT (both: a hybrid query)")
    if k < 1:
        raise ParameterError(f"-k must be >= 1, got {k}")
    _number("--start", start, minimum=0, unit=" (seconds)")
    _number("--end", end, above=0, unit=" (seconds)")
    if start is not None and end is not None and end <= start:
        raise ParameterError(f"--end ({end}) must be after --start ({start})")
    _number("--at", at, minimum=0, unit=" (seconds)")
    _number("--alpha", alpha, minimum=0, maximum=1)
    _choice("--by", by, ("segment", "track"))
    filters = _conditions("--where", where)
    lib = Library.open(library)
    if track is not None:
        _check_moment(lib, track, at)
    clip = (Query.audio(audio, start=start, end=end) if audio is not None
            else Query.moment(track, at) if track is not None else None)
    query = clip if text is None else Query.text(text) if clip is None else Query.hybrid(text, clip, alpha=alpha)
    hits = run_search(lib, query, embedder=embedder, k=k, index=index, exclude_same_track=exclude_same_track,
                      filters=filters or None, by=by)
    cols = [c for c in ("rank", "track_id", "start", "end", "score", "uri") + tuple(
        c for c in hits.columns if c in ("genre", "genre_top", "label", "artist", "title", "license", "n_segments"))
        if c in hits.columns] + [c for c in hits.columns if c.startswith("tag:")]
    matched = hits.attrs.get("matched_tags")
    header = "matched tags: " + ", ".join(f"{t} ({w:.2f})" for t, w in matched.items()) + "\n" if matched else ""
    out = {"matched_tags": matched, "hits": hits.to_dict("records")} if matched else hits.to_dict("records")
    _print(out, as_json, header + (hits[cols].to_string(index=False) if len(hits) else "(no hits)"))


def _check_moment(lib, track: int, at: float) -> None:
    """``--track`` must be in the library and ``--at`` within it."""
    tracks = lib.tracks
    row = tracks[tracks["track_id"] == track]
    if row.empty:
        raise ParameterError(f"--track {track}: no such track in {lib.path} "
                             f"(ids {int(tracks['track_id'].min())}..{int(tracks['track_id'].max())})"
                             if len(tracks) else f"--track {track}: the library has no tracks")
    duration = float(row["duration"].iloc[0]) if "duration" in row.columns else math.inf
    if at > duration:
        raise ParameterError(f"--at {at:g}: beyond the end of track {track} ({duration:g}s)")

