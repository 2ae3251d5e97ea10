"""The eight "genres" of the synthetic corpus, declared as musical generative parameters,
and :func:`render`, which turns a genre + per-track variation into audio.

Each genre fixes a tempo range, drum patterns (16 steps a bar), bass and chord/lead
roles with their timbres, a mode and progression, swing, and texture/effects. Tracks
vary key, tempo, mix, timbre, noise and loudness, so classes overlap.
"""

from __future__ import annotations

import numpy as np

from . import synth

MAJOR = [0, 2, 4, 5, 7, 9, 11]
MINOR = [0, 2, 3, 5, 7, 8, 10]
DORIAN = [0, 2, 3, 5, 7, 9, 10]

PIANO = {"kind": "additive", "partials": 8, "rolloff": 1.2, "partial_damp": 3.0, "attack": 0.003, "decay": 0.6,
         "stretch": 1.0005}
EPIANO = {"kind": "fm", "ratio": 1.0, "index": 1.2, "mod_decay": 0.3, "attack": 0.005, "decay": 0.8, "tremolo": 4.0}
PAD = {"kind": "additive", "partials": 10, "rolloff": 1.0, "detune": 0.004, "attack": 0.8, "decay": 4.0}
SAW = {"kind": "additive", "partials": 12, "rolloff": 1.0, "attack": 0.005, "decay": 0.25}
SUB = {"kind": "additive", "partials": 2, "rolloff": 3.0, "attack": 0.01, "decay": 0.6}
FM_BASS = {"kind": "fm", "ratio": 1.0, "index": 4.0, "mod_decay": 0.08, "attack": 0.002, "decay": 0.18}
PLUCK = {"kind": "additive", "partials": 6, "rolloff": 1.5, "partial_damp": 8.0, "attack": 0.002, "decay": 0.35}
GUITAR = {"kind": "additive", "partials": 10, "rolloff": 0.8, "attack": 0.004, "decay": 0.5, "drive": 6.0}
BELL = {"kind": "fm", "ratio": 3.5, "index": 2.5, "mod_decay": 1.0, "attack": 0.002, "decay": 1.5}
STRINGS = {"kind": "additive", "partials": 9, "rolloff": 1.1, "detune": 0.003, "attack": 0.3, "decay": 2.0,
           "tremolo": 5.5}
ORGAN = {"kind": "additive", "partials": 7, "rolloff": 0.7, "odd_only": True, "attack": 0.01, "decay": 2.5}

