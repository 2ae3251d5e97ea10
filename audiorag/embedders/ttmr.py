"""TTMR++ (text-to-music retrieval++): a mel-spectrogram ResNet and RoBERTa in one 128-D space.

TTMR++ (Doh et al., ICASSP 2024; github.com/seungheondoh/music-text-representation-pp, weights
``seungheondoh/ttmr-pp``, MIT) is a dual encoder trained on tags, LLM-written captions and metadata:

* **audio** — 22.05 kHz, 10 s; a log-mel spectrogram (n_fft 1024, hop 10 ms = 220 samples, 128 slaney
  mel bands, the STFT's last frame dropped, ``log10`` clamped at 1e-10 and at 8 below the maximum,
  then ``(x + 4) / 4``, after Whisper); CLIP's modified ResNet (3-conv stem, bottleneck layers
  (3, 4, 6, 3) with anti-aliased average-pool strides, width 64) and its attention pool
  (``attn_pool``) give ``audio_dim`` values; ``audio_projector`` (LayerNorm, Linear without bias) maps
  them to 128-D.
* **text** — RoBERTa-base (``text_encoder``, pooler removed); the first token's last hidden state goes
  through ``text_projector`` (LayerNorm, Linear without bias) to 128-D.

The released ``ttmrpp_resnet_roberta.pth`` is a ``torch.save`` of ``{"epoch", "state_dict", …}`` of that
``DualEncoderModel``; its state dict is loaded unchanged into modules of the same names, its
``ttmrpp_resnet_roberta.yaml`` (the training hyper-parameters) gives the front end and head count, and
the depths and widths are read off the tensor shapes. Unknown or missing keys are refused. The
attention pool's positional embedding in the release has a single row (the original computes its
length as ``n_frames // 2**32``), which adds the same vector to every position; it is kept as it is.

Windows are fed deterministically: a window longer than 10 s is cut into ``ceil(length / 10 s)`` chunks
of exactly 10 s spread evenly over it (:func:`~audiorag.embedders.clap.chunk_starts`) whose outputs are
averaged (TTMR++'s own inference averages its 10 s chunks); a shorter window is repeated up to 10 s.
The spectrogram's clamp at 8 below the maximum is taken per chunk (the original takes it over the
whole batch it is given, which would make a window's vector depend on its batch).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParameterError, WeightsNotFoundError
from . import hub
from .clap import chunk_starts
from .torchmodel import TorchEmbedder, mean_per_window

SAMPLE_RATE = 22050
CHUNK_SECONDS = 10.0
DEFAULT_MODEL = "seungheondoh/ttmr-pp"
CHECKPOINT = "ttmrpp_resnet_roberta.pth"
HPARAMS = "ttmrpp_resnet_roberta.yaml"
DEFAULT_TOKENIZER = "FacebookAI/roberta-base"
#: hyper-parameters the front end and the attention pool need (the release's yaml has them all)
NEEDED = ("n_mels", "n_fft", "hop_size", "sr", "duration", "n_heads", "max_length")


def log_mel(y: np.ndarray, hp: dict) -> np.ndarray:
    """TTMR++'s spectrogram of one chunk: ``float32[n_mels, frames]`` (see the module docstring).

    >>> hp = {"n_mels": 128, "n_fft": 1024, "hop_size": 0.01, "sr": 22050}
    >>> log_mel(np.zeros(22050 * 10, np.float32), hp).shape
    (128, 1002)
    """
    n_fft, hop = int(hp["n_fft"]), int(hp["hop_size"] * hp["sr"])
    x = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    stft = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)
    power = stft[..., :-1].abs() ** 2
    mel = torch.from_numpy(mel_filters(int(hp["sr"]), n_fft, int(hp["n_mels"]))) @ power
    log = torch.clamp(mel, min=1e-10).log10()
    log = torch.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).numpy()


@lru_cache(maxsize=4)
def mel_filters(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa's slaney mel filterbank, the one TTMR++ ships as ``mel_filters.npz``."""
    import librosa
    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels).astype(np.float32)


