"""Scale benchmarks (issue 22). Subcommands:

    python benchmarks/scale.py ingest --tracks 48 --embedder features45 --out experiments/results/scale/ingest.json
    python benchmarks/scale.py ingest --tracks 16 --embedder aisfx --out experiments/results/scale/ingest-aisfx.json

``ingest``: build the same generated corpus with ``--engine local`` and ``--engine ray`` side by side,
``--rounds`` times (alternating which goes first), each into a fresh library, with the same number
of cores. Ray is started once, before the builds, and its start-up is timed apart; each Ray build
still includes starting and warming up its worker actors. Prints tracks/s and audio seconds per
second of each engine (best and median over the rounds) and Ray's overhead ``1 − ray/local``;
``--out FILE`` writes them as JSON with the machine's load (``uptime``) before and after.

``fanout``: shard fan-out latency vs shard count (1, 2, 4, 8; Flat, HNSW, IVF); the options and figures
of ``benchmarks/shards.py`` (docs/shards.md), e.g. ``python benchmarks/scale.py fanout --n 200000``.

``plan``: the layouts of docs/scale.md (FMA full, 10⁸ and 10⁹ segments), computed from the measured
records only — ingest rate per core (``embed-bench``), Ray's efficiency (``scale/ingest-*.json``), the refined
index at 10⁷ (``index-bench/index-refine-n10000000.json``: resident and disk bytes, warm and cold p99),
the fan-out's cost per shard (``shards-bench/fanout.json``), one Ray hop to a shard actor
(``shards-bench/cluster.json``) and a library's table bytes per segment:

    python benchmarks/scale.py plan --out experiments/results/scale/plan.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from audiorag import Library


def corpus(folder: Path, n: int, seconds: float, sr: int = 22050) -> list[str]:
    """``n`` generated tracks (chords + noise bursts, FLAC), deterministic; kept when present."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"track{i:04d}.flac"
        if not path.exists():
            rng = np.random.default_rng(i)
            t = np.arange(int(seconds * sr)) / sr
            freqs = 110.0 * 2 ** (rng.integers(0, 36, 3) / 12)
            y = sum(np.sin(2 * np.pi * f * t) for f in freqs) / 6
            y += 0.05 * rng.standard_normal(len(t)) * (np.sin(2 * np.pi * rng.uniform(0.2, 2) * t) > 0.5)
            sf.write(path, y.astype(np.float32), sr)
        paths.append(str(path))
    return paths


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def ingest(args) -> dict:
    from audiorag.engines import default_workers
    from audiorag.engines.ray import connect
    files = corpus(args.corpus, args.tracks, args.seconds)
    audio = sum(sf.info(f).duration for f in files)
    workers = args.workers or default_workers()
    load_before = _uptime()
    t0 = time.perf_counter()
    started = connect(args.ray_address, workers)
    startup = time.perf_counter() - t0
    runs: dict[str, list[float]] = {"local": [], "ray": []}
    try:
        for r in range(args.rounds):
            for engine in (("local", "ray") if r % 2 == 0 else ("ray", "local")):
                with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
                    lib = Library.create(Path(tmp) / "lib", window=args.window, hop=args.hop)
                    t = time.perf_counter()
                    report = lib.add(files, embedders=[args.embedder], workers=workers, progress=False,
                                     engine=engine, ray_address=args.ray_address)
                    seconds = time.perf_counter() - t
                    if report.added != len(files):
                        raise SystemExit(f"{engine}: {report.summary()}")
                    runs[engine].append(seconds)
                    print(f"round {r + 1} {engine:5s}: {seconds:7.1f} s", flush=True)
    finally:
        if started:
            import ray
            ray.shutdown()
    rows = {}
    for engine, times in runs.items():
        best, median = min(times), statistics.median(times)
        rows[engine] = {"seconds": times, "best_s": best, "median_s": median,
                        "tracks_per_s_best": len(files) / best, "tracks_per_s_median": len(files) / median,
                        "audio_s_per_s_best": audio / best, "audio_s_per_s_median": audio / median}
    overhead = {k: 1 - rows["local"][f"{k}_s"] / rows["ray"][f"{k}_s"] for k in ("best", "median")}
    out = {"benchmark": "scale ingest", "embedder": args.embedder, "tracks": len(files),
           "audio_seconds": audio, "window": args.window, "hop": args.hop, "workers": workers,
           "rounds": args.rounds, "ray_address": args.ray_address, "ray_startup_s": startup, "engines": rows,
           "ray_overhead": overhead, "load_before": load_before, "load_after": _uptime(),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
           "command": "python benchmarks/scale.py ingest " + " ".join(args.argv)}
    print(f"\n{args.embedder}: {len(files)} tracks, {audio:.0f} s of audio, {workers} cores; "
          f"Ray start-up {startup:.1f} s (not included below)")
    print(f"{'engine':8s} {'best s':>8s} {'median s':>9s} {'tracks/s':>9s} {'audio s/s':>10s}")
    for engine, row in rows.items():
        print(f"{engine:8s} {row['best_s']:8.1f} {row['median_s']:9.1f} {row['tracks_per_s_best']:9.2f} "
              f"{row['audio_s_per_s_best']:10.1f}")
    print(f"Ray overhead (1 - ray/local throughput): best {overhead['best']:.1%}, "
          f"median {overhead['median']:.1%}   [load: {load_before}]")
    return out


