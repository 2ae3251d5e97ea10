"""The ``audiorag`` command line: the same functions the notebooks call.

``--json`` prints machine-readable output only (logs and progress go to stderr).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import AudioragError, ParameterError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Segment-level audio search: build a library, index it, search moments.")


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _print(obj, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str) if as_json else text)


@app.command()
def build(library: Path = typer.Argument(..., help="library directory (created if missing)"),
          dataset: str = typer.Option("synthetic", help="synthetic[:N[:SEED]] or folder:PATH"),
          labels: Optional[Path] = typer.Option(None, help="CSV with a 'path' column + metadata columns"),
          label_from_folder: bool = typer.Option(False, help="folder datasets: label = first sub-folder"),
          label_regex: Optional[str] = typer.Option(None, help="folder datasets: label = first group of this "
                                                    "regex on the file name, e.g. '^([a-z]+)_'"),
          fma_root: Optional[Path] = typer.Option(None, help="fma:SUBSET datasets: where `data fetch` put FMA"),
          embedder: List[str] = typer.Option(["features45"], help="embedder NAME[:key=value,...] (repeatable), "
                                             "e.g. mert:layer=all or clap:model=/models/clap-htsat-unfused"),
          window: float = typer.Option(10.0, help="window length, seconds"),
          hop: float = typer.Option(2.0, help="hop between windows, seconds"),
          tail: str = typer.Option("keep-short", help="drop | pad | keep-short"),
          index: List[str] = typer.Option(["Flat"], help="FAISS factory string, or auto (repeatable)"),
          max_memory: Optional[str] = typer.Option(None, help="auto: memory budget of the index, e.g. 640MB, 2GB"),
          target_recall: float = typer.Option(0.95, help="recall@10 the search parameters are tuned to"),
          workers: Optional[int] = typer.Option(None, help="worker processes (default: all cores)"),
          as_json: bool = typer.Option(False, "--json", help="print the build report as JSON only")):
    """Add a dataset's new files to LIBRARY, embed them, and (re)build indexes."""
    from .datasets import resolve
    from .embedders import get_embedder, parse_spec
    from .library import Library
    options = {"labels": labels, "label_from_folder": label_from_folder, "label_regex": label_regex, "root": fma_root}
    try:
        source = resolve(dataset, **{k: v for k, v in options.items() if v})
        lib = Library.create(library, window=window, hop=hop, tail=tail, exist_ok=True)
        embedders = [get_embedder(name, **params) for name, params in map(parse_spec, embedder)]
        report = lib.add(source, embedders=embedders, workers=workers, progress=not as_json)
        if len(lib.tracks) == 0:
            raise AudioragError(f"no track could be added from {dataset!r}: {report.summary()}"
                                + "".join(f"\n  {e['uri']}: {e['message']}" for e in report.errors[:10]))
        budget = _bytes(max_memory) if max_memory else None
        sidecars = [_current_index(lib, e.key, f) or lib.build_index(e.key, f, max_memory=budget,
                                                                      target_recall=target_recall)
                    for e in embedders for f in index]
    except AudioragError as exc:
        _fail(exc)
    out = {**report.__dict__, "indexes": [{k: s[k] for k in ("name", "factory", "n", "build_seconds")} for s in sidecars],
           "library": str(library)}
    lines = [report.summary()] + [f"  {e['uri']}: [{e['stage']}] {e['message']}" for e in report.errors]
    lines += [f"index {s['name']} ({s['factory']}): {s['n']} vectors, built in {s['build_seconds']:.2f}s" for s in sidecars]
    _print(out, as_json, "\n".join(lines))


def _index_line(i: dict) -> str:
    q = i.get("quality") or {}
    line = f"  index {i['name']} ({i['factory']}): {i['n']} vectors, {i.get('bytes_per_segment', '?')} B/segment"
    if q:
        line += f", recall@10 {q['recall@10']:.3f} at {i['search_params'] or 'exact'}, p99 {q['latency_p99_ms']:.2f} ms"
    if "resident_bytes" in i:
        line += f"; mapped {i['mapped_bytes'] / 1e6:.1f} MB, resident {i['resident_bytes'] / 1e6:.1f} MB"
    return line


