"""aisfx (Ma et al., ISMIR 2022): sound-effects embeddings, 512-D per ≈2.3 s block.

The weights are the ``aisfx/models/checkpoint.pth`` of the installed ``aisfx`` wheel
(``pip install --no-deps aisfx==0.1.2``; CC BY 4.0). The network is the wheel's
``EmbeddingNet`` (four VGG-style blocks of two 3×3 convs, batch norm, ReLU, 2×2 max pool;
mean over frequency, max over time), rebuilt here in inference form.

Front end: the essentia spectrogram aisfx was trained on, reproduced with numpy —
44.1 kHz, frames of 2048 every 1024 samples centred on 0, 1024, … (essentia's
FrameCutter), symmetric Hann window, power spectrum, 96 HTK-mel bands 0–22050 Hz with
triangles in the mel domain and unit-sum weights (essentia's ``warping`` weighting),
``log10(1 + 10000·mel)``, divided by 9.4578 (aisfx's ``original`` min-max scaling).

A window is cut into blocks of 100 frames (2.32 s) with at most 50 frames between block
starts, spread evenly from its first to its last frame (aisfx's own blocking hops 50 and
drops the tail); windows shorter than a block are zero-padded, as aisfx pads. The
window's vector is the mean of its blocks' embeddings.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .hub import Located
from .torchmodel import TorchEmbedder, file_identity, mean_per_window, packaged_weights

SAMPLE_RATE = 44100
N_FFT = 2048
HOP = 1024
N_MELS = 96
BLOCK = 100
BLOCK_HOP = 50
SPEC_MAX = 9.457798957824707  # aisfx's spectrogram_normalize('original'): (spec - 0) / (9.4578 - 0)


@lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """essentia's ``MelBands(htkMel, weighting='warping', normalize='unit_sum')``: ``float32[96, 1025]``.

    >>> fb = mel_filterbank()
    >>> fb.shape, bool(np.allclose(fb.sum(axis=1), 1.0))
    ((96, 1025), True)
    """
    def mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)
    edges = np.linspace(mel(0.0), mel(SAMPLE_RATE / 2), N_MELS + 2)
    bins = mel(np.arange(N_FFT // 2 + 1) * SAMPLE_RATE / N_FFT)
    lo, centre, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    weights = np.maximum(0.0, np.minimum((bins - lo) / (centre - lo), (hi - bins) / (hi - centre)))
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def spectrogram(y: np.ndarray) -> np.ndarray:
    """aisfx's normalised log-mel of 44.1 kHz mono audio: ``float32[frames, 96]``.

    Frames are centred on ``0, 1024, 2048, …`` while their centre is before the end
    plus one hop, as essentia's FrameCutter cuts them.

    >>> spectrogram(np.zeros(44100, dtype=np.float32)).shape
    (45, 96)
    """
    n_frames = -(-(len(y) + HOP) // HOP)
    padded = np.zeros((n_frames - 1) * HOP + N_FFT, dtype=np.float32)
    padded[N_FFT // 2:N_FFT // 2 + len(y)] = y
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames]
    power = np.abs(np.fft.rfft(frames * _window(), axis=1)) ** 2
    mel = power.astype(np.float32) @ mel_filterbank().T
    return np.log10(1.0 + 10000.0 * mel) / np.float32(SPEC_MAX)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    return np.hanning(N_FFT).astype(np.float32)  # symmetric, as essentia's Windowing('hann')


def blocks(spec: np.ndarray) -> np.ndarray:
    """``float32[n_blocks, 100, 96]``: blocks spread evenly over ``spec``, hops of at most 50 frames.

    >>> blocks(np.zeros((432, 96), np.float32)).shape   # a 10 s window
    (8, 100, 96)
    """
    if len(spec) <= BLOCK:
        out = np.zeros((1, BLOCK, spec.shape[1]), np.float32)
        out[0, :len(spec)] = spec
        return out
    n_blocks = -(-(len(spec) - BLOCK) // BLOCK_HOP) + 1
    starts = np.round(np.linspace(0, len(spec) - BLOCK, n_blocks)).astype(int)
    return np.stack([spec[s:s + BLOCK] for s in starts])


class _ConvBlock(torch.nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(c_out)
        self.conv2 = torch.nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(c_out)


class AisfxNet(torch.nn.Module):
    """aisfx's ``EmbeddingNet('max', 3, 1, 64)``; ``load`` fuses each batch norm into its conv."""

    def __init__(self):
        super().__init__()
        widths = [1, 64, 128, 256, 512]
        for i in range(4):
            setattr(self, f"conv_block{i + 1}", _ConvBlock(widths[i], widths[i + 1]))
        self.fused = None

    @classmethod
    def load(cls, state: dict) -> AisfxNet:
        net = cls()
        prefix = "embedding_net."
        net.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        net.eval()
        fuse = torch.nn.utils.fusion.fuse_conv_bn_eval
        blocks = (net.conv_block1, net.conv_block2, net.conv_block3, net.conv_block4)
        net.fused = torch.nn.ModuleList(torch.nn.ModuleList([fuse(b.conv1, b.bn1), fuse(b.conv2, b.bn2)])
                                        for b in blocks).to(memory_format=torch.channels_last)
        return net

    def forward(self, x):
        """``x``: ``[B, 100, 96]`` normalised log-mel blocks → ``[B, 512]``."""
        x = x[:, None].contiguous(memory_format=torch.channels_last)
        for i, (conv1, conv2) in enumerate(self.fused):
            x = torch.relu(conv2(torch.relu(conv1(x))))
            if i < 3:
                x = torch.nn.functional.max_pool2d(x, 2)
        return x.mean(dim=3).amax(dim=2)


def checkpoint_path() -> Path:
    """The installed aisfx wheel's ``models/checkpoint.pth``."""
    return packaged_weights("aisfx", "models/checkpoint.pth", "aisfx==0.1.2")


def load_state(path: Path) -> dict:
    """The checkpoint's state dict. It is a pickled ``(state_dict, datasets)`` tuple whose dataset
    table holds numpy integers, so it is unpickled with those allowed and nothing else."""
    # the pickle names numpy's scalar reconstructor by its numpy-1 path
    allowed = [np.dtype, type(np.dtype(np.int64)), (np._core.multiarray.scalar, "numpy.core.multiarray.scalar")]
    with torch.serialization.safe_globals(allowed):
        state, _ = torch.load(path, map_location="cpu", weights_only=True)
    return state


class Aisfx(TorchEmbedder):
    """aisfx sound-effects embedder (512-D); see the module docstring.

    >>> from audiorag.embedders import get_embedder
    >>> e = get_embedder("aisfx")
    >>> e.embed(np.random.default_rng(0).standard_normal((1, 44100 * 3)).astype(np.float32) * 0.1).shape
    (1, 512)
    """

    name = "aisfx"
    sample_rate = SAMPLE_RATE
    dim = 512
    window = BLOCK * HOP / SAMPLE_RATE
    batch_windows = 8

    def load_model(self):
        return AisfxNet.load(load_state(checkpoint_path()))

    def locate_weights(self) -> Located:
        return Located(checkpoint_path(), "wheel", "aisfx==0.1.2")

    def weights_identity(self) -> dict:
        return file_identity(checkpoint_path())

    def prepare_window(self, y: np.ndarray) -> np.ndarray:
        return blocks(spectrogram(y))

    def forward(self, prepared: list) -> dict[str, np.ndarray]:
        counts = torch.tensor([len(p) for p in prepared])
        out = self.model(torch.from_numpy(np.concatenate(prepared)))
        return {"vectors": mean_per_window(out, counts).numpy()}