RESULTS = Path("experiments/results")
#: workloads of the plan: FMA full (≈ 8,000 h, 10 s windows every 2 s, the issue's figure), 10⁸, 10⁹ segments
WORKLOADS = {"FMA full (8,000 h)": int(8000 * 3600 / 2.0), "10⁸ segments": 10**8, "10⁹ segments": 10**9}
#: share of a machine's RAM and disk a layout may fill
USABLE = 0.75
#: an ingest deadline for sizing the ingest cluster (days)
INGEST_DAYS = 7


def _json(path: Path) -> dict:
    if not path.exists():
        raise SystemExit(f"{path}: no such record; run the benchmark that writes it first (see this script's help)")
    return json.loads(path.read_text())


def _table_bytes(library: Path) -> dict:
    """Per segment: RAM of the segments table as search holds it, and disk of everything but the vectors
    and indexes (tables, descriptors, manifest), from a built library."""
    lib = Library.open(library)
    n = len(lib.segments)
    ram = int(lib.segments.memory_usage(deep=True).sum() + lib.tracks.memory_usage(deep=True).sum())
    disk = sum(p.stat().st_size for p in lib.data.rglob("*") if p.is_file() and "embeddings" not in p.parts)
    return {"library": str(library), "segments": n, "ram_b": ram / n, "disk_b": disk / n}


def inputs(args) -> dict:
    """Every measured figure the plan uses, with the record it comes from."""
    embed = _json(args.embed)
    row = next(r for r in embed["rows"] if r["embedder"] == args.embedder)
    cores = embed.get("machine_cpus", 2)
    ray = _json(args.ingest)
    index = _json(args.index)
    refined = next(r for r in index["results"] if r["factory"].endswith(",Refine"))
    fan = _json(args.fanout)
    # Flat shards scan the same vectors in total whatever their number: what grows is the fan-out's own cost
    flat = sorted((r["shards"], r["p50_ms"]) for r in fan["rows"] if r["factory"] == "Flat")
    per_shard_ms = max(0.0, (flat[-1][1] - flat[0][1]) / (flat[-1][0] - flat[0][0]))
    return {
        "embedder": args.embedder, "windows_per_core_s": row["ingest_clips_per_s"] / cores,
        "embed_record": str(args.embed),
        "ray_efficiency": min(1.0, ray["engines"]["local"]["best_s"] / ray["engines"]["ray"]["best_s"]),
        "ray_record": str(args.ingest),
        "shard_segments": index["n"], "factory": refined["factory"], "recall@10": refined["recall@10"],
        "resident_b": refined["resident_bytes_per_segment"], "vectors_disk_b": refined["disk_bytes_per_segment"],
        "warm_p99_ms": refined["warm"]["latency_p99_ms"], "cold_p99_ms": refined["cold"]["latency_p99_ms"],
        "cold_read_b": refined["cold"]["read_bytes_per_query"], "index_record": str(args.index),
        "fanout_ms_per_shard": per_shard_ms, "fanout_record": str(args.fanout),
        **ray_hop(_json(args.cluster)), "cluster_record": str(args.cluster),
        "tables": _table_bytes(args.library),
        "machine": {"cores": os.cpu_count(), "ram_b": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                    "disk_b": shutil.disk_usage(args.tmp or tempfile.gettempdir()).total},
    }


def ray_hop(cluster: dict) -> dict:
    """One Ray hop (a query to a shard actor and its answer): the 1-shard index latency through the actor
    minus that of the local thread (``benchmarks/cluster.py``), at p50 and p99."""
    one = next(r for r in cluster["rows"] if r["shards"] == 1)
    return {f"ray_hop_{q}_ms": max(0.0, one["ray"][f"index_{q}_ms"] - one["local"][f"index_{q}_ms"])
            for q in ("p50", "p99")}


