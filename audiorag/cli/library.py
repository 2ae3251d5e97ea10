"""Commands that make and look after a library: build, remove, info, check."""

from __future__ import annotations

import math
import re
from pathlib import Path

import typer

from ..errors import AudioragError, ParameterError
from . import options
from ._app import app


@app.command()
def build(library: Path = typer.Argument(..., help="library directory (created if missing)"),
          dataset: str = typer.Option("synthetic", help="synthetic[:N[:SEED]] or folder:PATH"),
          labels: Path | None = typer.Option(None, help="CSV with a 'path' column + metadata columns"),
          label_from_folder: bool = typer.Option(False, help="folder datasets: label = first sub-folder"),
          label_regex: str | None = typer.Option(None, help="folder datasets: label = first group of this "
                                                    "regex on the file name, e.g. '^([a-z]+)_'"),
          fma_root: Path | None = typer.Option(None, help="fma:SUBSET datasets: where `data fetch` put FMA"),
          embedder: list[str] = typer.Option(["features45"], help="embedder NAME[:key=value,...] (repeatable), "
                                             "e.g. mert:layer=all or clap:model=/models/clap-htsat-unfused"),
          window: float | None = typer.Option(None, help="window length, seconds (new library: 10; "
                                                 "an existing one keeps its own)"),
          hop: float | None = typer.Option(None, help="hop between windows, seconds (new library: 2)"),
          tail: str | None = typer.Option(None, help="drop | pad | keep-short (new library: keep-short)"),
          loudness: float | None = typer.Option(None, help="level every track, and every query clip, to this "
                                                "integrated loudness (LUFS, ITU-R BS.1770; e.g. -23) before "
                                                "embedding (new library; an existing one keeps its own)"),
          denoise: bool = typer.Option(False, "--denoise", help="reduce steady noise (spectral gating) in every "
                                       "track and query clip before embedding (new library)"),
          index: list[str] = typer.Option(["Flat"], help="FAISS factory string, or auto (repeatable)"),
          max_memory: str | None = typer.Option(None, help="auto: memory budget of the index, e.g. 640MB, 2GB"),
          max_resident: str | None = typer.Option(None, help="auto: RAM budget of the index, e.g. 640MB; "
                                                  "may re-rank compressed codes from the vectors on disk"),
          target_recall: float = typer.Option(0.95, help="recall@10 the search parameters are tuned to"),
          workers: int | None = typer.Option(None, help="worker processes (default: all cores)"),
          engine: str = typer.Option("local", help="local (this machine) | ray (Ray workers; docs/cluster.md)"),
          ray_address: str | None = typer.Option(None, help="--engine ray: auto or HOST:PORT of a running cluster "
                                                            "(default: start a local Ray)"),
          fingerprint: bool = typer.Option(False, "--fingerprint", help="also keep landmark fingerprints "
                                           "(for `audiorag identify`; later builds keep them up to date)"),
          stems: str | None = typer.Option(None, help="hpss: also embed each track's harmonic and percussive stems "
                                                      "with every --embedder (NAME@harmonic, NAME@percussive); "
                                                      "demucs: its drums, bass, vocals, other (NAME@drums ...)"),
          demucs_model: str | None = typer.Option(None, help="--stems demucs: model name (default htdemucs); "
                                                  "weights found offline (docs/describe.md#stems)"),
          demucs_repo: Path | None = typer.Option(None, help="--stems demucs: folder with the model's *.th and "
                                                  "bag *.yaml (default: $AUDIORAG_DEMUCS_REPO, then the caches)"),
          shards: int | None = typer.Option(None, help="a sharded library of N shards built in parallel "
                                                       "(docs/shards.md); an existing one keeps its N"),
          wait: bool = typer.Option(False, "--wait", help=options.WAIT_HELP),
          as_json: bool = typer.Option(False, "--json", help="print the build report as JSON only")):
    """Add a dataset's new files to LIBRARY, embed them, and (re)build indexes."""
    from ..datasets import resolve
    from ..library import Library
    from ..library.shards import is_sharded, open_library
    from ..segment import TAIL_POLICIES, Segmentation
    # every option first: a bad value must not cost a whole build
    if (library / "library.json").exists() or is_sharded(library):  # an existing one keeps its segmentation
        seg = open_library(library).segmentation
        window, hop = options.given(window, seg.window), options.given(hop, seg.hop)
        tail = options.given(tail, seg.tail)
    window, hop, tail = options.given(window, 10.0), options.given(hop, 2.0), options.given(tail, "keep-short")
    options.number("--window", window, above=0, unit=" (seconds)")
    options.number("--hop", hop, above=0, unit=" (seconds)")
    options.choice("--tail", tail, TAIL_POLICIES)
    try:
        Segmentation(window=window, hop=hop, tail=tail)
    except ParameterError as exc:
        reason = str(exc).removeprefix("Segmentation: ")
        raise ParameterError(f"--window {window:g} / --hop {hop:g}: {reason}") from None
    conditioning = _conditioning(loudness, denoise)
    options.number("--target-recall", target_recall, above=0, maximum=1)
    if workers is not None and workers < 1:
        raise ParameterError(f"--workers must be >= 1, got {workers}")
    _engine_options(engine, ray_address)
    budget = _bytes(max_memory) if max_memory else None
    resident = _bytes(max_resident, "--max-resident") if max_resident else None
    recipe = {"labels": labels, "label_from_folder": label_from_folder, "label_regex": label_regex, "root": fma_root}
    source = resolve(dataset, **{k: v for k, v in recipe.items() if v})
    from ..embedders.stems import with_stems
    embedders = with_stems(options.embedders("--embedder", embedder), stems, model=demucs_model, repo=demucs_repo)
    _check_factories(index, embedders)
    options.output_dir("LIBRARY", library)
    if shards is not None or is_sharded(library):  # a sharded library (cli/shards.py)
        if conditioning is not None:
            raise ParameterError("--loudness / --denoise: not for a sharded library (build one library)")
        from .shards import build_sharded
        return build_sharded(library, shards, source, embedders, index, window=window, hop=hop, tail=tail,
                             workers=workers, max_memory=budget, max_resident=resident, target_recall=target_recall,
                             fingerprint=fingerprint, as_json=as_json, engine=engine, ray_address=ray_address)

    lib = Library.create(library, window=window, hop=hop, tail=tail, exist_ok=True, conditioning=conditioning,
                         **options.open_kw(wait))
    report = lib.add(source, embedders=embedders, workers=workers, progress=not as_json, fingerprint=fingerprint,
                     engine=engine, ray_address=ray_address)
    if len(lib.tracks) == 0:
        first = f"; first: {report.errors[0]['uri']}: {report.errors[0]['message']}" if report.errors else ""
        raise AudioragError(f"no track could be added from {dataset!r}: {report.summary()}{first} "
                            "— check the files (`audiorag info LIBRARY` lists every failure)")
    sidecars = [_current_index(lib, e.key, f) or lib.build_index(e.key, f, max_memory=budget,
                                                                  target_recall=target_recall, max_resident=resident)
                for e in embedders for f in index]
    out = {**report.__dict__, "library": str(library),
           "indexes": [{k: s[k] for k in ("name", "factory", "n", "build_seconds")} for s in sidecars]}
    lines = [report.summary()] + [f"  {e['uri']}: [{e['stage']}] {e['message']}" for e in report.errors]
    lines += [f"index {s['name']} ({s['factory']}): {s['n']} vectors, built in {s['build_seconds']:.2f}s"
              for s in sidecars]
    options.show(out, as_json, "\n".join(lines))


