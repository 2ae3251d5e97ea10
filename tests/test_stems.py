"""Stems: HPSS separation, stem embedders (``NAME@percussive``) built beside the full mix with the same
segments, and searched with ``search --stem``; generated tracks whose drum pattern and harmony vary
independently (also used by ``benchmarks/stems.py``)."""

import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from audiorag import Library, Query
from audiorag.cli import app
from audiorag.embedders import get_embedder
from audiorag.embedders.stems import separate, stem_ref, with_stems
from audiorag.embedders.validate import validate
from audiorag.errors import ParameterError
from audiorag.search import search

SR = 22050
BPM = 120
#: 16-step patterns (kick, snare, hat) per drum pattern
PATTERNS = [
    {"kick": [0, 4, 8, 12], "snare": [], "hat": [2, 6, 10, 14]},                     # four on the floor
    {"kick": [0, 6, 10], "snare": [4, 12], "hat": list(range(0, 16, 2))},           # breakbeat
    {"kick": [0, 8], "snare": [4, 12], "hat": list(range(16))},                      # half-time, 16th hats
    {"kick": [0, 3, 7, 11], "snare": [8], "hat": [1, 5, 9, 13, 15]},                # syncopated
]
#: chord roots (MIDI) and qualities per harmony
HARMONIES = [
    [(48, (0, 4, 7)), (53, (0, 4, 7)), (55, (0, 4, 7)), (48, (0, 4, 7))],           # C: I IV V I
    [(57, (0, 3, 7)), (53, (0, 4, 7)), (48, (0, 4, 7)), (55, (0, 4, 7))],           # a: i VI III VII
    [(50, (0, 3, 7, 10)), (55, (0, 4, 7, 10)), (48, (0, 4, 7, 11)), (48, (0, 4, 7, 11))],  # ii7 V7 Imaj7
    [(52, (0, 3, 7)), (52, (0, 3, 7)), (47, (0, 4, 7)), (45, (0, 3, 7))],           # e: i i V iv
]


