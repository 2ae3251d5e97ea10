"""Tables of measured numbers in ``docs/`` (and the README), generated from committed result records.

    python -m audiorag.report            # rewrite every table between its markers (also: make docs)
    python -m audiorag.report --check    # exit 1 when a table differs from what the records give
    python -m audiorag.report --collect experiments/results/default   # a sweep's cell records → default-sweep/

A generated table sits between ``<!-- report:NAME -->`` and ``<!-- /report -->`` in a Markdown file;
:data:`SECTIONS` maps each NAME to the function that renders it from the records under
``experiments/results/`` (small JSON files, tracked in git). Every table ends with the records it was
read from, so a number can always be traced to the run and the command that produced it.

A sweep's records stay in its output directory, where ``audiorag sweep`` treats a cell with a
``metrics.json`` as done; ``--collect`` copies them to ``experiments/results/<name>-sweep/<cell>.json``,
the curated copy that is committed (so a fresh clone's ``make demo`` still runs every cell).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

RESULTS = Path("experiments") / "results"
PAGES = ("README.md", "docs/*.md")
MARKER = re.compile(r"(<!-- report:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /report -->)", re.S)

# the default sweep (make demo): its cells in the order of experiments/default.yaml
SWEEP_EMBEDDERS = ("features45", "musicnn-mtt", "aisfx")
SWEEP_INDEXES = ("flat", "hnsw32")
SWEEP_CELL = "{e}-{i}-w10-h2-genre-xartist"
SWEEP_RECORDS = "default-sweep"
SONIC_PI = "python benchmarks/sonic_pi.py --out experiments/results/sonic-pi/sonic-pi.json"
COLLECT = "make demo; python -m audiorag.report --collect experiments/results/default"
INGEST = "python benchmarks/ingest.py [--as mp3] --out experiments/results/ingest-bench/FORMAT.json"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _source(*paths: str, command: str | None = None, how: str | None = None) -> str:
    src = ", ".join(f"`{p}`" for p in paths)
    written = f", written by `{command}`" if command else f", written by {how}" if how else ""
    return f"\n\n<sub>From {src}{written}.</sub>"


def _missing(what: str, command: str) -> str:
    return f"*No record yet: run `{command}` then `make docs`.* ({what})"


def _read(root: Path, rel: str) -> dict | None:
    path = root / RESULTS / rel
    return json.loads(path.read_text()) if path.exists() else None


def _records(root: Path, pattern: str) -> list[tuple[str, dict]]:
    return [(p.relative_to(root).as_posix(), json.loads(p.read_text()))
            for p in sorted((root / RESULTS).glob(pattern))]


def _f(v, digits: int = 3) -> str:
    return "–" if v is None or v != v else f"{v:.{digits}f}"


# ---------------------------------------------------------------------------------------------- sections


def sweep(root: Path) -> str:
    """The default sweep (``make demo``), one row per cell, from each cell's ``metrics.json``."""
    cols = [("segment/P@10", 4), ("track/P@10", 4), ("segment/mAP", 4), ("moment/accuracy", 4),
            ("latency/p50_ms", 2), ("memory/index_bytes_per_segment", 0), ("cluster/silhouette", 3),
            ("cluster/purity", 3), ("cluster/nmi", 3)]
    rows, used = [], []
    for e in SWEEP_EMBEDDERS:
        for i in SWEEP_INDEXES:
            rel = f"{SWEEP_RECORDS}/{SWEEP_CELL.format(e=e, i=i)}.json"
            rec = _read(root, rel)
            if rec is None:
                continue
            used.append(rel)
            m = rec["metrics"]
            rows.append([f"`{e}`", i.upper() if i == "hnsw32" else "Flat", *(_f(m.get(c), d) for c, d in cols)])
    if not rows:
        return _missing("default sweep", COLLECT)
    chance = _read(root, used[0])["metrics"].get("chance/P")
    header = ["embedder", "index", "segment P@10", "track P@10", "segment mAP", "moment accuracy",
              "latency p50 ms", "index B/segment", "silhouette", "purity", "NMI"]
    return (_table(header, rows) + f"\n\nChance level of P: {_f(chance, 3)} (every cell)."
            + _source(f"experiments/results/{SWEEP_RECORDS}/*.json", command=COLLECT))


