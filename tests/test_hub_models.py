"""Hub embedders (clap, wav2vec2, hubert, mert) through their real loading path, offline.

Tiny randomly initialised models are saved exactly as real weights come (``save_pretrained``
folders, a laion-clap ``.pt``, a Hugging Face cache layout) and loaded back by the code that
loads users' weights. Tests needing real weights are marked ``real_weights`` and skip here.
"""

import json
import os
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("transformers")

import torch  # noqa: E402
from random_models import clap_config, save_model  # noqa: E402

from audiorag import Library  # noqa: E402
from audiorag.cli import app  # noqa: E402
from audiorag.embedders import get_embedder, l2_normalise, parse_spec, weights_status  # noqa: E402
from audiorag.embedders.clap import chunk_starts  # noqa: E402
from audiorag.embedders.laionclap import infer_config, to_laion, to_transformers  # noqa: E402
from audiorag.embedders.validate import validate  # noqa: E402
from audiorag.errors import ParameterError, WeightsNotFoundError  # noqa: E402
from audiorag.search import Query, search  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    out = {name: save_model(name, root / name) for name in ("clap", "wav2vec2", "hubert", "mert")}
    out["clap-laion"] = save_model("clap-laion", root / "music_tiny.pt")
    return out


def clap_from_pt(models):
    pt = models["clap-laion"]
    return get_embedder("clap", checkpoint=str(pt), tokenizer=str(pt) + ".tokenizer")


@pytest.mark.parametrize("name", [pytest.param("clap", marks=pytest.mark.slow),
                                  pytest.param("wav2vec2", marks=pytest.mark.slow), "hubert", "mert"])
def test_validator_passes_on_tiny_hub_models(models, name):
    report = validate(get_embedder(name, model=str(models[name])), lengths=(0.5, 1.98, 10.0, 12.5))
    assert report.ok, report.summary()
    assert len(report.checks) == 4 * 5 + 2 + (4 if name == "clap" else 0)


def test_laion_mapping_round_trips_every_tensor():
    torch.manual_seed(1)
    from transformers import ClapModel
    cfg = clap_config("tiny", vocab_size=300)
    state = ClapModel(cfg).state_dict()
    laion = to_laion(state)
    assert any(".attn.qkv." in k for k in laion)
    assert not any("attention" in k for k in laion if k.startswith("audio_branch."))
    assert "audio_branch.bn0.weight" in laion and "text_projection.2.weight" in laion
    back = to_transformers({f"module.{k}": v for k, v in laion.items()})
    buffers = {"text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids"}
    assert set(back) == set(state) - buffers
    for key, value in state.items():
        if key not in buffers:
            assert torch.equal(back[key], value), key
    inferred = infer_config(back)
    for field in ("depths", "num_attention_heads", "window_size", "hidden_size", "patch_embeds_hidden_size",
                  "num_mel_bins", "mlp_ratio"):
        assert getattr(inferred.audio_config, field) == getattr(cfg.audio_config, field), field
    for field in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size", "max_position_embeddings"):
        assert getattr(inferred.text_config, field) == getattr(cfg.text_config, field), field
    assert inferred.projection_dim == 16


def test_laion_checkpoint_embeds_like_the_same_weights_saved_by_transformers(models, rng):
    """save_model builds both from one seed: the .pt path (key mapping, inferred config, laion
    front-end settings) must give the folder path's audio and text vectors."""
    folder, pt = get_embedder("clap", model=str(models["clap"])), clap_from_pt(models)
    audio = (0.1 * rng.standard_normal((2, 48000 * 3))).astype(np.float32)
    np.testing.assert_allclose(pt.embed(audio), folder.embed(audio), atol=1e-6)
    texts = ["slow piano ballad", "fast techno beat"]
    np.testing.assert_allclose(pt.embed_text(texts), folder.embed_text(texts), atol=1e-6)
    assert pt.weights_identity()["source"] == "file" and pt.weights_identity()["sha256"]


