"""Comparing embedders beyond zero-shot retrieval: probe (group-disjoint linear probes), project (a stored
supervised projection), fuse (a stored early fusion), and ``eval --projection`` (out-of-fold supervised retrieval)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ParameterError
from ..io import write_with
from ..search.filters import parse_where
from . import options
from ._app import app


@app.command()
def probe(library: Path = typer.Argument(..., help="library directory"),
          embedder: str | None = typer.Option(None, help="embedding name or key (default: the library's default)"),
          label: str = typer.Option("genre", help="track column to predict (tracks without a value are left out)"),
          group: str | None = typer.Option(None, help="track column kept on one side of every fold (kit, artist, "
                                                      "album); default: the track"),
          model: str = typer.Option("logistic", help="logistic | mlp (standardised input; regularisation by "
                                                     "inner group-disjoint CV)"),
          folds: int = typer.Option(5, help="group k-fold splits; 0: leave one group out"),
          level: str = typer.Option("segment", help="segment | track (one mean vector per track)"),
          only: list[str] = typer.Option([], help="probe only tracks with COLUMN=VALUE (or !=, >=, <=, >, <)"),
          seed: int = typer.Option(0, help="seed of the folds and the MLP"),
          out: Path | None = typer.Option(None, help="write metrics.json, predictions.csv and confusion.png here"),
          as_json: bool = typer.Option(False, "--json", help="print the record as JSON only")):
    """Linear probe: predict LABEL from the vectors on group-disjoint folds (accuracy, macro-F1, per-class recall)."""
    from ..evaluate.probe import MODELS
    from ..evaluate.probe import probe as run
    from ..library.shards import open_library
    options.choice("--model", model, MODELS)
    options.choice("--level", level, ("segment", "track"))
    if folds == 1 or folds < 0:
        raise ParameterError(f"--folds must be 0 (leave one group out) or >= 2, got {folds}")
    options.output_dir("--out", out)
    result = run(open_library(library), embedder=embedder, label=label, group=group, model=model, folds=folds,
                 level=level, subset=parse_where(only, option="--only") or None, seed=seed, out_dir=out)
    rec = result.record
    m = rec.metrics
    lines = [f"{rec.embedder['key']}: {rec.protocol.describe()}; {int(m['probe/n_items'])} items, "
             f"{int(m['probe/n_classes'])} classes, {int(m['probe/n_groups'])} groups, "
             f"{rec.timings['probe_seconds']:.1f}s",
             f"  accuracy {m['probe/accuracy']:.4f}  macro-F1 {m['probe/macro_f1']:.4f}  balanced accuracy "
             f"{m['probe/balanced_accuracy']:.4f}   (majority class: accuracy {m['chance/accuracy']:.4f})",
             "  recall per class: " + ", ".join(f"{c} {r:.2f}" for c, r in rec.extra["per_class_recall"].items())]
    if out:
        lines.append(f"written to {out}")
    options.show(rec.model_dump(mode="json"), as_json, "\n".join(lines))


@app.command()
def project(library: Path = typer.Argument(..., help="library directory"),
            embedder: str | None = typer.Option(None, help="embedding to project (default: the library's default)"),
            label: str = typer.Option(..., help="track column the projection learns to separate"),
            method: str = typer.Option("lda", help="lda | nca | linear"),
            where: list[str] = typer.Option([], help="fit only on tracks with COLUMN=VALUE, e.g. split=train"),
            index: list[str] = typer.Option(["Flat"], help="indexes to build over the projected vectors"),
            seed: int = typer.Option(0, help="seed of the fit (NCA)"),
            wait: bool = typer.Option(False, "--wait", help=options.WAIT_HELP),
            as_json: bool = typer.Option(False, "--json", help="print the new embedding's description as JSON")):
    """Store a supervised projection of an embedding (its own key, vectors, indexes; the fitted map and what it
    was trained on), searchable like any other. Evaluate it only on tracks it was not fitted on."""
    from ..library.derived import METHODS
    from ..library.shardedits import project as run
    from ..library.shards import open_library
    from ..search.filters import track_mask
    options.choice("--method", method, METHODS)
    lib = open_library(library, **options.open_kw(wait))  # a sharded one: fitted once, stored in each shard
    subset = parse_where(where, option="--where")
    train = lib.tracks["track_id"][track_mask(lib.tracks, subset, what="--where")] if subset else None
    key = run(lib, embedder, label=label, method=method, train_tracks=train, seed=seed,
              provenance={"where": list(where)}, indexes=index)
    meta = lib.embedding(key).meta
    trained = meta["derived"]["trained_on"]
    text = (f"stored {key}: {meta['dim']}-D {method} projection of {meta['derived']['sources'][0]}, "
            f"fitted on {trained['n_segments']} segments of {trained['n_tracks']} tracks "
            f"({len(trained['label_counts'])} {label} values) in {trained['fit_seconds']:.2f}s; "
            f"search it with --embedder {key}")
    options.show(meta, as_json, text)


@app.command()
def fuse(library: Path = typer.Argument(..., help="library directory"),
         embedders: list[str] = typer.Argument(..., help="two or more embedding names or keys"),
         weights: str | None = typer.Option(None, help="comma-separated weights, one per embedding (default equal)"),
         index: list[str] = typer.Option(["Flat"], help="indexes to build over the fused vectors"),
         wait: bool = typer.Option(False, "--wait", help=options.WAIT_HELP),
         as_json: bool = typer.Option(False, "--json", help="print the new embedding's description as JSON")):
    """Store the early fusion E1+E2+...: weighted concatenation of L2-normalised vectors, renormalised; it follows
    the library's adds and removes. Search or evaluate it with --embedder E1+E2."""
    from ..library.shardedits import fuse as run
    from ..library.shards import open_library
    w = options.weights(weights) if weights else None
    lib = open_library(library, **options.open_kw(wait))  # a sharded one: each shard fuses its own rows
    key = run(lib, embedders, weights=w, indexes=index)
    meta = lib.embedding(key).meta
    options.show(meta, as_json, f"stored {key}: {meta['dim']}-D, weights " + ", ".join(
        f"{s} {w:.3g}" for s, w in zip(meta["derived"]["sources"], meta["derived"]["weights"]))
        + f"; search it with --embedder {meta['name']}")