def _bytes(text: str) -> float:
    """``"640MB"`` → 6.4e8; plain numbers are bytes."""
    import re
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)i?B?\s*", text.upper())
    if not m:
        raise ParameterError(f"--max-memory: expected a size like 640MB or 2GB, got {text!r}")
    return float(m.group(1)) * 1000 ** " KMGT".index(m.group(2) or " ")


def _current_index(lib, embedding: str, factory: str):
    """The sidecar of an up-to-date index of that name (kept in step by add/remove), else None."""
    from .index import index_name, load_index
    try:
        return load_index(lib, lib.embedding(embedding), index_name(factory)).sidecar
    except AudioragError:
        return None


@app.command()
def remove(library: Path = typer.Argument(..., help="library directory"),
           track_id: List[int] = typer.Argument(..., help="track ids to remove"),
           as_json: bool = typer.Option(False, "--json", help="print as JSON only")):
    """Remove tracks from LIBRARY: their segments leave every index (updated in place where it can)."""
    from .library import Library
    try:
        n = Library.open(library).remove(track_id)
    except AudioragError as exc:
        _fail(exc)
    _print({"removed": n}, as_json, f"removed {n} tracks")


@app.command()
def search(library: Path = typer.Argument(..., help="library directory"),
           audio: Optional[Path] = typer.Option(None, help="query audio file"),
           start: Optional[float] = typer.Option(None, help="query span start (s), with --audio"),
           end: Optional[float] = typer.Option(None, help="query span end (s), with --audio"),
           track: Optional[int] = typer.Option(None, help="query with a moment of this indexed track"),
           at: float = typer.Option(0.0, help="moment time (s), with --track"),
           text: Optional[str] = typer.Option(None, help="a description: text tower (clap) or a tagger's tag space; "
                                              "with --audio/--track, a hybrid query"),
           alpha: float = typer.Option(0.7, help="hybrid queries: weight of the text (1 - alpha: the audio)"),
           embedder: Optional[str] = typer.Option(None, help="embedding name or key (default: the only one)"),
           index: Optional[str] = typer.Option(None, help="index name (default: flat or the only one)"),
           k: int = typer.Option(10, "-k", help="number of hits"),
           exclude_same_track: bool = typer.Option(False, help="leave out the query's own track"),
           by: str = typer.Option("segment", help="segment | track (aggregate hits per track)"),
           where: List[str] = typer.Option([], help="metadata filter COLUMN=VALUE (repeatable)"),
           as_json: bool = typer.Option(False, "--json", help="print hits as JSON only")):
    """Search LIBRARY with an audio clip (--audio), a moment of an indexed track (--track --at)
    or a description (--text)."""
    from .library import Library
    from .search import Query
    if audio is not None and track is not None or audio is None and track is None and text is None:
        _fail(AudioragError("give --audio FILE or --track ID, and/or --text TEXT (both: a hybrid query)"))
    filters = {}
    for w in where:
        col, sep, val = w.partition("=")
        if not sep:
            _fail(AudioragError(f"--where expects COLUMN=VALUE, got {w!r}"))
        filters.setdefault(col, []).append(val)
    try:
        lib = Library.open(library)
        clip = (Query.audio(audio, start=start, end=end) if audio is not None
                else Query.moment(track, at) if track is not None else None)
        query = clip if text is None else Query.text(text) if clip is None else Query.hybrid(text, clip, alpha=alpha)
        hits = lib.search(query, embedder=embedder, k=k, index=index, exclude_same_track=exclude_same_track,
                          filters=filters or None, by=by)
    except AudioragError as exc:
        _fail(exc)
    cols = [c for c in ("rank", "track_id", "start", "end", "score", "uri") + tuple(
        c for c in hits.columns if c in ("genre", "genre_top", "label", "artist", "title", "license", "n_segments"))
        if c in hits.columns] + [c for c in hits.columns if c.startswith("tag:")]
    matched = hits.attrs.get("matched_tags")
    header = "matched tags: " + ", ".join(f"{t} ({w:.2f})" for t, w in matched.items()) + "\n" if matched else ""
    out = {"matched_tags": matched, "hits": hits.to_dict("records")} if matched else hits.to_dict("records")
    _print(out, as_json, header + hits[cols].to_string(index=False))


