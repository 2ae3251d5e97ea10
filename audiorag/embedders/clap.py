"""CLAP (LAION): contrastive audio–text embeddings — audio windows and text in one space.

Weights come from a transformers folder (``laion/clap-htsat-unfused`` by default; any
unfused ClapModel such as ``laion/larger_clap_music``), found locally by
:mod:`audiorag.embedders.hub`, or from a laion-clap ``.pt`` checkpoint
(``checkpoint=``; keys mapped by :mod:`audiorag.embedders.laionclap`) with a RoBERTa
tokenizer folder for the text tower (``tokenizer=``, default ``roberta-base``).

Audio is fed deterministically: CLAP sees at most 10 s (``max_length_s`` of its feature
extractor), and longer input would be randomly cropped. A window is therefore cut into
``ceil(length / 10 s)`` chunks of exactly 10 s spread evenly from its start to its end
(overlapping when needed); shorter windows are repeat-padded as CLAP was trained. The
window's vector is the mean of its chunks' normalised embeddings.

A folder such as ``hf download laion/clap-htsat-unfused --local-dir clap-htsat-unfused`` writes
loads with ``get_embedder("clap", model="clap-htsat-unfused")`` (512-D). In miniature, with a tiny
random model saved the same way (``embed_text`` needs the tokenizer files too):

>>> import tempfile
>>> from transformers import ClapConfig, ClapFeatureExtractor, ClapModel
>>> from audiorag.embedders import get_embedder
>>> tiny = ClapConfig(projection_dim=8, text_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=1,
...     intermediate_size=16, projection_dim=8), audio_config=dict(patch_embeds_hidden_size=8, depths=[1, 1],
...     num_attention_heads=[1, 2], hidden_size=16, window_size=8, spec_size=256, projection_dim=8))
>>> folder = tempfile.mkdtemp()
>>> ClapModel(tiny).save_pretrained(folder)
>>> _ = ClapFeatureExtractor().save_pretrained(folder)
>>> e = get_embedder("clap", model=folder)
>>> e.embed(np.zeros((1, 48000 * 12), np.float32)).shape    # 12 s: two 10 s chunks, averaged
(1, 8)
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch

from ..errors import ParameterError, WeightsNotFoundError
from . import hub
from .torchmodel import TorchEmbedder, mean_per_window

SAMPLE_RATE = 48000
CHUNK_SECONDS = 10.0
DEFAULT_MODEL = "laion/clap-htsat-unfused"
#: laion-clap's audio front end for its HTSAT checkpoints (audio_cfg): 64 mel bands, 50 Hz–14 kHz
LAION_FEATURES = {"feature_size": 64, "sampling_rate": SAMPLE_RATE, "fft_window_size": 1024, "hop_length": 480,
                  "frequency_min": 50, "frequency_max": 14000, "max_length_s": 10}


def chunk_starts(n: int, chunk: int) -> np.ndarray:
    """Start samples of the ``ceil(n / chunk)`` chunks spread evenly over ``n`` samples.

    >>> chunk_starts(25, 10).tolist(), chunk_starts(7, 10).tolist()
    ([0, 8, 15], [0])
    """
    count = max(1, -(-n // chunk))
    return np.round(np.linspace(0, max(0, n - chunk), count)).astype(int)


def _pooled(out):
    """``get_*_features`` returns a tensor (transformers 4) or an output with ``pooler_output`` (5)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class Clap(TorchEmbedder):
    """CLAP audio and text towers (see the module docstring)."""

    name = "clap"
    sample_rate = SAMPLE_RATE
    window = CHUNK_SECONDS
    has_text = True
    # one window per forward: measured on 2 cores, 9.4 ten-second clips/s vs 7.4 in batches of 8 (cache)
    batch_windows = 1

    def __init__(self, *, model: str = DEFAULT_MODEL, revision: str | None = None, checkpoint: str | None = None,
                 tokenizer: str = "roberta-base", **params):
        given = {"model": model, "revision": revision, "checkpoint": checkpoint, "tokenizer": tokenizer}
        defaults = {"model": DEFAULT_MODEL, "revision": None, "checkpoint": None, "tokenizer": "roberta-base"}
        super().__init__(**{k: v for k, v in given.items() if v != defaults[k]}, **params)
        if params:
            raise ParameterError(f"clap: unknown parameters {sorted(params)}")
        self.model_ref, self.revision, self.checkpoint, self.tokenizer_ref = model, revision, checkpoint, tokenizer

    # -- where the weights are ----------------------------------------------------------------
    def locate_weights(self) -> hub.Located:
        if self.checkpoint:
            return hub.locate_file(self.checkpoint, embedder=self.name,
                                   hint="laion-clap checkpoints: https://huggingface.co/lukewys/laion_clap")
        return hub.locate(self.model_ref, revision=self.revision, embedder=self.name)

    def weights_identity(self) -> dict:
        return hub.identity(self.locate_weights())

    @cached_property
    def _config(self):
        if self.checkpoint:
            return self.model.config
        return hub.pretrained(hub.transformers().ClapConfig, self.locate_weights().path)

    @property
    def dim(self) -> int:
        return int(self._config.projection_dim)

    # -- loading --------------------------------------------------------------------------------
    def load_model(self):
        ClapModel = hub.transformers().ClapModel
        found = self.locate_weights()
        if self.checkpoint:
            from .laionclap import infer_config, load_checkpoint, to_transformers
            state = to_transformers(load_checkpoint(found.path))
            model = ClapModel(infer_config(state))
            missing, unexpected = model.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith("text_model.embeddings.")]
            if missing or unexpected:
                raise WeightsNotFoundError(f"clap: {found.path} does not fit ClapModel: missing {missing[:3]}, "
                                           f"unexpected {unexpected[:3]}")
        else:
            model, info = hub.pretrained(ClapModel, found.path, output_loading_info=True)
            if info["missing_keys"]:
                raise WeightsNotFoundError(f"clap: {found.path} lacks weights for {sorted(info['missing_keys'])[:3]}")
        if model.config.audio_config.enable_fusion:
            raise WeightsNotFoundError(f"clap: {found.path} is a fusion model; use an unfused one "
                                       f"(e.g. {DEFAULT_MODEL})")
        return model.eval()

    @cached_property
    def feature_extractor(self):
        ClapFeatureExtractor = hub.transformers().ClapFeatureExtractor
        if self.checkpoint:
            fe = ClapFeatureExtractor(**LAION_FEATURES)
        else:
            fe = hub.pretrained(ClapFeatureExtractor, self.locate_weights().path)
        if fe.sampling_rate != SAMPLE_RATE or fe.nb_max_samples != int(CHUNK_SECONDS * SAMPLE_RATE):
            raise WeightsNotFoundError(f"clap: unexpected feature extractor ({fe.sampling_rate} Hz, "
                                       f"{fe.nb_max_samples} samples); expected 48 kHz, 10 s")
        return fe

    @cached_property
    def tokenizer(self):
        AutoTokenizer = hub.transformers().AutoTokenizer
        where = self.locate_weights().path if not self.checkpoint else hub.locate(
            self.tokenizer_ref, required=("tokenizer_config.json",), weights=False, embedder=self.name,
            hint="the text tower of a laion .pt checkpoint needs the roberta-base tokenizer files").path
        return hub.pretrained(AutoTokenizer, where)

    # -- computation -----------------------------------------------------------------------------
    def prepare_window(self, y: np.ndarray) -> np.ndarray:
        """Log-mel of each 10 s chunk: ``float32[n_chunks, 1, frames, mel]``."""
        chunk = self.feature_extractor.nb_max_samples
        chunks = [y[s:s + chunk] for s in chunk_starts(len(y), chunk)]
        feats = self.feature_extractor(chunks, sampling_rate=SAMPLE_RATE, truncation="rand_trunc",
                                       return_tensors="np")["input_features"]
        return np.ascontiguousarray(feats, dtype=np.float32)

    def forward(self, prepared: list) -> dict[str, np.ndarray]:
        counts = torch.tensor([len(p) for p in prepared])
        x = torch.from_numpy(np.concatenate(prepared))
        chunks = _pooled(self.model.get_audio_features(input_features=x))
        return {"vectors": mean_per_window(chunks, counts).numpy()}

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """L2-normalised text-tower embeddings ``float32[len(texts), dim]``."""
        texts = [t.strip() for t in texts] if not isinstance(texts, str) else [texts.strip()]
        if not texts or not all(texts):
            raise ParameterError("clap.embed_text: expected non-empty texts")
        limit = min(self.tokenizer.model_max_length, self.model.config.text_config.max_position_embeddings - 2)
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        with torch.inference_mode():
            out = _pooled(self.model.get_text_features(input_ids=tokens["input_ids"],
                                                       attention_mask=tokens["attention_mask"]))
        return out.numpy().astype(np.float32)
