"""How well hum queries find the track and the moment a hummed phrase comes from.

For a library built from the ``melodic`` corpus (its notes are beside the audio), ``n_hums``
hums are synthesised (:func:`audiorag.datasets.melodic.synthesise_hum`) from phrases of random
tracks: transposed by a random interval in −7…+7 semitones (then whole octaves into the
singer's range), at a tempo factor drawn from 0.75–1.33, with background noise at 30, 20 or
10 dB SNR, and a dropped, an added or no note altered. Each hum is searched with
``by="track"``; the metrics are MRR (ranks beyond :data:`DEPTH` count 0), top-1, top-10,
``moment@1`` (top track right and its start within ±:data:`TOLERANCE` s of the phrase's),
each also per transposition, tempo, noise and edit bucket, and the latency of each query
(pitch tracking included: wall time, and the CPU time of the process, which is what the wall
time would be on an idle machine — the query runs on one core).

The reported figures use :data:`~audiorag.datasets.melodic.REPORT_SEED`; development used
:data:`~audiorag.datasets.melodic.DEV_SEED`.

>>> bucket_tempo(0.8), bucket_transpose(-5), bucket_transpose(0)
('0.75-0.9', '±4-7', '0')
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..datasets.melodic import REPORT_SEED, SR, melodies_of, synthesise_hum
from ..errors import ParameterError
from ..io import decode_path
from ..library.order import content_order
from ..search import Query, search
from .metrics import latency_summary
from .records import Record, provenance

DEPTH = 20
TOLERANCE = 1.0
SNRS = (30.0, 20.0, 10.0)


def bucket_tempo(f: float) -> str:
    return "0.75-0.9" if f < 0.9 else "0.9-1.1" if f <= 1.1 else "1.1-1.33"


def bucket_transpose(t: int) -> str:
    return "0" if t == 0 else "±1-3" if abs(t) <= 3 else "±4-7"


def hums(lib, n_hums: int, seed: int) -> list[tuple[np.ndarray, dict]]:
    """``n_hums`` synthesised hums of the library's melodic tracks: (audio at 22.05 kHz, info with ``track_id``)."""
    tracks = lib.tracks.iloc[content_order(lib.tracks)]  # every library of the same files hums the same phrases
    known = [(int(t), m) for t, u in zip(tracks["track_id"], tracks["uri"])
             if (m := melodies_of(decode_path(u))) is not None]
    if not known:
        raise ParameterError(f"{lib.path}: the hum protocol needs tracks of the melodic corpus "
                             "(their notes are beside the audio): build the library from melodic[:N]")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_hums):
        tid, notes = known[int(rng.integers(0, len(known)))]
        interval = int(rng.integers(-7, 8))
        y, info = synthesise_hum(notes, rng, transpose=interval, tempo=float(np.round(rng.uniform(0.75, 1.33), 3)),
                                 snr_db=float(rng.choice(SNRS)))
        out.append((y, {**info, "track_id": tid, "interval": interval}))
    return out


def evaluate_hum(lib, *, n_hums: int = 200, seed: int = REPORT_SEED, embedder=None,
                 index: str | None = None) -> tuple[dict, pd.DataFrame]:
    """Metrics (flat dict of numbers) and one row per hum (its buckets, rank, found start, seconds).

    Every hum is searched once before timing starts (so compilation and the index load are not timed).
    """
    if n_hums < 1:
        raise ParameterError(f"hum evaluation: n_hums must be >= 1, got {n_hums}")
    queries = hums(lib, n_hums, seed)
    search(lib, Query.hum(queries[0][0], sr=SR), embedder=embedder, index=index, k=DEPTH, by="track")  # warm
    rows = []
    for y, info in queries:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            hits = search(lib, Query.hum(y, sr=SR), embedder=embedder, index=index, k=DEPTH, by="track")
        except ParameterError:  # "no melody found": a miss, counted
            hits = pd.DataFrame({"track_id": [], "start": []})
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        found = np.flatnonzero(hits["track_id"].to_numpy() == info["track_id"])
        rank = int(found[0]) + 1 if len(found) else 0
        start = float(hits["start"].iloc[found[0]]) if len(found) else np.nan
        rows.append({"track_id": info["track_id"], "phrase_start": info["start"], "found_start": start,
                     "rank": rank, "interval": info["interval"], "transpose": info["transpose"],
                     "tempo": info["tempo"], "snr_db": info["snr_db"], "edit": info["edit"] or "none",
                     "hum_seconds": info["seconds"], "rejected": hits.empty, "seconds": seconds,
                     "cpu_seconds": cpu})
    per = pd.DataFrame(rows)
    per["rr"] = np.where(per["rank"] > 0, 1.0 / per["rank"].clip(lower=1), 0.0)
    per["top1"] = (per["rank"] == 1).astype(float)
    per["top10"] = ((per["rank"] >= 1) & (per["rank"] <= 10)).astype(float)
    near = (per["found_start"] - per["phrase_start"]).abs() <= TOLERANCE
    per["moment1"] = ((per["rank"] == 1) & near).astype(float)
    per["by_transpose"] = per["interval"].map(bucket_transpose)
    per["by_tempo"] = per["tempo"].map(bucket_tempo)
    per["by_noise"] = per["snr_db"].map(lambda s: f"{s:g}dB")
    metrics = {"hums": float(len(per)), "MRR": per["rr"].mean(), "top1": per["top1"].mean(),
               "top10": per["top10"].mean(), "moment@1": per["moment1"].mean(),
               "rejected": per["rejected"].mean()}
    for axis in ("by_transpose", "by_tempo", "by_noise", "edit"):
        for value, g in per.groupby(axis):
            metrics[f"{axis.removeprefix('by_')}={value}/MRR"] = g["rr"].mean()
            metrics[f"{axis.removeprefix('by_')}={value}/top10"] = g["top10"].mean()
            metrics[f"{axis.removeprefix('by_')}={value}/n"] = float(len(g))
    lat = latency_summary(per["seconds"].to_numpy())
    metrics.update({f"latency/{k}": float(v) for k, v in lat.items()})
    # CPU time of the query's process: what the latency would be on an idle machine (this one is shared)
    metrics.update({f"cpu/{k}": float(v) for k, v in latency_summary(per["cpu_seconds"].to_numpy()).items()})
    return {k: float(v) for k, v in metrics.items()}, per


def table(per: pd.DataFrame) -> pd.DataFrame:
    """MRR / top-10 / n per transposition × tempo × noise cell (the closing note's table)."""
    g = per.groupby(["by_transpose", "by_tempo", "by_noise"])
    return pd.DataFrame({"MRR": g["rr"].mean(), "top10": g["top10"].mean(), "n": g.size()}).reset_index()


def record(lib, metrics: dict, *, seed: int, embedder=None) -> Record:
    """The validated ``metrics.json`` record of a hum evaluation (kind ``hum``)."""
    from ..melody import CANDIDATES
    emb = lib.embedding(embedder or "melody")
    prov = provenance(lib, emb, ["melody"], n_tracks=len(lib.tracks))
    return Record(kind="hum", seed=seed, metrics=metrics, **prov,
                  protocol={"hums": int(metrics["hums"]), "depth": DEPTH, "tolerance_s": TOLERANCE,
                            "transpose": "uniform -7..+7 semitones, then octaves into MIDI 48-67",
                            "tempo": "uniform 0.75-1.33", "snr_db": list(SNRS), "edit": "none | drop | add",
                            "candidates": CANDIDATES})
