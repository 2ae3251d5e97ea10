"""The recommend command, and the ``recommend`` evaluation protocol (``audiorag eval --protocol recommend``)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ParameterError
from ..io import write_with
from . import options
from ._app import app
from .experiment import EVAL_PROTOCOLS
from .tables import COMMON, text_table


def _cap(option: str, value: int) -> int | None:
    """A cap option: 0 means none."""
    if value < 0:
        raise ParameterError(f"{option} must be >= 0 (0: no cap), got {value}")
    return value or None


@app.command()
def recommend(library: Path = typer.Argument(..., help="library directory"),
              liked: list[str] = typer.Option(..., help="a liked moment TRACK@SECONDS (repeatable; oldest first)"),
              history: Path | None = typer.Option(None, help="CSV of played tracks (a track_id column): never "
                                                             "recommended; their artists are known"),
              k: int = typer.Option(10, "--k", "-k", help="number of moments"),
              diversity: float = typer.Option(0.3, help="MMR: 0 = relevance only, 1 = novelty only (1 - lambda)"),
              max_per_artist: int = typer.Option(2, help="at most this many moments per artist (0: no cap)"),
              max_per_track: int = typer.Option(1, help="at most this many moments per track (0: no cap)"),
              harmonic: float = typer.Option(0.2, help="weight of harmonic-progression similarity"),
              tempo: float = typer.Option(0.1, help="weight of tempo compatibility"),
              key: float = typer.Option(0.1, help="weight of key compatibility (circle of fifths)"),
              mood: str | None = typer.Option(None, help="calm | energetic | dark | bright | happy | sad (default: "
                                                         "inferred from the likes and history)"),
              time_of_day: str | None = typer.Option(None, help="morning | afternoon | evening | night, or an "
                                                                "hour 0-23: a mood prior when --mood is not given"),
              discovery: float | None = typer.Option(None, help="at least this share of moments by artists not in "
                                                                 "the history or the likes, e.g. 0.34"),
              embedder: str | None = typer.Option(None, help="embedding name or key (default: the library's default)"),
              index: str | None = typer.Option(None, help="index name (default: flat or the only one)"),
              ray_address: str | None = typer.Option(None, help="a sharded library: its queries go to one Ray actor "
                                                                "per shard on this cluster (docs/cluster.md)"),
              as_json: bool = typer.Option(False, "--json", help="print the moments as JSON only")):
    """Recommend moments of LIBRARY for a listener who liked --liked moments and played --history tracks."""
    from ..library.shards import open_library
    from ..recommend import parse_moment, read_history
    from ..recommend import recommend as run
    from ..rerank import MOODS
    from .shards import warn_missing
    if k < 1:
        raise ParameterError(f"--k must be >= 1, got {k}")
    options.number("--diversity", diversity, minimum=0, maximum=1)
    for option, value in (("--harmonic", harmonic), ("--tempo", tempo), ("--key", key)):
        options.number(option, value, minimum=0)
    options.number("--discovery", discovery, minimum=0, maximum=1)
    if mood is not None:
        options.choice("--mood", mood, list(MOODS))
    hour = int(time_of_day) if time_of_day is not None and time_of_day.isdigit() else time_of_day
    moments = [parse_moment(m) for m in liked]
    played = read_history(history) if history is not None else []
    lib = open_library(library, ray_address=ray_address)  # a library, or a sharded one (docs/shards.md)
    ids = set(lib.tracks["track_id"].tolist())
    for option, tracks in (("--liked", [t for t, _ in moments]), ("--history", played)):
        unknown = sorted(set(tracks) - ids)
        if unknown:
            raise ParameterError(f"{option}: track ids {unknown[:5]} are not in {library}")
    out = run(lib, moments, history=played, k=k, embedder=embedder, index=index, diversity=diversity,
              max_per_track=_cap("--max-per-track", max_per_track),
              max_per_artist=_cap("--max-per-artist", max_per_artist), harmonic=harmonic, tempo=tempo, key=key,
              mood=mood, time_of_day=hour, discovery=discovery)
    attrs = out.attrs
    out = out.sort_values("score", ascending=False, kind="stable").assign(rank=range(1, len(out) + 1))
    out.attrs = attrs
    warn_missing(out)
    columns = {**{c: COMMON[c] for c in ("rank", "track_id", "start", "end")}, "artist": ("artist", None),
               "genre": ("genre", None), "key": ("key", None), "tempo": COMMON["tempo"], "taste": ("taste", "{:d}"),
               "new_artist": ("new", None), "similarity": ("cosine", "{:.3f}"), "score": ("score", "{:.3f}"),
               "uri": COMMON["uri"]}
    head = (f"{out.attrs['tastes']} taste(s), weights {out.attrs['taste_weights']}; "
            f"{out.attrs['discovery']:.0%} by artists new to the listener"
            + (f"; mood {out.attrs['mood']}" if out.attrs.get("mood") else "")
            + (_inferred(out.attrs["mood_inferred"]) if out.attrs.get("mood_inferred") else ""))
    legend = ("score: similarity to the taste + harmonic/tempo/key/mood factors (sorted by it); taste: which of "
              "the listener's tastes (from 0) the moment serves; new: by an artist new to the listener; cosine: "
              "similarity to that taste")
    text = head + "\n" + (text_table(out, columns, legend=legend) if len(out) else "(no moments)")
    options.show({**out.attrs, "moments": out.to_dict("records")}, as_json, text)


def _inferred(m: dict) -> str:
    """What the listener's inferred mood was and what it came from."""
    return (f" (inferred from {m['likes']} liked moment(s) and {m['played']} played track(s): valence "
            f"{m['valence']:.2f}, arousal {m['arousal']:.2f}, confidence {m['confidence']:.2f}; --mood sets one)")