def drum_harmony_track(pattern: int, harmony: int, seed: int, seconds: float = 8.0, *, drums: bool = True,
                       pads: bool = True) -> np.ndarray:
    """A 4/4 loop at 120 BPM: drum pattern ``pattern`` (noise/sine hits) over chord progression ``harmony``
    (sustained harmonic pads, one chord per bar); ``seed`` varies levels, timing and timbre. ``drums=False`` /
    ``pads=False`` leave that part out (same seed: the other part is the same), unnormalised."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    y = np.zeros(n)
    step = 60 / BPM / 4
    t = np.arange(int(0.25 * SR)) / SR
    kick = np.sin(2 * np.pi * (50 + 80 * np.exp(-t * 30)) * t) * np.exp(-t * 12)
    snare = rng.standard_normal(len(t)) * np.exp(-t * 25) * 0.6
    hat = np.diff(rng.standard_normal(len(t) + 1)) * np.exp(-t * 80) * 0.25
    for s in range(int(seconds / step)):
        at = int((s * step + rng.normal(0, 0.004)) * SR)
        for name, hit in (("kick", kick), ("snare", snare), ("hat", hat)):
            if drums and s % 16 in PATTERNS[pattern][name] and 0 <= at < n:
                seg = hit[: n - at] * rng.uniform(0.8, 1.0)
                y[at:at + len(seg)] += seg
    bar = 4 * 60 / BPM
    tb = np.arange(int(bar * SR)) / SR
    bright = rng.uniform(0.5, 0.8)
    for b in range(int(np.ceil(seconds / bar))):
        root, chord = HARMONIES[harmony][b % 4]
        pad = sum(bright ** (k - 1) * np.sin(2 * np.pi * 440 * 2 ** ((root + c - 69) / 12) * k * tb)
                  for c in chord for k in range(1, 5))
        pad *= np.minimum(1, tb / 0.05) * 0.08
        a = int(b * bar * SR)
        y[a:a + len(pad)] += pad[: n - a] * pads
    return (0.5 * y / np.abs(y).max() if drums and pads else y).astype(np.float32)


def test_hpss_splits_drums_from_chords():
    drums, pads = drum_harmony_track(1, 2, 3, drums=True, pads=False), drum_harmony_track(1, 2, 3, pads=True,
                                                                                          drums=False)
    mix = drums + pads
    p, h = separate(mix, "percussive"), separate(mix, "harmonic")
    assert p.shape == h.shape == mix.shape
    corr = lambda a, b: float(np.corrcoef(a, b)[0, 1])  # noqa: E731
    assert corr(p, drums) > 0.8 > corr(p, pads) and corr(h, pads) > 0.8 > corr(h, drums), \
        (corr(p, drums), corr(p, pads), corr(h, pads), corr(h, drums))
    with pytest.raises(ParameterError, match="unknown stem"):
        separate(mix, "vocals")
    with pytest.raises(ParameterError, match="unknown stem"):
        get_embedder("features45@drums")
    assert [e.name for e in with_stems([get_embedder("features45")], "hpss")][1:] == ["features45@harmonic",
                                                                                       "features45@percussive"]
    with pytest.raises(ParameterError, match="Demucs is not installed"):
        with_stems([], "demucs")
    assert stem_ref("features45", "harmonic", []) == "features45@harmonic"


def test_a_stem_embedder_passes_the_validator():
    report = validate(get_embedder("features45@percussive"), lengths=(0.05, 2.5))   # shorter than one STFT, longer
    assert report.ok and len(report.checks) == 2 * 5 + 2, report.summary()


@pytest.fixture(scope="module")
def stem_library(tmp_path_factory):
    """Two drum patterns × two harmonies × two seeds, 8 s each; features45 and its HPSS stems (build --stems)."""
    root = tmp_path_factory.mktemp("stems")
    rows = ["path,drums,harmony"]
    for p in range(2):
        for h in range(2):
            for s in range(2):
                sf.write(root / f"d{p}h{h}s{s}.wav", drum_harmony_track(p, h, 10 * p + 3 * h + s), SR)
                rows.append(f"d{p}h{h}s{s}.wav,d{p},h{h}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    r = CliRunner().invoke(app, ["build", str(root / "lib"), "--dataset", f"folder:{root}", "--labels",
                                 str(root / "labels.csv"), "--stems", "hpss", "--window", "4", "--hop", "2",
                                 "--workers", "1", "--json"])
    assert r.exit_code == 0, r.output
    return Library.open(root / "lib"), root


def test_stems_are_embedded_with_the_same_segments_and_searchable(stem_library):
    lib, root = stem_library
    names = sorted(e.name for e in lib.embeddings())
    assert names == ["features45", "features45@harmonic", "features45@percussive"]
    for e in lib.embeddings():
        assert len(e.vectors()) == len(lib.segments) and e.meta["segmentation"] == lib.segmentation.to_dict()
    perc = lib.embedding("features45@percussive")
    assert perc.meta["stem"] == "percussive" and not perc.tag_names
    mix = lib.embedding("features45")
    assert not np.allclose(perc.vectors(), mix.vectors())
    # a clip query is separated like the library's tracks (alone: HPSS edges differ a little): its moment first
    wav = root / "d1h0s1.wav"
    tid = int(lib.tracks.loc[lib.tracks["uri"].str.endswith("d1h0s1.wav"), "track_id"].iloc[0])
    hits = search(lib, Query.audio(wav, start=0, end=4), embedder="features45@percussive", k=3)
    assert hits["track_id"].iloc[0] == tid and hits["start"].iloc[0] == 0 and hits["score"].iloc[0] > 0.95
    r = CliRunner().invoke(app, ["search", str(lib.path), "--track", str(tid), "--at", "2", "--stem", "percussive",
                                 "-k", "4", "--exclude-same-track", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    hits = out["hits"] if isinstance(out, dict) else out
    assert len(hits) == 4 and tid not in {h["track_id"] for h in hits}
    r = CliRunner().invoke(app, ["search", str(lib.path), "--track", str(tid), "--stem", "vocals"])
    assert r.exit_code == 2 and "unknown stem 'vocals'" in r.output
