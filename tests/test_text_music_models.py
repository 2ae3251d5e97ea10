"""CLaMP 3 and TTMR++ (the text–music models of seeds S3 and S2) through their real loading path, offline.

Tiny random models are written in the released checkpoints' layouts by ``random_models`` (built from the
original projects' module structure, not from audiorag's loader), so a renamed key in the loader fails
here; they are loaded by the code that loads users' weights and checked against computations written out
from the original inference scripts.
"""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("transformers")

import torch  # noqa: E402
from random_models import save_model  # noqa: E402

from audiorag import Library  # noqa: E402
from audiorag.cli import app  # noqa: E402
from audiorag.embedders import get_embedder, l2_normalise  # noqa: E402
from audiorag.embedders.clamp3 import CHECKPOINT as CLAMP3_PTH  # noqa: E402
from audiorag.embedders.clamp3 import chunk_bounds, segments  # noqa: E402
from audiorag.embedders.ttmr import CHECKPOINT as TTMR_PTH  # noqa: E402
from audiorag.embedders.ttmr import log_mel  # noqa: E402
from audiorag.embedders.validate import validate  # noqa: E402
from audiorag.errors import WeightsNotFoundError  # noqa: E402
from audiorag.evaluate import Protocol, evaluate  # noqa: E402
from audiorag.search import Query, search  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("textmusic")
    return {name: save_model(name, root / name) for name in ("mert", "clamp3", "ttmr", "clap")}


def clamp3(models, **kw):
    return get_embedder("clamp3", **spec(models, "clamp3"), **kw)


def ttmr(models):
    return get_embedder("ttmr", **spec(models, "ttmr"))


def noise(rng, seconds, sr):
    return (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32)


# -- the released layouts ------------------------------------------------------------------------
def test_release_layouts_carry_the_original_key_names(models):
    clamp = torch.load(models["clamp3"] / CLAMP3_PTH, weights_only=True)
    assert {"model", "epoch", "min_eval_loss"} <= set(clamp)
    assert {"audio_proj.weight", "text_proj.bias", "audio_model.encoder.layer.1.attention.self.query.weight",
            "audio_model.embeddings.position_embeddings.weight", "text_model.pooler.dense.weight",
            "symbolic_model.patch_embedding.weight", "symbolic_model.base.encoder.layer.0.output.dense.bias",
            } <= set(clamp["model"])
    tt = torch.load(models["ttmr"] / TTMR_PTH, weights_only=True)["state_dict"]
    assert {"audio_encoder.conv1.weight", "audio_encoder.bn3.running_var", "audio_encoder.layer2.0.downsample.0.weight",
            "audio_encoder.layer4.0.downsample.1.num_batches_tracked", "audio_encoder.attn_pool.positional_embedding",
            "audio_encoder.attn_pool.c_proj.bias", "audio_projector.0.weight", "audio_projector.1.weight",
            "text_projector.1.weight", "text_encoder.encoder.layer.0.attention.self.query.weight", "logit_scale",
            } <= set(tt)
    assert not any(k.startswith("text_encoder.pooler") for k in tt) and "audio_projector.1.bias" not in tt


def spec(models, name: str) -> dict:
    """The tiny models' params: ``clamp3`` needs its MERT and tokenizer folders, ``ttmr`` its tokenizer."""
    extra = {"mert": str(models["mert"])} if name == "clamp3" else {}
    return {"model": str(models[name]), "tokenizer": str(models[name]) + ".tokenizer", **extra}


@pytest.mark.parametrize("name,pth,inner,key", [("clamp3", CLAMP3_PTH, "model", "audio_proj.bias"),
                                                ("ttmr", TTMR_PTH, "state_dict", "audio_encoder.layer1.0.bn2.weight")])
