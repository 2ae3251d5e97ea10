"""Hub model folders with random weights, in the exact on-disk formats real weights come in.

Two uses, both without a hub: **throughput** — a model's cost does not depend on its
weights' values, so a randomly initialised real-size architecture measures what the real
model costs on this CPU (``benchmarks/embed.py``); and **offline tests of the loading
path** — tiny models saved with ``save_pretrained`` (or as a laion-clap ``.pt``) load
through exactly the code that loads users' real weights.

``size="base"`` builds the published architectures (clap-htsat-unfused, wav2vec2-base,
hubert-base, MERT-v1-95M); ``size="tiny"`` a few-thousand-parameter version of each.

A test fixture, not part of the package: tests import it as ``random_models`` (pytest puts
``tests/`` on ``sys.path``: ``pythonpath`` in pyproject.toml); ``benchmarks/embed.py`` adds
``tests/`` to ``sys.path`` itself. ``tests/test_hub_models.py`` loads every model it writes.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

from audiorag.errors import ParameterError

#: words the tiny tokenizer is trained on (enough for BPE merges over everyday descriptions)
_CORPUS = ("a dog barking in the rain", "slow piano ballad with soft vocals", "fast techno beat with heavy bass",
           "acoustic guitar and violin", "drums and percussion loop", "ambient choir pad", "female singer",
           "male voice", "electronic synth melody", "classical orchestra strings", "rock guitar solo")

_TINY_TEXT = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 1, "intermediate_size": 64,
              "max_position_embeddings": 80, "type_vocab_size": 1, "layer_norm_eps": 1e-5}
_TINY_AUDIO = {"patch_embeds_hidden_size": 8, "depths": [1, 1], "num_attention_heads": [1, 2], "hidden_size": 16,
               "window_size": 8, "spec_size": 256, "num_mel_bins": 64, "mlp_ratio": 2.0}
_TINY_SSL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37,
             "conv_dim": [16] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2}
#: MERT-v1's config entries that its own code reads (HubertConfig keeps them as attributes)
_MERT_EXTRA = {"model_type": "mert_model", "architectures": ["MERTModel"], "feature_extractor_cqt": False,
               "deepnorm": False, "attention_relax": -1.0, "sample_rate": 24000,
               "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig", "AutoModel": "modeling_MERT.MERTModel"}}


def train_tokenizer(path: Path, *, vocab_size: int = 300):
    """A byte-level BPE tokenizer with RoBERTa's special tokens (``<s>``=0, ``<pad>``=1, ``</s>``=2),
    trained offline on a few sentences and saved as a transformers tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_CORPUS, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", mask_token="<mask>", sep_token="</s>", cls_token="<s>",
                                   model_max_length=77)
    fast.save_pretrained(path)
    return fast


def clap_config(size: str, vocab_size: int = 50265):
    from transformers import ClapConfig
    if size == "base":
        return ClapConfig()
    return ClapConfig(text_config={**_TINY_TEXT, "vocab_size": vocab_size, "projection_dim": 16},
                      audio_config={**_TINY_AUDIO, "projection_dim": 16}, projection_dim=16)


def prefixed(**modules) -> dict:
    """One state dict from named modules, as a checkpoint of a model holding them as attributes stores it."""
    return {f"{name}.{k}": v for name, m in modules.items() for k, v in m.state_dict().items()}


def clamp3_release(path: Path, size: str, vocab_size: int) -> Path:
    """CLaMP 3's ``.pth`` as sander-wood/clamp3 publishes it: ``{"model": state, "epoch", "min_eval_loss"}`` of
    ``CLaMP3Model`` (``text_model`` XLM-R, ``text_proj``, ``symbolic_model`` = M3 patch encoder, ``symbolic_proj``,
    ``audio_model`` BERT over MERT features, ``audio_proj``), built from its own configuration code."""
    import torch
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    from audiorag.embedders.clamp3 import CHECKPOINT
    base = size == "base"
    h, layers, out = (768, 12, 768) if base else (_TINY_SSL["hidden_size"], 2, 16)
    audio = BertConfig(vocab_size=1, hidden_size=h, num_hidden_layers=layers, num_attention_heads=max(1, h // 64),
                       intermediate_size=h * 4, max_position_embeddings=128)
    symbolic = BertConfig(vocab_size=1, hidden_size=h, num_hidden_layers=1 if not base else 12,
                          num_attention_heads=max(1, h // 64), intermediate_size=h * 4,
                          max_position_embeddings=512 if base else 16)
    text_cfg = (dict(vocab_size=250002, max_position_embeddings=514) if base else
                dict(_TINY_TEXT, vocab_size=vocab_size, max_position_embeddings=82))
    text = XLMRobertaModel(XLMRobertaConfig(**{**text_cfg, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
                                               "pad_token_id": 1}))
    m3 = torch.nn.Module()
    m3.patch_embedding, m3.base = torch.nn.Linear(64 * 128 if base else 16, h), BertModel(symbolic)
    state = prefixed(text_model=text, text_proj=torch.nn.Linear(text.config.hidden_size, out), symbolic_model=m3,
                     symbolic_proj=torch.nn.Linear(h, out), audio_model=BertModel(audio),
                     audio_proj=torch.nn.Linear(h, out))
    path.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state, "epoch": 99, "min_eval_loss": 1.5}, path / CHECKPOINT)
    return path