@app.command()
def info(library: Path = typer.Argument(..., help="library directory"),
         memory: bool = typer.Option(False, help="open every index memory-mapped and report resident memory"),
         as_json: bool = typer.Option(False, "--json", help="print as JSON only")):
    """Describe LIBRARY: segmentation, counts, embeddings, indexes (measured recall, latency, size), errors."""
    from .library import Library
    try:
        d = Library.open(library).info(memory=memory)
    except AudioragError as exc:
        _fail(exc)
    lines = [f"library {d['path']} (format {d['format_version']}, dataset {d['dataset']})",
             f"segmentation: window {d['segmentation']['window']}s, hop {d['segmentation']['hop']}s, "
             f"tail {d['segmentation']['tail']}",
             f"{d['tracks']} tracks ({d['hours']} h), {d['segments']} segments, {d['errors']} failed items"]
    for e in d["embeddings"]:
        lines.append(f"embedding {e['key']}: dim {e['dim']}, {e['n_segments']} vectors, "
                     f"{e['missing_tracks']} tracks missing")
        lines += [_index_line(i) for i in e["indexes"]]
    if memory:
        lines.append(f"process resident memory {d['resident_bytes'] / 1e6:.1f} MB")
    _print(d, as_json, "\n".join(lines))


@app.command("eval")
def eval_(library: Path = typer.Argument(..., help="library directory"),
          embedder: Optional[str] = typer.Option(None, help="embedding name or key (default: the only one)"),
          index: Optional[str] = typer.Option(None, help="index name (default: flat or the only one)"),
          label: str = typer.Option("genre", help="track column whose equal values count as relevant"),
          exclude_same: List[str] = typer.Option([], help="also exclude candidates sharing this column (repeatable)"),
          k: str = typer.Option("1,5,10", "-k", help="cut-offs, comma-separated"),
          queries: Optional[int] = typer.Option(None, help="a seeded sample of N query segments (default: all)"),
          per_track: bool = typer.Option(False, "--per-track", help="one query per track (its central segment)"),
          only: List[str] = typer.Option([], help="evaluate only tracks with COLUMN=VALUE, e.g. split=test (repeatable)"),
          seed: int = typer.Option(0, help="seed of every sample"),
          depth: int = typer.Option(1000, help="ranked list depth for mAP and the exported run"),
          moment_queries: int = typer.Option(100, help="clips for moment localisation accuracy (0: skip)"),
          out: Optional[Path] = typer.Option(None, help="write metrics.json (and per-query.csv) here"),
          export_run: Optional[Path] = typer.Option(None, help="write the ranked lists as a TREC run file"),
          export_qrels: Optional[Path] = typer.Option(None, help="write the relevance judgements as TREC qrels"),
          as_json: bool = typer.Option(False, "--json", help="print the record as JSON only")):
    """Measure retrieval on LIBRARY: P@k, R@k, nDCG@k, mAP, MRR (segment and track level), moment accuracy, latency."""
    from .evaluate import Protocol, evaluate
    from .library import Library
    try:
        ks = [int(x) for x in k.split(",") if x.strip()]
        subset: dict = {}
        for item in only:
            col, sep, val = item.partition("=")
            if not sep:
                raise AudioragError(f"--only expects COLUMN=VALUE, got {item!r}")
            subset.setdefault(col, []).append(val)
        protocol = Protocol(label=label, exclude_same=exclude_same, ks=ks, seed=seed, depth=depth, subset=subset or None,
                            queries="per-track" if per_track else ("sample" if queries else "all"),
                            n_queries=queries, moment_queries=moment_queries)
        ev = evaluate(Library.open(library), embedder=embedder, index=index, protocol=protocol)
    except (AudioragError, ValueError) as exc:
        _fail(exc)
    if out:
        ev.record.write(out)
        ev.per_query.to_csv(out / "per-query.csv", index=False)
    if export_run:
        ev.export_run(export_run)
    if export_qrels:
        ev.export_qrels(export_qrels)
    m = ev.record.metrics
    lines = [f"{ev.record.embedder['key']} on {ev.record.dataset['id']} ({protocol.describe()}), "
             f"{ev.record.timings['n_queries']} queries, index {ev.record.index['factory']}"]
    for level in ("segment", "track"):
        lines.append(f"  {level:8s} " + "  ".join(f"P@{x}={m[f'{level}/P@{x}']:.4f}" for x in ks)
                     + f"  mAP={m[f'{level}/mAP']:.4f}  nDCG@{ks[-1]}={m[f'{level}/nDCG@{ks[-1]}']:.4f}"
                     + f"  MRR={m[f'{level}/MRR']:.4f}")
    lines.append(f"  chance P={m['chance/P']:.4f}")
    if "moment/accuracy" in m:
        lines.append(f"  moment accuracy (±{m['moment/tolerance_s']:g}s) {m['moment/accuracy']:.4f}")
    lines.append(f"  latency p50 {m['latency/p50_ms']:.2f} ms, p95 {m['latency/p95_ms']:.2f} ms, "
                 f"p99 {m['latency/p99_ms']:.2f} ms")
    _print(ev.record.model_dump(mode="json"), as_json, "\n".join(lines))


