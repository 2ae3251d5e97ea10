"""How well :func:`audiorag.identify.identify` finds the moment of degraded clips.

Clips of ``3, 5, 10`` s are cut at random offsets from the library's tracks, degraded (see
:data:`DEGRADATIONS`) and identified. ``moment@1``: the top result is the right track and starts
within ±0.5 s of the true offset (for a stretched clip, the offset in the original track's time);
``track@1``: the right track. Clips from files *not* in the library measure the false-positive rate
(any result is a false positive). Latency percentiles are per clip, fingerprinting included.

>>> y = np.random.default_rng(0).standard_normal(22050).astype("float32") * .1
>>> {name: len(degrade(y, 22050, name)) for name in ("clean", "stretch+5%", "speed-3%")}
{'clean': 22050, 'stretch+5%': 23152, 'speed-3%': 22732}
"""

from __future__ import annotations

import hashlib
import io as _io
import time

import numpy as np
import pandas as pd
import soundfile as sf
from scipy import signal

from ..audio import load, resample
from ..datasets.synth import add_noise
from ..errors import ParameterError
from ..identify import identify
from ..library.order import content_order
from .metrics import latency_summary

DEGRADATIONS = ("clean", "noise-10dB", "noise-0dB", "lowpass-3kHz", "mp3-64k", "stretch+5%", "stretch-5%",
                "speed+3%", "speed-3%")
CLIP_SECONDS = (3.0, 5.0, 10.0)
TOLERANCE = 0.5