def eval_example(root: Path) -> str:
    """One evaluation record in full: features45, Flat, artist-disjoint, on the default corpus."""
    rel = f"{SWEEP_RECORDS}/" + SWEEP_CELL.format(e="features45", i="flat") + ".json"
    rec = _read(root, rel)
    if rec is None:
        return _missing("features45 Flat cell of the default sweep", COLLECT)
    m = rec["metrics"]
    rows = [[level, *(_f(m.get(f"{level}/{k}"), 4) for k in ("P@1", "P@5", "P@10", "mAP", "nDCG@10", "MRR"))]
            for level in ("segment", "track")]
    p = rec["protocol"]
    text = _table(["level", "P@1", "P@5", "P@10", "mAP", "nDCG@10", "MRR"], rows)
    text += (f"\n\n{rec['timings']['n_queries']:,} queries (label = {p['label']}, same track and "
             f"{' + '.join(p['exclude_same']) or 'nothing else'} excluded), embedding `{rec['embedder']['key']}`, "
             f"index `{rec['index']['factory']}`. Chance P = {_f(m['chance/P'], 4)}; moment accuracy "
             f"(±{m['moment/tolerance_s']:g} s) {_f(m['moment/accuracy'], 2)}; latency p50 / p95 / p99 "
             f"{_f(m['latency/p50_ms'], 2)} / {_f(m['latency/p95_ms'], 2)} / {_f(m['latency/p99_ms'], 2)} ms.")
    return text + _source(f"experiments/results/{rel}", command=COLLECT)


def index_table(records: list[dict]) -> str:
    """The index benchmark's records as one Markdown table (also ``benchmarks/index.py --table``)."""
    rows = []
    for rec in sorted(records, key=lambda r: r["n"]):
        for r in rec["results"]:
            params = ", ".join(f"{k}={v}" for k, v in r["search_params"].items()) or "–"
            rows.append([f"{rec['n']:,}", r["dim"], f"`{r['factory']}`", f"{r['recall@10']:.3f}", params,
                         f"{r['latency_p50_ms']:.2f}", f"{r['latency_p99_ms']:.2f}", f"{r['batch_qps']:,.0f}",
                         f"{r['bytes_per_segment']:.0f}", f"{r['build_seconds']:.0f}"])
    header = ["n", "dim", "index", "recall@10", "search params", "p50 ms", "p99 ms", "batched q/s", "B/segment",
              "build s"]
    return _table(header, rows)


def index_bench(root: Path) -> str:
    """Every index family at 10⁵–10⁷ vectors (``benchmarks/index.py``)."""
    recs = _records(root, "index-bench/index-n*.json")
    if not recs:
        return _missing("index benchmark", "python benchmarks/index.py --n 100000")
    return index_table([r for _, r in recs]) + _source("experiments/results/index-bench/index-n*.json",
                                                        command="python benchmarks/index.py --n N")


def exact_bench(root: Path) -> str:
    """Exact search of one query: Flat against certified half-precision codes (``benchmarks/exact.py``)."""
    recs = _records(root, "index-bench/exact-n*.json")
    if not recs:
        return _missing("exact search", "python benchmarks/exact.py")
    rows = []
    for _, rec in sorted(recs, key=lambda r: (r[1]["n"], r[1]["dim"])):
        flat = next(r for r in rec["results"] if r["index"] == "Flat")
        for r in rec["results"]:
            rows.append([f"{rec['n']:,} × {rec['dim']}", f"`{r['index']}`", f"{r['bytes_per_segment']:,}",
                         f"{r['exact_queries']:,} / {rec['queries']:,}", f"{r['latency_p50_ms']:.2f}",
                         f"{r['latency_p99_ms']:.2f}", f"{r['cpu_p50_ms']:.2f}",
                         f"{flat['latency_p50_ms'] / r['latency_p50_ms']:.2f}×"])
    last = recs[-1][1]
    return (_table(["n × dim", "index", "B/vector", "exact top-10", "p50 ms", "p99 ms", "CPU p50 ms", "vs Flat (p50)"],
                   rows)
            + f"\n\nOne query at a time, FAISS on one thread, {last['queries']:,} queries × {last['rounds']} "
              f"interleaved passes; `SQfp16,Refine` at `k_factor` {last['k_factor']} widened "
              f"{last['widened_queries']} of {last['queries']:,} queries; load {last['load_1min']:.1f} at the end."
            + _source("experiments/results/index-bench/exact-n*.json", command="python benchmarks/exact.py"))


