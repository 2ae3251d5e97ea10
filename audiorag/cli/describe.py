"""The describe command: a moment's key, tempo, loudness, timbre, tags and neighbourhood, summarised
(docs/describe.md); ``--all`` describes every track's central moment into a JSON-lines file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from ..errors import AudioragError, ParameterError
from . import options
from ._app import app


@app.command()
def describe(library: Path = typer.Argument(..., help="library directory"),
             track: int | None = typer.Option(None, help="describe a moment of this indexed track"),
             at: float = typer.Option(0.0, help="moment time (s), with --track"),
             audio: Path | None = typer.Option(None, help="describe an audio file (its --start/--end span)"),
             start: float | None = typer.Option(None, help="span start (s), with --audio"),
             end: float | None = typer.Option(None, help="span end (s), with --audio"),
             all_tracks: bool = typer.Option(False, "--all", help="describe every track's central moment into "
                                                                   "--out (one JSON line per track; resumes)"),
             out: Path | None = typer.Option(None, help="--all: the JSON-lines file (tracks already in it are "
                                                        "skipped)"),
             k: int = typer.Option(10, "--k", "-k", help="neighbourhood: number of nearest moments"),
             embedder: str | None = typer.Option(None, help="embedding whose index finds the neighbourhood "
                                                            "(default: the first indexed full-mix one)"),
             llm: str | None = typer.Option(None, help="OpenAI-compatible endpoint base URL, e.g. "
                                                       "http://127.0.0.1:8080/v1 (token: $AUDIORAG_LLM_TOKEN)"),
             llm_model: str | None = typer.Option(None, help="model name sent to --llm"),
             llm_timeout: float = typer.Option(60.0, help="--llm: seconds per attempt"),
             llm_retries: int = typer.Option(3, help="--llm: retries after a failed attempt (backoff 1, 2, 4 s)"),
             as_json: bool = typer.Option(False, "--json", help="print the description as JSON only")):
    """Describe a moment of LIBRARY (--track --at) or a clip (--audio): key, tempo, loudness, dynamics,
    brightness, tags, instruments, voice, the labels of its nearest moments, and a summary. LIBRARY may be
    a sharded library (global track ids)."""
    from ..describe import describe as run
    from ..describe import llm_summary, llm_token
    from ..library.shards import open_library
    from ..search import Query
    if sum([track is not None, audio is not None, all_tracks]) != 1:
        raise ParameterError("give exactly one of --track ID (with --at), --audio FILE, or --all (with --out)")
    if all_tracks and out is None:
        raise ParameterError("--all needs --out FILE (one JSON line per track)")
    if out is not None and not all_tracks:
        raise ParameterError("--out goes with --all")
    if k < 1:
        raise ParameterError(f"--k must be >= 1, got {k}")
    if (llm is None) != (llm_model is None):
        raise ParameterError("--llm and --llm-model go together")
    options.number("--at", at, minimum=0, unit=" (seconds)")
    options.number("--llm-timeout", llm_timeout, above=0, unit=" (seconds)")
    if llm_retries < 0:
        raise ParameterError(f"--llm-retries must be >= 0, got {llm_retries}")
    options.output_file("--out", out)
    lib = open_library(library)  # a library, or a sharded one (docs/shards.md)

    def one(query):
        d = run(lib, query, k=k, embedder=embedder)
        if llm is not None:
            llm_summary(d, llm, llm_model, token=llm_token(), timeout=llm_timeout, retries=llm_retries)
        return d

    if all_tracks:
        _describe_all(lib, out, one, Query)
        return
    if audio is not None:
        if not audio.is_file():
            raise ParameterError(f"--audio {audio}: no such file")
        query = Query.audio(audio, start=start, end=end)
    else:
        if start is not None or end is not None:
            raise ParameterError("--start/--end go with --audio (use --at with --track)")
        query = Query.moment(track, at)
    d = one(query)
    text = d.summary + (f"\n\nLLM ({d.llm['model']}): {d.llm['answer']}" if d.llm else "")
    options.show(d.to_dict(), as_json, text)


def _describe_all(lib, out: Path, one, Query) -> None:
    """One JSON line per track's central moment (``at`` = half its duration), appended as it is made;
    tracks already in ``out`` are skipped; a track that fails is reported on stderr and left out."""
    from tqdm.auto import tqdm

    from ..io import append_line
    done = set()
    if out.exists():
        for n, line in enumerate(out.read_text().splitlines(), 1):
            try:
                done.add(int(json.loads(line)["track_id"]))
            except (ValueError, KeyError, TypeError):
                raise ParameterError(f"--out {out}: line {n} is not a describe record; give a new file") from None
    tracks = lib.tracks[~lib.tracks["track_id"].isin(done)]
    failed = 0
    for tid, duration in tqdm(list(zip(tracks["track_id"].tolist(), tracks["duration"].tolist())),
                              desc="describe", file=sys.stderr):
        try:
            d = one(Query.moment(tid, float(duration) / 2))
        except (AudioragError, OSError) as exc:
            failed += 1
            typer.echo(f"track {tid}: {exc}", err=True)
            continue
        append_line(out, json.dumps({"track_id": tid, **d.to_dict()}, default=str))
    typer.echo(f"{len(tracks) - failed} described, {len(done)} already in {out}, {failed} failed", err=True)
