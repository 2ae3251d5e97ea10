"""Query by humming: contour accuracy, invariance to key and tempo, the CLI, bad hums, the eval protocol."""

import json

import numpy as np
import pytest
import soundfile as sf
from conftest import locked
from typer.testing import CliRunner

from audiorag.audio import resample
from audiorag.cli import app
from audiorag.datasets.melodic import SR, MelodicDataset, melodies_of, plan, render_track, synthesise_hum
from audiorag.descriptors import melody as md
from audiorag.errors import ParameterError
from audiorag.library import Library
from audiorag.search import Query, search

N_TRACKS, DURATION = 6, 20.0


@pytest.fixture(scope="session")
def melodic_lib(cache, tmp_path_factory):
    """6 generated melodic tracks of 20 s (lead over chords, bass, drums), embedded with melody, indexed."""
    ds = MelodicDataset(N_TRACKS, seed=3, duration=DURATION)
    with locked(cache / ".melodic.lock"):
        ds.generate()
    lib = Library.create(tmp_path_factory.mktemp("hum") / "lib", window=10, hop=2)
    lib.add(ds, embedders=["melody"], workers=1, progress=False)
    lib.build_index("melody")
    return lib


def _track_notes(lib, track_id):
    uri = lib.tracks.set_index("track_id").at[track_id, "uri"]
    return melodies_of(uri)


def _truth(notes, n_frames):
    """The lead's pitch per contour frame (cents, 0 between notes)."""
    g = np.zeros(n_frames)
    for onset, dur, midi in notes:
        a, b = int(round(onset * md.frame_rate())), int(round((onset + dur * 0.95) * md.frame_rate()))
        g[a:b] = midi * 100
    return g


def test_contour_of_a_generated_mix_follows_the_lead():
    """Polyphonic extraction on a generated track (lead 0–6 dB over chords, bass, drums): median error and
    raw pitch accuracy on frames voiced in both, and voicing accuracy over all frames."""
    spec = plan(1, 11, duration=15.0)[0]
    cents = md.contour(resample(render_track(spec), SR, md.SR))
    truth = _truth(spec["notes"], len(cents))
    both = (cents > 0) & (truth > 0)
    err = np.abs(cents[both] - truth[both])
    assert np.median(err) <= 20                         # measured: 0 cents (on the 20-cent grid)
    assert np.mean(err <= 50) >= 0.9                    # raw pitch accuracy; measured 0.98 (0.996 over 12 tracks)
    assert np.mean((cents > 0) == (truth > 0)) >= 0.75  # voicing accuracy; measured 0.83 (0.70 over 12 tracks)
    assert both.sum() / (truth > 0).sum() >= 0.75       # voicing recall; measured 0.82


def test_hum_contour_gives_the_sung_intervals():
    """A clean hum of 9 notes, 5 semitones up at 0.8×: the notes found have the sung intervals."""
    notes = plan(1, 5)[0]["notes"]
    y, info = synthesise_hum(notes, np.random.default_rng(0), phrase=(3, 12), transpose=5, tempo=0.8,
                             snr_db=30, edit=None)
    found = md.notes(md.contour(resample(y, SR, md.SR)), md.frame_rate())[:, 2]
    sung = np.array([m for _, _, m in notes[3:12]], float) + info["transpose"]
    # repeated notes may merge or split: compare the melody's moves; a note sung up to 50 cents out of tune
    # may round to its neighbour, so a move may be off by one semitone
    found, sung = ([int(d) for d in np.diff(p) if d != 0] for p in (found, sung))
    assert len(found) == len(sung)
    assert np.abs(np.subtract(found, sung)).max() <= 1 and np.mean(np.equal(found, sung)) >= 0.6


def test_melody_vector_is_key_and_tempo_invariant():
    c = np.repeat(np.array([6000, 6200, 6400, 6200, 6700], np.float32), 12)
    slower = np.repeat(np.array([6000, 6200, 6400, 6200, 6700], np.float32) + 700, 20)
    v = md.melody_vector(c, md.frame_rate())
    assert np.allclose(v, md.melody_vector(slower, md.frame_rate()))
    assert md.melody_vector(np.zeros(50, np.float32), md.frame_rate())[-1] == 1.0  # "no melody"


def test_embedder_stores_vectors_and_contours(melodic_lib):
    emb = melodic_lib.embedding("melody")
    contours = emb.tags()
    assert contours.shape == (len(melodic_lib.segments), 128)
    assert melodic_lib.vectors("melody").shape == (len(melodic_lib.segments), md.DIM)
    assert emb.meta["tags_are"] == "contour"
    assert (contours > 0).mean() > 0.5  # most of each segment is melody
    with pytest.raises(ParameterError, match="has no tags"):  # a contour is not a tag space
        melodic_lib.tagger("melody")