def refine_bench(root: Path) -> str:
    """Refined indexes: codes in RAM re-ranked from vectors on disk (``benchmarks/index.py --refine``)."""
    recs = _records(root, "index-bench/index-refine-n*.json")
    if not recs:
        return _missing("refined indexes", "python benchmarks/index.py --n 1000000 --dims 512 --refine")
    rows = []
    for _, rec in sorted(recs, key=lambda r: r[1]["n"]):
        for r in rec["results"]:
            w, c, p = r["warm"], r["cold"], r["search_params"]
            rows.append([f"{rec['n']:,} × {r['dim']}", f"`{r['factory']}`",
                         f"{r['resident_bytes_per_segment']:.1f} (+ {r['disk_bytes_per_segment']:,} on disk)",
                         f"{r['unrefined']['recall@10']:.3f}", f"**{w['recall@10']:.3f}**",
                         f"{p['nprobe']}, {p['k_factor']}", f"{w['latency_p50_ms']:.2f} / {w['latency_p99_ms']:.2f}",
                         f"{c['latency_p50_ms']:.1f} / {c['latency_p99_ms']:.1f}",
                         f"{c['read_bytes_per_query'] / 1e3:,.0f} kB ({c['pages_touched_per_query']:.0f} pages)",
                         rec["machine"]["faiss_threads"], f"{w['load_1min']:.1f}"])
    text = _table(["n", "index", "B/segment resident", "recall@10 alone", "refined recall@10", "nprobe, k_factor",
                   "warm p50 / p99 ms", "cold p50 / p99 ms", "read per cold query", "FAISS threads", "load"], rows)
    return text + _source("experiments/results/index-bench/index-refine-n*.json",
                          command="python benchmarks/index.py --n N --dims 512 --refine --families F")


def fanout_bench(root: Path) -> str:
    """Search latency of a sharded library vs its shard count (``benchmarks/shards.py``)."""
    rec = _read(root, "shards-bench/fanout.json")
    if rec is None:
        return _missing("fan-out latency", "python benchmarks/shards.py")
    factories = list(dict.fromkeys(r["factory"] for r in rec["rows"]))
    cell = {(r["factory"], r["shards"]): r for r in rec["rows"]}
    rows = [[n] + [f"{cell[f, n]['p50_ms']:.2f} / {cell[f, n]['p99_ms']:.2f} ({cell[f, n]['recall@10']:.3f})"
                   if (f, n) in cell else "–" for f in factories]
            for n in sorted({r["shards"] for r in rec["rows"]})]
    text = _table(["shards"] + [f"`{f}` p50 / p99 ms (recall@10)" for f in factories], rows)
    text += (f"\n\n{rec['n']:,} vectors × {rec['dim']}-D, {rec['queries']} single queries, k = {rec['k']}, "
             f"{rec['cores']} cores; load average (1, 5, 15 min) before {_f(rec['loadavg_before'][0], 1)}, "
             f"{_f(rec['loadavg_before'][1], 1)}, {_f(rec['loadavg_before'][2], 1)}, after "
             f"{_f(rec['loadavg_after'][0], 1)}.")
    return text + _source("experiments/results/shards-bench/fanout.json", command="python benchmarks/shards.py")


def cluster_bench(root: Path) -> str:
    """Fan-out through Ray shard actors vs local threads, 1, 2, 4 shards (``benchmarks/cluster.py``)."""
    rec = _read(root, "shards-bench/cluster.json")
    if rec is None:
        return _missing("Ray shard actors", "python benchmarks/cluster.py")
    qps = f"throughput_qps_{rec['threads']}_threads"
    rows = [[r["shards"], how, f"{r[how]['index_p50_ms']:.2f} / {r[how]['index_p99_ms']:.2f}",
             f"{r[how]['search_p50_ms']:.2f} / {r[how]['search_p99_ms']:.2f}", f"{r[how][qps]:,.0f}",
             f"{r['first_ray_query_s']:.1f} s" if how == "ray" else "–"]
            for r in rec["rows"] for how in ("local", "ray")]
    text = _table(["shards", "fan-out", "index p50 / p99 ms", "`search()` p50 / p99 ms",
                   f"queries/s ({rec['threads']} threads)", "first query (actors start)"], rows)
    text += (f"\n\n{rec['rows'][0]['segments']:,} moments ({rec['tracks']} generated tracks), {rec['queries']} moment "
             f"queries, k = {rec['k']}, {rec['cores']} cores; Ray started once ({rec['ray_start_s']:.0f} s); load "
             f"average (1, 5, 15 min) before {_f(rec['loadavg_before'][0], 1)}, {_f(rec['loadavg_before'][1], 1)}, "
             f"{_f(rec['loadavg_before'][2], 1)}, after {_f(rec['loadavg_after'][0], 1)}.")
    return text + _source("experiments/results/shards-bench/cluster.json", command="python benchmarks/cluster.py")


