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
                                   unk_token="<unk>", mask_token="<mask>", model_max_length=77)
    fast.save_pretrained(path)
    return fast


def clap_config(size: str, vocab_size: int = 50265):
    from transformers import ClapConfig
    if size == "base":
        return ClapConfig()
    return ClapConfig(text_config={**_TINY_TEXT, "vocab_size": vocab_size, "projection_dim": 16},
                      audio_config={**_TINY_AUDIO, "projection_dim": 16}, projection_dim=16)


def save_model(name: str, path, *, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random ``name`` model (``clap``, ``clap-laion``, ``wav2vec2``, ``hubert``, ``mert``) to ``path``.

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
