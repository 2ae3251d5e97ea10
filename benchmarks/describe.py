"""What ``describe`` gets right: key and tempo on generated audio with known values, and on the default corpus
(its ``tracks.csv`` states each track's key, mode and tempo); the neighbourhood's agreement with the track's
own genre and tags.

    audiorag build /tmp/lib --dataset synthetic:24 --embedder features45 --embedder musicnn-mtt
    python benchmarks/describe.py /tmp/lib     # prints JSON; the load average at the start

Tempo accuracy: *acc1* within 4 % of the stated tempo, *acc2* also at ×2, ×½, ×3, ×⅓ (octave errors), as in
MIREX. Keys of the corpus: its major and minor genres' moments count for the exact key; every moment counts
for the tonic (the dorian genres' mode has no major/minor answer); *scale* counts a key right when it has the
stated scale's pitch classes (a minor or dorian moment read as its relative major).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pandas as pd

from audiorag import Library, Query
from audiorag.datasets.genres import GENRES, MAJOR, MINOR
from audiorag.describe import describe
from audiorag.descriptors.tonal import key_name, parse_key

SR = 22050


def _note(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(k ** -1.0 * np.sin(2 * np.pi * freq * k * t) for k in range(1, 7)) * np.exp(-t / 1.5)


def progression(tonic: int, minor: bool, bpm: float, seconds: float = 12.0, seed: int = 0) -> np.ndarray:
    """I–IV–V–I (i–iv–V–i) triads, two beats each, and a noise click on every beat."""
    chords = [(0, 3, 7), (5, 8, 12), (7, 11, 14), (0, 3, 7)] if minor else [(0, 4, 7), (5, 9, 12), (7, 11, 14),
                                                                          (0, 4, 7)]
    beat = 60.0 / bpm
    y = np.zeros(int(seconds * SR))
    rng = np.random.default_rng(seed)
    for i, t in enumerate(np.arange(0, seconds - 2 * beat, 2 * beat)):
        chord = chords[i % 4]
        part = sum(_note(440 * 2 ** ((48 + tonic + c - 69) / 12), 2 * beat) for c in (*chord, chord[0] - 12))
        y[int(t * SR):int(t * SR) + len(part)] += part[: len(y) - int(t * SR)]
    y = 0.3 * y / np.abs(y).max()
    for t in np.arange(0, seconds - 0.1, beat):
        y[int(t * SR):int(t * SR) + 150] += 0.2 * rng.standard_normal(150)
    return y.astype(np.float32)


def tempo_scores(estimated, stated) -> dict:
    ratio = np.asarray(estimated, float) / np.asarray(stated, float)
    near = lambda r: np.abs(ratio / r - 1) <= 0.04  # noqa: E731
    return {"acc1": float(near(1).mean()),
            "acc2": float((near(1) | near(2) | near(0.5) | near(3) | near(1 / 3)).mean())}


def generated(lib) -> dict:
    """24 keys, tempi 70–175 BPM, 12 s clips described as audio queries."""
    right, tempi, stated = 0, [], []
    for i in range(24):
        tonic, minor, bpm = i % 12, i >= 12, 70 + 105 * ((i * 7) % 24) / 23
        d = describe(lib, Query.audio(progression(tonic, minor, bpm, seed=i), sr=SR), k=5)
        right += d.key == key_name(tonic, int(minor))
        tempi.append(d.tempo)
        stated.append(bpm)
    return {"n": 24, "key": right / 24, **tempo_scores(tempi, stated)}


def corpus(lib, embedder: str) -> dict:
    """Every track's central moment against tracks.csv, and the neighbourhood's agreement (``embedder``'s index)."""
    tracks = lib.tracks
    rows = []
    for r in tracks.itertuples():
        at = r.duration / 2
        d = describe(lib, Query.moment(r.track_id, at), k=10, embedder=embedder)
        genre_now = next(g for a, b, g in json.loads(r.sections) if a <= at < b)
        mode = GENRES[genre_now]["mode"]
        stated = key_name(int(r.key), 1 if mode == MINOR else 0)
        tonic, minor = parse_key(d.key)
        scale = (int(r.key) + (3 if mode == MINOR else 0 if mode == MAJOR else -2)) % 12   # its major scale's tonic

        labels = d.neighbourhood["labels"]["genre"]
        own = set(list(next(iter(d.tags.values())))[:5])
        near = set(list(next(iter(d.neighbourhood["tags"].values())))[:5])
        rows.append({"track": r.track_id, "key_ok": d.key == stated, "major_minor": mode in (MAJOR, MINOR),
                     "tonic_ok": d.key.split()[0] == stated.split()[0],
                     "scale_ok": (tonic + 3 * minor) % 12 == scale, "tempo": d.tempo, "bpm": r.bpm,
                     "genre_top": labels["top"] == r.genre, "agreement": labels["agreement"],
                     "genre_at_moment": labels["top"] == genre_now, "tag_overlap": len(own & near) / 5})
    t = pd.DataFrame(rows)
    mm = t[t["major_minor"]]
    return {"n": len(t), "key (major/minor genres)": float(mm["key_ok"].mean()), "n major/minor": len(mm),
            "tonic": float(t["tonic_ok"].mean()), "scale (relative keys alike)": float(t["scale_ok"].mean()),
            **tempo_scores(t["tempo"], t["bpm"]),
            "neighbourhood top genre = track genre": float(t["genre_top"].mean()),
            "neighbourhood top genre = genre at the moment": float(t["genre_at_moment"].mean()),
            "mean weighted agreement": float(t["agreement"].mean()),
            "top-5 tag overlap, moment vs neighbourhood": float(t["tag_overlap"].mean())}


def main(path: str) -> None:
    lib = Library.open(path)
    load = os.getloadavg()[0]
    out = {"generated": generated(lib), **{f"corpus, neighbours by {e.name}": corpus(lib, e.key)
                                            for e in lib.embeddings()}, "load": round(load, 1)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
