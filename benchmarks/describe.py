"""What ``describe`` gets right: key and tempo on generated audio with known values, and on the default corpus
(its ``tracks.csv`` states each track's key, mode and tempo); the neighbourhood's agreement with the track's
own genre and tags.

    audiorag build /tmp/lib --dataset synthetic:24 --embedder features45 --embedder musicnn-mtt
    python benchmarks/describe.py /tmp/lib     # prints JSON; the load average at the start
    python benchmarks/describe.py --keys [N]   # key accuracy only: the progressions and every window of the
                                               # N-track default corpus (96), no library needed

Key accuracy (``--keys``): *exact* and *MIREX*-weighted (:func:`~audiorag.descriptors.tonal.mirex_score`) against
two labels of the corpus: the *stated* key (``tracks.csv``'s root with its genre's mode; major and minor genres
only) and the *key signature* (:func:`~audiorag.datasets.genres.key_signature`: the major key of the scale the
track plays, every genre), the estimator's reading of each window's audio and, as the ceiling the labels allow,
of the notes the generator played in that window (:func:`~audiorag.datasets.genres.harmony_plan`; first section
of each track).

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
from audiorag.audio import load
from audiorag.datasets.genres import GENRES, MAJOR, MINOR, ROLES, harmony_plan, key_signature
from audiorag.datasets.synth import SR as CORPUS_SR
from audiorag.datasets.synthetic import SyntheticDataset
from audiorag.describe import describe
from audiorag.descriptors import tonal
from audiorag.descriptors.tonal import estimate_key, key_name, mirex_score, parse_key
from audiorag.segment import Segmentation

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


def progression_keys() -> dict:
    """Exact and MIREX key accuracy on the 24 progressions (the estimator alone, no library)."""
    tonics, modes, est = [], [], []
    for i in range(24):
        tonic, minor, bpm = i % 12, i >= 12, 70 + 105 * ((i * 7) % 24) / 23
        d = tonal.describe(progression(tonic, minor, bpm, seed=i), SR, [0.0], [12.0])
        tonics.append(tonic), modes.append(int(minor)), est.append((int(d["tonic"][0]), int(d["mode"][0])))
    t, m = np.array(est).T
    return {"n": 24, "exact": float(np.mean((t == tonics) & (m == modes))),
            "mirex": float(mirex_score(t, m, tonics, modes).mean())}


def played_chroma(spec: dict, starts, ends) -> np.ndarray:
    """Pitch-class weights of the notes the generator played in each window (bass roots ×2, chord tones, lead
    arpeggio ×½, each scaled by its role's section level and gain): a chroma without timbre, drums or noise.
    Windows past the track's first section get NaN rows."""
    start, end, genre = spec["sections"][0]
    fade = int(0.05 * CORPUS_SR)
    plan = harmony_plan(genre, (int(end * CORPUS_SR) + fade) / CORPUS_SR, np.random.default_rng(spec["seed"]),
                        spec["style"])
    g, gains, levels = GENRES[genre], spec["style"]["gains"], plan["levels"]
    weight = dict(zip(ROLES, ([0.0], [2.0], [1.0 if g["chords"] else 0.0], [0.5 if g["lead"] else 0.0])))
    hist = np.zeros((len(plan["chords"]), 12))
    for b, chord in enumerate(plan["chords"]):
        level = {r: levels[i, min(b // 4, levels.shape[1] - 1)] * gains[r] * weight[r][0] for i, r in enumerate(ROLES)}
        hist[b, (spec["style"]["key"] + chord[0]) % 12] += level["bass"]
        size = g["chords"][3] if g["chords"] else 0
        for p in (chord[:size] if size <= 4 else chord + [chord[1] + 12]):
            hist[b, (spec["style"]["key"] + p) % 12] += level["chords"]
        for p in chord:
            hist[b, (spec["style"]["key"] + p) % 12] += level["lead"]
    bars = np.arange(len(hist)) * plan["bar"]
    starts, ends = np.asarray(starts)[:, None], np.asarray(ends)[:, None]
    overlap = np.clip(np.minimum(ends, bars + plan["bar"]) - np.maximum(starts, bars), 0, None)
    out = np.sqrt(overlap @ hist)
    out[(starts[:, 0] + ends[:, 0]) / 2 >= end] = np.nan
    return out


def corpus_keys(n_tracks: int = 96) -> dict:
    """Every window (10 s, 2 s hop) of the default corpus: the estimated key against the stated key and the
    key signature, from the audio and from the notes played (see the module docstring)."""
    ds = SyntheticDataset(n_tracks)
    root = ds.generate()
    rows = []
    for spec in ds.plan():
        y, sr = load(root / spec["file"])
        starts, ends = Segmentation().windows(len(y) / sr)
        audio = tonal.describe(y, sr, starts, ends)
        notes = played_chroma(spec, starts, ends)
        ok = ~np.isnan(notes[:, 0])
        nt, nm = np.full(len(starts), -1), np.full(len(starts), -1)
        nt[ok], nm[ok] = estimate_key(notes[ok])[:2]
        for i, (a, b) in enumerate(zip(starts, ends)):
            genre = next(gg for s0, s1, gg in spec["sections"] if s0 <= (a + b) / 2 < s1)
            scale = GENRES[genre]["mode"]
            rows.append({"genre": genre, "root": spec["style"]["key"] % 12, "mode": 1 if scale is MINOR else 0,
                         "major_minor": scale is MAJOR or scale is MINOR,
                         "signature": key_signature(spec["style"]["key"], genre),
                         "audio": (int(audio["tonic"][i]), int(audio["mode"][i])),
                         "notes": (int(nt[i]), int(nm[i])) if ok[i] else None})
    t = pd.DataFrame(rows)
    out = {"tracks": n_tracks, "windows": len(t), "windows of major/minor genres": int(t["major_minor"].sum())}
    for source in ("audio", "notes"):
        s = t[t[source].notna()]
        est_t, est_m = np.array([k[0] for k in s[source]]), np.array([k[1] for k in s[source]])
        mm = s["major_minor"].to_numpy()
        stated = mirex_score(est_t, est_m, s["root"], s["mode"])[mm]
        signed = mirex_score(est_t, est_m, s["signature"], 0)
        scale = (est_t + 3 * est_m) % 12 == s["signature"].to_numpy()
        by_genre = pd.Series(scale).groupby(s["genre"].to_numpy()).mean().round(3).to_dict()
        out[source] = {"windows": len(s), "stated key: exact": float(np.mean(stated == 1.0)),
                       "stated key: MIREX": float(stated.mean()), "key signature: exact": float(np.mean(signed == 1.0)),
                       "key signature: MIREX": float(signed.mean()),
                       "scale (relative keys alike)": float(scale.mean()), "scale by genre": by_genre}
    return out


def main(path: str) -> None:
    lib = Library.open(path)
    load = os.getloadavg()[0]
    out = {"generated": generated(lib), **{f"corpus, neighbours by {e.name}": corpus(lib, e.key)
                                            for e in lib.embeddings()}, "load": round(load, 1)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    if sys.argv[1] == "--keys":
        load_avg = round(os.getloadavg()[0], 1)
        print(json.dumps({"progressions": progression_keys(),
                          "default corpus": corpus_keys(int(sys.argv[2]) if len(sys.argv) > 2 else 96),
                          "load": load_avg}, indent=1))
    else:
        main(sys.argv[1])