def _eval_recommend(library: Path, checked: dict) -> None:
    """``eval --protocol recommend``: simulated listeners from ``--label``, a grid of settings; writes
    ``metrics.json``, ``tradeoff.csv``/``.md`` and ``recommend_tradeoff.png`` to ``--out``."""
    from ..evaluate.recommend import evaluate_recommend, markdown
    from ..library.shards import open_library
    from ..plots import recommend_tradeoff
    lib = open_library(library, ray_address=checked["ray_address"], missing="error")  # all shards or none
    record, table = evaluate_recommend(lib, embedder=checked["embedder"], index=checked["index"],
                                       label=checked["label"], n_listeners=checked["queries"] or 40,
                                       seed=checked["seed"])
    out = options.output_dir("--out", checked["out"])
    if out:
        record.write(out)
        write_with(out / "tradeoff.csv", lambda f: table.to_csv(f, index=False))
        (out / "tradeoff.md").write_text(markdown(table))
        recommend_tradeoff(table, out)
    columns = {"setting": ("setting", None), "P@10": ("P@10", "{:.3f}"), "nDCG@10": ("nDCG@10", "{:.3f}"),
               "discovery": ("new art.", "{:.0%}"), "ILD": ("ILD", "{:.3f}"), "artist_coverage": ("artists", "{:.0%}"),
               "catalogue_coverage": ("catalogue", "{:.0%}"), "novelty": ("novelty", "{:.2f}"),
               "two_tastes": ("2 tastes", "{:.3f}"), "ms": ("ms", "{:.1f}")}
    legend = ("new art.: share by artists new to the listener; ILD: mean cosine distance between the moments; "
              "artists, catalogue: coverage; ms: per listener")
    options.show(record.model_dump(mode="json"), checked["as_json"],
           f"{int(record.metrics['listeners'])} simulated listeners (label {checked['label']!r}), k = 10\n"
           + text_table(table, columns, legend=legend))


EVAL_PROTOCOLS["recommend"] = _eval_recommend


def rerank_options(*, diversity, max_per_artist, max_per_track, harmonic, tempo, key, mood):
    """``search``'s re-rank options as an :class:`audiorag.rerank.Rerank`, or None when none is given."""
    from ..rerank import MOODS, Rerank
    given = {"diversity": diversity, "max_per_artist": max_per_artist, "max_per_track": max_per_track,
             "harmonic": harmonic, "tempo": tempo, "key": key, "mood": mood}
    if all(v is None for v in given.values()):
        return None
    options.number("--diversity", diversity, minimum=0, maximum=1)
    for option, value in (("--harmonic", harmonic), ("--tempo", tempo), ("--key", key)):
        options.number(option, value, minimum=0)
    if mood is not None:
        options.choice("--mood", mood, list(MOODS))
    return Rerank(diversity=diversity or 0.0, harmonic=harmonic or 0.0, tempo=tempo or 0.0, key=key or 0.0,
                  mood=mood, mood_weight=0.3 if mood else 0.0,
                  max_per_artist=None if max_per_artist is None else _cap("--max-per-artist", max_per_artist),
                  max_per_track=1 if max_per_track is None else _cap("--max-per-track", max_per_track))