def serve_load(root: Path) -> str:
    """Throughput and latency of ``audiorag serve`` per query and clients (``benchmarks/serve.py``), each beside
    one thread's in-process ``search()`` of the same query in the same run."""
    rec = _read(root, "serve-bench/serve.json")
    if rec is None:
        return _missing("REST API load", "python benchmarks/serve.py")
    base = rec["in_process"]
    cells = [(kind, cell) for kind, cs in rec["served"].items() for cell in cs]
    cells += [(f"{kind}, during a build", cell) for kind, cell in rec.get("during_build", {}).items()
              if kind != "builds"]
    rows = []
    for kind, c in cells:
        alone = base[kind.split(",")[0]]
        share = f"{100 * c['per_s'] / alone['per_s']:.0f} %" if alone.get("per_s") else "–"
        rows.append([kind, c["clients"], c["per_s"], share, c["p50_ms"], c["p99_ms"], c["errors"], alone["p50_ms"],
                     alone.get("per_s", "–"), c["load_after"][0]])
    text = _table(["query", "clients", "requests/s", "of in-process", "p50 ms", "p99 ms", "errors",
                   "in-process p50 ms", "in-process /s (1 thread)", "load (1 min)"], rows)
    text += (f"\n\n`{rec['embedding']}` (Flat), {rec['n_segments']:,} segments, {rec['workers']} server processes, "
             f"clients: {rec.get('client', 'python http.client threads')}, {rec['seconds_per_cell']:g} s per cell, "
             f"upload {rec['upload_bytes'] / 1e3:.0f} kB; text: `{rec.get('text_embedding')}`; run {rec['started']}, "
             f"load at start {rec['load_start']}.")
    return text + _source("experiments/results/serve-bench/serve.json", command="python benchmarks/serve.py")


def search_overhead(root: Path) -> str:
    """What ``search()`` adds to the raw FAISS call (``benchmarks/search.py``)."""
    rec = _read(root, "search-bench/overhead.json")
    if rec is None:
        return _missing("search overhead", "python benchmarks/search.py")
    raw = rec["p50_ms"]["raw"]
    rows = [[name, f"{p50:.3f} ms", f"{raw:.3f} ms", f"**{rec['overhead_ms'][name]:.3f} ms**"]
            for name, p50 in rec["p50_ms"].items() if name != "raw"]
    text = _table(["query", "search() p50", "raw FAISS p50", "overhead"], rows)
    text += (f"\n\n`{rec['embedding']}`, `{rec['index']}` index, {rec['n_segments']:,} segments, "
             f"{rec['queries']} moment queries, k = {rec['k']}.")
    return text + _source("experiments/results/search-bench/overhead.json", command="python benchmarks/search.py")


def ingest_bench(root: Path) -> str:
    """Decode only vs decode + features45 vs full ingest vs naive per-window features (``benchmarks/ingest.py``)."""
    recs = _records(root, "ingest-bench/*.json")
    if not recs:
        return _missing("ingest benchmark", INGEST)
    rows = []
    for _, r in recs:
        fmt = r["source"].rsplit(":", 1)[-1]
        what = {"flac": "FLAC 22.05 kHz mono", "mp3": "MP3 44.1 kHz stereo (FMA-like)"}.get(fmt, r["source"])
        features = r.get("features_rtf")  # records before the features-only pass lack it
        rows.append([what, f"{r['files']} × {r['audio_seconds'] / r['files']:.0f} s", f"{r['decode_rtf']:,.0f}×",
                     "–" if features is None else f"{features:,.0f}×",
                     f"**{r['ingest_rtf']:,.0f}×**", f"{r['naive_rtf']:,.0f}×",
                     _f(r.get("stft_over_decode"), 2), _f(r.get("features_over_decode"), 2),
                     f"{r['ingest_over_decode']:.2f}", f"{r['speedup_over_naive']:.1f}×", r["workers"],
                     _f(r.get("load_1min"), 1)])
    header = ["audio", "files", "decode only", "decode + features45", "full ingest", "naive per window",
              "STFT / decode time", "features / decode time", "ingest / decode time", "ingest vs naive", "workers",
              "load"]
    return (_table(header, rows) + "\n\nReal-time factors: audio seconds per wall second; load: the 1-minute load "
            "average when the record was written."
            + _source("experiments/results/ingest-bench/*.json", command=INGEST))