def test_a_renamed_missing_or_unreadable_checkpoint_is_refused_in_one_line(models, tmp_path, name, pth, inner, key):
    good = torch.load(models[name] / pth, weights_only=True)
    renamed = key.replace(".bias", ".b").replace(".bn2.", ".bn9.")
    for label, new_key in (("missing", None), ("renamed", renamed), ("unreadable", "")):
        folder = tmp_path / f"{name}-{label}"
        shutil.copytree(models[name], folder)
        state = dict(good[inner])
        value = state.pop(key)
        if new_key:
            state[new_key] = value
        if new_key == "":
            (folder / pth).write_bytes(b"not a checkpoint")
        else:
            torch.save({**good, inner: state}, folder / pth)
        e = get_embedder(name, **{**spec(models, name), "model": str(folder)})
        with pytest.raises(WeightsNotFoundError) as err:
            e.embed(np.zeros((1, e.sample_rate), np.float32))
        message = str(err.value)
        assert "\n" not in message and str(folder) in message
        assert (key in message) if new_key is None else (new_key in message if new_key else
                                                         "not a readable checkpoint" in message)


def test_missing_weights_say_what_is_missing_and_where_to_put_it(models, monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIORAG_MODELS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsNotFoundError, match="sander-wood/clamp3") as err:
        get_embedder("clamp3").locate_weights()
    assert CLAMP3_PTH in str(err.value) and "hf download" in str(err.value)
    with pytest.raises(WeightsNotFoundError, match="m-a-p/MERT-v1-95M"):
        get_embedder("clamp3", model=str(models["clamp3"])).locate_weights()
    with pytest.raises(WeightsNotFoundError, match="ttmrpp_resnet_roberta.yaml"):
        get_embedder("ttmr").locate_weights()
    shutil.copytree(models["ttmr"], tmp_path / "seungheondoh" / "ttmr-pp")
    with pytest.raises(WeightsNotFoundError, match="roberta-base"):
        get_embedder("ttmr").locate_weights()
    shutil.copytree(str(models["ttmr"]) + ".tokenizer", tmp_path / "FacebookAI" / "roberta-base")
    assert get_embedder("ttmr").locate_weights().path.name == TTMR_PTH


# -- CLaMP 3 ---------------------------------------------------------------------------------------
def test_clamp3_chunking_and_segments_follow_the_original_scripts():
    assert chunk_bounds(24000 * 10) == [(0, 120000), (120000, 240000)]
    assert chunk_bounds(int(24000 * 11.5)) == [(0, 120000), (120000, 240000), (240000, 276000)]
    assert chunk_bounds(int(24000 * 10.9)) == [(0, 120000), (120000, 240000)]   # < 1 s tail dropped
    assert segments(128) == [(0, 128, 128)] and segments(129) == [(0, 128, 128), (1, 129, 1)]


