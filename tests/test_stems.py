"""Stems: HPSS and Demucs separation, stem embedders (``NAME@percussive``, ``NAME@drums``) built beside the
full mix with the same segments, and searched with ``search --stem``; generated tracks whose drum pattern and
harmony vary independently, and random HTDemucs models in demucs' own formats (both also used by
``benchmarks/stems.py``)."""

import hashlib
import json
import os
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from audiorag import Library, Query
from audiorag.cli import app
from audiorag.embedders import get_embedder
from audiorag.embedders.demucs_stems import REPO_ENV, load, locate
from audiorag.embedders.stems import separator, stem_ref, with_stems
from audiorag.embedders.validate import validate
from audiorag.errors import AudioragError, ParameterError
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
    stems = separator("hpss").separate(mix, SR)
    p, h = stems["percussive"], stems["harmonic"]
    assert p.shape == h.shape == mix.shape
    corr = lambda a, b: float(np.corrcoef(a, b)[0, 1])  # noqa: E731
    assert corr(p, drums) > 0.8 > corr(p, pads) and corr(h, pads) > 0.8 > corr(h, drums), \
        (corr(p, drums), corr(p, pads), corr(h, pads), corr(h, drums))
    with pytest.raises(ParameterError, match="unknown stem"):
        get_embedder("features45@timpani")
    assert [e.name for e in with_stems([get_embedder("features45")], "hpss")][1:] == ["features45@harmonic",
                                                                                       "features45@percussive"]
    with pytest.raises(ParameterError, match="--stems must be one of hpss, demucs"):
        with_stems([], "spleeter")
    with pytest.raises(ParameterError, match="--demucs-model need --stems demucs"):
        with_stems([], None, model="htdemucs")
    with pytest.raises(ParameterError, match="--stems hpss takes no option model"):
        with_stems([], "hpss", model="htdemucs")
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
    assert perc.meta["stem"] == "percussive" and not perc.tag_names and perc.meta["stem_source"]["name"] == "hpss"
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
    r = CliRunner().invoke(app, ["search", str(lib.path), "--track", str(tid), "--stem", "timpani"])
    assert r.exit_code == 2 and "unknown stem 'timpani'" in r.output
    r = CliRunner().invoke(app, ["search", str(lib.path), "--track", str(tid), "--stem", "vocals"])
    assert r.exit_code == 2 and "0 vocals embeddings here (none; build with --stems demucs)" in r.output


# -- Demucs: a tiny randomly initialised HTDemucs saved in demucs' own format, loaded through the offline path --

#: HTDemucs settings: "full" is the published htdemucs (demucs/grids/mmi.py: dconv_mode 3, depth 4, 5 transformer
#: layers, bottom_channels 512; 7.8 s segments; 42.0 M parameters), "tiny" a few thousand parameters at 16 kHz
HTDEMUCS = {"full": {"dconv_mode": 3, "bottom_channels": 512, "t_layers": 5, "segment": "39/5"},
            "tiny": {"channels": 8, "depth": 2, "t_layers": 1, "t_heads": 1, "nfft": 256, "bottom_channels": 0,
                     "samplerate": 16000, "segment": "2"}}
DEMUCS_SOURCES = ["drums", "bass", "other", "vocals"]


def need_demucs() -> None:
    """Skip unless demucs imports (``audiorag[stems]``); under CI (``$CI`` set) fail instead."""
    try:
        import demucs.apply  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"demucs does not import under CI ({exc}); the Makefile installs audiorag[stems]")
        pytest.skip("demucs is not installed: pip install 'audiorag[stems]'")


def save_demucs(folder: Path, name: str = "tiny", *, size: str = "tiny", seed: int = 0) -> Path:
    """A random HTDemucs written as demucs' ``LocalRepo`` holds models: the package ``serialize_model`` makes
    (klass, args, kwargs, half-precision state; ``training_args`` empty, as it needs omegaconf) saved by
    ``save_with_checksum`` as ``SIG-CHECKSUM.th``, and a bag ``NAME.yaml`` listing it. Returns the .th file."""
    import torch
    from demucs.htdemucs import HTDemucs
    from demucs.states import get_state, save_with_checksum
    torch.manual_seed(seed)
    kw = dict(HTDEMUCS[size])
    model = HTDemucs(DEMUCS_SOURCES, **{**kw, "segment": Fraction(kw["segment"])})
    args, kwargs = model._init_args_kwargs
    folder.mkdir(parents=True, exist_ok=True)
    sig = f"{size[:4]}{seed:04d}"
    save_with_checksum({"klass": HTDemucs, "args": args, "kwargs": kwargs, "state": get_state(model, None, True),
                        "training_args": {}}, folder / f"{sig}.th")
    (folder / f"{name}.yaml").write_text(f"models: ['{sig}']\n")
    return next(folder.glob(f"{sig}-*.th"))