@pytest.mark.parametrize("transpose, tempo", [(0, 1.0), (5, 0.8), (-4, 1.25)])
def test_hum_finds_its_track_whatever_key_and_tempo(melodic_lib, transpose, tempo):
    """The same phrase hummed in another key and at another tempo ranks its track first, at its moment."""
    notes = _track_notes(melodic_lib, 2)
    y, info = synthesise_hum(notes, np.random.default_rng(7), phrase=(10, 21), transpose=transpose, tempo=tempo,
                             snr_db=25, edit=None)
    hits = search(melodic_lib, Query.hum(y, sr=SR), k=3, by="track")
    assert hits["track_id"].iloc[0] == 2
    assert abs(hits["start"].iloc[0] - info["start"]) <= 1.0
    assert hits["score"].iloc[0] > hits["score"].iloc[1]
    segments = search(melodic_lib, Query.hum(y, sr=SR), k=5)
    assert segments["track_id"].iloc[0] == 2 and (segments["end"] > segments["start"]).all()


def test_cli_search_hum(melodic_lib, tmp_path):
    notes = _track_notes(melodic_lib, 2)
    y, info = synthesise_hum(notes, np.random.default_rng(7), phrase=(10, 21), transpose=3, tempo=1.1, snr_db=20,
                             edit=None)
    path = tmp_path / "hum.wav"
    sf.write(path, np.concatenate([np.zeros(SR, np.float32), y]), SR)  # a second of silence before it
    r = CliRunner().invoke(app, ["search", str(melodic_lib.path), "--hum", str(path), "--start", "1", "--by", "track",
                                 "-k", "3", "--json"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.output)
    assert hits[0]["track_id"] == 2 and abs(hits[0]["start"] - info["start"]) <= 1.0
    r = CliRunner().invoke(app, ["search", str(melodic_lib.path), "--hum", str(path), "--audio", str(path)])
    assert r.exit_code == 2 and "--hum is a query of its own" in r.output


@pytest.mark.parametrize("kind", ["silence", "noise", "short"])
def test_bad_hums_say_no_melody_found(melodic_lib, tmp_path, kind):
    rng = np.random.default_rng(0)
    notes = plan(1, 5)[0]["notes"]
    y = {"silence": np.zeros(3 * SR, np.float32),
         "noise": (0.1 * rng.standard_normal(3 * SR)).astype(np.float32),
         "short": synthesise_hum(notes, rng, phrase=(0, 6), snr_db=30, edit=None)[0][int(0.3 * SR):int(0.5 * SR)]}[kind]
    path = tmp_path / f"{kind}.wav"
    sf.write(path, y, SR)
    r = CliRunner().invoke(app, ["search", str(melodic_lib.path), "--hum", str(path)])
    assert r.exit_code == 2
    assert r.output.startswith("error: hum ") and f"{kind}.wav: no melody found" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1
    with pytest.raises(ParameterError, match="no melody found"):
        search(melodic_lib, Query.hum(y, sr=SR))


def test_hum_needs_the_melody_embedding(library):
    """The shared synthetic library has no melody embedding: a clear error, not a wrong answer."""
    y, _ = synthesise_hum(plan(1, 5)[0]["notes"], np.random.default_rng(0), phrase=(0, 8), snr_db=30, edit=None)
    with pytest.raises(ParameterError, match="melody"):
        search(library, Query.hum(y, sr=SR))


def test_eval_protocol_hum(melodic_lib, tmp_path):
    r = CliRunner().invoke(app, ["eval", str(melodic_lib.path), "--protocol", "hum", "--queries", "8", "--seed", "1",
                                 "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "metrics.json").read_text())
    m = rec["metrics"]
    assert rec["kind"] == "hum" and m["hums"] == 8
    assert 0.0 <= m["MRR"] <= 1.0 and m["top1"] <= m["top10"] <= 1.0
    assert m["top10"] >= 0.75   # 6 tracks: most hums find theirs
    assert m["latency/p50_ms"] > 0
    assert "MRR" in r.output and "transposed" in r.output
    assert sum(m[f"noise={s}dB/n"] for s in ("10", "20", "30") if f"noise={s}dB/n" in m) == 8


def test_the_melody_embedding_is_not_a_default(melodic_lib):
    """A hum query finds the melody embedding itself; as the default of moment, clip and text searches it is
    refused in one line (and the library keeps its default)."""
    before = melodic_lib.default_embedding
    res = CliRunner().invoke(app, ["default", str(melodic_lib.path), "melody"])
    assert res.exit_code == 2 and "holds melody contours for --hum queries" in res.output, res.output
    assert "Traceback" not in res.output and Library.open(melodic_lib.path).default_embedding == before


def test_hum_with_filters(melodic_lib):
    """Filters apply to hum queries; a filter no track passes gives no hits, not an error."""
    y, _ = synthesise_hum(_track_notes(melodic_lib, 2), np.random.default_rng(7), phrase=(10, 21), snr_db=30,
                          edit=None)
    hits = search(melodic_lib, Query.hum(y, sr=SR), k=5, by="track", filters={"mode": ["major", "minor"]})
    assert hits["track_id"].iloc[0] == 2
    others = search(melodic_lib, Query.hum(y, sr=SR), k=5, by="track", filters={"track_id": {"op": "!=", "value": 2}})
    assert 2 not in set(others["track_id"])
    assert search(melodic_lib, Query.hum(y, sr=SR), filters={"bpm": {"op": ">", "value": 1000}}).empty


def _dtw_by_the_book(h, r, shift, then=0.0):
    """The aligner's recurrence written point by point (the vectorised ``_dtw`` must give the same answer):
    cost, start, end, and the median pitch difference along the best path, ties to the (1,1) step."""
    from audiorag.melody import MAX_COST, WARP
    n, m, far = len(h), len(r), 1e18
    c = [[min(abs(h[i] + shift + then - r[j]), MAX_COST) for j in range(m)] for i in range(n)]
    d = [[far] * m for _ in range(n)]
    start = [[0] * m for _ in range(n)]
    step = [[0] * m for _ in range(n)]
    d[0], start[0] = list(c[0]), list(range(m))
    for i in range(1, n):
        for j in range(1, m):
            d[i][j], start[i][j] = d[i - 1][j - 1] + c[i][j], start[i - 1][j - 1]
            if j >= 2 and d[i - 1][j - 2] + c[i][j] + WARP < d[i][j]:
                d[i][j], start[i][j], step[i][j] = d[i - 1][j - 2] + c[i][j] + WARP, start[i - 1][j - 2], 1
            if i >= 2 and d[i - 2][j - 1] + 2 * c[i][j] + WARP < d[i][j]:
                d[i][j], start[i][j], step[i][j] = d[i - 2][j - 1] + 2 * c[i][j] + WARP, start[i - 2][j - 1], 2
    end = min(range(m), key=lambda j: (d[n - 1][j], j))
    diffs, i, j = [0.0] * n, n - 1, end
    while i >= 0:
        diffs[i] = r[j] - (h[i] + shift + then)
        if i == 0 or j == 0:
            diffs[:i] = [diffs[i]] * i
            break
        if step[i][j] == 2:
            diffs[i - 1] = r[j - 1] - (h[i - 1] + shift + then)
        i, j = i - (2 if step[i][j] == 2 else 1), j - (2 if step[i][j] == 1 else 1)
    return d[n - 1][end] / n, start[n - 1][end], end, float(np.median(diffs))


def test_the_vectorised_aligner_follows_its_recurrence():
    """``melody._dtw`` (all references at once, row by row, steps recorded) against the recurrence point by point,
    on random contours of different lengths: the same costs, starts, ends and path differences."""
    from audiorag.melody import _dtw
    rng = np.random.default_rng(11)
    for _ in range(6):
        h = np.repeat(rng.integers(-6, 7, 6), rng.integers(2, 5, 6)).astype(float) + rng.normal(0, 0.3, 1)
        refs = [np.repeat(rng.integers(50, 66, 8), rng.integers(1, 6, 8)).astype(float) + rng.normal(0, 0.2)
                for _ in range(5)]
        shifts = list(rng.uniform(50, 66, len(refs)))
        then = list(rng.normal(0, 0.5, len(refs)))
        cost, a, b, diff = _dtw(h, refs, shifts, path=True)
        cost2, a2, b2 = _dtw(h, refs, shifts, then=then)
        for k, r in enumerate(refs):
            want = _dtw_by_the_book(list(h), list(r), shifts[k])
            assert (cost[k], a[k], b[k], diff[k]) == pytest.approx(want, abs=1e-9)
            assert (cost2[k], a2[k], b2[k]) == pytest.approx(_dtw_by_the_book(list(h), list(r), shifts[k], then[k])[:3],
                                                             abs=1e-9)
