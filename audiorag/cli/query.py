"""The search command: audio clips, moments, text and hybrid queries."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from ..errors import ParameterError
from ..search import AGGREGATES
from ..search.filters import parse_where
from . import options
from ._app import app
from .shards import warn_missing
from .tables import COMMON, text_table


@app.command()
def search(library: Path = typer.Argument(..., help="library directory"),
           audio: Path | None = typer.Option(None, help="query audio file"),
           hum: Path | None = typer.Option(None, help="a hummed or sung phrase (audio file): query by melody, needs "
                                                 "the melody embedding; --start/--end apply (docs/hum.md)"),
           start: float | None = typer.Option(None, help="query span start (s), with --audio"),
           end: float | None = typer.Option(None, help="query span end (s), with --audio"),
           track: int | None = typer.Option(None, help="query with a moment of this indexed track"),
           at: float = typer.Option(0.0, help="moment time (s), with --track"),
           text: str | None = typer.Option(None, help="a description: text tower (clap) or a tagger's tag space; "
                                              "with --audio/--track, a hybrid query"),
           alpha: float = typer.Option(0.7, help="hybrid queries: weight of the text (1 - alpha: the audio)"),
           embedder: str | None = typer.Option(None, help="embedding name or key (default: the library's default)"),
           stem: str | None = typer.Option(None, help="harmonic | percussive (build --stems hpss), drums | bass | "
                                              "vocals | other (--stems demucs): search that stem's embedding "
                                              "(docs/describe.md#stems)"),
           index: str | None = typer.Option(None, help="index name (default: flat or the only one)"),
           k: int = typer.Option(10, "-k", help="number of hits"),
           exclude_same_track: bool = typer.Option(False, help="leave out the query's own track"),
           by: str = typer.Option("segment", help="segment | track (aggregate hits per track)"),
           aggregate: str = typer.Option("best", help="--by track: best (a track's best moment) | mean | max "
                                                      "(the track's mean / max-pooled vector, docs/tracks.md)"),
           where: list[str] = typer.Option([], help="metadata filter COLUMN=VALUE, or !=, >=, <=, >, < (repeatable; "
                                                    "numeric columns compare as numbers)"),
           diversity: float | None = typer.Option(None, help="re-rank: MMR diversity 0..1 (1 - lambda); any re-rank "
                                                            "option re-ranks k x 10 candidates (docs/recommend.md)"),
           max_per_artist: int | None = typer.Option(None, help="re-rank: at most N moments per artist"),
           max_per_track: int | None = typer.Option(None, help="re-rank: at most N moments per track (default 1)"),
           harmonic: float | None = typer.Option(None, help="re-rank: weight of harmonic-progression similarity"),
           tempo: float | None = typer.Option(None, help="re-rank: weight of tempo compatibility"),
           key: float | None = typer.Option(None, help="re-rank: weight of key compatibility (circle of fifths)"),
           mood: str | None = typer.Option(None, help="re-rank: calm | energetic | dark | bright | happy | sad"),
           fusion: str = typer.Option("early", help="with --embedder E1+E2: early (the stored fusion, see `audiorag "
                                                    "fuse`) or late (Σ w·cosine over each one's index)"),
           weights: str | None = typer.Option(None, help="--fusion late: comma-separated weights (default equal)"),
           identify: bool = typer.Option(False, "--identify", help="with --audio: identify the clip's track and "
                                         "moment by its fingerprints, then search from that moment (docs/identify.md)"),
           ray_address: str | None = typer.Option(None, help="a sharded library: search it through one Ray actor "
                                                        "per shard on this cluster (auto | HOST:PORT | local; "
                                                        "docs/cluster.md)"),
           as_json: bool = typer.Option(False, "--json", help="print hits as JSON only")):
    """Search LIBRARY with an audio clip (--audio), a moment of an indexed track (--track --at),
    a description (--text) or a hummed phrase (--hum)."""
    from ..library.shards import open_library
    from ..search import Query
    from ..search import search as run_search
    if hum is not None and (audio is not None or track is not None or text is not None):
        raise ParameterError("--hum is a query of its own: give it without --audio, --track or --text")
    if audio is not None and track is not None or audio is None and track is None and text is None and hum is None:
        raise ParameterError("give --audio FILE or --track ID, and/or --text TEXT (both: a hybrid query); "
                             "or --hum FILE")
    _check_combinations(audio=audio, hum=hum, start=start, end=end, identify=identify, fusion=fusion, weights=weights,
                        stem=stem, embedder=embedder, exclude_same_track=exclude_same_track)
    if k < 1:
        raise ParameterError(f"-k must be >= 1, got {k}")
    options.number("--start", start, minimum=0, unit=" (seconds)")
    options.number("--end", end, above=0, unit=" (seconds)")
    if start is not None and end is not None and end <= start:
        raise ParameterError(f"--end ({end}) must be after --start ({start})")
    options.number("--at", at, minimum=0, unit=" (seconds)")
    options.number("--alpha", alpha, minimum=0, maximum=1)
    options.choice("--by", by, ("segment", "track"))
    options.choice("--aggregate", aggregate, AGGREGATES)
    if aggregate != "best" and by != "track":
        raise ParameterError(f"--aggregate {aggregate} ranks tracks: give it with --by track")
    filters = parse_where(where, option="--where")
    lib = open_library(library, ray_address=ray_address)  # a library, or a sharded one (docs/shards.md)
    if stem is not None:
        from ..embedders.stems import stem_ref
        embedder = stem_ref(embedder, stem, [e.name for e in lib.embeddings()])
    if track is not None:
        _check_moment(lib, track, at)
    clip = (Query.audio(audio, start=start, end=end) if audio is not None
            else Query.moment(track, at) if track is not None else None)
    if identify:
        from .identify import identified_moment
        clip = identified_moment(lib, audio, start, end)
    query = clip if text is None else Query.text(text) if clip is None else Query.hybrid(text, clip, alpha=alpha)
    if hum is not None:
        query = Query.hum(hum, start=start, end=end)
    from .recommend import rerank_options
    rerank = rerank_options(diversity=diversity, max_per_artist=max_per_artist, max_per_track=max_per_track,
                            harmonic=harmonic, tempo=tempo, key=key, mood=mood)
    hits = run_search(lib, query, embedder=embedder, k=k, index=index, exclude_same_track=exclude_same_track,
                      filters=filters or None, by=by, rerank=rerank, aggregate=aggregate,
                      fusion=options.choice("--fusion", fusion, ("early", "late")),
                      weights=options.weights(weights) if weights else None)
    if hum is not None:
        score, says = "hum score", "hum score: melody alignment (higher is closer; not a cosine, can exceed 1)"
    elif rerank is not None or weights or "+" in (embedder or ""):
        score, says = "score", "score: similarity re-ranked by the options given"
    elif aggregate != "best":
        score, says = "cosine", f"cosine: similarity of the query to the track's {aggregate}-pooled vector; " \
            "start, end: its moment nearest to the query; moments: the track's segments"
    else:
        score, says = "cosine", "cosine: similarity of the query to the moment (1 = same direction)"
    columns = {**{c: COMMON[c] for c in ("rank", "track_id", "start", "end")}, "score": (score, "{:.3f}"),
               **{c: (c.replace("_", " "), None) for c in ("genre", "genre_top", "label", "artist", "title",
                                                           "license")},
               "n_segments": COMMON["n_segments"], "uri": COMMON["uri"],
               **{c: (c, "{:.3f}") for c in hits.columns if c.startswith(("tag:", "contrib:"))}}
    if "n_segments" in hits.columns and aggregate == "best":
        says += "; moments: how many of the track's moments were among the matches"
    matched = hits.attrs.get("matched_tags")
    header = "matched tags: " + ", ".join(f"{t} ({w:.2f})" for t, w in matched.items()) + "\n" if matched else ""
    out = {"matched_tags": matched, "hits": hits.to_dict("records")} if matched else hits.to_dict("records")
    warn_missing(hits)
    options.show(out, as_json, header + (text_table(hits, columns, legend=says) if len(hits) else "(no hits)"))


def _check_combinations(*, audio, hum, start, end, identify, fusion, weights, stem, embedder,
                        exclude_same_track) -> None:
    """Options that would otherwise be ignored, or mean nothing together, are refused."""
    if (start is not None or end is not None) and audio is None and hum is None:
        raise ParameterError("--start/--end cut the --audio or --hum file; a --track moment is given by --at")
    if identify and audio is None:
        raise ParameterError("--identify needs --audio FILE (the clip to identify)")
    if weights is not None and fusion != "late":
        raise ParameterError("--weights goes with --fusion late (an early fusion has the weights given to "
                             "`audiorag fuse`)")
    if hum is not None and (fusion != "early" or exclude_same_track):
        raise ParameterError("--hum searches the melody embedding: --fusion late and --exclude-same-track do not apply")
    if stem is not None and embedder is not None and "+" in embedder:
        raise ParameterError("--stem names one embedder's stem; it does not apply to a fusion E1+E2")


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