def save_demucs_hf(cache: Path, th: Path, name: str = "htdemucs") -> Path:
    """The model of ``th`` as demucs 4.1 downloads it into the Hugging Face cache: repository
    ``adefossez/HTDemucs`` with ``NAME.yaml`` and ``SIG.safetensors`` (class and init arguments as JSON metadata,
    the format ``demucs.hf.load_safetensors_model`` reads)."""
    import torch
    from safetensors.torch import save_file
    package = torch.load(th, "cpu", weights_only=False)
    sig = th.stem.split("-")[0]
    frac = lambda v: {"_type": "fraction", "numerator": v.numerator, "denominator": v.denominator}  # noqa: E731
    kwargs = {k: frac(v) if isinstance(v, Fraction) else v for k, v in package["kwargs"].items()}
    repo = cache / "models--adefossez--HTDemucs"
    commit = "0" * 40
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (snapshot / f"{name}.yaml").write_text(f"models: ['{sig}']\n")
    save_file({k: v.contiguous() for k, v in package["state"].items()}, snapshot / f"{sig}.safetensors",
              metadata={"klass": "demucs.htdemucs.HTDemucs", "args": json.dumps(list(package["args"])),
                        "kwargs": json.dumps(kwargs)})
    return snapshot


@pytest.fixture(scope="module")
def demucs_repo(tmp_path_factory):
    need_demucs()
    root = tmp_path_factory.mktemp("demucs")
    return root, save_demucs(root)


@pytest.fixture
def no_caches(tmp_path, monkeypatch):
    """Empty torch hub and Hugging Face caches, no $AUDIORAG_DEMUCS_REPO."""
    from huggingface_hub import constants
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv(REPO_ENV, raising=False)
    return tmp_path


def test_demucs_loads_offline_from_a_repo_folder_and_the_torch_hub_cache(demucs_repo, no_caches, monkeypatch):
    import torch
    root, th = demucs_repo
    found = locate("tiny", root)
    assert (found.source, found.files) == ("directory", (th,))
    ident = found.identity()
    digest = "sha256:" + hashlib.sha256(th.read_bytes()).hexdigest()
    assert ident["sha256"] == digest == ident["files"][0]["sha256"]
    assert th.stem.endswith(digest[7:15])  # demucs' checksum in the file name, verified on load
    sep = separator("demucs", model="tiny", repo=root)
    assert sep.params == {"demucs_model": "tiny", "demucs_repo": str(root.resolve())}
    assert sep.stems == tuple(DEMUCS_SOURCES) and sep.sample_rate == 16000
    y = drum_harmony_track(1, 2, 3, seconds=3.0)
    out = sep.separate(y, SR)
    assert list(out) == DEMUCS_SOURCES
    assert all(v.shape == y.shape and v.dtype == np.float32 and np.isfinite(v).all() for v in out.values())
    assert all(np.array_equal(out[k], v) for k, v in sep.separate(y, SR).items())  # shifts=0: deterministic
    assert len({round(float(np.abs(v).mean()), 6) for v in out.values()}) == 4    # four different stems
    # the same folder through $AUDIORAG_DEMUCS_REPO; a single model by its signature from torch hub's cache
    monkeypatch.setenv(REPO_ENV, str(root))
    assert locate("tiny").source == "directory"
    monkeypatch.delenv(REPO_ENV)
    hub = no_caches / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(th, hub / th.name)
    sig = th.stem.split("-")[0]
    found = locate(sig)
    assert found.source == "torch-hub" and load(found).sources == DEMUCS_SOURCES
    # htdemucs where demucs' legacy downloader puts it: found by its bag (demucs/remote/htdemucs.yaml); a file
    # that is not the published one fails demucs' checksum, in one line
    shutil.copy(th, hub / "955717e8-8726e21a.th")
    found = locate("htdemucs")
    assert found.source == "torch-hub" and found.files == (hub / "955717e8-8726e21a.th",)
    with pytest.raises(AudioragError, match=r"^demucs: cannot load 'htdemucs' from .*Invalid checksum[^\n]*$"):
        load(found)
    # where demucs 4.1 downloads by default: the Hugging Face cache, read with the hub switched off
    (hub / "955717e8-8726e21a.th").unlink()
    snapshot = save_demucs_hf(no_caches / "hf", th)
    found = locate("htdemucs")
    assert (found.source, found.path) == ("hf-cache", snapshot) and found.files[0].suffix == ".safetensors"
    model = load(found)
    assert model.sources == DEMUCS_SOURCES and model.samplerate == 16000
    want = load(locate("tiny", root))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), want.state_dict().values()))


