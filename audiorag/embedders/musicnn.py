"""musicnn (Pons & Serra, 2019) in PyTorch, with the weights of the ``musicnn`` wheel.

``musicnn-mtt`` and ``musicnn-msd`` are the MagnaTagATune and Million Song Dataset
taggers. The weights are read from the TF1 checkpoints shipped inside the installed
``musicnn`` package (``pip install --no-deps musicnn==0.1.0``) by
:mod:`audiorag.embedders.tfcheckpoint`; TensorFlow is never imported.

Front end: 16 kHz, STFT n_fft 512 / hop 256, 96 mel bands, ``log10(1 + 10000·mel)`` in
float32 (the original casts the mel power to float16 first, which overflows on loud
audio). The model sees 3 s patches (187 frames). A window becomes
``max(1, round(frames / 187))`` patches spread evenly from its first to its last frame
(so nothing at either end is dropped); windows shorter than a patch are repeat-padded,
as musicnn was trained. Per window, the penultimate layer and the tag probabilities
are averaged over its patches, the mean pool is averaged and the max pool is maxed
(what the model would report had it seen the patches as one input).

Outputs (param ``layer``): ``penultimate`` (200-D, default), ``mean_pool``/``max_pool``
(753-D) or ``pools`` (both, 1506-D), ``taggram`` (the 50 tag probabilities). The tag
probabilities are always available through :meth:`Musicnn.embed_tagged`.

Port details that matter: batch norm epsilon 1e-3 (TF's default); TF "same" padding
puts the odd extra pad after the signal; the backend's flatten interleaves the
``[753, 2]`` (max, mean) pool, so the dense layer's input is ``max0, mean0, max1, ...``.
"""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import torch

from ..errors import ParameterError
from .hub import Located
from .torchmodel import TorchEmbedder, file_identity, mean_per_window, packaged_weights

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187
BN_EPS = 1e-3

MTT_TAGS = ('guitar', 'classical', 'slow', 'techno', 'strings', 'drums', 'electronic', 'rock', 'fast', 'piano',
            'ambient', 'beat', 'violin', 'vocal', 'synth', 'female', 'indian', 'opera', 'male', 'singing',
            'vocals', 'no vocals', 'harpsichord', 'loud', 'quiet', 'flute', 'woman', 'male vocal', 'no vocal',
            'pop', 'soft', 'sitar', 'solo', 'man', 'classic', 'choir', 'voice', 'new age', 'dance', 'male voice',
            'female vocal', 'beats', 'harp', 'cello', 'no voice', 'weird', 'country', 'metal', 'female voice',
            'choral')
MSD_TAGS = ('rock', 'pop', 'alternative', 'indie', 'electronic', 'female vocalists', 'dance', '00s',
            'alternative rock', 'jazz', 'beautiful', 'metal', 'chillout', 'male vocalists', 'classic rock', 'soul',
            'indie rock', 'Mellow', 'electronica', '80s', 'folk', '90s', 'chill', 'instrumental', 'punk', 'oldies',
            'blues', 'hard rock', 'ambient', 'acoustic', 'experimental', 'female vocalist', 'guitar', 'Hip-Hop',
            '70s', 'party', 'country', 'easy listening', 'sexy', 'catchy', 'funk', 'electro', 'heavy metal',
            'Progressive rock', '60s', 'rnb', 'indie pop', 'sad', 'House', 'happy')
LAYERS = {"penultimate": 200, "mean_pool": 753, "max_pool": 753, "pools": 1506, "taggram": 50}


def log_mel(y: np.ndarray) -> np.ndarray:
    """musicnn's input representation of 16 kHz mono audio: ``float32[frames, 96]``.

    >>> log_mel(np.zeros(16000, dtype=np.float32)).shape
    (63, 96)
    """
    mel = librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS)
    return np.log10(1.0 + 10000.0 * mel.T.astype(np.float32, copy=False))


def patch_starts(n_frames: int) -> np.ndarray:
    """First frames of the 187-frame patches a window of ``n_frames`` frames is split into.

    >>> patch_starts(626).tolist()   # a 10 s window: 3 patches, first and last frames covered
    [0, 220, 439]
    >>> patch_starts(100).tolist()   # shorter than a patch: one, repeat-padded
    [0]
    """
    n_patches = max(1, int(round(n_frames / PATCH_FRAMES)))
    last = max(0, n_frames - PATCH_FRAMES)
    return np.round(np.linspace(0, last, n_patches)).astype(int)