def layout(segments: int, m: dict) -> dict:
    """One workload on machines like this one: the fewest that hold its shards, and its ingest.

    Shards hold at most the measured ``shard_segments`` (so the measured per-shard latency applies).
    RAM per shard = n × (resident index bytes + table bytes); disk per shard = n × (vectors.npy and raw.npy,
    4·d bytes each, + the codes + tables). Machines = ⌈shards / shards per machine⌉, shards per machine
    limited by 75 % of RAM and of disk. A query's latency on one machine ≈ ⌈shards on it / cores⌉ × the
    shard's p99 + the fan-out's cost per shard × shards on it; with shards on several machines, + one Ray hop
    (p99, measured on one machine: the network's round trip comes on top).
    Ingest = segments / (windows per core-second × Ray's efficiency) core-seconds.
    """
    mach = m["machine"]
    shards = -(-segments // m["shard_segments"])
    n = -(-segments // shards)
    ram = n * (m["resident_b"] + m["tables"]["ram_b"])
    disk = n * (2 * m["vectors_disk_b"] + m["resident_b"] + m["tables"]["disk_b"])
    per_machine = max(1, min(int(USABLE * mach["ram_b"] // ram), int(USABLE * mach["disk_b"] // disk)))
    machines = -(-shards // per_machine)
    on_one = min(per_machine, shards)
    hop = m["ray_hop_p99_ms"] if machines > 1 else 0.0  # the shards of other machines answer through their actors
    core_s = segments / (m["windows_per_core_s"] * m["ray_efficiency"])
    days = INGEST_DAYS * 86400
    return {"segments": segments, "shards": shards, "segments_per_shard": n, "ram_per_shard_b": ram,
            "disk_per_shard_b": disk, "shards_per_machine": on_one, "machines": machines,
            "limit": "RAM" if USABLE * mach["ram_b"] // ram <= USABLE * mach["disk_b"] // disk else "disk",
            "warm_p99_ms": -(-on_one // mach["cores"]) * m["warm_p99_ms"] + m["fanout_ms_per_shard"] * on_one + hop,
            "cold_p99_ms": -(-on_one // mach["cores"]) * m["cold_p99_ms"] + m["fanout_ms_per_shard"] * on_one + hop,
            "ingest_core_hours": core_s / 3600,
            "ingest_days_on_serving_machines": core_s / (machines * mach["cores"]) / 86400,
            f"ingest_machines_for_{INGEST_DAYS}_days": -(-int(core_s) // (days * mach["cores"]))}


def plan(args) -> dict:
    m = inputs(args)
    rows = {name: layout(s, m) for name, s in WORKLOADS.items()}
    for name, r in rows.items():
        print(f"{name:22s} {r['shards']:4d} shards × {r['segments_per_shard']:,} segments on {r['machines']} "
              f"machine(s) ({r['limit']}-bound); p99 warm {r['warm_p99_ms']:.1f} ms, cold {r['cold_p99_ms']:.1f} ms; "
              f"ingest {r['ingest_core_hours']:,.0f} core-hours")
    return {"benchmark": "scale plan", "inputs": m, "usable_share": USABLE, "ingest_days": INGEST_DAYS,
            "layouts": rows, "command": "python benchmarks/scale.py plan " + " ".join(args.argv)}


def main(argv: list[str] | None = None) -> None:
    import sys
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["fanout"]:  # benchmarks/shards.py (its own options)
        from shards import main as fanout
        return fanout(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ingest", help="ingest throughput: --engine local vs --engine ray")
    p.add_argument("--tracks", type=int, default=48, help="generated tracks")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each generated track")
    p.add_argument("--embedder", default="features45", help="features45 | aisfx | any registered name")
    p.add_argument("--window", type=float, default=10.0)
    p.add_argument("--hop", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=2, help="repetitions (best and median are reported)")
    p.add_argument("--workers", type=int, help="cores for both engines (default: the local default)")
    p.add_argument("--ray-address", help="auto or HOST:PORT of a running cluster (default: a local Ray)")
    p.add_argument("--corpus", type=Path, default=Path(tempfile.gettempdir()) / "audiorag-scale-corpus")
    p.add_argument("--tmp", type=Path, help="where the libraries are built (default: the system's temp)")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    p = sub.add_parser("plan", help="docs/scale.md's layouts from the measured records")
    p.add_argument("--embedder", default="aisfx", help="its ingest rate sizes the ingest")
    p.add_argument("--embed", type=Path, default=RESULTS / "embed-bench/pretrained.json")
    p.add_argument("--ingest", type=Path, default=RESULTS / "scale/ingest-aisfx.json")
    p.add_argument("--index", type=Path, default=RESULTS / "index-bench/index-refine-n10000000-1thread.json")
    p.add_argument("--fanout", type=Path, default=RESULTS / "shards-bench/fanout.json")
    p.add_argument("--cluster", type=Path, default=RESULTS / "shards-bench/cluster.json")
    p.add_argument("--library", type=Path, default=Path("experiments/results/default/libraries/synthetic-96-w10-h2"),
                   help="a built library (make demo) for the tables' bytes per segment")
    p.add_argument("--tmp", type=Path, help="a folder on the disk whose size the plan assumes")
    p.add_argument("--out", type=Path, help="write the plan as JSON here")
    args = ap.parse_args(argv)
    args.argv = argv[1:]
    out = {"ingest": ingest, "plan": plan}[args.command](args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