def embed_bench(root: Path) -> str:
    """Model embedders: forward pass alone vs full ingest (``benchmarks/embed.py``)."""
    recs = _records(root, "embed-bench/*.json")
    if not recs:
        return _missing("embed benchmark", "python benchmarks/embed.py --out experiments/results/embed-bench/NAME.json")
    weights = {"clap": "random, real size", "wav2vec2": "random, real size", "mert": "random, real size (`layer=all`)",
               "hubert": "random, real size", "clamp3": "random, real size (with MERT-v1-95M)",
               "ttmr": "random, real size"}
    rows = []
    for path, rec in recs:
        for r in rec["rows"]:
            text = "–" if r.get("text_query_ms") is None else f"{r['text_query_ms']:.0f} ms"
            rows.append([f"`{r['embedder']}`", weights.get(r["embedder"], "pretrained"), r["clips"],
                         f"{r['forward_clips_per_s']:.1f}", f"**{r['ingest_clips_per_s']:.1f}**",
                         f"{r['ingest_over_forward']:.2f}", text, f"`{path.rsplit('/', 1)[-1]}`"
                         + (f" (load {max(rec['load_average']):.0f})" if rec.get("load_average") else "")])
    header = ["embedder", "weights", "10 s clips", "forward clips/s", "ingest clips/s", "ingest / forward",
              "text query", "record"]
    return _table(header, rows) + _source("experiments/results/embed-bench/*.json",
                                          command="python benchmarks/embed.py --embedders … --tracks N --out …")


def sonic_pi(root: Path) -> str:
    """Retrieval on the sonic-pi samples (``benchmarks/sonic_pi.py``)."""
    rec = _read(root, "sonic-pi/sonic-pi.json")
    if rec is None:
        return _missing("sonic-pi benchmark", SONIC_PI)
    rows = [[f"`{name}`", *(_f(m[k], 4) for k in ("segment/P@10", "track/P@10", "segment/mAP", "chance/P"))]
            for name, m in rec["metrics"].items()]
    text = _table(["embedder", "segment P@10", "track P@10", "segment mAP", "chance"], rows)
    if "tracks" in rec:
        text += (f"\n\n{rec['tracks']} samples, {rec['labels']} categories, {rec['segments']:,} windows of "
                 f"{rec.get('window', 3):g} s every {rec.get('hop', 1.5):g} s.")
    return text + _source("experiments/results/sonic-pi/sonic-pi.json", command=SONIC_PI)


def sonic_pi_analysis(root: Path) -> str:
    """Clusters, outliers and kNN tagging on the sonic-pi samples (notebook 04 per embedder)."""
    rec = _read(root, "sonic-pi/sonic-pi.json")
    if rec is None or not rec.get("analysis"):
        return _missing("sonic-pi analysis", SONIC_PI)
    cols = [("cluster/best_k", 0), ("cluster/best_k_silhouette", 3), ("cluster/kmeans:14/silhouette", 3),
            ("cluster/kmeans:14/purity", 3), ("cluster/kmeans:14/nmi", 3), ("cluster/hdbscan/nmi", 3),
            ("anomaly/iforest/precision@N", 2), ("anomaly/knn/precision@N", 2), ("tagging/precision", 3),
            ("tagging/coverage", 3)]
    rows = [[f"`{name}`", *(_f(m.get(c), d) for c, d in cols)] for name, m in rec["analysis"].items()]
    header = ["embedder", "best k (2–20)", "its silhouette", "KMeans k=14 silhouette", "purity", "NMI", "HDBSCAN NMI",
              "injected outliers: IsolationForest", "kNN distance", "kNN tagging precision", "coverage"]
    return _table(header, rows) + _source("experiments/results/sonic-pi/sonic-pi.json", command=SONIC_PI)