def patches(spec: np.ndarray) -> np.ndarray:
    """``float32[n_patches, 187, 96]`` patches of one window's log-mel (see :func:`patch_starts`)."""
    if len(spec) < PATCH_FRAMES:
        spec = (np.resize(spec, (PATCH_FRAMES, spec.shape[1])) if len(spec)
                else np.zeros((PATCH_FRAMES, N_MELS), np.float32))
    return np.stack([spec[s:s + PATCH_FRAMES] for s in patch_starts(len(spec))])


def _bn_affine(prefix: str, tensors: dict) -> tuple[np.ndarray, np.ndarray]:
    """A TF batch norm in inference as ``scale·x + shift`` (epsilon 1e-3, TF's default)."""
    scale = tensors[f"{prefix}/gamma"] / np.sqrt(tensors[f"{prefix}/moving_variance"] + BN_EPS)
    return scale, tensors[f"{prefix}/beta"] - tensors[f"{prefix}/moving_mean"] * scale


def _param(array: np.ndarray) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)), requires_grad=False)


def _channels_last(array: np.ndarray) -> torch.nn.Parameter:
    p = _param(array)
    p.data = p.data.contiguous(memory_format=torch.channels_last)
    return p


class _MaxOverFreq(torch.nn.Module):
    """conv → ReLU → batch norm → max over frequency, with the max taken first.

    ReLU and an inference batch norm are monotonic per channel (increasing where the BN
    scale is positive), so the max over frequency of ``bn(relu(z))`` is
    ``bn(relu(max z))``, or ``bn(relu(min z))`` where the scale is negative. Negating
    those channels' weights turns their min into a max: one reduction over the conv
    output, then ReLU and the affine on a tensor smaller by the number of frequencies.
    """

    def __init__(self, bias: np.ndarray, bn: tuple[np.ndarray, np.ndarray]):
        super().__init__()
        scale, shift = bn
        self.sign = np.where(scale < 0, -1.0, 1.0).astype(np.float32)
        self.register_buffer("scale", torch.from_numpy(scale.astype(np.float32)))
        self.register_buffer("shift", torch.from_numpy(shift.astype(np.float32)))
        self.register_buffer("signs", torch.from_numpy(self.sign))
        self.bias = _param(bias * self.sign)

    def finish(self, max_z):  # max over frequency of the sign-flipped pre-activation, channels last
        return torch.relu((max_z + self.bias) * self.signs) * self.scale + self.shift


class _Timbral(_MaxOverFreq):
    """A ``[7, kf]`` time-frequency conv. The 7 time offsets become input channels (a time
    unfold of the input), so oneDNN runs a 1-D conv over frequency in NHWC layout."""

    def __init__(self, kernel, bias, bn):
        super().__init__(bias, bn)
        # TF [kt, kf, 1, out] → torch [out, kt, 1, kf]
        flipped = kernel[:, :, 0, :].transpose(2, 0, 1)[:, :, None, :] * self.sign[:, None, None, None]
        self.weight = _channels_last(flipped)

    def forward(self, unfolded):  # [B·T, 7, 1, F] channels last
        z = torch.nn.functional.conv2d(unfolded, self.weight)  # [B·T, C, 1, F'] channels last
        return self.finish(z.amax(dim=3)[:, :, 0])


