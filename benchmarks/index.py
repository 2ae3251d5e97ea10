"""FAISS index families at 10⁵ … 10⁷ segments: build time, bytes per segment, recall@10, latency.

    python benchmarks/index.py --n 100000                       # dims 200 512 768, every family
    python benchmarks/index.py --n 1000000
    python benchmarks/index.py --n 10000000 --dims 512          # compressed families only
    python benchmarks/index.py --table experiments/results/index-bench/*.json   # the docs table
    python benchmarks/index.py --n 10000000 --dims 512 --refine --families PCAR192,IVF4096,PQ48 --scratch DIR

Vectors come from :class:`mixture.Mixture` fitted to a library's real embeddings
(``--fit``, default the ``make demo`` library: 200-D ← musicnn-mtt, 512-D ← aisfx, 768-D ←
aisfx carried into 768 dimensions), in tracks of consecutive windows. Queries are 1,000
fresh windows from the same mixture (other seed), as audio-clip queries are. For each
family the index is built (trained on a sample, then filled), its ``nprobe`` / ``efSearch``
tuned with :func:`audiorag.index.quality.tune` to the lowest setting reaching
``--target`` recall@10 against exact search, and measured there: recall@10, single-query
latency p50/p99 (one query at a time, 2 threads), batched throughput (all queries in one
call), and the index file's bytes per segment. At 10⁷ the vectors (float16 on disk, 10 GB
at 512-D) are streamed; exact search for the ground truth streams over them too; exact and
graph indexes, which need ≥ 20 GB there, are not built.
Results go to ``--out`` (one JSON record per run) with a plot beside it.

``--refine`` measures refined indexes (:mod:`audiorag.index.refine`): the vectors are written
as a float32 ``.npy`` in ``--scratch`` (20 GB at 10⁷ × 512-D; kept with the ground truth and the
built index for the next run — delete them afterwards), the codes are opened with their
inverted lists memory-mapped, each family is tuned unrefined and refined, then measured one
query at a time warm (after tuning, the queries' rows in the page cache) and cold (the vectors
file dropped from this process's mapping and from the page cache before every query), with the
bytes read from storage per query (``/proc/self/io``) and the 4 KiB pages the re-rank touched.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from mixture import Mixture  # noqa: E402

from audiorag import Library, __version__  # noqa: E402
from audiorag.index import factory as F  # noqa: E402
from audiorag.index import mapped_memory, resident_memory  # noqa: E402
from audiorag.index import refine as R  # noqa: E402
from audiorag.index.quality import neighbour_recall, tune  # noqa: E402
from audiorag.report import index_table  # noqa: E402

DEFAULT_FIT = "experiments/results/default/libraries/synthetic-96-w10-h2"
SOURCES = {200: "musicnn-mtt", 512: "aisfx", 768: "aisfx"}
STREAM_ABOVE = 2_000_000


def families(n: int, dim: int) -> list[str]:
    """The families measured at ``n``: exact and graph indexes while they fit, then IVF variants."""
    nlist = F.ivf_lists(n)
    pcar = F.pq_family(56, dim, nlist)
    m = max(d for d in range(1, 33) if dim % d == 0)  # plain PQ: the largest sub-quantiser count ≤ 32 dividing dim
    compressed = [pcar, f"IVF{nlist},PQ{m}"]
    if n > STREAM_ABOVE:
        return compressed
    return ["Flat", "SQ8", f"HNSW{F.HNSW_M}", f"HNSW{F.HNSW_M},SQ8", f"IVF{nlist},Flat", f"IVF{nlist},SQ8"] + compressed


class Vectors:
    """The database: in memory, or float16 chunks on disk for very large n (``on_disk``: float32
    ``.npy`` rows in id order, as a library's ``vectors.npy``, reused when ``keep`` left one)."""

    def __init__(self, mix: Mixture, n: int, dim: int, seed: int, scratch: Path, on_disk: bool = False):
        self.n, self.dim = n, dim
        if on_disk:
            self.memory, self.path = None, scratch / f"vectors-{n}-{dim}-{seed}.f32.npy"
            if not self.path.with_suffix(".done").exists():
                write_npy_stream(self.path, mix, n, dim, seed)
                self.path.with_suffix(".done").touch()
            self.disk = np.load(self.path, mmap_mode="r")
            return
        if n <= STREAM_ABOVE:
            self.memory = mix.sample(n, dim=dim, seed=seed)
            return
        self.memory = None
        path = scratch / f"vectors-{n}-{dim}-{seed}.f16"
        self.disk = np.lib.format.open_memmap(path, "w+", np.float16, (n, dim))
        for first, chunk in mix.chunks(n, dim=dim, seed=seed):
            self.disk[first:first + len(chunk)] = chunk
            print(f"  generated {first + len(chunk):,}/{n:,}", end="\r", flush=True)
        self.disk.flush()

    def chunks(self, size: int = 500_000):
        if self.memory is not None:
            yield 0, self.memory
            return
        for first in range(0, self.n, size):
            if self.disk.dtype == np.float32:  # read, not mapped: the page cache stays out of our RSS
                with open(self.path, "rb") as f:
                    rows = min(size, self.n - first)
                    x = np.fromfile(f, np.float32, rows * self.dim, offset=self.disk.offset + 4 * first * self.dim)
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                yield first, x.reshape(rows, self.dim)
                continue
            yield first, np.ascontiguousarray(self.disk[first:first + size], dtype=np.float32)

    def sample(self, k: int, seed: int = 0) -> np.ndarray:
        rows = np.sort(np.random.default_rng(seed).choice(self.n, min(k, self.n), replace=False))
        src = self.memory if self.memory is not None else self.disk
        return np.asarray(src[rows], dtype=np.float32)


def write_npy_stream(path: Path, mix: Mixture, n: int, dim: int, seed: int) -> None:
    """Write ``n`` mixture vectors as a float32 ``.npy`` file chunk by chunk (written, not mapped)."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, dim)})
        for first, chunk in mix.chunks(n, dim=dim, seed=seed):
            f.write(np.ascontiguousarray(chunk, dtype=np.float32).tobytes())
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            print(f"  generated {first + len(chunk):,}/{n:,}", end="\r", flush=True)
        f.flush()
        os.fsync(f.fileno())


def exact_truth(db: Vectors, queries: np.ndarray, k: int = 10) -> np.ndarray:
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    for first, x in db.chunks():
        scores, ids = faiss.knn(queries, x, k, faiss.METRIC_INNER_PRODUCT)
        heap.add_result(scores, ids + first)
    heap.finalize()
    return heap.I


def run_family(factory: str, db: Vectors, queries: np.ndarray, truth: np.ndarray, target: float,
               scratch: Path) -> dict:
    index, built = F.build(factory, db.sample(max(100_000, 64 * F.ivf_lists(db.n)), seed=1),
                           ((np.arange(first, first + len(x)), x) for first, x in db.chunks()),
                           max_train=10 ** 9, reproducible=False)
    tuned = tune(index, factory, queries, truth, target_recall=target)
    path = scratch / "index.faiss"
    faiss.write_index(index, str(path))
    size = path.stat().st_size
    path.unlink()
    return {"factory": factory, "metric": F.metric(factory), "build_seconds": round(built["build_seconds"], 2),
            "train_seconds": round(built["train_seconds"], 2), "n_train": built["n_train"],
            "bytes_per_segment": round(size / db.n, 1),
            **{k: v for k, v in tuned.items() if k != "curve"},
            "curve": [{**c["search_params"], "recall@10": round(c["recall@10"], 4),
                       "p99_ms": c["latency_p99_ms"]} for c in tuned["curve"]]}


def run_refined(factory: str, db: Vectors, queries: np.ndarray, truth: np.ndarray, target: float, scratch: Path,
                cold_queries: int) -> dict:
    """``factory``'s codes in RAM (inverted lists mmapped, as a library serves them), re-ranked from
    ``db``'s float32 rows on disk; tuned unrefined and refined, then measured warm and cold."""
    path = scratch / f"index-{F.index_name(factory)}-{db.n}-{db.dim}.faiss"
    built = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").exists() else None
    if built is None:
        index, built = F.build(factory, db.sample(max(100_000, 64 * F.ivf_lists(db.n)), seed=1),
                               ((np.arange(first, first + len(x)), x) for first, x in db.chunks()),
                               max_train=10 ** 9, reproducible=False)
        faiss.write_index(index, str(path))
        path.with_suffix(".json").write_text(json.dumps(built))
        del index
    base = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    plain = tune(base, factory, queries, truth, target_recall=target)
    print(f"  {factory:28s} unrefined recall@10 {plain['recall@10']:.3f} at {plain['search_params']}  "
          f"p99 {plain['latency_p99_ms']:.2f} ms  load {os.getloadavg()[0]:.2f}", flush=True)
    index = R.RefinedIndex(base, db.disk, f"{factory},{R.REFINE}")
    tuned = R.tune(index, f"{factory},{R.REFINE}", queries, truth, target_recall=target)
    warm = timed_queries(index, queries, truth, db, evict=False)
    cold = timed_queries(index, queries[:cold_queries], truth[:cold_queries], db, evict=True)
    size = path.stat().st_size
    return {"factory": f"{factory},{R.REFINE}", "metric": F.metric(factory),
            "build_seconds": round(built["build_seconds"], 2), "n_train": built["n_train"],
            "bytes_per_segment": round(size / db.n, 1), "resident_bytes_per_segment": round(size / db.n, 1),
            "index_mapped_resident_bytes": mapped_memory(path).get("resident_bytes"),
            "process_rss_bytes": resident_memory(),
            "disk_bytes_per_segment": 4 * db.dim, "refine_source": "float32 .npy, rows in id order, mmapped",
            **{k: v for k, v in tuned.items() if k != "curve"},
            "unrefined": {k: plain[k] for k in ("recall@10", "search_params", "latency_p50_ms", "latency_p99_ms")},
            "warm": warm, "cold": cold, "load_1min": os.getloadavg()[0],
            "curve": [{**c["search_params"], "recall@10": round(c["recall@10"], 4),
                       "p99_ms": c["latency_p99_ms"]} for c in tuned["curve"]]}


def timed_queries(index, queries: np.ndarray, truth: np.ndarray, db: Vectors, *, evict: bool) -> dict:
    """One query at a time: recall@10, latency p50/p99, bytes read from storage per query
    (``/proc/self/io`` read_bytes) and 4-KiB pages of the vectors file the re-rank touched.
    ``evict``: before each query the vectors file leaves this process's mapping
    (``madvise(MADV_DONTNEED)``) and the page cache (``posix_fadvise(POSIX_FADV_DONTNEED)``)."""
    fd = os.open(db.path, os.O_RDONLY)
    raw = db.disk._mmap
    seconds, read, pages, found = [], [], [], []
    row_bytes = 4 * db.dim
    try:
        for q in queries:
            if evict:
                raw.madvise(mmap.MADV_DONTNEED)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            before = io_read_bytes()
            t0 = time.perf_counter()
            _, ids = index.search(q[None, :], 10)
            seconds.append(time.perf_counter() - t0)
            read.append(io_read_bytes() - before)
            _, cand = index.base.search(q[None, :], 10 * index.k_factor)
            rows = np.unique(cand[cand >= 0])
            start = db.disk.offset + rows * row_bytes
            pages.append(len(np.unique(np.concatenate([start // 4096, (start + row_bytes - 1) // 4096]))))
            found.append(ids[0])
    finally:
        os.close(fd)
    p50, p99 = np.percentile(np.asarray(seconds) * 1000, [50, 99])
    return {"queries": len(queries), "recall@10": round(float(neighbour_recall(np.array(found), truth).mean()), 4),
            "latency_p50_ms": round(float(p50), 3), "latency_p99_ms": round(float(p99), 3),
            "read_bytes_per_query": round(float(np.mean(read))),
            "pages_touched_per_query": round(float(np.mean(pages)), 1),
            "load_1min": os.getloadavg()[0]}


def io_read_bytes() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("read_bytes:"))


def fit(library: str, dim: int) -> Mixture:
    lib = Library.open(library)
    emb = lib.embedding(SOURCES.get(dim, "aisfx"))
    valid = emb.valid_rows(lib.segments["track_id"].to_numpy())
    return Mixture.fit(np.asarray(lib.vectors(emb.key))[valid], lib.segments["track_id"].to_numpy()[valid],
                       source=f"{library}:{emb.key}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dims", type=int, nargs="+", default=[200, 512, 768])
    ap.add_argument("--families", nargs="+", help="factory strings (default: every family for n)")
    ap.add_argument("--fit", default=DEFAULT_FIT, help="library whose embeddings the mixture is fitted to")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--target", type=float, default=0.95, help="recall@10 the search parameters are tuned to")
    ap.add_argument("--scratch", default=tempfile.gettempdir())
    ap.add_argument("--out", default=None)
    ap.add_argument("--table", nargs="+", help="print the docs table of these result files and exit")
    ap.add_argument("--refine", action="store_true", help="re-rank candidates from float32 vectors on disk; the "
                    "vectors, ground truth and index are kept in --scratch and reused by the next run")
    ap.add_argument("--cold-queries", type=int, default=200, help="--refine: queries measured with a cold cache")
    args = ap.parse_args(argv)
    if args.table:
        print(index_table([json.loads(Path(p).read_text()) for p in args.table]))
        return
    if not Path(args.fit, "library.json").exists():
        sys.exit(f"{args.fit}: no library to fit the vectors to; run `make demo` first or pass --fit LIBRARY")
    out = Path(args.out or f"experiments/results/index-bench/index-{'refine-' if args.refine else ''}n{args.n}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": "index", "n": args.n, "queries": args.queries, "target_recall": args.target,
              "audiorag_version": __version__, "faiss_version": faiss.__version__, "machine": {
                  "platform": platform.platform(), "cpus": os.cpu_count(),
                  "faiss_threads": faiss.omp_get_max_threads()},
              "results": []}
    scratch = Path(args.scratch)
    for dim in args.dims:
        mix = fit(args.fit, dim)
        t0 = time.perf_counter()
        db = Vectors(mix, args.n, dim, seed=0, scratch=scratch, on_disk=args.refine)
        queries = mix.sample(args.queries, dim=dim, seed=12345)
        saved = scratch / f"truth-{args.n}-{dim}-{args.queries}.npy"
        truth = np.load(saved) if args.refine and saved.exists() else exact_truth(db, queries)
        if args.refine:
            np.save(saved, truth)
        print(f"n={args.n:,} dim={dim}: vectors + exact truth in {time.perf_counter() - t0:.0f}s "
              f"(mixture from {mix.source}, {mix.explained():.2f} of variance in {mix.basis.shape[0]} latent dims)")
        for factory in args.families or families(args.n, dim):
            r = {"dim": dim, **(run_refined(factory, db, queries, truth, args.target, scratch, args.cold_queries)
                                if args.refine else run_family(factory, db, queries, truth, args.target, scratch))}
            record["results"].append(r)
            print(f"  {factory:28s} recall@10 {r['recall@10']:.3f} at {r['search_params']}"
                  f"  p50 {r['latency_p50_ms']:.2f}"
                  f" p99 {r['latency_p99_ms']:.2f} ms  {r['batch_qps']:.0f} q/s batched  "
                  f"{r['bytes_per_segment']:.0f} B/seg  build {r['build_seconds']:.0f}s", flush=True)
            out.write_text(json.dumps(record, indent=1))
        if db.memory is None and not args.refine:
            os.unlink(db.disk.filename)
    plot(record, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


def plot(record: dict, path: Path) -> None:
    from audiorag.plots import DPI, index_bench_figure
    index_bench_figure(record).savefig(path, dpi=DPI)


if __name__ == "__main__":
    main()