def music(seconds: float, sr: int = 22050, *, seed: int = 0) -> np.ndarray:
    """Generated music that never repeats itself: three voices of random notes (a scale, random lengths,
    decaying harmonics) and noise-burst percussion at random times — so every moment has one right
    answer, unlike loop-based audio. Vectorised: an hour renders in about a minute at 8 kHz.

    >>> y = music(2.0, 8000, seed=1)
    >>> y.shape, y.dtype, float(np.abs(y).max()) <= 1
    ((16000,), dtype('float32'), True)
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    y = np.zeros(n)
    scale = np.array([0, 2, 3, 5, 7, 8, 10]) + int(rng.integers(0, 12))
    for low, spread, mean_len, level in ((36, 12, 0.5, 0.5), (55, 19, 0.22, 0.35), (60, 12, 0.35, 0.25)):
        lengths = rng.uniform(0.4, 1.6, int(seconds / mean_len * 1.5) + 2) * mean_len
        starts = np.concatenate([[0.0], np.cumsum(lengths)])
        note = np.minimum(np.searchsorted(starts, t, side="right") - 1, len(lengths) - 1)
        steps = rng.integers(0, spread, len(lengths))
        midi = low + 12 * (steps // 7) + scale[steps % 7]
        phase = 2 * np.pi * np.cumsum(440.0 * 2.0 ** ((midi[note] - 69) / 12)) / sr
        env = np.exp(-(t - starts[note]) / (mean_len * rng.uniform(0.5, 1.5))) * level
        rolloff = rng.uniform(0.4, 0.8)
        y += env * sum(rolloff ** h * np.sin((h + 1) * phase) for h in range(4))
    hits = np.sort(rng.uniform(0, seconds, int(seconds * 3)))
    burst = int(0.08 * sr)
    for h in (hits * sr).astype(int):
        seg = y[h:h + burst]
        seg += rng.standard_normal(len(seg)) * np.exp(-np.arange(len(seg)) / (0.015 * sr)) * 0.3
    return (0.9 * y / (np.abs(y).max() + 1e-9)).astype(np.float32)


def degrade(y: np.ndarray, sr: int, kind: str, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """``y`` degraded: white noise at 10 or 0 dB SNR, a 3 kHz low-pass (8th-order Butterworth) and −10 dB,
    an MP3 round trip at 64 kbit/s (libsndfile), a time stretch (phase vocoder, pitch kept: ``+5%`` is
    5 % longer) or a speed change (resampling, pitch follows: ``+3%`` plays 3 % faster)."""
    rng = rng or np.random.default_rng(0)
    y = np.asarray(y, np.float32)
    if kind == "clean":
        return y
    if kind.startswith("noise-"):
        snr = float(kind.removeprefix("noise-").removesuffix("dB"))
        power = float(np.mean(y.astype(np.float64) ** 2)) or 1e-8
        return add_noise(y, snr, rng=rng, level=np.sqrt(power)).astype(np.float32)
    if kind == "lowpass-3kHz":
        sos = signal.butter(8, 3000, "low", fs=sr, output="sos")
        return (signal.sosfilt(sos, y) * 10 ** (-10 / 20)).astype(np.float32)
    if kind == "mp3-64k":
        return _mp3(y, sr, 64)
    if kind.startswith("stretch"):
        import librosa
        factor = 1 + float(kind.removeprefix("stretch").removesuffix("%")) / 100
        return librosa.effects.time_stretch(y, rate=1 / factor).astype(np.float32)
    if kind.startswith("speed"):
        factor = 1 + float(kind.removeprefix("speed").removesuffix("%")) / 100
        return resample(y, int(round(sr * factor)), sr)
    raise ParameterError(f"degrade: kind must be one of {DEGRADATIONS}, got {kind!r}")


def _mp3(y: np.ndarray, sr: int, kbps: int) -> np.ndarray:
    """An MP3 round trip at ``kbps`` (constant bit rate); MPEG-2 rates below 32 kHz allow 8–160 kbit/s."""
    lo, hi = (32, 320) if sr >= 32000 else (8, 160)
    buf = _io.BytesIO()
    sf.write(buf, y, sr, format="MP3", subtype="MPEG_LAYER_III", bitrate_mode="CONSTANT",
             compression_level=(hi - kbps) / (hi - lo))
    buf.seek(0)
    out, _ = sf.read(buf, dtype="float32")
    return out[:len(y)] if len(out) >= len(y) else np.pad(out, (0, len(y) - len(out)))


def stretch_of(kind: str) -> float:
    """The true ``stretch`` of a degradation (the clip's time scale relative to the track)."""
    if kind.startswith("stretch"):
        return 1 + float(kind.removeprefix("stretch").removesuffix("%")) / 100
    if kind.startswith("speed"):
        return 1 / (1 + float(kind.removeprefix("speed").removesuffix("%")) / 100)
    return 1.0


def run(lib, *, clips: int = 20, seconds=CLIP_SECONDS, degradations=DEGRADATIONS, unindexed: list | None = None,
        seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """One row per (degradation, clip length): ``moment@1, track@1, stretch_error, latency_p50_ms,
    latency_p99_ms, n``; with ``unindexed`` (paths of files not in the library) one row per clip length
    with ``false_positive_rate``. The same clips (offsets) are used for every degradation. Used by
    ``audiorag eval --protocol identify`` and ``benchmarks/identify.py`` (docs/identify.md). The clips are
    drawn from the tracks ordered by content hash: the same for every library holding the same files,
    sharded or not.
    """
    from tqdm.auto import tqdm
    rng = np.random.default_rng(seed)
    tracks = lib.tracks.iloc[content_order(lib.tracks)]  # every library of the same files draws the same clips
    if not len(tracks):
        raise ParameterError(f"{lib.path}: no tracks to cut clips from")
    rows = []
    picks = rng.integers(0, len(tracks), clips)
    audio = {}
    for length in seconds:
        cuts = []
        for i in picks:
            row = tracks.iloc[int(i)]
            if row["duration"] < length + 1:
                continue
            at = float(rng.uniform(0, row["duration"] - length - 0.5))
            cuts.append((int(row["track_id"]), row["uri"], at))
        for kind in tqdm(degradations, desc=f"identify {length:g}s", disable=not progress, leave=False):
            hits, moments, errors, lat = 0, 0, [], []
            for tid, uri, at in cuts:
                if uri not in audio:
                    audio[uri] = load(_path(uri))
                y, sr = audio[uri]
                clip = degrade(y[int(at * sr): int((at + length) * sr)], sr, kind,
                               rng=np.random.default_rng([seed, _number(uri), int(at * 1000)]))
                t0 = time.perf_counter()
                res = identify(lib, clip, sr=sr)
                lat.append(time.perf_counter() - t0)
                if len(res) and int(res.track_id.iloc[0]) == tid:
                    hits += 1
                    moments += abs(float(res.offset.iloc[0]) - at) <= TOLERANCE
                    errors.append(abs(float(res.stretch.iloc[0]) / stretch_of(kind) - 1))
            n = max(len(cuts), 1)
            rows.append({"degradation": kind, "seconds": length, "n": len(cuts), "moment@1": moments / n,
                         "track@1": hits / n, "stretch_error": float(np.median(errors)) if errors else None,
                         **_latency(lat)})
        if unindexed:
            fp, lat = 0, []
            for path in unindexed:
                y, sr = load(path)
                if len(y) < (length + 0.5) * sr:
                    continue
                at = float(rng.uniform(0, len(y) / sr - length))
                t0 = time.perf_counter()
                fp += len(identify(lib, y[int(at * sr): int((at + length) * sr)], sr=sr)) > 0
                lat.append(time.perf_counter() - t0)
            rows.append({"degradation": "unindexed", "seconds": length, "n": len(lat),
                         "false_positive_rate": fp / max(len(lat), 1), **_latency(lat)})
    return pd.DataFrame(rows)


def _latency(seconds: list) -> dict:
    if not seconds:
        return {}
    p = latency_summary(seconds)
    return {"latency_p50_ms": p["p50_ms"], "latency_p99_ms": p["p99_ms"]}


def _number(text: str) -> int:
    """A stable number for a track's noise seed (its uri: not its id, which another library numbers otherwise)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def _path(uri: str) -> str:
    from ..io import decode_path
    return decode_path(uri)


def evaluate_identify(lib, *, clips: int = 20, seed: int = 0, unindexed: list | None = None,
                      progress: bool = False):
    """:func:`run` as a validated record (``kind="identify"``; metrics named ``DEGRADATION/SECONDS/metric``)
    and its table."""
    from ..analysis.records import Record, git_commit, library_content_hash, machine
    from ..index.fingerprints import params
    t0 = time.perf_counter()
    table = run(lib, clips=clips, seed=seed, unindexed=unindexed, progress=progress)
    metrics = {f"{r['degradation']}/{r['seconds']:g}s/{m}": float(r[m]) for r in table.to_dict("records")
               for m in ("moment@1", "track@1", "false_positive_rate", "latency_p50_ms", "latency_p99_ms")
               if m in r and r[m] is not None and not pd.isna(r[m])}
    record = Record(kind="identify", git_commit=git_commit(), seed=seed, machine=machine(), metrics=metrics,
                    dataset={"id": lib.meta.get("dataset"), "content_hash": library_content_hash(lib, []),
                             "n_tracks": int(len(lib.tracks))},
                    library={"path": str(lib.path), "segmentation": lib.segmentation.to_dict(),
                             "n_segments": int(len(lib.segments))},
                    embedder={"key": "landmarks", "name": "landmarks", "params": params()},
                    protocol={"name": "identify", "clips": clips, "tolerance_s": TOLERANCE,
                              "degradations": list(DEGRADATIONS), "seconds": list(CLIP_SECONDS)},
                    timings={"seconds": time.perf_counter() - t0})
    return record, table
