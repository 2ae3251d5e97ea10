"""Self-supervised waveform transformers: wav2vec 2.0, HuBERT and MERT, mean-pooled hidden states.

All three share one shape: a convolutional feature encoder over the raw waveform (20 ms
frames at 16 kHz for wav2vec2/HuBERT, 75 Hz at 24 kHz for MERT), then transformer layers.
``output_hidden_states`` gives the embedding layer plus every transformer layer
(13 × 768 for the base models); ``layer`` selects what a window's vector is:

* an integer — that hidden state (0 = after the feature projection, -1 = the last layer);
* ``"mean"`` (default) — the mean of all hidden states;
* ``"all"`` — every hidden state concatenated (MERT-v1-95M: 13 × 768 = 9,984-D, as seed S4,
  mess-ai-math-pipeline, uses it);
* a list of weights, one per hidden state — their weighted mean (weights normalised to sum 1).

Frames are averaged over the window (mean pooling over time). The waveform is normalised
per window (zero mean, unit variance) when the model's preprocessor config says
``do_normalize``, as its feature extractor would.

MERT ships its own modelling code (``trust_remote_code``). When that code is in the model
folder it is used; otherwise the weights are loaded into transformers' ``HubertModel``,
which computes the same network for MERT-v1 configurations without the CQT branch and
deepnorm (both refused with a clear error).

``get_embedder("mert", model="/models/MERT-v1-95M", layer="all")`` gives 13 × 768 = 9,984-D
vectors. In miniature, a tiny random wav2vec2 saved as real weights are:

>>> import tempfile
>>> from transformers import Wav2Vec2Config, Wav2Vec2Model
>>> from audiorag.embedders import get_embedder
>>> folder = tempfile.mkdtemp()
>>> Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
...     conv_dim=[16] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)).save_pretrained(folder)
>>> e = get_embedder("wav2vec2", model=folder, layer="all")      # embedding layer + 2 layers, concatenated
>>> e.dim, e.embed(np.zeros((2, 16000), np.float32) + 0.01).shape
(96, (2, 96))
"""

from __future__ import annotations

import json
from functools import cached_property

import numpy as np
import torch

from ..errors import ParameterError, WeightsNotFoundError
from . import hub
from .torchmodel import TorchEmbedder


def layer_spec(layer):
    """Validate a ``layer`` parameter: int, ``"mean"``, ``"all"`` or a list of weights.

    >>> layer_spec("all"), layer_spec(3), layer_spec([1, 1])
    ('all', 3, [1.0, 1.0])
    """
    if isinstance(layer, bool):
        raise ParameterError(f"layer must be an int, 'mean', 'all' or a list of weights, got {layer!r}")
    if isinstance(layer, int) or layer in ("mean", "all"):
        return layer
    if isinstance(layer, (list, tuple)) and layer and all(isinstance(w, (int, float)) for w in layer):
        weights = [float(w) for w in layer]
        if min(weights) < 0 or sum(weights) <= 0:
            raise ParameterError(f"layer weights must be >= 0 with a positive sum, got {layer}")
        return weights
    raise ParameterError(f"layer must be an int, 'mean', 'all' or a list of weights, got {layer!r}")


def combine_layers(hidden: torch.Tensor, layer) -> torch.Tensor:
    """``[layers, batch, frames, dim]`` hidden states → ``[batch, dim′]`` per :func:`layer_spec`, mean over frames."""
    pooled = hidden.mean(dim=2)  # [layers, batch, dim]
    if layer == "mean":
        return pooled.mean(dim=0)
    if layer == "all":
        return pooled.permute(1, 0, 2).reshape(pooled.shape[1], -1)
    if isinstance(layer, list):
        w = torch.tensor(layer, dtype=pooled.dtype)
        return torch.einsum("l,lbd->bd", w / w.sum(), pooled)
    return pooled[layer]


