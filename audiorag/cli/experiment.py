"""Measuring: eval (one protocol on one library), sweep (a YAML grid through papermill), analyse."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import typer

from ..errors import ParameterError
from ..io import write_with
from ..search.filters import parse_where
from . import options
from ._app import app

#: Evaluation protocols besides retrieval: name -> ``run(library, checked)``, where ``checked`` holds eval's
#: checked options (embedder, index, label, ks, queries, seed, out, as_json, ray_address). The run prints its own
#: result; it opens LIBRARY with :func:`audiorag.library.shards.open_library` (a sharded library too).
#: The modules of this package that add a query type register its protocol here (e.g. "recommend").
EVAL_PROTOCOLS: dict[str, Callable[[Path, dict], None]] = {}


@app.command("eval")
def eval_(library: Path = typer.Argument(..., help="library directory"),
          protocol_name: str = typer.Option("retrieval", "--protocol",
                                            help="retrieval (P@k over label neighbours), or another query type's "
                                                 "protocol: recommend, hum, identify"),
          embedder: str | None = typer.Option(None, help="embedding name or key (default: the library's default)"),
          index: str | None = typer.Option(None, help="index name (default: flat or the only one)"),
          label: str = typer.Option("genre", help="track column whose equal values count as relevant "
                                                  "(tracks without a value are left out and counted)"),
          exclude_same: list[str] = typer.Option([], help="also exclude candidates sharing this column (repeatable)"),
          k: str = typer.Option("1,5,10", "-k", help="cut-offs, comma-separated"),
          queries: int | None = typer.Option(None, help="a seeded sample of N query segments (default: all)"),
          per_track: bool = typer.Option(False, "--per-track", help="one query per track (its central segment)"),
          only: list[str] = typer.Option([], help="evaluate only tracks with COLUMN=VALUE (or !=, >=, <=, >, <), "
                                                  "e.g. split=test (repeatable)"),
          seed: int = typer.Option(0, help="seed of every sample"),
          depth: int = typer.Option(1000, help="ranked list depth for mAP and the exported run"),
          moment_queries: int = typer.Option(100, help="clips for moment localisation accuracy (0: skip)"),
          out: Path | None = typer.Option(None, help="write metrics.json (and per-query.csv) here"),
          export_run: Path | None = typer.Option(None, help="write the ranked lists as a TREC run file"),
          export_qrels: Path | None = typer.Option(None, help="write the relevance judgements as TREC qrels"),
          projection: str | None = typer.Option(None, help="supervised retrieval, out of fold: none | lda | nca | "
                                                           "linear fitted on the other groups' labelled segments"),
          cv_group: str | None = typer.Option(None, help="with --projection: track column of the folds' groups "
                                                         "(default: the track)"),
          folds: int = typer.Option(5, help="with --projection: group k-fold splits (0: leave one group out)"),
          ray_address: str | None = typer.Option(None, help="a sharded library: its queries go to one Ray actor per "
                                                            "shard on this cluster (docs/cluster.md)"),
          as_json: bool = typer.Option(False, "--json", help="print the record as JSON only")):
    """Measure retrieval on LIBRARY: P@k, R@k, nDCG@k, mAP, MRR (segment and track level), moment accuracy, latency."""
    from ..evaluate import Protocol, evaluate
    from ..library.shards import open_library
    ks = _cutoffs(k)
    if queries is not None and queries < 1:
        raise ParameterError(f"--queries must be >= 1, got {queries}")
    if protocol_name != "retrieval":
        options.choice("--protocol", protocol_name, ["retrieval", *EVAL_PROTOCOLS])
        options.output_dir("--out", out)
        checked = {"embedder": embedder, "index": index, "label": label, "ks": ks, "queries": queries, "seed": seed,
                   "out": out, "as_json": as_json, "ray_address": ray_address}
        EVAL_PROTOCOLS[protocol_name](library, checked)
        return
    if depth < 1:
        raise ParameterError(f"--depth must be >= 1, got {depth}")
    if depth < ks[-1]:
        raise ParameterError(f"--depth ({depth}) must be at least the largest -k ({ks[-1]})")
    if moment_queries < 0:
        raise ParameterError(f"--moment-queries must be >= 0, got {moment_queries}")
    subset = parse_where(only, option="--only")
    options.output_dir("--out", out)
    options.output_file("--export-run", export_run)
    options.output_file("--export-qrels", export_qrels)
    protocol = Protocol(label=label, exclude_same=exclude_same, ks=ks, seed=seed, depth=depth, subset=subset or None,
                        queries="per-track" if per_track else ("sample" if queries else "all"),
                        n_queries=queries, moment_queries=moment_queries)
    if projection is not None or cv_group is not None:  # out-of-fold supervised retrieval (cli/compare.py)
        from .compare import eval_projected
        eval_projected(library, protocol, embedder=embedder, projection=projection or "lda", cv_group=cv_group,
                       folds=folds, out=out, as_json=as_json)
        return
    # figures of a library missing shards would be wrong, not partial: every shard answers or the eval stops
    lib = open_library(library, ray_address=ray_address, missing="error")
    ev = evaluate(lib, embedder=embedder, index=index, protocol=protocol, progress=not as_json and sys.stderr.isatty())
    if out:
        ev.record.write(out)
        write_with(out / "per-query.csv", lambda f: ev.per_query.to_csv(f, index=False))
    if export_run:
        ev.export_run(export_run)
    if export_qrels:
        ev.export_qrels(export_qrels)
    m = ev.record.metrics
    lines = [f"{ev.record.embedder['key']} on {ev.record.dataset['id']} ({protocol.describe()}), "
             f"{ev.record.timings['n_queries']} queries, index {ev.record.index['factory']}"]
    if m.get("n_unlabelled"):
        lines.append(f"  {int(m['n_unlabelled'])} tracks without a {label!r} value left out")
    for level in ("segment", "track"):
        lines.append(f"  {level:8s} " + "  ".join(f"P@{x}={m[f'{level}/P@{x}']:.4f}" for x in ks)
                     + f"  mAP={m[f'{level}/mAP']:.4f}  nDCG@{ks[-1]}={m[f'{level}/nDCG@{ks[-1]}']:.4f}"
                     + f"  MRR={m[f'{level}/MRR']:.4f}")
    lines.append(f"  chance P={m['chance/P']:.4f}")
    if "moment/accuracy" in m:
        lines.append(f"  moment accuracy (±{m['moment/tolerance_s']:g}s) {m['moment/accuracy']:.4f}")
    lines.append(f"  latency p50 {m['latency/p50_ms']:.2f} ms, p95 {m['latency/p95_ms']:.2f} ms, "
                 f"p99 {m['latency/p99_ms']:.2f} ms")
    options.show(ev.record.model_dump(mode="json"), as_json, "\n".join(lines))


def _cutoffs(text: str) -> list[int]:
    """``"1,5,10"`` → ``[1, 5, 10]``; each an integer >= 1.

    >>> _cutoffs("10, 1")
    [1, 10]
    """
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ParameterError(f"-k expects comma-separated integers like 1,5,10, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise ParameterError(f"-k: every cut-off must be an integer >= 1, got {text!r}")
    return sorted(set(ks))


@app.command()
def sweep(config: Path = typer.Argument(..., help="sweep YAML (experiments/<name>.yaml) or a packaged sweep's name"),
          output: Path | None = typer.Option(None, help="output directory (default: the file's, or "
                                                          "experiments/results/<name>)"),
          summary_only: bool = typer.Option(False, "--summary-only",
                                            help="only rebuild the summary from finished cells")):
    """Run a sweep: papermill per grid cell (skipping cells already done), then summary.parquet/.md and plots."""
    from ..experiments import SweepConfig, closing_note, run_sweep, summarise
    cfg = SweepConfig.load(config)
    root = Path(output or cfg.output or f"experiments/results/{cfg.name}")
    options.output_dir("--output", root)
    summary = summarise(root) if summary_only else run_sweep(cfg, output=root)
    typer.echo(closing_note(cfg, summary, output=root))


@app.command()
def analyse(library: Path = typer.Argument(..., help="library directory"),
            embedder: str | None = typer.Option(None, help="embedding name or key (default: the library's default)"),
            clusters: str = typer.Option("kmeans:8,hdbscan",
                                         help="comma-separated: kmeans:K, dbscan:EPS, hdbscan[:MIN]"),
            ks: str = typer.Option("2-20", help="k-sweep range for KMeans silhouette, e.g. 2-20 (empty: none)"),
            anomalies: float = typer.Option(0.1, help="share of items flagged as outliers (0: no anomaly analysis)"),
            label: str | None = typer.Option("genre", help="track column for purity, NMI, composition, tagging "
                                                             "(tracks without a value are not scored)"),
            level: str = typer.Option("segment", help="segment | track (one mean vector per track)"),
            maps: str = typer.Option("pca,tsne", help="projections: pca, tsne, umap (comma-separated)"),
            write_column: str | None = typer.Option(None, help="track level: store the first clustering as this "
                                                                  "track column (a search filter)"),
            seed: int = typer.Option(0, help="seed of every clustering, sample and projection"),
            out: Path = typer.Option(Path("experiments/results/analyse"), help="output directory"),
            wait: bool = typer.Option(False, "--wait", help=options.WAIT_HELP + " (with --write-column)"),
            as_json: bool = typer.Option(False, "--json", help="print the metrics as JSON only")):
    """Clusters (silhouette, purity, NMI, k-sweep, composition), outliers, maps and kNN tagging of one embedding."""
    from ..analysis import analyse as run
    from ..analysis import clusters as C
    from ..library.shards import open_library
    specs = [c.strip() for c in clusters.split(",") if c.strip()]
    for spec in specs:
        C.parse(spec)
    k_range = _k_range(ks)
    if anomalies != 0:
        options.number("--anomalies", anomalies, above=0, below=0.5)
    options.choice("--level", level, ("segment", "track"))
    projections = [m.strip() for m in maps.split(",") if m.strip()]
    for m in projections:
        options.choice("--maps", m, ("pca", "tsne", "umap"))
    if write_column is not None and (level != "track" or not specs):
        raise ParameterError("--write-column needs --level track and at least one --clusters entry")
    options.output_dir("--out", out)
    result = run(open_library(library, **options.open_kw(wait)), embedder=embedder, level=level, label=label or None,
                 clusters=specs, ks=k_range, contamination=anomalies, maps=projections, seed=seed, out_dir=out,
                 write_column=write_column, progress=not as_json and sys.stderr.isatty())
    m = result.record.metrics
    counts = {k: v for k, v in m.items() if k.rsplit("/", 1)[-1] in ("items", "best_k") or
              k.rsplit("/", 1)[-1].startswith("n_")}
    lines = [f"{result.record.embedder['key']}, {level} level: "
             + ", ".join(f"{k.replace('_', ' ')} {int(v)}" for k, v in counts.items()),
             f"{'metric':<44} {'value':>8}"]
    lines += [f"{k:<44} {v:>8.4f}" for k, v in m.items() if k not in counts] + [f"written to {out}"]
    options.show(m, as_json, "\n".join(lines))


def _k_range(text: str) -> range:
    """``"2-20"`` → ``range(2, 21)``; ``"8"`` → ``range(8, 9)``; ``""`` → no sweep.

    >>> _k_range("2-5"), _k_range("")
    (range(2, 6), range(0, 0))
    """
    if not text.strip():
        return range(0)
    lo, _, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise ParameterError(f"--ks expects a range like 2-20, got {text!r}") from None
    if not 2 <= a <= b:
        raise ParameterError(f"--ks: need 2 <= first <= last, got {text!r}")
    return range(a, b + 1)