def _conditioning(loudness: float | None, denoise: bool):
    """The conditioning asked for (None: none given); a number out of range is one line naming the option."""
    from ..descriptors.conditioning import LOUDNESS_RANGE, Conditioning
    if loudness is None and not denoise:
        return None
    if loudness is not None:
        options.number("--loudness", loudness, minimum=LOUDNESS_RANGE[0], maximum=LOUDNESS_RANGE[1], unit=" (LUFS)")
    return Conditioning(loudness=loudness, denoise=denoise)


def _engine_options(engine: str, ray_address: str | None) -> None:
    """``--engine`` and ``--ray-address``; ``--engine ray`` needs ray installed (checked before any work)."""
    options.choice("--engine", engine, ["local", "ray"])
    if ray_address is not None:
        if engine != "ray":
            raise ParameterError("--ray-address needs --engine ray")
        if ray_address != "auto" and not re.fullmatch(r"[\w.\-]+:\d{1,5}", ray_address):
            raise ParameterError(f"--ray-address must be auto or HOST:PORT, got {ray_address!r}")
    if engine == "ray":
        from ..engines.ray import check_address, require_ray
        require_ray()
        check_address(ray_address)


def _check_factories(factories: list[str], embedders: list) -> None:
    """Each ``--index`` factory string must be one FAISS accepts for each embedder's dimension."""
    from ..index.factory import empty_index
    from ..index.refine import base_factory
    for f in factories:
        if f == "auto":
            continue
        for e in embedders:
            dim = getattr(e, "dim", None)
            if isinstance(dim, int) and dim > 0:
                try:
                    empty_index(base_factory(f), dim)
                except ParameterError as exc:  # FAISS's message starts with a C++ signature: keep its reason
                    reason = re.sub(r"Error in .*? at \S+:\d+: ", "", str(exc))
                    raise ParameterError(f"--index {f!r}: {reason}") from None


def _bytes(text: str, option: str = "--max-memory") -> float:
    """``"640MB"`` → 6.4e8; plain numbers are bytes.

    >>> _bytes("640MB"), _bytes("2 GiB")
    (640000000.0, 2000000000.0)
    """
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)I?B?\s*", text.upper())
    try:
        value = float(m.group(1)) if m else None
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        raise ParameterError(f"{option}: expected a size like 640MB or 2GB, got {text!r}")
    return value * 1000 ** " KMGT".index(m.group(2) or " ")


def _current_index(lib, embedding: str, factory: str):
    """The sidecar of an up-to-date index of that name (kept in step by add/remove), else None."""
    from ..index import index_name
    from ..library.indexes import load_index
    try:
        return load_index(lib, lib.embedding(embedding), index_name(factory)).sidecar
    except AudioragError:
        return None


