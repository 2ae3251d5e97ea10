"""laion-clap ``.pt`` checkpoints read into transformers' ``ClapModel``.

The ``laion-clap`` package cannot be imported here (undeclared torchvision/PIL imports,
numpy<2 pins, a hub download in its constructor), but its released checkpoints — e.g.
``music_audioset_epoch_15_esc_90.14.pt`` — are plain state dicts of the architecture
transformers implements: an HTSAT audio encoder and a RoBERTa text encoder, each followed by
a two-layer projection. This module renames their keys, splits HTSAT's fused ``qkv``
projections, infers the configuration from the tensor shapes, and refuses anything it does
not recognise (fusion checkpoints, unknown keys, missing tensors) instead of leaving a
layer randomly initialised.

Key correspondence (laion → transformers)::

    text_branch.*                          text_model.*           (same RoBERTa names)
    audio_branch.*                         audio_model.audio_encoder.*
    audio_branch.bn0                       ….batch_norm
    ….blocks.J.norm1 / norm2               ….blocks.J.layernorm_before / layernorm_after
    ….blocks.J.attn.qkv                    ….blocks.J.attention.self.{query,key,value}
    ….blocks.J.attn.proj                   ….blocks.J.attention.output.dense
    ….blocks.J.attn.relative_position_*    ….blocks.J.attention.self.relative_position_*
    ….blocks.J.mlp.fc1 / fc2               ….blocks.J.intermediate.dense / output.dense
    {text,audio}_projection.0 / .2         {text,audio}_projection.linear1 / linear2

Left out, as transformers' model has no use for them: the torchlibrosa spectrogram/mel
buffers (the feature extractor computes the mel), HTSAT's classification head
(``tscam_conv``, ``head``), the ``attn_mask`` buffers, and the training-time
``{text,audio}_transform`` MLPs.

>>> hf_key("audio_branch.layers.0.blocks.1.mlp.fc2.weight")
'audio_model.audio_encoder.layers.0.blocks.1.output.dense.weight'
>>> laion_key(hf_key("text_projection.2.bias"))
'text_projection.2.bias'
"""

from __future__ import annotations

import re

from ..errors import WeightsNotFoundError

