"""The ``melodic`` corpus and the hum synthesiser: ground truth for query by humming.

Each track is a known lead melody (a seeded random walk on a major or minor scale, notes of
½ to 2 beats, a few rests) over chords, a bass line and drums, rendered with the instruments
of :mod:`audiorag.datasets.synth`. The lead sits 0–6 dB above the accompaniment, as in a
mix. The notes of every track are written beside the audio in ``melodies.json`` (file name →
``[[onset_s, duration_s, midi], ...]``), so hums can be synthesised from them and scored.

:func:`synthesise_hum` sings an excerpt of a melody the way a person hums it: a glottal-pulse
source through vowel formants, breath noise, the whole phrase transposed into the singer's
range, at another tempo, with vibrato, pitch jitter, ±50 cents out-of-tune notes, a dropped
or an added note, a small room and background noise. Development and the reported figures
use different seeds (:data:`DEV_SEED`, :data:`REPORT_SEED`).

>>> ds = MelodicDataset(8, seed=0)
>>> ds.id
'melodic-v1-n8-s0'
>>> notes = plan(1, 0)[0]["notes"]
>>> y, info = synthesise_hum(notes, np.random.default_rng(0), transpose=5, tempo=0.8, snr_db=20)
>>> info["transpose"] % 12, info["tempo"], y.dtype.name
(5, 0.8, 'float32')
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from scipy import signal

from ..errors import ParameterError
from ..io import file_sha256, write_atomic
from . import synth
from .generated import GeneratedDataset
from .genres import MAJOR, MINOR
from .synth import SR, add_noise, rms

GENERATOR_VERSION = 1
DEFAULT_N_TRACKS = 60
#: seeds of the hums used while developing the matcher, and of the hums behind the reported figures
DEV_SEED, REPORT_SEED = 1, 2017
LEADS = {"saw": {"kind": "additive", "partials": 10, "rolloff": 1.0, "attack": 0.02, "decay": 3.0},
         "square": {"kind": "additive", "partials": 11, "rolloff": 1.0, "odd_only": True, "attack": 0.02,
                    "decay": 3.0},
         "fm": {"kind": "fm", "ratio": 1.0, "index": 1.5, "mod_decay": 0.6, "attack": 0.01, "decay": 2.0},
         "strings": {"kind": "additive", "partials": 9, "rolloff": 1.1, "detune": 0.003, "attack": 0.05,
                     "decay": 3.0, "tremolo": 5.5}}
PAD = {"kind": "additive", "partials": 8, "rolloff": 1.2, "detune": 0.004, "attack": 0.3, "decay": 4.0}
PIANO = {"kind": "additive", "partials": 8, "rolloff": 1.2, "partial_damp": 3.0, "attack": 0.003, "decay": 0.6}
BASS = {"kind": "additive", "partials": 3, "rolloff": 2.0, "attack": 0.01, "decay": 0.5}


def compose(rng: np.random.Generator, duration: float, bpm: float, tonic: int, scale: list[int]) -> list[list[float]]:
    """A lead melody ``[[onset_s, duration_s, midi], ...]`` filling ``duration`` seconds."""
    beat = 60.0 / bpm
    notes, t, degree = [], 0.0, 0
    while t < duration:
        if notes and rng.random() < 0.08:  # a rest
            t += beat * float(rng.choice([0.5, 1.0]))
            continue
        length = beat * float(rng.choice([0.5, 0.5, 1.0, 1.0, 1.0, 1.5, 2.0]))
        step = int(rng.choice([-2, -1, -1, 1, 1, 2, 0, -3, 3, 4, -4]))
        degree = int(np.clip(degree + step, -4, 10))
        midi = tonic + scale[degree % 7] + 12 * (degree // 7)
        notes.append([round(t, 4), round(min(length, duration - t), 4), int(midi)])
        t += length
    return notes


def plan(n_tracks: int, seed: int, *, duration: float = 30.0) -> list[dict]:
    """Everything random about the corpus, decided up front: one dict per track (with its ``notes``).

    >>> p = plan(2, 0)
    >>> p[0]["file"], len(p[0]["notes"]) > 20
    ('melody0000.flac', True)
    """
    if n_tracks < 1:
        raise ParameterError(f"melodic: n_tracks must be >= 1, got {n_tracks}")
    tracks = []
    for i in range(n_tracks):
        rng = np.random.default_rng([seed, i, 17])
        bpm = float(rng.uniform(80, 140))
        mode = "major" if rng.random() < 0.5 else "minor"
        tonic = 57 + int(rng.integers(0, 12))
        tracks.append(dict(file=f"melody{i:04d}.flac", index=i, bpm=round(bpm, 2), mode=mode, tonic=tonic,
                           lead=str(rng.choice(sorted(LEADS))), lead_db=float(rng.uniform(0, 6)),
                           progression=[int(d) for d in rng.choice([0, 3, 4, 5], size=4)],
                           notes=compose(rng, duration, bpm, tonic, MAJOR if mode == "major" else MINOR),
                           duration=duration, seed=[seed, i]))
    return tracks


def render_track(spec: dict) -> np.ndarray:
    """Audio of one planned track (float32 mono at 22.05 kHz): lead over chords, bass and drums."""
    rng = np.random.default_rng(spec["seed"])
    n = int(spec["duration"] * SR)
    scale = MAJOR if spec["mode"] == "major" else MINOR
    lead = np.zeros(n)
    for onset, dur, midi in spec["notes"]:
        note = synth.tone(synth.midi_hz(midi), dur * 0.95, LEADS[spec["lead"]])
        note *= np.minimum(1.0, (len(note) - np.arange(len(note))) / (0.02 * SR))  # no click at the release
        a = int(onset * SR)
        m = min(len(note), n - a)
        lead[a:a + m] += note[:m]
    bar = 4 * 60.0 / spec["bpm"]
    chords, bass = np.zeros(n), np.zeros(n)
    timbre = PAD if rng.random() < 0.5 else PIANO
    for b in range(int(np.ceil(spec["duration"] / bar))):
        degree = spec["progression"][b % 4]
        root = spec["tonic"] - 12 + scale[degree]
        a = int(b * bar * SR)
        for j in range(3):  # a triad of stacked thirds, below the lead
            d = degree + 2 * j
            note = synth.tone(synth.midi_hz(spec["tonic"] - 12 + scale[d % 7] + 12 * (d // 7)), bar, timbre)
            m = min(len(note), n - a)
            chords[a:a + m] += note[:m] / 3
        for beat in range(0, 4, 2):
            note = synth.tone(synth.midi_hz(root - 12), bar / 2, BASS)
            s = a + int(beat * bar / 4 * SR)
            m = max(0, min(len(note), n - s))
            bass[s:s + m] += note[:m]
    step = bar / 8
    hits = {"kick": [(i * 2 * step, 1.0) for i in range(int(spec["duration"] / step / 2) + 1)],
            "snare": [((2 * i + 1) * 2 * step, 0.7) for i in range(int(spec["duration"] / step / 4) + 1)],
            "hat": [(i * step, 0.3) for i in range(int(spec["duration"] / step) + 1)]}
    drums = sum(synth.place(h, synth.drum(k, rng, {}), n) for k, h in hits.items())
    accompaniment = 0.5 * _unit(chords) + 0.4 * _unit(bass) + 0.35 * _unit(drums)
    y = _unit(lead) * 10 ** (spec["lead_db"] / 20) * rms(accompaniment) / 0.3 + accompaniment
    y = synth.reverb(y, rng, 1.2, 0.2)
    y *= 0.1 / rms(y)
    return np.clip(y, -0.99, 0.99).astype(np.float32)


def _unit(y: np.ndarray) -> np.ndarray:
    return y / (rms(y) / 0.3)


class MelodicDataset(GeneratedDataset):
    """The generated melodic corpus (spec ``melodic[:N[:SEED]]``); files are written once to the cache."""

    name = "melodic"
    version = GENERATOR_VERSION
    render = staticmethod(render_track)

    def __init__(self, n_tracks: int = DEFAULT_N_TRACKS, seed: int = 0, **options):
        super().__init__(n_tracks, seed, **options)

    def plan(self) -> list[dict]:
        return plan(self.n_tracks, self.seed, duration=self.duration)

    def manifest(self, specs: list[dict]) -> str:
        """``tracks.csv``, after ``melodies.json`` (every track's notes)."""
        write_atomic(self.root / MELODIES, json.dumps({s["file"]: s["notes"] for s in specs}))
        lines = ["path,melody,bpm,mode,lead,lead_db,sha256"] + [
            f"{s['file']},{s['index']},{s['bpm']},{s['mode']},{s['lead']},{s['lead_db']:.2f},"
            f"{file_sha256(self.root / s['file'])}" for s in specs]
        return "\n".join(lines) + "\n"


#: the notes of every track of a generated melodic corpus, beside its audio
MELODIES = "melodies.json"


def melodies_of(uri: str | os.PathLike) -> list | None:
    """The notes of the melodic track at ``uri`` (from the ``melodies.json`` beside it), None if it has none."""
    path = Path(uri).parent / MELODIES
    if not path.exists():
        return None
    return json.loads(path.read_text()).get(Path(uri).name)


# -- the hum synthesiser --------------------------------------------------------------------------
VOWELS = {"u": [(300, 1.0, 60), (870, 0.35, 90), (2240, 0.1, 120)],
          "m": [(250, 1.0, 50), (1100, 0.12, 150), (2500, 0.05, 200)],
          "a": [(700, 1.0, 90), (1220, 0.6, 110), (2600, 0.2, 160)],
          "o": [(450, 1.0, 70), (800, 0.5, 80), (2830, 0.08, 130)]}


def excerpt(notes: list, rng: np.random.Generator, *, n_notes: tuple[int, int] = (8, 14)) -> tuple[int, int]:
    """A phrase to hum: indices ``[a, b)`` of ``n_notes`` consecutive notes spanning at most 7 s."""
    for _ in range(100):
        length = int(rng.integers(n_notes[0], n_notes[1] + 1))
        a = int(rng.integers(0, max(1, len(notes) - length)))
        b = min(len(notes), a + length)
        while b - a > 4 and notes[b - 1][0] + notes[b - 1][1] - notes[a][0] > 7.0:
            b -= 1
        if b - a >= 5:
            return a, b
    raise ParameterError("excerpt: the melody has too few notes to hum")


def synthesise_hum(notes: list, rng: np.random.Generator, *, phrase: tuple[int, int] | None = None,
                   transpose: int = 0, tempo: float = 1.0, snr_db: float = 30.0, edit: str | None = "random",
                   sr: int = SR) -> tuple[np.ndarray, dict]:
    """Hum ``notes[a:b]`` (the excerpt ``phrase``, default a random one): returns audio and what was done.

    ``transpose`` semitones (then whole octaves into the singer's range, MIDI 48–67), ``tempo``
    (1.25: a quarter faster), background noise at ``snr_db``; ``edit`` "drop" (one note left out),
    "add" (one extra note), None, or "random" (either or none). ``info`` has the phrase's start
    in the track (``start``, seconds), the total ``transpose``, ``tempo``, ``snr_db``, ``edit``.
    """
    if not 0.5 <= tempo <= 2.0:
        raise ParameterError(f"synthesise_hum: tempo must be in [0.5, 2], got {tempo}")
    a, b = phrase or excerpt(notes, rng)
    sung = [[float(o), float(d), float(m) + transpose] for o, d, m in notes[a:b]]
    shift = 12 * int(np.round((57.5 - np.median([m for _, _, m in sung])) / 12))  # into the singer's range
    sung = [[o, d, m + shift] for o, d, m in sung]
    if edit == "random":
        edit = [None, "drop", "add"][int(rng.integers(0, 3))]
    if edit == "drop":  # the singer skips an inner note; the previous one lasts longer
        i = int(rng.integers(1, len(sung) - 1))
        sung[i - 1][1] += sung[i][1]
        del sung[i]
    elif edit == "add":  # a passing note splits one note in two
        i = int(rng.integers(0, len(sung)))
        o, d, m = sung[i]
        sung[i][1] = d / 2
        sung.insert(i + 1, [o + d / 2, d / 2, m + float(rng.choice([-2, -1, 1, 2]))])
    t0 = sung[0][0]
    lead_in = float(rng.uniform(0.2, 0.5))
    timed = [((o - t0) / tempo + lead_in, d / tempo, m + float(np.clip(rng.normal(0, 0.2), -0.5, 0.5)))
             for o, d, m in sung]  # out-of-tune notes: within ±50 cents
    n = int((timed[-1][0] + timed[-1][1] + lead_in) * sr)
    pitch, amp = np.full(n, timed[0][2]), np.zeros(n)
    for onset, dur, midi in timed:
        i, j = int(onset * sr), min(n, int((onset + dur) * sr))
        pitch[i:] = midi
        gap = int(float(rng.choice([0.0, 0.03, 0.08])) * sr)
        env = np.ones(max(j - i - gap, 1))
        ramp = min(int(0.03 * sr), len(env) // 2)
        if ramp:
            env[:ramp] = np.linspace(0, 1, ramp)
            env[-ramp:] = np.linspace(1, 0, ramp)
        amp[i:i + len(env)] = env[: n - i]
    pitch = signal.sosfiltfilt(signal.butter(2, 12, fs=sr, output="sos"), pitch)  # glides between notes
    t = np.arange(n) / sr
    rate, depth = rng.uniform(4.5, 6.5), rng.uniform(0.15, 0.5)
    pitch += depth * np.sin(2 * np.pi * rate * t) * np.clip(amp, 0, 1)  # vibrato, up to ±50 cents
    jitter = signal.sosfilt(signal.butter(2, 30, fs=sr, output="sos"), rng.standard_normal(n))
    pitch += 0.15 * jitter / (np.std(jitter) + 1e-9)  # cycle-to-cycle jitter (±15 cents r.m.s.)
    f0 = synth.midi_hz(pitch)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    source = np.zeros(n)
    for k in range(1, 40):  # glottal pulse: harmonics falling 12 dB/octave, band-limited
        source += np.where(k * f0 < 0.45 * sr, k ** -2.0, 0.0) * np.sin(k * phase)
    vowel = VOWELS[str(rng.choice(sorted(VOWELS)))]
    voice = sum(g * signal.sosfilt(signal.butter(1, [f - bw, f + bw], btype="bandpass", fs=sr, output="sos"), source)
                for f, g, bw in vowel)
    breath = signal.sosfilt(signal.butter(2, [1500, 6000], btype="bandpass", fs=sr, output="sos"),
                            rng.standard_normal(n))
    y = (voice / rms(voice) + 0.08 * breath / rms(breath)) * amp
    y = synth.reverb(y, rng, 0.4, float(rng.uniform(0.05, 0.25)), sr)
    noise = np.cumsum(rng.standard_normal(n)) * 0.02 + rng.standard_normal(n)  # room: rumble + hiss
    noise = signal.sosfilt(signal.butter(1, 40, btype="highpass", fs=sr, output="sos"), noise)
    y = add_noise(y, snr_db, noise=noise / rms(noise), level=rms(y[amp > 0.5]))
    y *= 0.1 / rms(y)
    info = {"start": float(notes[a][0]), "end": float(notes[b - 1][0] + notes[b - 1][1]), "notes": [a, b],
            "transpose": int(transpose + shift), "tempo": float(tempo), "snr_db": float(snr_db), "edit": edit,
            "seconds": n / sr}
    return np.clip(y, -0.99, 0.99).astype(np.float32), info