def sonic_pi_tags(root: Path) -> str:
    """musicnn-mtt's top tags for a few named sonic-pi samples."""
    rec = _read(root, "sonic-pi/sonic-pi.json")
    if rec is None or not rec.get("tags"):
        return _missing("sonic-pi tags", SONIC_PI)
    rows = [[f"`{stem}`", ", ".join(f"{t} {p:.2f}" for t, p in tags.items())] for stem, tags in rec["tags"].items()]
    return _table(["sample", "top tags (mean probability over its windows)"], rows) + _source(
        "experiments/results/sonic-pi/sonic-pi.json", command=SONIC_PI)


def seeds(root: Path) -> str:
    """S0–S4: which seed write-up each name stands for."""
    from .evaluate.reported import seeds_table
    t = seeds_table()
    return _table(list(t.columns), t.values.tolist())


def claims(root: Path) -> str:
    """Every figure the seeds report beside audiorag's measurement (:mod:`audiorag.evaluate.reported`)."""
    from .evaluate.reported import claims_table, load_measurements
    t = claims_table(load_measurements(root / RESULTS))
    return _table(list(t.columns), t.values.tolist()) + _source(
        "experiments/results/reported/metrics.json", "index-bench/", "embed-bench/", f"{SWEEP_RECORDS}/", "sonic-pi/",
        "track-vectors/", "conditioning/",
        how="notebook 05 and the benchmarks ([how it is measured](#how-it-is-measured))")


def scale_plan(root: Path) -> str:
    """Layouts for FMA full, 10⁸ and 10⁹ segments from measured figures (``benchmarks/scale.py plan``)."""
    rec = _read(root, "scale/plan.json")
    if rec is None:
        return _missing("scale plan", "python benchmarks/scale.py plan --out experiments/results/scale/plan.json")
    m, mach = rec["inputs"], rec["inputs"]["machine"]
    days = rec["ingest_days"]
    inputs = [
        ["ingest rate", f"{m['windows_per_core_s']:.2f} windows/s per core (`{m['embedder']}`, 10 s windows)",
         f"`{m['embed_record']}`"],
        ["Ray's efficiency", f"{m['ray_efficiency']:.3f} (local ÷ Ray build time, capped at 1)",
         f"`{m['ray_record']}`"],
        ["shard size", f"{m['shard_segments']:,} segments (the measured size: no extrapolation per shard)",
         f"`{m['index_record']}`"],
        ["index", f"`{m['factory']}`: recall@10 {m['recall@10']:.3f}, {m['resident_b']:.1f} B/segment resident, "
                  f"{m['vectors_disk_b']:,.0f} B/segment on disk", f"`{m['index_record']}`"],
        ["shard p99", f"warm {m['warm_p99_ms']:.2f} ms, cold {m['cold_p99_ms']:.2f} ms "
                      f"({m['cold_read_b'] / 1e3:,.0f} kB read per cold query)", f"`{m['index_record']}`"],
        ["fan-out", f"{m['fanout_ms_per_shard']:.3f} ms per extra shard (p50 growth, Flat shards of the same vectors)",
         f"`{m['fanout_record']}`"],
        ["Ray hop", f"{m['ray_hop_p50_ms']:.2f} ms p50, {m['ray_hop_p99_ms']:.2f} ms p99 per query to a shard actor "
                    "(paid once, in parallel, when the shards span machines)", f"`{m['cluster_record']}`"],
        ["tables", f"{m['tables']['ram_b']:.0f} B/segment in RAM, {m['tables']['disk_b']:.0f} B/segment on disk",
         f"`{m['tables']['library']}`"],
        ["machine", f"{mach['cores']} cores, {mach['ram_b'] / 2**30:.0f} GiB RAM, {mach['disk_b'] / 1e9:.0f} GB disk; "
                    f"a layout fills ≤ {rec['usable_share']:.0%} of RAM and disk", "this machine"],
    ]
    rows = [[name, f"{r['segments']:,}", r["shards"], f"{r['ram_per_shard_b'] / 1e9:.2f} GB",
             f"{r['disk_per_shard_b'] / 1e9:.0f} GB", f"{r['machines']} ({r['shards_per_machine']} shards each, "
             f"{r['limit']}-bound)", f"{r['warm_p99_ms']:.1f} / {r['cold_p99_ms']:.1f} ms",
             f"{r['ingest_core_hours']:,.0f}", f"{r['ingest_days_on_serving_machines']:,.1f}",
             r[f"ingest_machines_for_{days}_days"]]
            for name, r in rec["layouts"].items()]
    text = _table(["input", "value", "record"], inputs) + "\n\n"
    text += _table(["workload", "segments", "shards", "RAM/shard", "disk/shard", "serving machines",
                    "query p99 warm / cold", "ingest core-hours", "ingest days on those machines",
                    f"machines to ingest in {days} days"], rows)
    return text + _source("experiments/results/scale/plan.json", command=rec["command"])