class HiddenStates(TorchEmbedder):
    """Base of the wav2vec2 / HuBERT / MERT embedders (see the module docstring)."""

    default_model = ""
    # one window per forward: wav2vec2-base on 2 cores, 1.00 ten-second clips/s vs 0.78 in batches of 4
    batch_windows = 1
    model_class = "AutoModel"

    def __init__(self, *, model: str | None = None, revision: str | None = None, layer="mean", **params):
        layer = layer_spec(layer)
        if params:
            raise ParameterError(f"{self.name}: unknown parameters {sorted(params)}")
        kept = {k: v for k, v in {"model": model, "revision": revision}.items() if v is not None}
        super().__init__(**kept, layer=layer)
        self.model_ref, self.revision, self.layer = model or self.default_model, revision, layer

    def locate_weights(self) -> hub.Located:
        return hub.locate(self.model_ref, revision=self.revision, embedder=self.name)

    def weights_identity(self) -> dict:
        return hub.identity(self.locate_weights())

    @cached_property
    def config_dict(self) -> dict:
        return json.loads((self.locate_weights().path / "config.json").read_text())

    @property
    def n_hidden_states(self) -> int:
        return int(self.config_dict["num_hidden_layers"]) + 1

    @property
    def dim(self) -> int:
        hidden = int(self.config_dict["hidden_size"])
        if self.layer == "all":
            return hidden * self.n_hidden_states
        return hidden

    @cached_property
    def do_normalize(self) -> bool:
        """Per-window waveform normalisation, from ``preprocessor_config.json`` (default: the family's)."""
        path = self.locate_weights().path / "preprocessor_config.json"
        if not path.exists():
            return True
        pre = json.loads(path.read_text())
        if int(pre.get("sampling_rate", self.sample_rate)) != self.sample_rate:
            raise WeightsNotFoundError(f"{self.name}: {path} is for {pre['sampling_rate']} Hz audio, "
                                       f"this embedder feeds {self.sample_rate} Hz")
        return bool(pre.get("do_normalize", True))

    def _check_layer(self) -> None:
        n = self.n_hidden_states
        if isinstance(self.layer, int) and not -n <= self.layer < n:
            raise ParameterError(f"{self.name}: layer {self.layer} out of range; the model has {n} hidden states")
        if isinstance(self.layer, list) and len(self.layer) != n:
            raise ParameterError(f"{self.name}: {len(self.layer)} layer weights for {n} hidden states")

    def load_model(self):
        self._check_layer()
        cls = getattr(hub.transformers(), self.model_class)
        found = self.locate_weights()
        model, info = hub.pretrained(cls, found.path, output_loading_info=True)
        return _checked(model, info, found, self.name)

    def prepare_window(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float32)
        if self.do_normalize:
            y = (y - y.mean()) / np.sqrt(y.var() + 1e-7)
        return y

    def forward(self, prepared: list) -> dict[str, np.ndarray]:
        out = np.empty((len(prepared), self.dim), np.float32)
        by_length: dict[int, list[int]] = {}
        for i, y in enumerate(prepared):  # equal lengths batch without padding (no attention mask needed)
            by_length.setdefault(len(y), []).append(i)
        for idx in by_length.values():
            x = torch.from_numpy(np.stack([prepared[i] for i in idx]))
            hidden = torch.stack(self.model(x, output_hidden_states=True).hidden_states)
            out[idx] = combine_layers(hidden, self.layer).numpy()
        return {"vectors": out}


def _checked(model, info: dict, found: hub.Located, name: str):
    missing = [k for k in info.get("missing_keys", []) if "masked_spec_embed" not in k]
    if missing:
        raise WeightsNotFoundError(f"{name}: {found.path} lacks weights for {sorted(missing)[:3]} "
                                   f"({len(missing)} tensors) — not this model's checkpoint?")
    return model.eval()


class Wav2Vec2(HiddenStates):
    """wav2vec 2.0 (``facebook/wav2vec2-base`` by default), 16 kHz."""

    name = "wav2vec2"
    sample_rate = 16000
    default_model = "facebook/wav2vec2-base"
    model_class = "Wav2Vec2Model"


class Hubert(HiddenStates):
    """HuBERT (``facebook/hubert-base-ls960`` by default), 16 kHz."""

    name = "hubert"
    sample_rate = 16000
    default_model = "facebook/hubert-base-ls960"
    model_class = "HubertModel"


class Mert(HiddenStates):
    """MERT-v1 (``m-a-p/MERT-v1-95M`` by default), 24 kHz, 75 Hz frames."""

    name = "mert"
    sample_rate = 24000
    default_model = "m-a-p/MERT-v1-95M"

    @property
    def uses_remote_code(self) -> bool:
        """True when the folder carries MERT's own modelling code (``auto_map`` files present)."""
        files = {ref.split(".")[0] + ".py" for ref in self.config_dict.get("auto_map", {}).values()}
        return bool(files) and all((self.locate_weights().path / f).exists() for f in files)

    def load_model(self):
        self._check_layer()
        tf = hub.transformers()
        found = self.locate_weights()
        if self.uses_remote_code:
            model, info = hub.pretrained(tf.AutoModel, found.path, trust_remote_code=True, output_loading_info=True)
            return _checked(model, info, found, self.name)
        cfg = self.config_dict
        unsupported = [k for k in ("feature_extractor_cqt", "deepnorm") if cfg.get(k)]
        if unsupported:
            raise WeightsNotFoundError(f"mert: {found.path} uses {', '.join(unsupported)}, which only MERT's own code "
                                       "computes; put its modeling_MERT.py and configuration_MERT.py in the folder")
        own = ("model_type", "architectures", "auto_map")  # MERT's, not HubertConfig's
        config = tf.HubertConfig(**{k: v for k, v in cfg.items() if k not in own})
        model, info = hub.pretrained(tf.HubertModel, found.path, config=config, output_loading_info=True)
        return _checked(model, info, found, self.name)