def test_clamp3_is_mert_layer_mean_through_the_released_audio_encoder(models, rng):
    """The vector of a 12 s window, recomputed as CLaMP 3's scripts do: MERT (all layers, time- then
    layer-averaged) per 5 s chunk of the normalised window, zero vector before and after, BERT on
    ``inputs_embeds``, mean over positions, ``audio_proj``; weights taken straight from the checkpoint."""
    from transformers import BertConfig, BertModel
    e = clamp3(models)
    y = noise(rng, 12.0, 24000) + 0.05
    got = e.embed(y[None])[0]
    state = torch.load(models["clamp3"] / CLAMP3_PTH, weights_only=True)["model"]
    bert = BertModel(BertConfig(vocab_size=1, hidden_size=32, num_hidden_layers=2, num_attention_heads=1,
                                intermediate_size=128, max_position_embeddings=128)).eval()
    bert.load_state_dict({k[len("audio_model."):]: v for k, v in state.items() if k.startswith("audio_model.")})
    mert = get_embedder("mert", model=str(models["mert"]), layer="all")
    z = (y - y.mean()) / np.sqrt(y.var() + 1e-7)
    feats = np.stack([mert.run([z[s:t]])["vectors"][0].reshape(3, 32).mean(0) for s, t in ((0, 120000),
                                                                                           (120000, 240000),
                                                                                           (240000, 288000))])
    seq = torch.from_numpy(np.concatenate([np.zeros((1, 32)), feats, np.zeros((1, 32))]).astype(np.float32))
    with torch.inference_mode():
        pooled = bert(inputs_embeds=seq[None]).last_hidden_state[0].mean(0)
        want = (pooled @ state["audio_proj.weight"].T + state["audio_proj.bias"]).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_clamp3_text_is_mean_pooled_xlmr_through_text_proj(models):
    from transformers import AutoTokenizer
    e = clamp3(models)
    got = e.embed_text(["slow piano\nslow piano\nsoft vocals", "fast techno"])
    tok = AutoTokenizer.from_pretrained(str(models["clamp3"]) + ".tokenizer")
    ids = tok("slow piano</s>soft vocals", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        hidden = e.model.text_model(input_ids=ids).last_hidden_state[0].mean(0)
        want = e.model.text_proj(hidden).numpy()
    np.testing.assert_allclose(got[0], want, atol=1e-5)
    assert not np.allclose(got[0], got[1])


def test_clamp3_mert_features_are_cached_so_a_new_projection_does_not_rerun_mert(models, rng, tmp_path):
    batch = np.stack([noise(rng, 7.0, 24000), noise(rng, 7.0, 24000)])
    plain = clamp3(models).embed(batch)
    first = clamp3(models, mert_cache=str(tmp_path / "mert"))
    np.testing.assert_array_equal(first.embed(batch), plain)
    assert len(list((tmp_path / "mert").rglob("*.npy"))) == 2
    again = clamp3(models, mert_cache=str(tmp_path / "mert"))
    np.testing.assert_array_equal(again.embed(batch), plain)
    assert again.mert._model is None                      # MERT never loaded: every window came from the cache
    assert again.key == clamp3(models).key               # the cache is not part of the embedding's identity
    other = tmp_path / "other"                              # another CLaMP 3 checkpoint, same MERT: cache reused
    shutil.copytree(models["clamp3"], other)
    ckpt = torch.load(other / CLAMP3_PTH, weights_only=True)
    ckpt["model"]["audio_proj.bias"] = ckpt["model"]["audio_proj.bias"] + 1.0
    torch.save(ckpt, other / CLAMP3_PTH)
    moved = get_embedder("clamp3", model=str(other), mert=str(models["mert"]), mert_cache=str(tmp_path / "mert"),
                         tokenizer=str(models["clamp3"]) + ".tokenizer")
    np.testing.assert_allclose(moved.embed(batch), plain + 1.0, atol=1e-5)
    assert moved.mert._model is None


# -- TTMR++ ----------------------------------------------------------------------------------------
def test_ttmr_front_end_matches_the_whisper_style_log_mel():
    import librosa
    hp = {"n_mels": 128, "n_fft": 1024, "hop_size": 0.01, "sr": 22050}
    t = np.arange(22050 * 2) / 22050
    y = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    got = log_mel(y, hp)
    power = np.abs(librosa.stft(y, n_fft=1024, hop_length=220, window="hann", pad_mode="reflect")[:, :-1]) ** 2
    log = np.log10(np.maximum(librosa.filters.mel(sr=22050, n_fft=1024, n_mels=128) @ power, 1e-10))
    want = (np.maximum(log, log.max() - 8.0) + 4.0) / 4.0
    np.testing.assert_allclose(got, want, atol=2e-3)
    assert got.shape == (128, 200) and got.min() >= want.max() - 2.0 - 1e-6


def test_ttmr_windows_chunk_long_and_repeat_short(models, rng):
    e = ttmr(models)
    y = noise(rng, 10.0, 22050)
    one = e.embed(y[None])[0]
    np.testing.assert_allclose(e.embed(y[:22050 * 5][None])[0], e.embed(np.tile(y[:22050 * 5], 2)[None])[0],
                               atol=1e-6)
    long = np.concatenate([y, noise(rng, 5.0, 22050)])             # 15 s: chunks at 0 and 5 s, averaged
    want = (one + e.embed(long[22050 * 5:][None])[0]) / 2
    np.testing.assert_allclose(e.embed(long[None])[0], want, atol=1e-5)


def test_ttmr_text_is_the_first_token_through_text_projector(models):
    e = ttmr(models)
    got = e.embed_text(["slow piano ballad", "drums"])
    ids = e.tokenizer(["slow piano ballad"], return_tensors="pt")
    with torch.inference_mode():
        first = e.model.text_encoder(**ids).last_hidden_state[:, 0]
        want = e.model.text_projector(first).numpy()[0]
    np.testing.assert_allclose(got[0], want, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["clamp3", "ttmr"])
def test_validator_passes(models, name):
    e = clamp3(models) if name == "clamp3" else ttmr(models)
    report = validate(e, lengths=(0.5, 1.98, 10.0, 12.5))
    assert report.ok, report.summary()


# -- a library end to end, and the CLAP + TTMR++ dual -------------------------------------------------
@pytest.fixture(scope="module")
def text_music_library(models, cache, tmp_path_factory):
    """Eight 12 s synthetic tracks (5 s windows) embedded by tiny clamp3, ttmr and clap."""
    from audiorag.datasets.synthetic import SyntheticDataset
    lib = Library.create(tmp_path_factory.mktemp("tmlib") / "lib", window=5, hop=5)
    clap = get_embedder("clap", model=str(models["clap"]))
    lib.add(SyntheticDataset(8, seed=5, duration=12.0), embedders=[clamp3(models), ttmr(models), clap], progress=False)
    keys = {e.name: e.key for e in lib.embeddings()}
    for key in keys.values():
        lib.build_index(key, "Flat")
    return lib, keys


@pytest.mark.slow
@pytest.mark.parametrize("name", ["clamp3", "ttmr"])
def test_library_built_searched_with_text_audio_and_hybrid_and_evaluated(text_music_library, models, name):
    lib, keys = text_music_library
    key = keys[name]
    vectors = np.asarray(lib.vectors(key))
    assert vectors.shape[0] == len(lib.segments) and np.isfinite(vectors).all()
    track = lib.tracks.iloc[2]
    hits = search(lib, Query.audio(track["uri"], start=0.0, end=5.0), embedder=key, k=3)
    assert int(hits["track_id"].iloc[0]) == int(track["track_id"]) and hits["score"].iloc[0] > 0.999
    e = clamp3(models) if name == "clamp3" else ttmr(models)
    text = l2_normalise(e.embed_text(["slow piano"]))[0]
    by_text = search(lib, Query.text("slow piano"), embedder=key, k=5)
    want = np.argsort(-(vectors @ text), kind="stable")[:5]
    assert by_text["segment_id"].tolist() == want.tolist()
    moment = Query.moment(int(track["track_id"]), at=2.5)
    audio_only = search(lib, moment, embedder=key, k=5)
    for alpha, same_as in ((0.0, audio_only), (1.0, by_text)):
        blended = search(lib, Query.hybrid("slow piano", moment, alpha=alpha), embedder=key, k=5)
        assert blended["segment_id"].tolist() == same_as["segment_id"].tolist(), alpha
    record = evaluate(lib, embedder=key, protocol=Protocol(label="genre", moment_queries=4, latency_queries=5)).record
    assert record.embedder["key"] == key and 0.0 < record.metrics["segment/mAP"] <= 1.0


@pytest.mark.slow
def test_clap_ttmr_dual_late_or_early_fused_scores_the_mean_of_both_cosines(text_music_library):
    from audiorag.library.derived import fuse
    lib, keys = text_music_library
    dual = f"{keys['clap']}+{keys['ttmr']}"
    fused = fuse(lib, [keys["clap"], keys["ttmr"]])
    assert lib.embedding(fused).has_text
    for query in (Query.text("slow piano"), Query.moment(1, at=2.5),
                  Query.hybrid("slow piano", Query.moment(1, at=2.5), alpha=0.5)):
        hits = search(lib, query, embedder=dual, fusion="late", k=4)
        parts = [search(lib, query, embedder=keys[n], k=len(lib.segments)).set_index("segment_id")["score"]
                 for n in ("clap", "ttmr")]
        want = (parts[0] + parts[1]).loc[hits["segment_id"]] / 2
        np.testing.assert_allclose(hits["score"], want.to_numpy(), atol=1e-5)
        if query.kind != "hybrid":  # early fusion blends the fused vectors, late fusion each embedding's
            early = search(lib, query, embedder=fused, k=4)
            assert early["segment_id"].tolist() == hits["segment_id"].tolist()
            np.testing.assert_allclose(early["score"], hits["score"], atol=1e-5)
    r = runner.invoke(app, ["search", str(lib.path), "--text", "slow piano", "--embedder", dual, "--fusion", "late",
                            "-k", "3", "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.output)) == 3


@pytest.mark.slow
def test_models_lists_and_verifies_both(models, monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIORAG_MODELS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    shutil.copytree(models["ttmr"], tmp_path / "seungheondoh" / "ttmr-pp")
    shutil.copytree(str(models["ttmr"]) + ".tokenizer", tmp_path / "FacebookAI" / "roberta-base")
    r = runner.invoke(app, ["models", "--json"])
    rows = {row["name"]: row for row in json.loads(r.output)}
    assert rows["ttmr"]["available"] and rows["ttmr"]["text_tower"] and rows["ttmr"]["identity"].startswith("sha256:")
    assert not rows["clamp3"]["available"] and CLAMP3_PTH in rows["clamp3"]["message"]
    r = runner.invoke(app, ["models", "verify", "ttmr"])
    assert r.exit_code == 0 and "OK" in r.output, r.output


@pytest.mark.slow
def test_describe_tags_a_moment_through_each_text_tower(text_music_library, models):
    from audiorag.describe import describe
    from audiorag.embedders.musicnn import MTT_TAGS
    lib, keys = text_music_library
    d = describe(lib, Query.moment(2, at=1.0), embedder=keys["clamp3"], k=3)
    assert {keys["clamp3"], keys["ttmr"], keys["clap"]} <= set(d.text_tags)
    e = clamp3(models)
    seg = int(d.query["segment_id"])
    texts = l2_normalise(e.embed_text([f"{t} music" for t in MTT_TAGS]))
    cos = texts @ np.asarray(lib.vectors(keys["clamp3"]))[seg]
    best = np.argsort(-cos, kind="stable")[:10]
    assert list(d.text_tags[keys["clamp3"]]) == [MTT_TAGS[i] for i in best]
    np.testing.assert_allclose(list(d.text_tags[keys["clamp3"]].values()), cos[best], atol=1e-4)
    assert any(s["field"].startswith(f"text_tags.{keys['ttmr']}.") for s in d.statements)


@pytest.mark.real_weights
@pytest.mark.parametrize("name", ["clamp3", "ttmr"])
def test_real_weights(name):
    """Runs where the released weights are present (``audiorag models`` shows them); skips elsewhere."""
    from audiorag.embedders import weights_status
    if not weights_status(name)["available"]:
        pytest.skip(f"{name}: no real weights here")
    e = get_embedder(name)
    assert validate(e, lengths=(1.0, 10.0)).ok
    t = np.arange(10 * e.sample_rate) / e.sample_rate
    a = l2_normalise(e.embed((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]))[0]
    sims = l2_normalise(e.embed_text(["a pure sine tone", "a crowd cheering in a stadium"])) @ a
    assert sims[0] > sims[1]