SECTIONS = {"sweep": sweep, "eval-example": eval_example, "index-bench": index_bench,
            "refine-bench": refine_bench, "exact-bench": exact_bench, "fanout-bench": fanout_bench,
            "cluster-bench": cluster_bench,
            "search-overhead": search_overhead, "ingest-bench": ingest_bench, "embed-bench": embed_bench,
            "serve-load": serve_load,
            "sonic-pi": sonic_pi, "sonic-pi-analysis": sonic_pi_analysis, "sonic-pi-tags": sonic_pi_tags,
            "seeds": seeds, "claims": claims, "scale-plan": scale_plan}


# ---------------------------------------------------------------------------------------------- pages


def pages(root: Path) -> list[Path]:
    return sorted({p for pattern in PAGES for p in root.glob(pattern)})


def render(text: str, root: Path, cache: dict | None = None) -> str:
    """``text`` with every marked table regenerated from the records under ``root``."""
    cache = {} if cache is None else cache

    def body(match):
        name = match["name"]
        if name not in SECTIONS:
            raise SystemExit(f"unknown report section {name!r}; known: {', '.join(SECTIONS)}")
        if name not in cache:
            cache[name] = SECTIONS[name](root).rstrip("\n") + "\n"
        return match[1] + cache[name] + match[4]

    return MARKER.sub(body, text)


def run(root: str | Path = ".", *, check: bool = False) -> list[str]:
    """Regenerate (or with ``check``, compare) every page; returns the pages that differ(ed)."""
    root = Path(root)
    changed, cache = [], {}
    for page in pages(root):
        old = page.read_text()
        new = render(old, root, cache)
        if new != old:
            changed.append(page.relative_to(root).as_posix())
            if not check:
                page.write_text(new)
    return changed


def dirty_records(root: str | Path = ".") -> list[str]:
    """The records under ``experiments/results/`` made on a tree with uncommitted changes (their
    ``git_commit`` ends in ``-dirty``): their numbers cannot be traced to one commit of the code.

    >>> dirty_records("/nonexistent")
    []
    """
    found = []
    for path in sorted((Path(root) / RESULTS).rglob("*.json")):
        try:
            commit = json.loads(path.read_text()).get("git_commit")
        except (ValueError, AttributeError, OSError):  # not a record (a list, a sidecar, unreadable)
            continue
        if isinstance(commit, str) and commit.endswith("-dirty"):
            found.append(path.relative_to(root).as_posix())
    return found


def collect(sweep_dir: str | Path, root: str | Path = ".") -> list[Path]:
    """Copy a sweep's cell records (``cells/<cell>/metrics.json``) to ``experiments/results/<name>-sweep/``."""
    sweep_dir, root = Path(sweep_dir), Path(root)
    out = root / RESULTS / f"{sweep_dir.name}-sweep"
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(sweep_dir.glob("cells/*/metrics.json")):
        copied.append(Path(shutil.copyfile(path, out / f"{path.parent.name}.json")))
    if not copied:
        raise SystemExit(f"{sweep_dir}: no cells/*/metrics.json to collect (run the sweep first)")
    return copied


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m audiorag.report", description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a table differs from the records; write nothing")
    ap.add_argument("--root", default=".", help="project root (holds README.md, docs/ and experiments/results/)")
    ap.add_argument("--collect", metavar="SWEEP_DIR", help="first copy SWEEP_DIR's cell records to <name>-sweep/")
    args = ap.parse_args(argv)
    if args.collect:
        print(f"collected {len(collect(args.collect, args.root))} records from {args.collect}")
    changed = run(args.root, check=args.check)
    dirty = dirty_records(args.root) if args.check else []
    if dirty:  # flagged, not failed: regenerating them needs the full benchmarks (a clean checkout, hours)
        print(f"{len(dirty)} record(s) made on a tree with uncommitted changes (regenerate them from a clean "
              "checkout): " + ", ".join(dirty), file=sys.stderr)
    if args.check and changed:
        print("tables out of date with their records (run `make docs`): " + ", ".join(changed), file=sys.stderr)
        return 1
    print(("rewrote " + ", ".join(changed)) if changed else "docs tables match the records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