def test_laion_checkpoint_problems_are_refused(models, tmp_path):
    state = torch.load(models["clap-laion"], weights_only=True)["state_dict"]
    for extra, message in [("module.audio_branch.fusion_model.local_att.0.weight", "fusion"),
                           ("module.audio_branch.mystery.weight", "does not fit ClapModel.*mystery"),
                           ("module.visual.proj", "unknown keys")]:
        path = tmp_path / "bad.pt"
        torch.save({"state_dict": {**state, extra: torch.zeros(1)}}, path)
        with pytest.raises(WeightsNotFoundError, match=message):
            get_embedder("clap", checkpoint=str(path)).embed(np.zeros((1, 48000), np.float32) + 0.1)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(WeightsNotFoundError, match="not a laion-clap checkpoint"):
        _ = get_embedder("clap", checkpoint=str(tmp_path / "list.pt")).dim
    with pytest.raises(WeightsNotFoundError, match="not found"):
        _ = get_embedder("clap", checkpoint=str(tmp_path / "absent.pt")).dim


def test_clap_feeds_long_windows_as_even_ten_second_chunks(models, rng):
    e = get_embedder("clap", model=str(models["clap"]))
    assert chunk_starts(25 * 48000, 480000).tolist() == [0, 360000, 720000]
    y = (0.1 * rng.standard_normal(25 * 48000)).astype(np.float32)
    whole = e.embed(y[None])[0]
    chunks = e.embed(np.stack([y[s:s + 480000] for s in (0, 360000, 720000)]))
    np.testing.assert_allclose(whole, chunks.mean(axis=0), atol=1e-6)
    assert not np.allclose(chunks[0], chunks[2])


def test_layer_selection(models, rng):
    path = str(models["mert"])
    y = (0.1 * rng.standard_normal((2, 24000 * 2))).astype(np.float32)
    layers = [get_embedder("mert", model=path, layer=i).embed(y) for i in range(3)]
    every = get_embedder("mert", model=path, layer="all")
    assert every.dim == 3 * 32
    np.testing.assert_allclose(every.embed(y).reshape(2, 3, 32), np.stack(layers, axis=1), atol=1e-6)
    np.testing.assert_allclose(get_embedder("mert", model=path).embed(y), np.mean(layers, axis=0), atol=1e-6)
    np.testing.assert_allclose(get_embedder("mert", model=path, layer=-1).embed(y), layers[2], atol=1e-6)
    weighted = get_embedder("mert", model=path, layer=[1, 0, 3]).embed(y)
    np.testing.assert_allclose(weighted, (layers[0] + 3 * layers[2]) / 4, atol=1e-6)
    assert not np.allclose(layers[0], layers[2])
    with pytest.raises(ParameterError, match="out of range"):
        get_embedder("mert", model=path, layer=3).embed(y)
    with pytest.raises(ParameterError, match="2 layer weights for 3"):
        get_embedder("mert", model=path, layer=[1, 1]).embed(y)
    with pytest.raises(ParameterError, match="layer must be"):
        get_embedder("wav2vec2", layer="middle")
    with pytest.raises(ParameterError, match="unknown parameters"):
        get_embedder("wav2vec2", layers=3)


MERT_CONFIG_CODE = '''
from transformers import HubertConfig


class MERTConfig(HubertConfig):
    model_type = "mert_model"
'''
MERT_MODEL_CODE = '''
from transformers import HubertModel

from .configuration_MERT import MERTConfig


class MERTModel(HubertModel):
    config_class = MERTConfig
'''


def test_mert_uses_its_own_code_when_present_and_the_hubert_loader_matches_it(models, tmp_path, rng):
    remote = tmp_path / "MERT-with-code"
    shutil.copytree(models["mert"], remote)
    (remote / "configuration_MERT.py").write_text(MERT_CONFIG_CODE)
    (remote / "modeling_MERT.py").write_text(MERT_MODEL_CODE)
    with_code, fallback = get_embedder("mert", model=str(remote)), get_embedder("mert", model=str(models["mert"]))
    assert with_code.uses_remote_code and not fallback.uses_remote_code
    y = (0.1 * rng.standard_normal((1, 24000 * 3))).astype(np.float32)
    np.testing.assert_allclose(with_code.embed(y), fallback.embed(y), atol=1e-6)
    assert type(with_code.model).__name__ == "MERTModel" and type(fallback.model).__name__ == "HubertModel"


def test_mert_configs_only_its_code_computes_are_refused(models, tmp_path):
    cqt = tmp_path / "MERT-cqt"
    shutil.copytree(models["mert"], cqt)
    cfg = json.loads((cqt / "config.json").read_text())
    (cqt / "config.json").write_text(json.dumps({**cfg, "feature_extractor_cqt": True}))
    with pytest.raises(WeightsNotFoundError, match="modeling_MERT.py"):
        get_embedder("mert", model=str(cqt)).embed(np.zeros((1, 24000), np.float32) + 0.1)