def ttmr_release(path: Path, size: str, vocab_size: int) -> Path:
    """TTMR++'s ``ttmrpp_resnet_roberta.pth`` + ``.yaml`` as seungheondoh/ttmr-pp publishes them: ``{"epoch",
    "state_dict"}`` of ``DualEncoderModel`` — CLIP's ModifiedResNet laid out as mtrpp/modules/resnet.py builds
    it (stem, ``layerN.J`` bottlenecks with ``downsample.{-1,0,1}``, ``attn_pool``), RoBERTa without its pooler,
    ``{audio,text}_projector`` (LayerNorm, bias-free Linear), ``logit_scale``."""
    import torch
    import yaml
    from torch import nn
    from transformers import RobertaConfig, RobertaModel

    from audiorag.embedders.ttmr import CHECKPOINT, HPARAMS
    base = size == "base"
    layers, width, heads, audio_dim, mlp = ((3, 4, 6, 3), 64, 8, 768, 128) if base else ((1, 1, 1, 1), 8, 2, 16, 8)

    def bottleneck(inplanes, planes, stride):
        b = nn.Module()
        b.conv1, b.bn1 = nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes)
        b.conv2, b.bn2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False), nn.BatchNorm2d(planes)
        b.conv3, b.bn3 = nn.Conv2d(planes, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4)
        if stride > 1 or inplanes != planes * 4:
            b.downsample = nn.Sequential(OrderedDict([("-1", nn.AvgPool2d(stride)),
                                                      ("0", nn.Conv2d(inplanes, planes * 4, 1, bias=False)),
                                                      ("1", nn.BatchNorm2d(planes * 4))]))
        return b

    resnet = nn.Module()
    resnet.conv1, resnet.bn1 = nn.Conv2d(1, width // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width // 2)
    resnet.conv2, resnet.bn2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False), nn.BatchNorm2d(width // 2)
    resnet.conv3, resnet.bn3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
    inplanes = width
    for i, n in enumerate(layers):
        planes = width * 2 ** i
        blocks = [bottleneck(inplanes, planes, 1 if i == 0 else 2)] + [bottleneck(planes * 4, planes, 1)
                                                                        for _ in range(n - 1)]
        setattr(resnet, f"layer{i + 1}", nn.Sequential(*blocks))
        inplanes = planes * 4
    pool = nn.Module()
    embed = width * 32
    pool.positional_embedding = nn.Parameter(torch.randn(1, embed) / embed ** 0.5)
    pool.k_proj, pool.q_proj, pool.v_proj = (nn.Linear(embed, embed) for _ in range(3))
    pool.c_proj = nn.Linear(embed, audio_dim)
    resnet.attn_pool = pool
    text_cfg = ({} if base else dict(_TINY_TEXT, vocab_size=vocab_size, max_position_embeddings=82))
    text = RobertaModel(RobertaConfig(**{"vocab_size": 50265, "max_position_embeddings": 514, **text_cfg,
                                         "type_vocab_size": 1, "layer_norm_eps": 1e-5, "pad_token_id": 1}),
                        add_pooling_layer=False)
    state = prefixed(audio_encoder=resnet, text_encoder=text,
                     audio_projector=nn.Sequential(nn.LayerNorm(audio_dim), nn.Linear(audio_dim, mlp, bias=False)),
                     text_projector=nn.Sequential(nn.LayerNorm(text.config.hidden_size),
                                                  nn.Linear(text.config.hidden_size, mlp, bias=False)))
    state["logit_scale"] = torch.tensor([2.3])
    hp = {"text_arch": "roberta-base", "n_mels": 128, "n_fft": 1024, "hop_size": 0.01, "width": width,
          "n_heads": heads, "sr": 22050, "duration": 10, "max_length": 128, "audio_dim": audio_dim,
          "text_dim": text.config.hidden_size, "mlp_dim": mlp, "temperature": 0.1, "audio_arch": "resnet"}
    if not base:
        state = with_batchnorm_statistics(state, hp)
    path.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 7, "state_dict": state}, path / CHECKPOINT)
    (path / HPARAMS).write_text(yaml.safe_dump(hp))
    return path