class Bottleneck(nn.Module):
    """CLIP's bottleneck: 1×1, 3×3, average-pool stride, 1×1 (×4); pooled 1×1 shortcut when shapes change."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, bias=False)),
                ("1", nn.BatchNorm2d(planes * self.expansion))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.avgpool(F.relu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class AttentionPool(nn.Module):
    """CLIP's attention pool: the mean token, with a positional embedding, attends to every position."""

    def __init__(self, positions: int, width: int, heads: int, out: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.zeros(positions, width))
        self.k_proj, self.q_proj, self.v_proj = (nn.Linear(width, width) for _ in range(3))
        self.c_proj = nn.Linear(width, out)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(start_dim=2).permute(2, 0, 1)  # NCHW -> (HW)NC
        x = torch.cat([x.mean(dim=0, keepdim=True), x]) + self.positional_embedding[:, None, :]
        out, _ = F.multi_head_attention_forward(
            query=x[:1], key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=self.heads,
            q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight,
            in_proj_weight=None, in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0, out_proj_weight=self.c_proj.weight,
            out_proj_bias=self.c_proj.bias, use_separate_proj_weight=True, training=False, need_weights=False)
        return out.squeeze(0)


class ResNetEncoder(nn.Module):
    """TTMR++'s ``audio_encoder`` (CLIP's ModifiedResNet over a one-channel spectrogram)."""

    def __init__(self, layers, width: int, heads: int, out: int, positions: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        inplanes = width
        for i, blocks in enumerate(layers):
            planes = width * 2 ** i
            stack = [Bottleneck(inplanes, planes, 1 if i == 0 else 2)]
            stack += [Bottleneck(planes * 4, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stack))
            inplanes = planes * 4
        self.attn_pool = AttentionPool(positions, width * 32, heads, out)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel.unsqueeze(1)
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = F.relu(bn(conv(x)))
        x = self.avgpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attn_pool(x)


class DualEncoder(nn.Module):
    """TTMR++'s audio and text towers, named as in its checkpoint."""

    def __init__(self, state: dict, hp: dict):
        super().__init__()
        tf = hub.transformers()
        a = "audio_encoder."
        layers = [len({k.split(".")[2] for k in state if k.startswith(f"{a}layer{i}.")}) for i in range(1, 5)]
        pos = state[f"{a}attn_pool.positional_embedding"]
        self.audio_encoder = ResNetEncoder(layers, state[f"{a}conv3.weight"].shape[0], int(hp["n_heads"]),
                                           state[f"{a}attn_pool.c_proj.weight"].shape[0], pos.shape[0])
        t = "text_encoder."
        words = state[f"{t}embeddings.word_embeddings.weight"]
        n_text = len({k.split(".")[3] for k in state if k.startswith(f"{t}encoder.layer.")})
        config = tf.RobertaConfig(
            vocab_size=words.shape[0], hidden_size=words.shape[1], num_hidden_layers=n_text,
            num_attention_heads=max(1, words.shape[1] // 64), layer_norm_eps=1e-5, pad_token_id=1,
            intermediate_size=state[f"{t}encoder.layer.0.intermediate.dense.weight"].shape[0],
            max_position_embeddings=state[f"{t}embeddings.position_embeddings.weight"].shape[0],
            type_vocab_size=state[f"{t}embeddings.token_type_embeddings.weight"].shape[0])
        self.text_encoder = tf.RobertaModel(config, add_pooling_layer=False)
        self.logit_scale = nn.Parameter(torch.zeros(1))

        def projector(name: str) -> nn.Sequential:
            w = state[f"{name}.1.weight"]
            return nn.Sequential(nn.LayerNorm(w.shape[1]), nn.Linear(w.shape[1], w.shape[0], bias=False))
        self.audio_projector, self.text_projector = projector("audio_projector"), projector("text_projector")

    def audio(self, mel: torch.Tensor) -> torch.Tensor:
        return self.audio_projector(self.audio_encoder(mel))

    def text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return self.text_projector(hidden[:, 0, :])


def load_state(path: Path) -> dict:
    """The state dict inside a TTMR++ ``.pth`` (``{"state_dict": …}``), memory-mapped."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # truncated download, another format: one line naming the file
        raise WeightsNotFoundError(f"ttmr: {path} is not a readable checkpoint ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0][:120]})") from None
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or "audio_projector.1.weight" not in {k.removeprefix("module.") for k in state}:
        raise WeightsNotFoundError(f"ttmr: {path} is not a TTMR++ checkpoint (expected {{'state_dict': …}} with "
                                   "audio_encoder.*, audio_projector.*, text_encoder.*)")
    buffers = ("position_ids", "token_type_ids")  # non-persistent in recent transformers
    return {k.removeprefix("module."): v for k, v in state.items() if not k.endswith(buffers)}


def read_hparams(path: Path) -> dict:
    """The training hyper-parameters (``ttmrpp_resnet_roberta.yaml``) the front end needs."""
    import yaml
    try:
        hp = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise WeightsNotFoundError(f"ttmr: cannot read {path}: {exc}") from None
    missing = [k for k in NEEDED if k not in hp]
    if missing:
        raise WeightsNotFoundError(f"ttmr: {path} lacks {', '.join(missing)} (not TTMR++'s hparams yaml?)")
    if int(hp["sr"]) != SAMPLE_RATE:
        raise WeightsNotFoundError(f"ttmr: {path} is for {hp['sr']} Hz audio; this embedder feeds {SAMPLE_RATE} Hz")
    return hp


class Ttmr(TorchEmbedder):
    """TTMR++ audio and text towers (see the module docstring)."""

    name = "ttmr"
    sample_rate = SAMPLE_RATE
    window = CHUNK_SECONDS
    has_text = True
    batch_windows = 4

    def __init__(self, *, model: str = DEFAULT_MODEL, tokenizer: str = DEFAULT_TOKENIZER, **params):
        if params:
            raise ParameterError(f"ttmr: unknown parameters {sorted(params)}")
        given = {"model": model, "tokenizer": tokenizer}
        defaults = {"model": DEFAULT_MODEL, "tokenizer": DEFAULT_TOKENIZER}
        super().__init__(**{k: v for k, v in given.items() if v != defaults[k]})
        self.model_ref, self.tokenizer_ref = model, tokenizer

    # -- where the weights are ----------------------------------------------------------------
    def checkpoint_dir(self) -> hub.Located:
        return hub.locate(self.model_ref, required=(CHECKPOINT, HPARAMS), embedder=self.name,
                          hint=f"the files are {CHECKPOINT} and {HPARAMS} in https://huggingface.co/{DEFAULT_MODEL}")

    def tokenizer_dir(self) -> hub.Located:
        return hub.locate(self.tokenizer_ref, required=("tokenizer.json",), weights=False, embedder=self.name,
                          hint="TTMR++'s text tower reads RoBERTa-base's tokenizer (its weights are in the .pth)")

    def locate_weights(self) -> hub.Located:
        """The checkpoint folder; raises :class:`WeightsNotFoundError` when it or the tokenizer is missing."""
        found = self.checkpoint_dir()
        self.tokenizer_dir()
        return hub.Located(found.path / CHECKPOINT, found.source, found.revision, found.looked)

    def weights_identity(self) -> dict:
        return {**hub.identity(self.locate_weights()), "tokenizer": str(self.tokenizer_dir().path)}

    @cached_property
    def hparams(self) -> dict:
        return read_hparams(self.checkpoint_dir().path / HPARAMS)

    @cached_property
    def dim(self) -> int:
        """The projection's width, read from the memory-mapped checkpoint without loading the model."""
        return int(load_state(self.locate_weights().path)["audio_projector.1.weight"].shape[0])

    # -- loading --------------------------------------------------------------------------------
    def load_model(self) -> DualEncoder:
        path = self.locate_weights().path
        state = load_state(path)
        model = DualEncoder(state, self.hparams)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise WeightsNotFoundError(f"ttmr: {path} does not fit TTMR++'s dual encoder: missing "
                                       f"{sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}")
        return model.eval()

    @cached_property
    def tokenizer(self):
        return hub.pretrained(hub.transformers().AutoTokenizer, self.tokenizer_dir().path)

    # -- computation -----------------------------------------------------------------------------
    def prepare_window(self, y: np.ndarray) -> np.ndarray:
        """Spectrograms of the window's 10 s chunks: ``float32[n_chunks, n_mels, frames]``."""
        hp = self.hparams
        chunk = int(hp["duration"] * hp["sr"])
        y = np.asarray(y, dtype=np.float32)
        if len(y) < chunk:
            y = np.tile(y, -(-chunk // max(len(y), 1)))[:chunk] if len(y) else np.zeros(chunk, np.float32)
        return np.stack([log_mel(y[s:s + chunk], hp) for s in chunk_starts(len(y), chunk)])

    def forward(self, prepared: list) -> dict[str, np.ndarray]:
        counts = torch.tensor([len(p) for p in prepared])
        chunks = self.model.audio(torch.from_numpy(np.concatenate(prepared)))
        return {"vectors": mean_per_window(chunks, counts).numpy()}

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """Text-tower vectors ``float32[len(texts), dim]`` (first token, at most ``max_length`` tokens)."""
        texts = [t.strip() for t in texts] if not isinstance(texts, str) else [texts.strip()]
        if not texts or not all(texts):
            raise ParameterError("ttmr.embed_text: expected non-empty texts")
        tokens = self.tokenizer(texts, padding="longest", truncation=True, max_length=int(self.hparams["max_length"]),
                                return_tensors="pt")
        with torch.inference_mode():
            out = self.model.text(tokens["input_ids"], tokens["attention_mask"])
        return out.numpy().astype(np.float32)