@app.command()
def remove(library: Path = typer.Argument(..., help="library directory"),
           track_id: list[int] = typer.Argument(..., help="track ids to remove"),
           wait: bool = typer.Option(False, "--wait", help=options.WAIT_HELP),
           as_json: bool = typer.Option(False, "--json", help="print as JSON only")):
    """Remove tracks from LIBRARY: their segments leave every index (updated in place where it can)."""
    from ..library import Library
    n = Library.open(library, **options.open_kw(wait)).remove(track_id)
    options.show({"removed": n}, as_json, f"removed {n} tracks")


@app.command()
def info(library: Path = typer.Argument(..., help="library directory"),
         memory: bool = typer.Option(False, help="open every index memory-mapped and report resident memory"),
         as_json: bool = typer.Option(False, "--json", help="print as JSON only")):
    """Describe LIBRARY: segmentation, counts, embeddings, indexes (measured recall, latency, size), errors."""
    from ..library import Library
    from ..library.shards import is_sharded
    if is_sharded(library):  # cli/shards.py
        from .shards import info_sharded
        return info_sharded(library, memory, as_json)
    d = Library.open(library).info(memory=memory)
    lines = [f"library {d['path']} (format {d['format_version']}, dataset {d['dataset']})",
             f"segmentation: window {d['segmentation']['window']}s, hop {d['segmentation']['hop']}s, "
             f"tail {d['segmentation']['tail']}",
             f"{d['tracks']} tracks ({d['hours']} h), {d['segments']} segments, {d['errors']} failed items"
             + (f", {len(d['duplicates'])} duplicate files not added" if d["duplicates"] else "")
             + (f", {d['short_tails']} files accepted with a short tail" if d["short_tails"] else "")]
    lines += [f"  {x['uri']}: duplicate of {x['of']}" for x in d["duplicates"]]
    for e in d["embeddings"]:
        default = " (default: used when --embedder is not given)" if e["key"] == d.get("default_embedding") else ""
        lines.append(f"embedding {e['key']}{default}: dim {e['dim']}, {e['n_segments']} vectors, "
                     f"{e['missing_tracks']} tracks missing")
        lines += [options.index_line(i) for i in e["indexes"]]
    if d.get("fingerprints"):
        f = d["fingerprints"]
        lines.append(f"fingerprints: {f['tracks']} tracks ({f['hours']} h), {f['postings']} landmarks, "
                     f"{f['bytes'] / 1e6:.1f} MB (docs/identify.md)")
    if memory:
        lines.append(f"process resident memory {d['resident_bytes'] / 1e6:.1f} MB")
    options.show(d, as_json, "\n".join(lines))


@app.command()
def default(library: Path = typer.Argument(..., help="library directory"),
            embedder: str = typer.Argument(None, help="embedding key or name to make the default (none: show it)"),
            wait: bool = typer.Option(False, "--wait", help=options.WAIT_HELP),
            as_json: bool = typer.Option(False, "--json", help="print as JSON only")):
    """Show or set LIBRARY's default embedding: the one search, eval, analyse, the notebooks and the
    server use when no embedder is named (the first one built, until set here)."""
    from ..library import Library
    lib = Library.open(library, **options.open_kw(wait))
    key = lib.set_default_embedding(embedder) if embedder else lib.default_embedding
    options.show({"library": str(library), "default_embedding": key}, as_json,
           f"{library}: default embedding {key or 'none (no embedding yet)'}")


@app.command()
def check(library: Path = typer.Argument(..., help="library directory"),
          repair: bool = typer.Option(False, "--repair", help="rebuild what can be derived (vectors, indexes, an "
                                                              "interrupted build's consolidation)"),
          to: str | None = typer.Option(None, "--to", help="make this complete generation current (e.g. "
                                        "gen-000004); newer ones are kept beside it as gen-NNNNNN.kept"),
          wait: bool = typer.Option(False, "--wait", help=options.WAIT_HELP),
          as_json: bool = typer.Option(False, "--json", help="print the problems as JSON only")):
    """Verify LIBRARY: CURRENT and its generations, files against the manifest, tables, arrays, indexes.
    One line per problem and per removal; exit status 0 when none remain, 1 when some do."""
    from ..library.check import check_path
    problems = check_path(library, repair=repair, to=to, **options.open_kw(wait))
    remaining = [p for p in problems if not p.get("repaired")]
    lines = [f"{p.get('file', '?')}: {p.get('problem', '?')}"
             + {True: " — repaired", False: " — cannot be repaired", None: ""}.get(p.get("repaired"), "")
             for p in problems]
    if not problems:
        lines = [f"{library}: no problems found"]
    elif remaining and not repair:
        lines.append(f"{len(remaining)} problem(s); `audiorag check {library} --repair` rebuilds what can be derived")
    elif remaining:
        lines.append(f"{len(remaining)} problem(s) remain; re-run the build for what cannot be derived")
    options.show({"library": str(library), "problems": problems, "remaining": len(remaining)}, as_json,
                 "\n".join(lines))
    if remaining:
        raise typer.Exit(1)