def test_weights_are_found_in_models_dir_and_hf_cache_or_reported_missing(models, tmp_path, monkeypatch):
    import huggingface_hub.constants as hf
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("AUDIORAG_MODELS", raising=False)
    with pytest.raises(WeightsNotFoundError) as err:
        _ = get_embedder("wav2vec2").dim
    msg = str(err.value)
    assert "facebook/wav2vec2-base" in msg and str(tmp_path / "hf") in msg and "hf download" in msg
    assert weights_status("wav2vec2")["available"] is False
    # $AUDIORAG_MODELS/<org>/<name>
    monkeypatch.setenv("AUDIORAG_MODELS", str(tmp_path / "store"))
    shutil.copytree(models["wav2vec2"], tmp_path / "store" / "facebook" / "wav2vec2-base")
    status = weights_status("wav2vec2")
    assert status["available"] and status["where"].endswith("facebook/wav2vec2-base") and status["bytes"] > 0
    # the Hugging Face cache layout: models--org--name/{refs/main, snapshots/<commit>/}
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "models--m-a-p--MERT-v1-95M"
    shutil.copytree(models["mert"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    e = get_embedder("mert")
    assert e.dim == 32 and e.weights_identity()["revision"] == commit
    assert e.weights_identity()["source"] == "hf-cache"
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    with pytest.raises(WeightsNotFoundError, match="no weights file"):
        _ = get_embedder("hubert", model=str(partial)).dim


def test_loading_changes_no_global_state(models, monkeypatch):
    """Offline flags are set around each load only: the process's environment and huggingface_hub's own
    offline switch are as the user left them (here: explicitly online) before and after."""
    import huggingface_hub.constants as hf

    from audiorag.embedders.hub import OFFLINE_ENV
    for key in OFFLINE_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", False)
    e = get_embedder("clap", model=str(models["clap"]))
    assert e.embed(np.zeros((1, 48000), np.float32) + 0.01).shape == (1, e.dim)
    assert e.embed_text(["a dog barking"]).shape == (1, e.dim)
    assert os.environ["HF_HUB_OFFLINE"] == "0" and hf.HF_HUB_OFFLINE is False
    assert "TRANSFORMERS_OFFLINE" not in os.environ and "HF_HUB_DISABLE_TELEMETRY" not in os.environ


def test_parse_spec():
    assert parse_spec("clap") == ("clap", {})
    assert parse_spec("mert:layer=[1, 0, 2],model=/m") == ("mert", {"layer": [1, 0, 2], "model": "/m"})
    with pytest.raises(ParameterError, match="key=value"):
        parse_spec("mert:layer")


@pytest.fixture(scope="module")
def hub_library(models, cache, tmp_path_factory):
    """Six 12 s synthetic tracks embedded by tiny clap, mert (layer 1 and all layers) and wav2vec2."""
    from audiorag.datasets.synthetic import SyntheticDataset
    ds = SyntheticDataset(6, seed=3, duration=12.0)
    root = ds.generate()
    lib_path = tmp_path_factory.mktemp("hublib") / "lib"
    specs = [f"clap:model={models['clap']}", f"mert:model={models['mert']},layer=1",
             f"mert:model={models['mert']},layer=all", f"wav2vec2:model={models['wav2vec2']}"]
    args = ["build", str(lib_path), "--dataset", f"folder:{root}", "--window", "5", "--hop", "2.5", "--json"]
    r = runner.invoke(app, args + [a for s in specs for a in ("--embedder", s)])
    assert r.exit_code == 0, r.output
    return Library.open(lib_path), root


@pytest.mark.slow
def test_cli_builds_and_searches_with_hub_embedders(hub_library):
    lib, root = hub_library
    keys = {e.name + ("-all" if e.dim == 96 else ""): e.key for e in lib.embeddings()}
    assert set(keys) == {"clap", "mert", "mert-all", "wav2vec2"}
    assert {e.key: e.dim for e in lib.embeddings()} == {keys["clap"]: 16, keys["mert"]: 32, keys["mert-all"]: 96,
                                                       keys["wav2vec2"]: 32}
    n = len(lib.segments)
    for key in keys.values():
        assert lib.vectors(key).shape[0] == n and np.isfinite(np.asarray(lib.vectors(key))).all()
    clip = str(sorted(root.rglob("*.flac"))[2]) if list(root.rglob("*.flac")) else str(sorted(root.rglob("*.wav"))[2])
    for key in keys.values():
        r = runner.invoke(app, ["search", str(lib.path), "--audio", clip, "--start", "0", "--end", "5",
                                "--embedder", key, "-k", "3", "--json"])
        assert r.exit_code == 0, r.output
        hits = json.loads(r.output)
        assert hits[0]["uri"] == clip and hits[0]["start"] == 0.0 and hits[0]["score"] > 0.999, key
    r = runner.invoke(app, ["search", str(lib.path), "--text", "slow piano", "-k", "4", "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.output)) == 4
    r = runner.invoke(app, ["search", str(lib.path), "--text", "slow piano", "--track", "1", "--alpha", "0.5",
                            "--json", "--embedder", keys["clap"]])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["search", str(lib.path), "--text", "x", "--track", "1", "--embedder", keys["wav2vec2"]])
    assert r.exit_code == 2 and "text tower" in r.output


@pytest.mark.slow
def test_text_and_hybrid_queries_use_the_text_tower(hub_library, models):
    lib, _ = hub_library
    key = next(e.key for e in lib.embeddings() if e.name == "clap")
    lib.build_index(key, "Flat")
    e = get_embedder("clap", model=str(models["clap"]))
    text = l2_normalise(e.embed_text(["slow piano"]))[0]
    vectors = np.asarray(lib.vectors(key))
    hits = search(lib, Query.text("slow piano"), k=5)
    expected = np.argsort(-(vectors @ text), kind="stable")[:5]
    assert hits["segment_id"].tolist() == expected.tolist()
    np.testing.assert_allclose(hits["score"], (vectors @ text)[expected], atol=1e-5)
    moment = Query.moment(1, at=2.5)
    audio_only = search(lib, moment, embedder=key, k=5)
    for alpha, same_as in ((0.0, audio_only), (1.0, hits)):
        blended = search(lib, Query.hybrid("slow piano", moment, alpha=alpha), embedder=key, k=5)
        assert blended["segment_id"].tolist() == same_as["segment_id"].tolist(), alpha
    half = search(lib, Query.hybrid("slow piano", moment, alpha=0.5), embedder=key, k=len(lib.segments))
    q = l2_normalise(0.5 * text + 0.5 * vectors[int(audio_only["segment_id"].iloc[0])])
    np.testing.assert_allclose(half.sort_values("segment_id")["score"], vectors @ q, atol=1e-5)
    with pytest.raises(ParameterError, match="alpha"):
        Query.hybrid("x", moment, alpha=1.5)


@pytest.mark.slow
def test_models_command_lists_and_verifies(models, monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIORAG_MODELS", str(tmp_path))
    shutil.copytree(models["hubert"], tmp_path / "facebook" / "hubert-base-ls960")
    r = runner.invoke(app, ["models", "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.output)}
    assert rows["hubert"]["available"] and rows["features45"]["available"]
    assert rows["clap"]["text_tower"] and rows["musicnn-mtt"]["tags"] == 50
    r = runner.invoke(app, ["models"])
    assert "hubert" in r.output and "facebook/hubert-base-ls960" in r.output
    r = runner.invoke(app, ["models", "verify", f"clap:model={models['clap']}"])
    assert r.exit_code == 0 and "OK" in r.output, r.output
    r = runner.invoke(app, ["models", "verify", "clap:model=/nonexistent/clap"])
    assert r.exit_code == 2 and "not found" in r.output


@pytest.mark.real_weights
@pytest.mark.parametrize("name", ["clap", "mert", "wav2vec2"])
def test_real_weights(name):
    """Runs where the real weights are present (``audiorag models`` shows them); skips elsewhere."""
    status = weights_status(name)
    if not status["available"]:
        pytest.skip(f"{name}: no real weights here")
    e = get_embedder(name)
    assert validate(e, lengths=(1.0, 10.0)).ok
    if name == "clap":
        sr = e.sample_rate
        t = np.arange(5 * sr) / sr
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        a = l2_normalise(e.embed(tone[None]))[0]
        sims = l2_normalise(e.embed_text(["a pure sine tone", "a crowd cheering in a stadium"])) @ a
        assert sims[0] > sims[1]