_TOP = {  # laion prefix -> transformers prefix (longest match wins)
    "text_branch": "text_model",
    "audio_branch": "audio_model.audio_encoder",
    "audio_branch.bn0": "audio_model.audio_encoder.batch_norm",
    "text_projection.0": "text_projection.linear1",
    "text_projection.2": "text_projection.linear2",
    "audio_projection.0": "audio_projection.linear1",
    "audio_projection.2": "audio_projection.linear2",
    "logit_scale_a": "logit_scale_a",
    "logit_scale_t": "logit_scale_t",
}
_BLOCK = {  # inside ….layers.I.blocks.J.
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "attn.relative_position_bias_table": "attention.self.relative_position_bias_table",
    "attn.relative_position_index": "attention.self.relative_position_index",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
_QKV = ("query", "key", "value")
_IGNORED = re.compile(r"^(audio_branch\.(spectrogram_extractor|logmel_extractor|tscam_conv|head)\.|"
                      r"(text|audio)_transform\.|text_branch\.embeddings\.position_ids$|"
                      r"audio_branch\.layers\.\d+\.blocks\.\d+\.attn_mask$)")
_FUSION = re.compile(r"(fusion_model|mel_conv2d)")
_BLOCK_KEY = re.compile(r"^(.*\.layers\.\d+\.blocks\.\d+\.)(.*)$")
#: buffers transformers creates itself (deterministic), absent from laion checkpoints
_HF_ONLY = re.compile(r"^text_model\.embeddings\.(position_ids|token_type_ids)$")


def _rename(key: str, table: dict[str, str]) -> str | None:
    best = max((p for p in table if key == p or key.startswith(p + ".")), key=len, default=None)
    return None if best is None else table[best] + key[len(best):]


def _inverse(table: dict[str, str]) -> dict[str, str]:
    return {v: k for k, v in table.items()}


def hf_key(key: str) -> str | None:
    """The transformers name of laion key ``key`` (``None`` when it has no counterpart)."""
    out = _rename(key, _TOP)
    m = _BLOCK_KEY.match(out or "")
    if m and out.startswith("audio_model."):
        inner = _rename(m.group(2), _BLOCK)
        out = None if inner is None else m.group(1) + inner
    return out


def laion_key(key: str) -> str | None:
    """The laion name of transformers key ``key`` (inverse of :func:`hf_key`)."""
    m = _BLOCK_KEY.match(key)
    if m and key.startswith("audio_model."):
        inner = _rename(m.group(2), _inverse(_BLOCK))
        if inner is None:
            return None
        key = m.group(1) + inner
    return _rename(key, _inverse(_TOP))


def to_transformers(state: dict) -> dict:
    """A laion-clap state dict (``module.`` prefixes allowed) as ``ClapModel`` state dict.

    Raises :class:`WeightsNotFoundError` on fusion checkpoints and on keys it does not know.
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    fused = sorted(k for k in state if _FUSION.search(k))
    if fused:
        raise WeightsNotFoundError(f"fusion CLAP checkpoints are not supported (e.g. {fused[0]}); use an unfused "
                                   "one such as music_audioset_epoch_15_esc_90.14.pt")
    out, unknown = {}, []
    for key, value in state.items():
        if _IGNORED.match(key):
            continue
        if key.endswith((".attn.qkv.weight", ".attn.qkv.bias")):
            base = hf_key(key.replace(".attn.qkv.", ".attn.proj."))
            if base is not None:
                for name, part in zip(_QKV, value.chunk(3, dim=0)):
                    out[base.replace(".attention.output.dense.", f".attention.self.{name}.")] = part.clone()
                continue
        new = hf_key(key)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise WeightsNotFoundError(f"not a laion-clap HTSAT+RoBERTa checkpoint: {len(unknown)} unknown keys, "
                                   f"e.g. {', '.join(unknown[:3])}")
    return out


def to_laion(state: dict) -> dict:
    """A ``ClapModel`` state dict in laion-clap's naming (fused ``qkv``); inverse of :func:`to_transformers`."""
    import torch
    out = {}
    for key, value in state.items():
        audio = key.startswith("audio_model.")
        if _HF_ONLY.match(key) or audio and (".attention.self.key." in key or ".attention.self.value." in key):
            continue
        if audio and ".attention.self.query." in key:
            parts = [state[key.replace(".query.", f".{n}.")] for n in _QKV]
            out[laion_key(key.replace(".attention.self.query.", ".attention.output.dense.")).replace(
                ".attn.proj.", ".attn.qkv.")] = torch.cat(parts)
            continue
        new = laion_key(key)
        if new is None:
            raise ValueError(f"no laion name for {key}")
        out[new] = value
    return out


def infer_config(state: dict):
    """The ``ClapConfig`` of a converted (transformers-named) state dict, from its tensor shapes.

    The text encoder's head count is not in the weights; RoBERTa's 64-wide heads are assumed.
    """
    from transformers import ClapConfig
    a = "audio_model.audio_encoder."
    layers = sorted({int(m.group(1)) for k in state if (m := re.match(re.escape(a) + r"layers\.(\d+)\.", k))})
    depths = [len({k.split(".")[5] for k in state if k.startswith(f"{a}layers.{i}.blocks.")}) for i in layers]
    tables = [state[f"{a}layers.{i}.blocks.0.attention.self.relative_position_bias_table"] for i in layers]
    patch = state[f"{a}patch_embed.proj.weight"]
    embed = patch.shape[0]
    audio = {"patch_embeds_hidden_size": embed, "patch_size": patch.shape[-1], "patch_stride": list(patch.shape[-2:]),
             "depths": depths, "num_attention_heads": [t.shape[1] for t in tables],
             "window_size": (round(tables[0].shape[0] ** 0.5) + 1) // 2,
             "hidden_size": state[f"{a}norm.weight"].shape[0], "num_mel_bins": state[f"{a}batch_norm.weight"].shape[0],
             "mlp_ratio": state[f"{a}layers.0.blocks.0.intermediate.dense.weight"].shape[0] / embed,
             "enable_fusion": False}
    t = "text_model."
    hidden = state[f"{t}embeddings.word_embeddings.weight"].shape[1]
    n_text = len({k.split(".")[3] for k in state if k.startswith(f"{t}encoder.layer.")})
    text = {"vocab_size": state[f"{t}embeddings.word_embeddings.weight"].shape[0], "hidden_size": hidden,
            "num_hidden_layers": n_text, "num_attention_heads": max(1, hidden // 64),
            "intermediate_size": state[f"{t}encoder.layer.0.intermediate.dense.weight"].shape[0],
            "max_position_embeddings": state[f"{t}embeddings.position_embeddings.weight"].shape[0],
            "type_vocab_size": state[f"{t}embeddings.token_type_embeddings.weight"].shape[0],
            "layer_norm_eps": 1e-5}
    proj = state["audio_projection.linear1.weight"].shape[0]
    return ClapConfig(text_config={**text, "projection_dim": proj}, audio_config={**audio, "projection_dim": proj},
                      projection_dim=proj)


def load_checkpoint(path) -> dict:
    """The state dict inside a laion-clap ``.pt`` (``{"state_dict": …}`` or bare), tensors only."""
    import torch
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsNotFoundError(f"{path}: not a laion-clap checkpoint (expected a state dict of tensors)")
    return state
