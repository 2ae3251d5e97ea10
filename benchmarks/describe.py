"""What ``describe`` gets right: key and tempo on generated audio with known values, and on the default corpus
(its ``tracks.csv`` states each track's key, mode and tempo); the neighbourhood's agreement with the track's
own genre and tags.

    audiorag build /tmp/lib --dataset synthetic:24 --embedder features45 --embedder musicnn-mtt
    python benchmarks/describe.py /tmp/lib     # prints JSON; the load average at the start
    python benchmarks/describe.py --keys [N]   # key accuracy only: the progressions and every window of the
                                               # N-track default corpus (96), no library needed
    python benchmarks/describe.py --mood [N]   # mood (audiorag.descriptors.mood): generated music of set mode,
                                               # tempo and level; sonic-pi categories (+ musicnn-msd tags); corpus

Mood (``--mood``): on generated progressions (2 modes × 3 tempi × 3 RMS levels × 2 seeds) the Spearman
correlation of arousal with tempo and with level and the share of clips whose valence is on their mode's side;
on sonic-pi-samples, each category's mean arousal and valence and the AUC of arousal separating ambient
(``ambi_``) from drum loops and hits (``loop_``, ``drum_``, ``elec_``, ``bd_``, ``sn_``), with and without
musicnn-msd's tags; on the default corpus, each genre's mean arousal and valence and its words.

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
from audiorag.descriptors import mood, tonal
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


def corpus_windows(n_tracks: int):
    """Each track of the default corpus: its plan, window bounds, descriptors and the genre at each window."""
    ds = SyntheticDataset(n_tracks)
    root = ds.generate()
    for spec in ds.plan():
        y, sr = load(root / spec["file"])
        starts, ends = Segmentation().windows(len(y) / sr)
        genres = [next(g for s0, s1, g in spec["sections"] if s0 <= (a + b) / 2 < s1) for a, b in zip(starts, ends)]
        yield spec, starts, ends, tonal.describe(y, sr, starts, ends), genres


def corpus_keys(n_tracks: int = 96) -> dict:
    """Every window (10 s, 2 s hop) of the default corpus: the estimated key against the stated key and the
    key signature, from the audio and from the notes played (see the module docstring)."""
    rows = []
    for spec, starts, ends, audio, genres in corpus_windows(n_tracks):
        notes = played_chroma(spec, starts, ends)
        ok = ~np.isnan(notes[:, 0])
        nt, nm = np.full(len(starts), -1), np.full(len(starts), -1)
        nt[ok], nm[ok] = estimate_key(notes[ok])[:2]
        for i, genre in enumerate(genres):
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


def _mood_of(y, sr, tags=None) -> dict:
    return {k: v[0] for k, v in mood.estimate(tonal.describe(y, sr, [0.0], [len(y) / sr]), tags).items()}


def controlled_mood() -> dict:
    """Arousal and valence of progressions whose mode, tempo and level are set."""
    from scipy.stats import spearmanr
    rows = []
    for minor in (False, True):
        for bpm in (70, 110, 150):
            for level in (-35, -25, -15):
                for seed in (0, 1):
                    y = progression(seed * 5, minor, bpm, seed=seed).astype(np.float64)
                    y = (y * 10 ** (level / 20) / np.sqrt(np.mean(y ** 2))).astype(np.float32)
                    rows.append({"minor": minor, "bpm": bpm, "level": level, **_mood_of(y, SR)})
    t = pd.DataFrame(rows)
    corners = {f"{'minor' if m else 'major'}, {b} BPM, {lv} dB": t[(t.minor == m) & (t.bpm == b) & (t.level == lv)]
               ["mood"].value_counts().to_dict() for m in (False, True) for b, lv in ((70, -35), (150, -15))}
    return {"clips": len(t), "spearman arousal~tempo": round(float(spearmanr(t["arousal"], t["bpm"])[0]), 3),
            "spearman arousal~level": round(float(spearmanr(t["arousal"], t["level"])[0]), 3),
            "valence on the mode's side": float(((t["valence"] > 0.5) != t["minor"]).mean()),
            "arousal range": [round(float(t["arousal"].min()), 3), round(float(t["arousal"].max()), 3)],
            "words at the corners": corners}


def _auc(low, high) -> float:
    """P(a ``high`` value > a ``low`` value), ties half."""
    low, high = np.asarray(low)[:, None], np.asarray(high)[None, :]
    return float(((high > low) + 0.5 * (high == low)).mean())


def sonic_pi_mood(root: str = "/usr/share/sonic-pi/samples") -> dict:
    """Mood by sample category, without and with musicnn-msd's tags."""
    from pathlib import Path

    from audiorag.embedders import get_embedder
    files = sorted(Path(root).glob("*.flac"))
    if not files:
        return {"skipped": f"{root}: no samples (apt-get install sonic-pi-samples)"}
    try:
        msd = get_embedder("musicnn-msd")
    except Exception as exc:  # noqa: BLE001 - the figure without tags still stands
        msd, why = None, f"{type(exc).__name__}: {exc}"
    rows = []
    for path in files:
        y, sr = load(path)
        row = {"category": path.name.split("_")[0], **_mood_of(y, sr)}
        if msd is not None:
            x = load(path, sr=msd.sample_rate)[0]
            probs = msd.run(msd.prepare_track(x, [0.0], [len(x) / msd.sample_rate]))["tags"][0]
            tagged = _mood_of(y, sr, {n: np.array([p]) for n, p in zip(msd.tag_names, probs)})
            row.update({f"{k} (tags)": v for k, v in tagged.items()})
        rows.append(row)
    t = pd.DataFrame(rows)
    calm, busy = t[t.category == "ambi"], t[t.category.isin(["loop", "drum", "elec", "bd", "sn"])]
    out = {"samples": len(t), "ambient": len(calm), "drum loops and hits": len(busy),
           "AUC arousal, drums > ambient": round(_auc(calm["arousal"], busy["arousal"]), 3),
           "ambient words": calm["mood"].value_counts().to_dict(),
           "by category": t.groupby("category")[["arousal", "valence"]].mean().round(3).to_dict("index")}
    if msd is not None:
        out["AUC arousal with tags, drums > ambient"] = round(_auc(calm["arousal (tags)"], busy["arousal (tags)"]), 3)
        out["ambient words with tags"] = calm["mood (tags)"].value_counts().to_dict()
        out["by category with tags"] = t.groupby("category")[["arousal (tags)", "valence (tags)"]].mean().round(3) \
            .to_dict("index")
    else:
        out["tags"] = f"musicnn-msd unavailable: {why}"
    return out


def corpus_mood(n_tracks: int = 96) -> dict:
    """Every window of the default corpus: mean arousal and valence per genre and its words."""
    rows = []
    for _, _, _, descriptors, genres in corpus_windows(n_tracks):
        m = mood.estimate(descriptors)
        rows.extend({"genre": genre, **{k: v[i] for k, v in m.items()}} for i, genre in enumerate(genres))
    t = pd.DataFrame(rows)
    by = t.groupby("genre")
    return {"windows": len(t), "by genre": by[["arousal", "valence", "mood_confidence"]].mean().round(3)
            .join(by["mood"].agg(lambda s: s.value_counts().to_dict())).to_dict("index")}


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
    elif sys.argv[1] == "--mood":
        load_avg = round(os.getloadavg()[0], 1)
        print(json.dumps({"controlled": controlled_mood(), "sonic-pi": sonic_pi_mood(),
                          "default corpus": corpus_mood(int(sys.argv[2]) if len(sys.argv) > 2 else 96),
                          "load": load_avg}, indent=1, default=str))
    else:
        main(sys.argv[1])
