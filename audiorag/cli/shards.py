"""Sharded libraries on the command line (docs/shards.md): ``build --shards N`` and ``info`` on one;
``search``, ``recommend``, ``eval`` and ``serve`` open them through :func:`audiorag.library.shards.open_library`
(``search --ray-address``: through shard actors on Ray); ``audiorag shards place | where | stop`` place and
run the shard actors (docs/cluster.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import AudioragError
from . import options
from ._app import app


def warn_missing(hits) -> None:
    """One warning line on stderr when shards of a sharded library did not answer the query."""
    missing = hits.attrs.get("missing_shards")
    if missing:
        typer.echo(f"warning: shard(s) {', '.join(map(str, missing))} did not answer: these hits come from the "
                   "other shards only (see the log for the reason)", err=True)


def build_sharded(library: Path, n: int | None, source, embedders: list, indexes: list[str], *, window: float,
                  hop: float, tail: str, workers: int | None, max_memory, max_resident, target_recall: float,
                  fingerprint: bool, as_json: bool, engine: str = "local", ray_address: str | None = None) -> None:
    """``audiorag build LIB --shards N``: create (or reopen: N must match) and build the shards in parallel
    (``--engine ray``: one shard after the other, each spread over the Ray cluster)."""
    from ..library.shards import ShardedLibrary, is_sharded
    if n is None:
        n = ShardedLibrary.open(library).n if is_sharded(library) else 1
    lib = ShardedLibrary.create(library, n, window=window, hop=hop, tail=tail, dataset=getattr(source, "id", None),
                                exist_ok=True)
    ray = {"engine": engine, "ray_address": ray_address} if engine != "local" else {}
    reports = lib.add(source, embedders=embedders, indexes=indexes, workers=workers, parallel=not ray,
                      max_memory=max_memory, max_resident=max_resident, target_recall=target_recall,
                      fingerprint=fingerprint, **ray)
    lib = ShardedLibrary.open(library)
    if len(lib.tracks) == 0:
        first = next((e for r in reports for e in r["errors"]), None)
        raise AudioragError(f"no track could be added to the sharded library {library}"
                            + (f"; first: {first['uri']}: {first['message']}" if first else ""))
    lines = [f"{r['shard']}: added {r['added']} tracks, skipped {r['duplicates']} already present, "
             f"{r['failed']} failed" + "".join(f"; index {i['name']} ({i['n']} vectors)" for i in r["indexes"])
             for r in reports]
    lines.append(f"{library}: {lib.n} shards, {len(lib.tracks)} tracks, {len(lib.segments)} segments")
    options.show({"library": str(library), "shards": reports}, as_json, "\n".join(lines))


def info_sharded(library: Path, memory: bool, as_json: bool) -> None:
    """``audiorag info`` on a sharded library: the totals, then each shard's embeddings and indexes."""
    from ..library.shards import ShardedLibrary
    d = ShardedLibrary.open(library).info(memory=memory)
    seg = d["segmentation"]
    lines = [f"sharded library {d['path']} ({d['n_shards']} shards, dataset {d['dataset']})",
             f"routing: {d['routing']}; track ids: {d['ids']}",
             f"segmentation: window {seg['window']}s, hop {seg['hop']}s, tail {seg['tail']}",
             f"{d['tracks']} tracks ({d['hours']} h), {d['segments']} segments, {d['errors']} failed items"]
    for s in d["shards"]:
        lines.append(f"{Path(s['path']).name}: {s['tracks']} tracks, {s['segments']} segments")
        for e in s["embeddings"]:
            lines.append(f"  embedding {e['key']}: {e['n_segments']} vectors")
            lines += ["  " + options.index_line(i) for i in e["indexes"]]
    options.show(d, as_json, "\n".join(lines))


shards_app = typer.Typer(no_args_is_help=True, help="Serve a sharded library on a Ray cluster: where each shard's "
                                                    "actor runs (docs/cluster.md).")
app.add_typer(shards_app, name="shards")


@shards_app.command("place")
def place(library: Path = typer.Argument(..., help="sharded library directory"),
          shard: int = typer.Option(..., help="shard number, 0..N-1"),
          node: str | None = typer.Option(None, help="Ray node id or address the shard's actor runs on "
                                                     "(none: any node, the shard on shared storage)"),
          path: str | None = typer.Option(None, help="that node's copy of the shard directory (none: the shard "
                                                     "directory itself)"),
          as_json: bool = typer.Option(False, "--json", help="print the placement as JSON only")) -> None:
    """Record in shards.json where SHARD of LIBRARY is served; its actor is made there on the next query
    (`audiorag shards stop` first when one is running)."""
    from ..library.shards import ShardedLibrary
    got = ShardedLibrary.open(library).place(shard, node=node, path=path)
    options.show({"shard": shard, **got}, as_json,
                 f"shard {shard}: node {got['node'] or 'any'}, path {got['path']}")


@shards_app.command("copy")
def copy(library: Path = typer.Argument(..., help="sharded library directory"),
         shard: int = typer.Option(..., help="shard number, 0..N-1"),
         path: str = typer.Option(..., help="the copy's directory (on NODE when given)"),
         node: str | None = typer.Option(None, help="Ray node id or address to copy to (none: written by this "
                                                    "process, e.g. to shared storage)"),
         ray_address: str | None = typer.Option(None, help="the Ray cluster (auto | HOST:PORT); needed with --node"),
         as_json: bool = typer.Option(False, "--json", help="print the result as JSON only")) -> None:
    """Copy SHARD of LIBRARY (its committed generation, checked file by file) to PATH on NODE through Ray,
    then place it there: the next query's actor opens the copy. Copying again sends only changed files."""
    from ..library.copies import copy_shard
    from ..library.shards import ShardedLibrary
    lib = ShardedLibrary.open(library, ray_address=ray_address)
    got = copy_shard(lib, shard, path=path, node=node)
    what = (f"{got['sent']} files sent ({got['bytes'] / 2**20:.1f} MiB), {got['linked']} linked from the earlier "
            "copy" if got["sent"] or got["linked"] else "already there")
    options.show(got, as_json, f"shard {shard}: generation {got['generation']} at {got['path']} on node "
                               f"{got['node'] or '(shared storage)'}: {what}")


@shards_app.command("where")
def where(library: Path = typer.Argument(..., help="sharded library directory"),
          ray_address: str = typer.Option("auto", help="the Ray cluster: auto | HOST:PORT"),
          as_json: bool = typer.Option(False, "--json", help="print JSON only")) -> None:
    """Start (or find) LIBRARY's shard actors on the cluster and say which node each runs on."""
    from ..library.shards import ShardedLibrary
    lib = ShardedLibrary.open(library, ray_address=ray_address)
    nodes = lib.cluster.nodes()
    rows = [{"shard": s, "actor": lib.cluster.names[s], "node": nodes[s], "placed": lib.placement(s)}
            for s in range(lib.n)]
    options.show(rows, as_json, "\n".join(f"shard {r['shard']}: actor {r['actor']} on node {r['node']} "
                                          f"(path {r['placed']['path']})" for r in rows))


@shards_app.command("stop")
def stop(library: Path = typer.Argument(..., help="sharded library directory"),
         ray_address: str = typer.Option("auto", help="the Ray cluster: auto | HOST:PORT")) -> None:
    """Stop LIBRARY's shard actors on the cluster (detached: they otherwise serve until the cluster stops)."""
    from ..library.shards import ShardedLibrary
    lib = ShardedLibrary.open(library, ray_address=ray_address)
    lib.cluster.stop()
    typer.echo(f"stopped {lib.n} shard actors of {library}", err=True)
