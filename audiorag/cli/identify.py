"""The identify command (which track and moment a recorded clip comes from) and ``eval --protocol identify``."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ParameterError
from ..io import write_with
from . import options
from ._app import app
from .experiment import EVAL_PROTOCOLS
from .tables import COMMON, text_table


@app.command()
def identify(library: Path = typer.Argument(..., help="library directory (built with --fingerprint)"),
             audio: Path = typer.Option(..., help="the clip: an audio file"),
             start: float | None = typer.Option(None, help="clip start in the file (s)"),
             end: float | None = typer.Option(None, help="clip end in the file (s)"),
             k: int = typer.Option(1, "-k", help="at most this many candidate moments"),
             ray_address: str | None = typer.Option(None, help="a sharded library: its shard actors on this Ray "
                                                               "cluster look up the fingerprints (docs/cluster.md)"),
             as_json: bool = typer.Option(False, "--json", help="print the result as JSON only")):
    """Identify the track and the exact moment AUDIO was recorded from (landmark fingerprints: robust to
    noise, EQ, MP3, ±5 % tempo and ±3 % speed). Says "no match" when the clip is not in LIBRARY."""
    from ..identify import identify as run_identify
    from ..library.shards import open_library
    from .shards import warn_missing
    if k < 1:
        raise ParameterError(f"-k must be >= 1, got {k}")
    clip_span(start, end)
    lib = open_library(library, ray_address=ray_address)  # a library, or a sharded one (docs/shards.md)
    found = run_identify(lib, audio, start=start, end=end, k=k)
    warn_missing(found)
    out = {"matches": found.to_dict("records"), "reason": found.attrs.get("reason"),
           "ms": round(found.attrs["seconds"] * 1000, 1),
           **({"missing_shards": found.attrs["missing_shards"]} if "missing_shards" in found.attrs else {})}
    columns = {"track_id": COMMON["track_id"], "offset": ("at s", "{:.2f}"), "stretch": ("stretch", "{:.3f}"),
               "score": ("landmarks", "{:d}"), "confidence": ("confidence", "{:.2f}"), "uri": COMMON["uri"]}
    text = (text_table(found, columns, legend="at s: where the clip starts in the track; stretch: its tempo "
                                              "relative to the track; landmarks: matching fingerprint pairs")
            if len(found) else f"no match: {found.attrs.get('reason')}")
    options.show(out, as_json, text)


def clip_span(start: float | None, end: float | None) -> None:
    """``--start``/``--end`` are seconds, the end after the start."""
    options.number("--start", start, minimum=0, unit=" (seconds)")
    options.number("--end", end, above=0, unit=" (seconds)")
    if start is not None and end is not None and end <= start:
        raise ParameterError(f"--end ({end}) must be after --start ({start})")


def _eval_identify(library: Path, checked: dict) -> None:
    """``eval --protocol identify``: clips of 3/5/10 s cut from the library, degraded, identified; writes
    ``metrics.json`` and ``identify.csv`` to ``--out``. ``--queries`` = clips per degradation (20)."""
    from ..evaluate.identify import evaluate_identify
    from ..library.shards import open_library
    lib = open_library(library, ray_address=checked["ray_address"], missing="error")  # the same clips, all shards
    record, table = evaluate_identify(lib, clips=checked["queries"] or 20, seed=checked["seed"],
                                      progress=not checked["as_json"])
    out = options.output_dir("--out", checked["out"])
    if out:
        record.write(out)
        write_with(out / "identify.csv", lambda f: table.to_csv(f, index=False))
    options.show(record.model_dump(mode="json"), checked["as_json"],
           text_table(table, {c: (c.replace("_", " "), "{:.3f}" if table[c].dtype.kind == "f" else
                                  "{:d}" if table[c].dtype.kind in "iu" else None) for c in table.columns}))


EVAL_PROTOCOLS["identify"] = _eval_identify


def identified_moment(lib, audio: Path | None, start: float | None, end: float | None):
    """``search --audio FILE --identify``: the moment query of the clip's identified track and time (the
    middle of the clip), or a clear error when the clip matches nothing."""
    from ..identify import identify as run_identify
    from ..search import Query
    if audio is None:
        raise ParameterError("--identify needs --audio FILE (the clip to identify)")
    found = run_identify(lib, audio, start=start, end=end)
    if not len(found):
        raise ParameterError(f"--identify: {audio}: no match ({found.attrs.get('reason')}); "
                             "search without --identify for moments that sound similar")
    hit = found.iloc[0]
    duration = float(lib.tracks.set_index("track_id").loc[int(hit.track_id), "duration"])
    at = min(float(hit.offset) + found.attrs["clip_seconds"] / float(hit.stretch) / 2, duration)
    typer.echo(f"identified: track {int(hit.track_id)} ({hit.uri}) at {float(hit.offset):.2f}s, stretch "
               f"{float(hit.stretch):.3f}, score {int(hit.score)}, confidence {float(hit.confidence):.2f}", err=True)
    return Query.moment(int(hit.track_id), at)