GENRES: dict[str, dict] = {
    "techno": dict(bpm=(124, 134), mode=MINOR, progression=[0, 0, 5, 3], swing=0.0,
                   drums={"kick": "x...x...x...x...", "hat": "..x...x...x...x.", "clap": "....x.......x..."},
                   bass=("x.xxx.x.x.xxx.x.", FM_BASS, 0.2), chords=None,
                   lead=("x..x..x...x..x..", SAW, 0.25, 2), reverb=(0.8, 0.2), drive=1.5, noise=0.0, crackle=0),
    "house": dict(bpm=(118, 126), mode=DORIAN, progression=[0, 3, 4, 3], swing=0.08,
                  drums={"kick": "x...x...x...x...", "openhat": "..x...x...x...x.", "clap": "....x.......x...",
                         "hat": "x.x.x.x.x.x.x.x."},
                  bass=("..x...x...x..xx.", SAW, 0.25), chords=("..x..x....x..x..", PIANO, 0.5, 4),
                  lead=None, reverb=(1.2, 0.25), drive=0.0, noise=0.0, crackle=0),
    "drum_and_bass": dict(bpm=(168, 178), mode=MINOR, progression=[0, 5, 6, 4], swing=0.0,
                          drums={"kick": "x.........x.....", "snare": "....x.......x...", "hat": "x.xxx.x.x.xxx.x.",
                                 "rim": "......x.......x."},
                          bass=("x...............", SUB, 3.5), chords=("x...............", PAD, 4.0, 4),
                          lead=None, reverb=(1.5, 0.3), drive=0.0, noise=0.0, crackle=0),
    "ambient": dict(bpm=(60, 80), mode=MAJOR, progression=[0, 5, 3, 4], swing=0.0, drums={},
                    bass=("x...............", SUB, 4.0), chords=("x...............", PAD, 4.0, 5),
                    lead=("x.......x.......", BELL, 1.5, 3), reverb=(3.0, 0.6), drive=0.0, noise=0.01, crackle=0),
    "hiphop": dict(bpm=(84, 96), mode=MINOR, progression=[0, 0, 5, 6], swing=0.18,
                   drums={"kick": "x......x..x.....", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
                   bass=("x......x..x.....", SUB, 0.5), chords=("x.......x.......", EPIANO, 1.2, 4),
                   lead=None, reverb=(0.6, 0.15), drive=0.0, noise=0.0, crackle=6),
    "rock": dict(bpm=(108, 140), mode=MAJOR, progression=[0, 4, 5, 3], swing=0.0,
                 drums={"kick": "x.......x.x.....", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x.",
                        "crash": "x..............."},
                 bass=("x.x.x.x.x.x.x.x.", PLUCK, 0.25), chords=("x.x.x.x.x.x.x.x.", GUITAR, 0.3, 2),
                 lead=None, reverb=(0.9, 0.2), drive=2.0, noise=0.0, crackle=0),
    "classical": dict(bpm=(70, 110), mode=MAJOR, progression=[0, 3, 4, 0], swing=0.0, drums={},
                      bass=("x.......x.......", STRINGS, 1.8), chords=("x...............", STRINGS, 3.5, 3),
                      lead=("xxxxxxxxxxxxxxxx", PIANO, 0.4, 1), reverb=(2.0, 0.35), drive=0.0, noise=0.0, crackle=0),
    "jazz": dict(bpm=(120, 170), mode=DORIAN, progression=[1, 4, 0, 5], swing=0.22,
                 drums={"ride": "x..xx..xx..xx..x", "brush": "....x.......x...", "kick": "x..........x...."},
                 bass=("x...x...x...x...", PLUCK, 0.45), chords=("...x.....x......", ORGAN, 0.6, 5),
                 lead=None, reverb=(1.0, 0.2), drive=0.0, noise=0.0, crackle=0),
}

ROLES = ("drums", "bass", "chords", "lead")
_DRUM_GAIN = {"kick": 1.0, "snare": 0.7, "clap": 0.6, "hat": 0.25, "openhat": 0.3, "ride": 0.3, "crash": 0.4,
              "rim": 0.35, "brush": 0.3}


def _step_times(pattern: str, bar: float, n_bars: int, swing: float) -> list[float]:
    step = bar / 16
    times = []
    for b in range(n_bars):
        for i, c in enumerate(pattern):
            if c == "x":
                times.append(b * bar + i * step + (swing * step if i % 2 else 0.0))
    return times


def _chord(scale: list[int], degree: int, size: int) -> list[int]:
    """Stacked thirds on a scale degree (semitones above the key root)."""
    return [scale[(degree + 2 * j) % 7] + 12 * ((degree + 2 * j) // 7) for j in range(size)]


def _vary_timbre(timbre: dict, rng: np.random.Generator, amount: float) -> dict:
    out = dict(timbre)
    for k in ("rolloff", "decay", "attack", "index", "drive"):
        if k in out:
            out[k] = out[k] * float(np.exp(rng.normal(0, amount)))
    return out


def _arrangement(levels: np.ndarray, bar: float, n: int) -> dict:
    """Per-role gain curves from the roles' section levels (:func:`harmony_plan`): every 4-bar section
    each layer is in, out or half level (smoothed), so a track has an intro, build-ups and breakdowns and
    its moments differ."""
    sr = synth.SR
    section = int(4 * bar * sr)
    ramp = int(0.25 * sr)
    curves = {}
    for role, row in zip(ROLES, levels):
        curves[role] = np.convolve(np.repeat(row, section)[:n], np.ones(ramp) / ramp, mode="same")
    return curves


def harmony_plan(genre: str, duration: float, rng: np.random.Generator, style: dict) -> dict:
    """The first random draws of :func:`render` (in its order): each role's level per 4-bar section
    (``levels`` ``[4 roles, n_sections]``, roles :data:`ROLES`) and each bar's chord (``chords``: semitones
    above the key root, stacked thirds on the progression's degree, rotated by a random degree per 4-bar
    section). Because of that rotation the music states a scale, not a tonic: its key is the scale's
    :func:`key_signature`.

    >>> p = harmony_plan("ambient", 8.0, np.random.default_rng(0), {"bpm": 70.0})
    >>> p["levels"].shape[0], len(p["chords"][0])
    (4, 4)
    """
    g = GENRES[genre]
    n = int(duration * synth.SR)
    bar = 4 * 60.0 / style["bpm"]
    n_bars = int(np.ceil(duration / bar)) + 1
    n_sections = n // int(4 * bar * synth.SR) + 1
    levels = rng.choice([0.0, 0.5, 1.0, 1.0], size=(len(ROLES), n_sections))
    levels[:, rng.integers(0, n_sections)] = 1.0  # one full section
    levels[1, levels.max(axis=0) == 0] = 1.0      # never silence: the bass plays when all else rests
    shift = rng.integers(0, 7, size=n_bars // 4 + 1)  # each 4-bar section starts the progression elsewhere
    chords = [_chord(g["mode"], g["progression"][b % len(g["progression"])] + int(shift[b // 4]), 4)
              for b in range(n_bars)]
    return {"levels": levels, "chords": chords, "bar": bar}


def key_signature(root: int, genre: str) -> int:
    """The pitch class of the major key whose scale a track of ``genre`` on ``root`` plays (C dorian and
    A minor → C major's 0): all the generated music determines, since :func:`harmony_plan` rotates the
    progression to a random degree every 4 bars (no tonic is established, and the minor genres use the
    natural minor, without a leading tone).

    >>> key_signature(9, "techno"), key_signature(2, "house"), key_signature(7, "rock")
    (0, 0, 7)
    """
    scale = GENRES[genre]["mode"]
    return (int(root) + (3 if scale is MINOR else -2 if scale is DORIAN else 0)) % 12


def render(genre: str, duration: float, rng: np.random.Generator, style: dict) -> np.ndarray:
    """Render ``duration`` seconds of ``genre``.

    ``style`` is the per-track variation: ``key`` (MIDI root), ``bpm``, ``timbre_jitter``,
    ``gains`` (per role, linear), ``kick_pitch``/``snare_pitch``/``ride_pitch``.
    """
    g = GENRES[genre]
    sr = synth.SR
    n = int(duration * sr)
    plan = harmony_plan(genre, duration, rng, style)
    bar = plan["bar"]
    n_bars = len(plan["chords"])
    key = style["key"]
    mix = np.zeros(n)
    gains = style["gains"]
    arrangement = _arrangement(plan["levels"], bar, n)

    for name, pattern in g["drums"].items():
        hits = [(t + rng.normal(0, 0.003), _DRUM_GAIN[name] * rng.uniform(0.8, 1.0))
                for t in _step_times(pattern, bar, n_bars, g["swing"])]
        mix += gains["drums"] * arrangement["drums"] * synth.place(hits, synth.drum(name, rng, style), n)

    def melodic(role, pattern, timbre, note_dur, octave, notes_of_bar):
        out = np.zeros(n)
        timbre = _vary_timbre(timbre, rng, style["timbre_jitter"])
        step = bar / 16
        for b in range(n_bars):
            chord = plan["chords"][b]
            for i, c in enumerate(pattern):
                if c != "x":
                    continue
                t0 = b * bar + i * step + (g["swing"] * step if i % 2 else 0.0)
                if t0 >= duration:
                    break
                for pitch in notes_of_bar(chord, b, i):
                    note = synth.tone(synth.midi_hz(key + 12 * octave + pitch), note_dur, timbre)
                    a = int(t0 * sr)
                    m = min(len(note), n - a)
                    out[a:a + m] += note[:m] * rng.uniform(0.75, 1.0)
        return gains[role] * arrangement[role] * out

    pattern, timbre, dur = g["bass"]
    walk = g is GENRES["jazz"]
    mix += 0.8 * melodic("bass", pattern, timbre, dur, 0,
                         lambda ch, b, i: [ch[(i // 4) % 4] if walk else ch[0]])
    if g["chords"]:
        pattern, timbre, dur, size = g["chords"]
        mix += 0.35 * melodic("chords", pattern, timbre, dur, 1,
                              lambda ch, b, i: ch[:size] if size <= 4 else ch + [ch[1] + 12])
    if g["lead"]:
        pattern, timbre, dur, octave = g["lead"]
        arp = rng.permutation(4)
        mix += 0.3 * melodic("lead", pattern, timbre, dur, octave + 1,
                             lambda ch, b, i: [ch[arp[i % 4]] + 12 * ((i // 4) % 2)])

    if g["drive"]:
        mix = np.tanh(g["drive"] * mix / (np.abs(mix).max() + 1e-9))
    seconds, wet = g["reverb"]
    mix = synth.reverb(mix, rng, seconds, min(wet * style["reverb_scale"], 0.9))
    if g["crackle"]:
        mix += 0.3 * np.abs(mix).max() * synth.crackle(n, rng, g["crackle"])
    if style.get("lowpass"):
        mix = synth.lowpass(mix, style["lowpass"])
    return mix / (np.abs(mix).max() + 1e-9)
