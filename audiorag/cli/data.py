"""Datasets and models: `data fetch` downloads a dataset, `models` lists and verifies embedder weights."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import AudioragError, ParameterError
from . import options
from ._app import app

data_app = typer.Typer(no_args_is_help=True, help="Fetch datasets: FMA archives, Freesound previews.")


app.add_typer(data_app, name="data")


_DATASETS = ("fma-small", "fma-medium", "fma-large", "fma-full", "freesound")


@data_app.command("fetch")
def data_fetch(name: str = typer.Argument(..., help="fma-small | fma-medium | fma-large | fma-full | freesound"),
               to: Path = typer.Option(..., help="destination folder"),
               query: str | None = typer.Option(None, help="freesound: text query"),
               max_results: int = typer.Option(150, "--max", help="freesound: at most this many sounds"),
               filter: str | None = typer.Option(None, help="freesound: filter, e.g. 'duration:[0 TO 5]'"),
               token: str | None = typer.Option(None, help="freesound: API token (default $FREESOUND_TOKEN)"),
               url: str | None = typer.Option(None, help="mirror / API base URL (default: the official one)")):
    """Download a dataset (resumable; re-running continues where it stopped)."""
    options.choice("NAME", name, _DATASETS)
    if max_results < 1:
        raise ParameterError(f"--max must be >= 1, got {max_results}")
    if name == "freesound" and not (query and query.strip()):
        raise ParameterError("freesound needs --query TEXT")
    options.output_dir("--to", to)
    if name.startswith("fma-"):
        from ..datasets import fma
        root = fma.fetch(name[4:], to, url=url)
        typer.echo(f"FMA {name[4:]} in {root}; build with: "
                   f"audiorag build LIB --dataset fma:{name[4:]} --fma-root {root}")
    else:
        from ..datasets import freesound
        root = freesound.fetch(query, to, max_results=max_results, filter=filter, token=token, url=url)
        typer.echo(f"Freesound previews in {root}; build with: audiorag build LIB --dataset freesound:{root}")


models_app = typer.Typer(help="Registered embedders: are their weights here (where, size, identity)? Verify one.")


app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def models(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="print as JSON only")):
    """List every registered embedder and whether its weights are available locally."""
    if ctx.invoked_subcommand is not None:
        return
    from ..embedders import list_embedders, weights_status
    rows = []
    for name in list_embedders():
        try:
            rows.append(weights_status(name))
        except AudioragError as exc:  # e.g. its framework is not installed: say so in its row
            rows.append({"name": name, "family": "?", "text_tower": False, "tags": 0, "available": False,
                         "where": None, "bytes": None, "identity": None, "message": str(exc)})
    lines = [f"{'embedder':<13}{'weights':<10}{'MB':>8}  {'identity':<20}  where"]
    for r in rows:
        size = f"{r['bytes'] / 1e6:.1f}" if r["bytes"] else "-"
        ident = (r["identity"] or "-").removeprefix("sha256:")[:16]
        extra = " (text tower)" if r["text_tower"] else f" ({r['tags']} tags)" if r["tags"] else ""
        where = r["where"] or "missing — " + r["message"].splitlines()[0].split("Looked in: ")[-1]
        state = "ok" if r["available"] else "MISSING"
        lines.append(f"{r['name']:<13}{state:<10}{size:>8}  {ident:<20}  {where}{extra}")
    missing = [r for r in rows if not r["available"]]
    if missing:
        lines.append("\nto get missing weights:\n" + missing[0]["message"].split("\n", 1)[-1])
    options.show(rows, as_json, "\n".join(lines))


@models_app.command("verify")
def models_verify(spec: str = typer.Argument(..., help="embedder NAME[:key=value,...], e.g. clap:model=/models/clap"),
                  as_json: bool = typer.Option(False, "--json", help="print the report as JSON only")):
    """Load the embedder's weights and run the validator (white noise of odd lengths, text if it has a tower)."""
    from dataclasses import asdict

    from ..embedders.validate import validate
    embedder = options.embedders("SPEC", [spec])[0]
    report = validate(embedder)
    options.show({**asdict(report), "ok": report.ok}, as_json, report.summary())
    if not report.ok:
        raise typer.Exit(1)

