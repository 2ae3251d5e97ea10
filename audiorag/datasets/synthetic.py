"""The embedded default corpus: generated, labelled, deterministic music-like tracks.

Eight genres (see :mod:`audiorag.datasets.genres`) rendered as 30 s tracks by
artists who each keep a style (key, tempo, timbre, mix, room) across their tracks.
A share of tracks is made of two sections from two genres, with section labels, so
moment-level retrieval has ground truth. Nothing is downloaded; the same
``(n_tracks, seed)`` always produces byte-identical files.

>>> ds = SyntheticDataset(n_tracks=16, seed=0)
>>> ds.id
'synthetic-v3-n16-s0'
"""

from __future__ import annotations

import csv
import json
import logging

import numpy as np

from ..errors import ParameterError
from ..io import file_sha256
from .generated import GeneratedDataset
from .genres import GENRES, render
from .synth import SR, add_noise, rms

log = logging.getLogger(__name__)
GENERATOR_VERSION = 3
DEFAULT_N_TRACKS = 96


def plan(n_tracks: int, seed: int, *, duration: float = 30.0, mixed_share: float = 0.25) -> list[dict]:
    """Everything random about the corpus, decided up front: one dict per track.

    >>> p = plan(16, 0)
    >>> sorted({t["genre"] for t in p}) == sorted(GENRES)
    True
    """
    if n_tracks < 1:
        raise ParameterError(f"synthetic: n_tracks must be >= 1, got {n_tracks}")
    rng = np.random.default_rng(seed)
    genres = sorted(GENRES)
    n_artists = len(genres) * max(2, n_tracks // (3 * len(genres)))  # >= 2 per genre: artist-disjoint protocols
    artists = []
    for a in range(n_artists):
        genre = genres[a % len(genres)]
        lo, hi = GENRES[genre]["bpm"]
        artists.append(dict(name=f"artist{a:03d}", genre=genre, key=int(rng.integers(0, 12)),
                            bpm=float(rng.uniform(lo, hi)), reverb_scale=float(rng.uniform(0.6, 1.4)),
                            lowpass=float(rng.choice([0, 0, 5000, 8000])), timbre_jitter=float(rng.uniform(0.1, 0.3)),
                            gains={r: float(np.exp(rng.normal(0, 0.3))) for r in ("drums", "bass", "chords", "lead")}))
    tracks = []
    for i in range(n_tracks):
        artist = artists[i % n_artists]
        lo, hi = GENRES[artist["genre"]]["bpm"]
        style = dict(key=36 + (artist["key"] + int(rng.choice([0, 0, 5, 7]))) % 12,
                     bpm=float(np.clip(artist["bpm"] + rng.normal(0, 2.0), lo, hi)),
                     timbre_jitter=artist["timbre_jitter"], reverb_scale=artist["reverb_scale"],
                     lowpass=artist["lowpass"],
                     gains={r: g * float(np.exp(rng.normal(0, 0.25))) for r, g in artist["gains"].items()},
                     kick_pitch=float(rng.uniform(42, 62)), snare_pitch=float(rng.uniform(160, 240)),
                     ride_pitch=float(rng.uniform(350, 520)))
        sections = [[0.0, duration, artist["genre"]]]
        if rng.random() < mixed_share:
            other = genres[(genres.index(artist["genre"]) + int(rng.integers(1, len(genres)))) % len(genres)]
            cut = float(np.round(rng.uniform(duration / 3, 2 * duration / 3), 2))
            sections = [[0.0, cut, artist["genre"]], [cut, duration, other]]
        longest = max(sections, key=lambda s: s[1] - s[0])
        tracks.append(dict(index=i, file=f"track{i:04d}.flac", artist=artist["name"], genre=longest[2],
                           sections=sections, style=style, snr_db=float(rng.uniform(18, 45)),
                           loudness_db=float(rng.uniform(-26, -14)), duration=duration, seed=[seed, i]))
    return tracks


def render_track(spec: dict) -> np.ndarray:
    """Audio of one planned track (float32 mono at 22.05 kHz)."""
    rng = np.random.default_rng(spec["seed"])
    n = int(spec["duration"] * SR)
    y = np.zeros(n)
    fade = int(0.05 * SR)
    for start, end, genre in spec["sections"]:
        a, b = int(start * SR), int(end * SR)
        part = render(genre, (b - a + fade) / SR, rng, spec["style"])[: b - a + fade]
        ramp = np.ones(len(part))
        if a > 0:
            ramp[:fade] = np.linspace(0, 1, fade)
        if b < n:
            ramp[-fade:] = np.linspace(1, 0, fade)
        seg = part * ramp
        y[a:a + len(seg)] += seg[: n - a]
    y = add_noise(y, spec["snr_db"], rng=rng)
    y *= 10 ** (spec["loudness_db"] / 20) / rms(y)
    peak = np.abs(y).max()
    if peak > 0.99:
        y *= 0.99 / peak
    return y.astype(np.float32)


class SyntheticDataset(GeneratedDataset):
    """The generated default corpus; files are written once to the cache and reused."""

    name = "synthetic"
    version = GENERATOR_VERSION
    render = staticmethod(render_track)

    def __init__(self, n_tracks: int = DEFAULT_N_TRACKS, seed: int = 0, **options):
        super().__init__(n_tracks, seed, **options)

    def plan(self) -> list[dict]:
        return plan(self.n_tracks, self.seed, duration=self.duration)

    def manifest(self, specs: list[dict]) -> str:
        rows = [{"path": s["file"], "genre": s["genre"], "artist": s["artist"], "sections": json.dumps(s["sections"]),
                 "bpm": round(s["style"]["bpm"], 2), "key": s["style"]["key"] % 12, "mixed": len(s["sections"]) > 1,
                 "sha256": file_sha256(self.root / s["file"])} for s in specs]
        return _csv_text(rows)


def _csv_text(rows: list[dict]) -> str:
    import io
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