def with_batchnorm_statistics(state: dict, hp: dict) -> dict:
    """``state`` with its batch-norm running statistics measured on a batch of tones and noise, as a trained
    model's are (with default statistics a random ResNet maps every input to nearly the same vector)."""
    import numpy as np
    import torch

    from audiorag.embedders.ttmr import DualEncoder, log_mel
    model = DualEncoder(state, hp)
    model.load_state_dict(state)  # strict: the release layout must fit the loader's modules
    rng = np.random.default_rng(0)
    t = np.arange(int(hp["sr"] * hp["duration"])) / hp["sr"]
    clips = [np.sin(2 * np.pi * f * t) * rng.uniform(0.05, 0.5) + rng.uniform(0, 0.1) * rng.standard_normal(len(t))
             for f in (55, 110, 220, 440, 880, 1760, 3520, 7040)]
    mel = torch.from_numpy(np.stack([log_mel(c.astype(np.float32), hp) for c in clips]))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model.train().audio(mel)
    measured = model.state_dict()
    return {k: measured[k] if ".running_" in k or k.endswith("num_batches_tracked") else v for k, v in state.items()}


def save_model(name: str, path, *, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random ``name`` model (``clap``, ``clap-laion``, ``wav2vec2``, ``hubert``, ``mert``, ``clamp3``,
    ``ttmr``) to ``path``.

    ``clamp3`` and ``ttmr`` write their released checkpoint layouts into the folder ``path`` plus a tokenizer
    folder next to it (``<path>.tokenizer``); ``clamp3`` also needs a ``mert`` folder.

    ``clap-laion`` writes a laion-clap ``.pt`` file at ``path`` (plus a tokenizer folder
    next to it, ``<path>.tokenizer``); the others write a ``save_pretrained`` folder with
    its preprocessor config (and tokenizer, for clap).
    """
    import torch
    from transformers import ClapFeatureExtractor, ClapModel, Wav2Vec2FeatureExtractor
    if size not in ("tiny", "base"):
        raise ParameterError(f"size must be 'tiny' or 'base', got {size!r}")
    path = Path(path)
    torch.manual_seed(seed)
    if name in ("clamp3", "ttmr"):
        tok = train_tokenizer(path.with_name(path.name + ".tokenizer"))
        vocab = len(tok) if size == "tiny" else 0
        return (clamp3_release if name == "clamp3" else ttmr_release)(path, size, vocab)
    if name in ("clap", "clap-laion"):
        tok_dir = path if name == "clap" else path.with_name(path.name + ".tokenizer")
        tok = train_tokenizer(tok_dir)
        model = ClapModel(clap_config(size, vocab_size=50265 if size == "base" else len(tok))).eval()
        if name == "clap":
            model.save_pretrained(path)
            ClapFeatureExtractor(frequency_min=50, frequency_max=14000).save_pretrained(path)
            return path
        from audiorag.embedders.laionclap import to_laion
        state = to_laion(model.state_dict())
        # what real laion checkpoints also carry and transformers does not use
        state["audio_branch.head.weight"] = torch.zeros(527, model.config.audio_config.hidden_size)
        state["text_transform.sequential.0.weight"] = torch.zeros(4, 4)
        state["audio_branch.layers.0.blocks.0.attn_mask"] = torch.zeros(1)
        torch.save({"epoch": 15, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
        return path
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model
    cls, cfg_cls, rate = {"wav2vec2": (Wav2Vec2Model, Wav2Vec2Config, 16000),
                          "hubert": (HubertModel, HubertConfig, 16000),
                          "mert": (HubertModel, HubertConfig, 24000)}[name]
    config = cfg_cls(**({} if size == "base" else _TINY_SSL))
    if name == "mert":
        config.feat_proj_layer_norm = True
    cls(config).eval().save_pretrained(path)
    Wav2Vec2FeatureExtractor(sampling_rate=rate, do_normalize=name != "mert").save_pretrained(path)
    if name == "mert":
        cfg = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**cfg, **_MERT_EXTRA}, indent=2))
    return path