class _Temporal(_MaxOverFreq):
    """The three temporal convs (kernels [128, 1], [64, 1], [32, 1], TF "same" padding) as one.

    Shorter kernels are zero-extended to 128 taps centred as TF pads them (63 before, 64
    after for 128; 31/32 for 64; 15/16 for 32), so one conv produces all 153 channels. The
    conv runs per frequency bin over time in polyphase form: time is cut into blocks of
    ``S`` frames that become input channels, and each output channel becomes ``S``
    channels (one per phase), which turns a 1-input-channel conv (slow in oneDNN) into a
    dense one.
    """

    S = 8
    TAPS, PAD_BEFORE = 128, 63

    def __init__(self, kernels: list[np.ndarray], biases: list[np.ndarray], bns: list):
        scale = np.concatenate([b[0] for b in bns])
        super().__init__(np.concatenate(biases), (scale, np.concatenate([b[1] for b in bns])))
        taps = np.zeros((self.TAPS, len(scale)), np.float32)
        col = 0
        for k in kernels:  # TF [taps, 1, 1, out]
            n, out = k.shape[0], k.shape[3]
            before = (n - 1) // 2
            taps[self.PAD_BEFORE - before:self.PAD_BEFORE - before + n, col:col + out] = k[:, 0, 0, :]
            col += out
        taps *= self.sign
        S = self.S
        self.M = -(-(S - 1 + self.TAPS) // S)  # input blocks each output block reads
        poly = np.zeros((S, len(scale), S, self.M), np.float32)  # [phase r, out, in phase s, block m]
        for r in range(S):
            for m in range(self.M):
                for s_ in range(S):
                    k = S * m + s_ - r
                    if 0 <= k < self.TAPS:
                        poly[r, :, s_, m] = taps[k]
        self.weight = _channels_last(poly.reshape(S * len(scale), S, 1, self.M))
        self.out = len(scale)

    def forward(self, x):  # [B, T, F] normalised log-mel
        B, T, F = x.shape
        S = self.S
        Q = -(-T // S)
        P = Q + self.M - 1
        xp = torch.nn.functional.pad(x, (0, 0, self.PAD_BEFORE, P * S - T - self.PAD_BEFORE))  # [B, P·S, F]
        xp = xp.permute(0, 2, 1).reshape(B * F, 1, P, S).permute(0, 3, 1, 2)  # [B·F, S, 1, P] channels last
        z = torch.nn.functional.conv2d(xp, self.weight)  # [B·F, S·C, 1, Q] channels last = [B, F, Q, S, C]
        z = z.permute(0, 2, 3, 1).reshape(B, F, Q * S, self.out).amax(dim=1)[:, :T]  # [B, T, C]
        return self.finish(z)


class _MidConv(torch.nn.Module):
    """Mid-end layer: TF conv ``[7, channels]`` over time (explicit 3/3 zero pad), ReLU, batch norm."""

    def __init__(self, kernel, bias, bn):
        super().__init__()
        self.weight = _channels_last(kernel[:, :, 0, :].transpose(2, 1, 0)[:, :, None, :])  # [out, in, 1, 7]
        self.bias = _param(bias)
        self.scale, self.shift = (_param(v[None, :, None, None]) for v in bn)

    def forward(self, x):  # [B, C, 1, T] channels last
        y = torch.nn.functional.conv2d(x, self.weight, self.bias, padding=(0, 3))
        return torch.relu(y) * self.scale + self.shift


class MusicnnNet(torch.nn.Module):
    """The musicnn architecture (front end 7774timbraltemporal, dense mid end, global-pool back end)
    in inference form, built from the TF checkpoint's tensors."""

    def __init__(self, tensors: dict[str, np.ndarray]):
        super().__init__()
        t = tensors
        scale, shift = _bn_affine("batch_normalization", t)
        self.input_scale, self.input_shift = float(scale[0]), float(shift[0])
        self.timbral = torch.nn.ModuleList(
            _Timbral(t[f"conv2d{s}/kernel"], t[f"conv2d{s}/bias"], _bn_affine(f"batch_normalization_{i}", t))
            for i, s in ((1, ""), (2, "_1")))
        self.temporal = _Temporal([t[f"conv2d_{i}/kernel"] for i in (2, 3, 4)],
                                  [t[f"conv2d_{i}/bias"] for i in (2, 3, 4)],
                                  [_bn_affine(f"batch_normalization_{i}", t) for i in (3, 4, 5)])
        self.midend = torch.nn.ModuleList(
            _MidConv(t[f"conv2d_{i}/kernel"], t[f"conv2d_{i}/bias"], _bn_affine(f"batch_normalization_{i + 1}", t))
            for i in (5, 6, 7))
        # the backend's flatten interleaves the (max, mean) pools: max0, mean0, max1, ...; de-interleave once
        kernel = t["dense/kernel"]
        order = np.concatenate([np.arange(0, len(kernel), 2), np.arange(1, len(kernel), 2)])
        flat_scale, flat_shift = (v[order] for v in _bn_affine("batch_normalization_9", t))
        # batch norm then dense is one affine map
        self.dense = torch.nn.Linear(len(kernel), kernel.shape[1])
        self.dense.weight = _param((kernel[order] * flat_scale[:, None]).T)
        self.dense.bias = _param(t["dense/bias"] + flat_shift @ kernel[order])
        self.dense_scale, self.dense_shift = (_param(v) for v in _bn_affine("batch_normalization_10", t))
        self.output = torch.nn.Linear(*t["dense_1/kernel"].shape)
        self.output.weight = _param(t["dense_1/kernel"].T)
        self.output.bias = _param(t["dense_1/bias"])
        self.eval()

    def forward(self, x):
        """``x``: ``[B, 187, 96]`` log-mel patches → dict of ``logits`` [B, 50], ``penultimate`` [B, 200],
        ``max_pool`` and ``mean_pool`` [B, 753]."""
        B, T, F = x.shape
        x = x * self.input_scale + self.input_shift
        padded = torch.nn.functional.pad(x, (0, 0, 3, 3))  # TF pads the normalised input with zeros
        unfolded = padded.unfold(1, 7, 1).reshape(B * T, 1, F, 7).permute(0, 3, 1, 2)  # [B·T, 7, 1, F] NHWC
        unfolded = unfolded.contiguous(memory_format=torch.channels_last)
        front = torch.cat([block(unfolded).view(B, T, -1) for block in self.timbral] + [self.temporal(x)], dim=2)
        h = front.view(B, 1, T, -1).permute(0, 3, 1, 2)  # [B, 561, 1, T] channels last
        features = [h]
        for i, conv in enumerate(self.midend):
            z = conv(features[-1])
            features.append(z if i == 0 else z + features[-1])
        mid = torch.cat(features, dim=1)[:, :, 0, :]  # [B, 753, T]
        max_pool, mean_pool = mid.amax(dim=2), mid.mean(dim=2)
        penultimate = torch.relu(self.dense(torch.cat([max_pool, mean_pool], 1))) * self.dense_scale + self.dense_shift
        return {"logits": self.output(penultimate), "penultimate": penultimate,
                "max_pool": max_pool, "mean_pool": mean_pool}


def checkpoint_prefix(model: str) -> Path:
    """Where the installed ``musicnn`` wheel keeps ``model``'s TF checkpoint (``MTT_musicnn``, ``MSD_musicnn``)."""
    return packaged_weights("musicnn", f"{model}/.index", "musicnn==0.1.0").parent


class Musicnn(TorchEmbedder):
    """musicnn tagger as an embedder; see the module docstring.

    >>> from audiorag.embedders import get_embedder
    >>> e = get_embedder("musicnn-mtt")
    >>> noise = np.random.default_rng(0).standard_normal((2, 48000)).astype(np.float32) * 0.1
    >>> vectors, tags = e.embed_tagged(noise)
    >>> vectors.shape, tags.shape, e.tag_names[:3]
    ((2, 200), (2, 50), ('guitar', 'classical', 'slow'))
    """

    sample_rate = SAMPLE_RATE
    model_name = ""
    tag_names: tuple[str, ...] = ()

    def __init__(self, *, layer: str = "penultimate", **params):
        if layer not in LAYERS:
            raise ParameterError(f"{self.name}: unknown layer {layer!r}; choose one of {', '.join(LAYERS)}")
        super().__init__(layer=layer, **params)
        self.layer = layer
        self.dim = LAYERS[layer]
        self.window = PATCH_FRAMES * HOP / SAMPLE_RATE

    def load_model(self):
        from .tfcheckpoint import read_checkpoint
        prefix = checkpoint_prefix(self.model_name)
        return MusicnnNet(read_checkpoint(str(prefix) + "/"))

    def locate_weights(self) -> Located:
        prefix = checkpoint_prefix(self.model_name)
        return Located(prefix, "wheel", "musicnn==0.1.0", files=(next(prefix.glob(".data-*")), prefix / ".index"))

    def weights_identity(self) -> dict:
        return file_identity(self.locate_weights().files[0])

    def prepare_window(self, y: np.ndarray) -> np.ndarray:
        return patches(log_mel(y))

    def forward(self, prepared: list) -> dict[str, np.ndarray]:
        counts = torch.tensor([len(p) for p in prepared])
        x = torch.from_numpy(np.concatenate(prepared))
        # one patch per call: the front end's large conv outputs then stay in cache
        # (measured on 2 cores: 17.3 ms/patch one at a time, 20.5 ms/patch in batches of 30)
        calls = [self.model(x[i:i + 1]) for i in range(len(x))]
        out = {k: torch.cat([c[k] for c in calls]) for k in calls[0]}
        pooled = {"penultimate": mean_per_window(out["penultimate"], counts),
                  "mean_pool": mean_per_window(out["mean_pool"], counts),
                  "max_pool": torch.stack([m.amax(dim=0) for m in out["max_pool"].split(counts.tolist())]),
                  "taggram": mean_per_window(torch.sigmoid(out["logits"]), counts)}
        pooled["pools"] = torch.cat([pooled["max_pool"], pooled["mean_pool"]], dim=1)
        return {"vectors": pooled[self.layer].numpy(), "tags": pooled["taggram"].numpy()}


class MusicnnMTT(Musicnn):
    """musicnn trained on MagnaTagATune (50 tags: instruments, genres, voice, tempo, mood)."""

    name = "musicnn-mtt"
    model_name = "MTT_musicnn"
    tag_names = MTT_TAGS


class MusicnnMSD(Musicnn):
    """musicnn trained on the Million Song Dataset (50 last.fm tags: genres, eras, moods)."""

    name = "musicnn-msd"
    model_name = "MSD_musicnn"
    tag_names = MSD_TAGS