@app.command()
def sweep(config: Path = typer.Argument(..., help="sweep YAML (experiments/<name>.yaml)"),
          output: Optional[Path] = typer.Option(None, help="output directory (default: the file's, or experiments/results/<name>)"),
          summary_only: bool = typer.Option(False, "--summary-only", help="only rebuild the summary from finished cells")):
    """Run a sweep: papermill per grid cell (skipping cells already done), then summary.parquet/.md and plots."""
    from .experiments import SweepConfig, markdown_table, run_sweep, summarise
    try:
        cfg = SweepConfig.load(config)
        root = Path(output or cfg.output or f"experiments/results/{cfg.name}")
        summary = summarise(root) if summary_only else run_sweep(cfg, output=root)
    except AudioragError as exc:
        _fail(exc)
    cols = [c for c in ("cell", "segment/P@10", "track/P@10", "segment/mAP", "moment/accuracy", "latency/p50_ms",
                        "memory/index_bytes_per_segment") if c in summary.columns]
    typer.echo(markdown_table(summary[cols]) if len(summary) else "(no finished cells)")
    failed = sorted(p.parent.name for p in (root / "cells").glob("*/error.json"))
    for c in failed:
        typer.echo(f"failed cell: {c} (see {root / 'cells' / c / 'error.json'})", err=True)
    typer.echo(f"summary: {root / 'summary.md'}, {root / 'summary.parquet'}, plots in {root}")


data_app = typer.Typer(no_args_is_help=True, help="Fetch datasets: FMA archives, Freesound previews.")
app.add_typer(data_app, name="data")


@data_app.command("fetch")
def data_fetch(name: str = typer.Argument(..., help="fma-small | fma-medium | fma-large | fma-full | freesound"),
               to: Path = typer.Option(..., help="destination folder"),
               query: Optional[str] = typer.Option(None, help="freesound: text query"),
               max_results: int = typer.Option(150, "--max", help="freesound: at most this many sounds"),
               filter: Optional[str] = typer.Option(None, help="freesound: filter, e.g. 'duration:[0 TO 5]'"),
               token: Optional[str] = typer.Option(None, help="freesound: API token (default $FREESOUND_TOKEN)"),
               url: Optional[str] = typer.Option(None, help="mirror / API base URL (default: the official one)")):
    """Download a dataset (resumable; re-running continues where it stopped)."""
    try:
        if name.startswith("fma-"):
            from .datasets import fma
            root = fma.fetch(name[4:], to, url=url)
            typer.echo(f"FMA {name[4:]} in {root}; build with: audiorag build LIB --dataset fma:{name[4:]} --fma-root {root}")
        elif name == "freesound":
            from .datasets import freesound
            if not query:
                raise AudioragError("freesound needs --query")
            root = freesound.fetch(query, to, max_results=max_results, filter=filter, token=token, url=url)
            typer.echo(f"Freesound previews in {root}; build with: audiorag build LIB --dataset freesound:{root}")
        else:
            raise AudioragError(f"unknown dataset {name!r}: fma-small, fma-medium, fma-large, fma-full or freesound")
    except AudioragError as exc:
        _fail(exc)