def test_missing_demucs_weights_are_one_line_naming_where_and_how(demucs_repo, no_caches, tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    r = CliRunner().invoke(app, ["build", str(tmp_path / "lib"), "--dataset", f"folder:{tmp_path}",
                                 "--stems", "demucs"])
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert "\n" not in line and "demucs: weights of 'htdemucs' not found" in line, line
    for where in ("$AUDIORAG_DEMUCS_REPO (not set)", f"{no_caches / 'torch' / 'hub' / 'checkpoints'} (torch hub",
                  "Hugging Face cache, adefossez/HTDemucs",
                  "https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/955717e8-8726e21a.th", "--demucs-repo"):
        assert where in line, (where, line)
    assert not (tmp_path / "lib").exists()  # refused before any work
    r = CliRunner().invoke(app, ["build", str(tmp_path / "lib"), "--dataset", f"folder:{tmp_path}", "--stems",
                                 "demucs", "--demucs-model", "htdemucs_ft", "--demucs-repo", str(demucs_repo[0])])
    assert r.exit_code == 2 and "(no htdemucs_ft.yaml, no htdemucs_ft*.th)" in r.output, r.output


@pytest.fixture(scope="module")
def demucs_library(demucs_repo, tmp_path_factory):
    """4 generated 6 s tracks built with --stems demucs and two embedders at different rates (features45 at
    22.05 kHz, a tiny hubert at 16 kHz: a model embedder, so the build's threaded pipeline), counting the
    separations."""
    pytest.importorskip("transformers")
    from random_models import save_model
    repo, _ = demucs_repo
    root = tmp_path_factory.mktemp("demucs-lib")
    for i, (p, h) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        sf.write(root / f"d{p}h{h}.wav", drum_harmony_track(p, h, 20 + i, seconds=6.0), SR)
    hubert = save_model("hubert", root / "hubert")
    sep = separator("demucs", model="tiny", repo=repo)
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sep, "separate", lambda y, sr, real=sep.separate: calls.append((len(y), sr)) or real(y, sr))
        r = CliRunner().invoke(app, ["build", str(root / "lib"), "--dataset", f"folder:{root}", "--stems", "demucs",
                                     "--demucs-model", "tiny", "--demucs-repo", str(repo), "--embedder", "features45",
                                     "--embedder", f"hubert:model={hubert}", "--window", "4", "--hop", "2",
                                     "--workers", "1", "--json"])
    assert r.exit_code == 0, r.output
    return Library.open(root / "lib"), root, calls


def test_a_demucs_library_separates_each_track_once_and_searches_by_stem(demucs_library, demucs_repo):
    lib, root, calls = demucs_library
    stems = ["bass", "drums", "other", "vocals"]
    assert sorted(e.name for e in lib.embeddings()) == sorted(
        [f"{e}{s}" for e in ("features45", "hubert") for s in ["", *(f"@{x}" for x in stems)]])
    # one separation per track (+ one of the warm-up noise) serves 2 embedders × 4 stems
    assert calls == [(int(1.5 * 44100), 44100)] + [(6 * SR, SR)] * 4, calls
    th = demucs_repo[1]
    for e in lib.embeddings():
        assert len(e.vectors()) == len(lib.segments) and e.meta["segmentation"] == lib.segmentation.to_dict()
    drums = lib.embedding("features45@drums")
    source = drums.meta["stem_source"]
    assert drums.meta["stem"] == "drums" and drums.meta["params"]["demucs_model"] == "tiny"
    assert source["weights"]["sha256"] == "sha256:" + hashlib.sha256(th.read_bytes()).hexdigest()
    assert (source["name"], source["stems"], source["shifts"]) == ("demucs", DEMUCS_SOURCES, 0)
    assert "demucs" in drums.meta["versions"]
    assert not np.allclose(drums.vectors(), lib.embedding("features45").vectors())
    assert not np.allclose(drums.vectors(), lib.embedding("features45@bass").vectors())
    tid = int(lib.tracks.loc[lib.tracks["uri"].str.endswith("d1h0.wav"), "track_id"].iloc[0])
    r = CliRunner().invoke(app, ["search", str(lib.path), "--track", str(tid), "--at", "2", "--stem", "drums",
                                 "--embedder", "features45", "-k", "3", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    hits = out["hits"] if isinstance(out, dict) else out
    assert len(hits) == 3 and (hits[0]["track_id"], hits[0]["start"]) == (tid, 2.0)
    # a clip is separated on its own by the model the embedding names (params → the same repo, offline)
    hits = search(lib, Query.audio(root / "d1h0.wav", start=0, end=4), embedder="features45@drums", k=3)
    assert hits["track_id"].iloc[0] == tid and hits["start"].iloc[0] == 0, hits