def eval_projected(library: Path, protocol, *, embedder: str | None, projection: str, cv_group: str | None,
                   folds: int, out: Path | None, as_json: bool) -> None:
    """``audiorag eval --projection METHOD --cv-group COL``: out-of-fold supervised retrieval, printed and recorded."""
    from ..evaluate.projection import CHOICES, evaluate_projected
    from ..library.shards import open_library
    options.choice("--projection", projection, CHOICES)
    if folds == 1 or folds < 0:
        raise ParameterError(f"--folds must be 0 (leave one group out) or >= 2, got {folds}")
    if protocol.queries != "all":
        raise ParameterError("--projection queries with every segment once, in the fold holding out its group; "
                             "drop --queries / --per-track")
    record, per_query = evaluate_projected(open_library(library), embedder=embedder, method=projection,
                                           cv_group=cv_group, folds=folds, protocol=protocol)
    if out:
        record.write(out)
        write_with(out / "per-query.csv", lambda f: per_query.to_csv(f, index=False))
    m, ks = record.metrics, record.protocol.ks
    lines = [f"{record.embedder['key']} projected by {projection} out of fold ({record.extra['n_folds']} folds by "
             f"{record.extra['cv_group']}; {record.protocol.describe()}), {record.timings['n_queries']} queries",
             "  segment  " + "  ".join(f"P@{x}={m[f'segment/P@{x}']:.4f}" for x in ks)
             + f"  mAP={m['segment/mAP']:.4f}  nDCG@{ks[-1]}={m[f'segment/nDCG@{ks[-1]}']:.4f}"
             + f"  MRR={m['segment/MRR']:.4f}",
             f"  chance P={m['chance/P']:.4f}; fit seconds per fold: "
             + ", ".join(f"{s:.2f}" for s in record.timings["fit_seconds_per_fold"])]
    options.show(record.model_dump(mode="json"), as_json, "\n".join(lines))