@app.command()
def analyse(library: Path = typer.Argument(..., help="library directory"),
            embedder: Optional[str] = typer.Option(None, help="embedding name or key (default: the only one)"),
            clusters: str = typer.Option("kmeans:8,hdbscan", help="comma-separated: kmeans:K, dbscan:EPS, hdbscan[:MIN]"),
            ks: str = typer.Option("2-20", help="k-sweep range for KMeans silhouette, e.g. 2-20 (empty: none)"),
            anomalies: float = typer.Option(0.1, help="share of items flagged as outliers (0: no anomaly analysis)"),
            label: Optional[str] = typer.Option("genre", help="track column for purity, NMI, composition, tagging"),
            level: str = typer.Option("segment", help="segment | track (one mean vector per track)"),
            maps: str = typer.Option("pca,tsne", help="projections: pca, tsne, umap (comma-separated)"),
            write_column: Optional[str] = typer.Option(None, help="track level: store the first clustering as this "
                                                                  "track column (a search filter)"),
            seed: int = typer.Option(0, help="seed of every clustering, sample and projection"),
            out: Path = typer.Option(Path("experiments/results/analyse"), help="output directory"),
            as_json: bool = typer.Option(False, "--json", help="print the metrics as JSON only")):
    """Clusters (silhouette, purity, NMI, k-sweep, composition), outliers, maps and kNN tagging of one embedding."""
    from .analysis import analyse as run
    from .library import Library
    try:
        lo, _, hi = ks.partition("-")
        k_range = range(int(lo), int(hi or lo) + 1) if ks else range(0)
        result = run(Library.open(library), embedder=embedder, level=level, label=label or None,
                     clusters=[c for c in clusters.split(",") if c], ks=k_range, contamination=anomalies,
                     maps=[m for m in maps.split(",") if m], seed=seed, out_dir=out, write_column=write_column)
    except (AudioragError, ValueError) as exc:
        _fail(exc)
    m = result.record.metrics
    lines = [f"{k:<40} {v:.4f}" for k, v in m.items()] + [f"written to {out}"]
    _print(m, as_json, "\n".join(lines))


models_app = typer.Typer(help="Registered embedders: are their weights here (where, size, identity)? Verify one.")
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def models(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="print as JSON only")):
    """List every registered embedder and whether its weights are available locally."""
    if ctx.invoked_subcommand is not None:
        return
    from .embedders import list_embedders, weights_status
    rows = [weights_status(name) for name in list_embedders()]
    lines = [f"{'embedder':<13}{'weights':<10}{'MB':>8}  {'identity':<20}  where"]
    for r in rows:
        size = f"{r['bytes'] / 1e6:.1f}" if r["bytes"] else "-"
        ident = (r["identity"] or "-").removeprefix("sha256:")[:16]
        extra = " (text tower)" if r["text_tower"] else f" ({r['tags']} tags)" if r["tags"] else ""
        where = r["where"] or "missing — " + r["message"].splitlines()[0].split("Looked in: ")[-1]
        lines.append(f"{r['name']:<13}{'ok' if r['available'] else 'MISSING':<10}{size:>8}  {ident:<20}  {where}{extra}")
    missing = [r for r in rows if not r["available"]]
    if missing:
        lines.append("\nto get missing weights:\n" + missing[0]["message"].split("\n", 1)[-1])
    _print(rows, as_json, "\n".join(lines))


@models_app.command("verify")
def models_verify(spec: str = typer.Argument(..., help="embedder NAME[:key=value,...], e.g. clap:model=/models/clap"),
                  as_json: bool = typer.Option(False, "--json", help="print the report as JSON only")):
    """Load the embedder's weights and run the validator (white noise of odd lengths, text if it has a tower)."""
    from dataclasses import asdict

    from .embedders import get_embedder, parse_spec
    from .embedders.validate import validate
    try:
        name, params = parse_spec(spec)
        report = validate(get_embedder(name, **params))
    except AudioragError as exc:
        _fail(exc)
    _print({**asdict(report), "ok": report.ok}, as_json, report.summary())
    if not report.ok:
        raise typer.Exit(1)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="log progress details to stderr")):
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":
    app()
