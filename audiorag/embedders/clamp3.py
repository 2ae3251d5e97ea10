"""CLaMP 3 (SAAS): MERT-v1-95M features projected into a 768-D space shared with text (XLM-RoBERTa).

CLaMP 3 (Wu et al. 2025, github.com/sanderwood/clamp3, weights ``sander-wood/clamp3``, MIT) aligns
text, sheet music, MIDI and audio. Its audio side has two stages, kept apart here:

1. **MERT features.** The window's waveform (24 kHz) is normalised to zero mean and unit variance,
   cut into 5 s chunks from its start (a last chunk shorter than 1 s is dropped, as CLaMP 3's
   ``extract_mert.py`` does), and each chunk becomes one 768-D vector: MERT-v1-95M's 13 hidden
   states averaged over time and over layers — exactly :class:`~audiorag.embedders.wav2vec.Mert`
   with ``layer="mean"``, which computes it here.
2. **The CLaMP 3 audio encoder.** The chunk vectors, with a zero vector before and after, are the
   ``inputs_embeds`` of a 12-layer BERT (``audio_model``; positions ≤ 128); its outputs are averaged
   over the sequence and projected by ``audio_proj`` (768 → 768). A longer sequence is cut into
   128-long segments (the last one ending at the sequence's end) whose vectors are averaged
   weighted by their new lengths, as ``extract_clamp3.py --get_global`` does.

Text goes through XLM-RoBERTa-base (``text_model``; its lines de-duplicated and joined by the
tokenizer's separator, 128-token segments), averaged over the tokens and projected by ``text_proj``.

The released checkpoint ``weights_clamp3_saas_…_p_length_512.pth`` is a ``torch.save`` of
``{"model": state_dict, "epoch", "min_eval_loss"}``; its state dict is loaded unchanged into modules
named as CLaMP 3 names them (``text_model``, ``text_proj``, ``audio_model``, ``audio_proj``). Its
symbolic-music tower (``symbolic_model.*``, ``symbolic_proj.*``) is not loaded; any other unknown or
missing key is refused. The configurations are read off the tensor shapes (heads are 64 wide, as
CLaMP 3 builds them). Three things are needed locally (see ``docs/embedders.md``):

* ``model`` — the folder with the ``.pth`` (``hf download sander-wood/clamp3 <file>``), or the file;
* ``mert`` — MERT-v1-95M (``m-a-p/MERT-v1-95M``);
* ``tokenizer`` — XLM-RoBERTa-base's tokenizer files (``FacebookAI/xlm-roberta-base``).

MERT features are the expensive stage (≈10× the encoder): with ``mert_cache=DIR`` they are kept
per window, keyed by the window's samples and MERT's weights, so a new CLaMP 3 checkpoint (or a
rebuild) re-runs only the encoder. The cache directory is not part of the embedder's identity.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from .. import io
from ..errors import ParameterError, WeightsNotFoundError
from . import hub
from .torchmodel import TorchEmbedder
from .wav2vec import Mert

SAMPLE_RATE = 24000
CHUNK_SECONDS = 5.0
MIN_CHUNK_SECONDS = 1.0
#: positions of CLaMP 3's audio encoder and text segments (MAX_AUDIO_LENGTH, MAX_TEXT_LENGTH in its config)
MAX_LENGTH = 128
DEFAULT_MODEL = "sander-wood/clamp3"
CHECKPOINT = ("weights_clamp3_saas_h_size_768_t_model_FacebookAI_xlm-roberta-base_t_length_128_a_size_768_"
              "a_layers_12_a_length_128_s_size_768_s_layers_12_p_size_64_p_length_512.pth")
DEFAULT_MERT = "m-a-p/MERT-v1-95M"
DEFAULT_TOKENIZER = "FacebookAI/xlm-roberta-base"
#: the towers loaded; ``symbolic_*`` (sheet music / MIDI) is in the checkpoint but not used for audio
TOWERS = ("text_model", "text_proj", "audio_model", "audio_proj")
IGNORED = ("symbolic_model.", "symbolic_proj.")


def chunk_bounds(n: int, sr: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """``(start, end)`` samples of the 5 s MERT chunks of an ``n``-sample window (a last chunk under 1 s
    is dropped unless it is the only one).

    >>> chunk_bounds(12 * 24000)
    [(0, 120000), (120000, 240000), (240000, 288000)]
    >>> chunk_bounds(int(10.5 * 24000)), chunk_bounds(12000)
    ([(0, 120000), (120000, 240000)], [(0, 12000)])
    """
    step, least = int(CHUNK_SECONDS * sr), int(MIN_CHUNK_SECONDS * sr)
    bounds = [(s, min(s + step, n)) for s in range(0, max(n, 1), step)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < least:
        bounds.pop()
    return bounds


def segments(length: int, max_length: int = MAX_LENGTH) -> list[tuple[int, int, int]]:
    """``(start, end, weight)`` of the ``max_length`` segments CLaMP 3 cuts a sequence into: every
    ``max_length`` from the start, the last one moved back to end at the sequence's end and weighted
    by the number of positions it adds.

    >>> segments(5), segments(300)
    ([(0, 5, 5)], [(0, 128, 128), (128, 256, 128), (172, 300, 44)])
    """
    out = []
    for start in range(0, length, max_length):
        out.append((start, min(start + max_length, length), max_length))
    out[-1] = (max(0, length - max_length), length, length % max_length or max_length)
    return out


def load_state(path: Path) -> dict:
    """The state dict inside a CLaMP 3 ``.pth`` (``{"model": …}``), memory-mapped; refuses anything else."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # a truncated download, another format: one line naming the file
        raise WeightsNotFoundError(f"clamp3: {path} is not a readable checkpoint ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0][:120]})") from None
    state = ckpt.get("model") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or "audio_proj.weight" not in state:
        raise WeightsNotFoundError(f"clamp3: {path} is not a CLaMP 3 checkpoint (expected {{'model': state_dict}} "
                                   "with audio_model.* and audio_proj.*)")
    return state


def configs(state: dict):
    """The ``BertConfig`` of the audio encoder and the ``XLMRobertaConfig`` of the text encoder, from shapes."""
    tf = hub.transformers()

    def shape(prefix: str) -> dict:
        words = state[f"{prefix}.embeddings.word_embeddings.weight"]
        hidden = words.shape[1]
        layers = {k.split(".")[3] for k in state if k.startswith(f"{prefix}.encoder.layer.")}
        return {"vocab_size": words.shape[0], "hidden_size": hidden, "num_hidden_layers": len(layers),
                "num_attention_heads": max(1, hidden // 64),
                "intermediate_size": state[f"{prefix}.encoder.layer.0.intermediate.dense.weight"].shape[0],
                "max_position_embeddings": state[f"{prefix}.embeddings.position_embeddings.weight"].shape[0],
                "type_vocab_size": state[f"{prefix}.embeddings.token_type_embeddings.weight"].shape[0]}
    audio = tf.BertConfig(**shape("audio_model"))
    text = tf.XLMRobertaConfig(**shape("text_model"), layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
                               eos_token_id=2)
    return audio, text


class Towers(torch.nn.Module):
    """CLaMP 3's text and audio towers, named as in its checkpoint."""

    def __init__(self, audio_config, text_config, hidden: int):
        super().__init__()
        tf = hub.transformers()
        self.text_model = tf.XLMRobertaModel(text_config)
        self.text_proj = torch.nn.Linear(text_config.hidden_size, hidden)
        self.audio_model = tf.BertModel(audio_config)
        self.audio_proj = torch.nn.Linear(audio_config.hidden_size, hidden)

    @staticmethod
    def pooled(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean of ``hidden [b, t, d]`` over the positions ``mask [b, t]`` keeps (CLaMP 3's ``avg_pooling``)."""
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(dim=1) / m.sum(dim=1)

    def audio(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.audio_model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        return self.audio_proj(self.pooled(out, mask))

    def text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.text_model(input_ids=ids, attention_mask=mask).last_hidden_state
        return self.text_proj(self.pooled(out, mask))


def load_towers(path: Path) -> Towers:
    """CLaMP 3's towers with the checkpoint at ``path``'s weights; refuses missing or unknown tensors."""
    state = {k: v for k, v in load_state(path).items() if not k.startswith(IGNORED) and not k.endswith("position_ids")}
    audio, text = configs(state)
    towers = Towers(audio, text, state["audio_proj.weight"].shape[0])
    missing, unexpected = towers.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsNotFoundError(f"clamp3: {path} does not fit CLaMP 3's towers: missing {sorted(missing)[:3]}, "
                                   f"unexpected {sorted(unexpected)[:3]}")
    return towers.eval()


class Clamp3(TorchEmbedder):
    """CLaMP 3 audio and text towers over MERT features (see the module docstring)."""

    name = "clamp3"
    sample_rate = SAMPLE_RATE
    window = CHUNK_SECONDS
    has_text = True
    batch_windows = 8

    def __init__(self, *, model: str = DEFAULT_MODEL, mert: str = DEFAULT_MERT, tokenizer: str = DEFAULT_TOKENIZER,
                 checkpoint: str = CHECKPOINT, mert_cache: str | None = None, **params):
        if params:
            raise ParameterError(f"clamp3: unknown parameters {sorted(params)}")
        given = {"model": model, "mert": mert, "tokenizer": tokenizer, "checkpoint": checkpoint}
        defaults = {"model": DEFAULT_MODEL, "mert": DEFAULT_MERT, "tokenizer": DEFAULT_TOKENIZER,
                    "checkpoint": CHECKPOINT}
        super().__init__(**{k: v for k, v in given.items() if v != defaults[k]})
        self.model_ref, self.tokenizer_ref, self.checkpoint = model, tokenizer, checkpoint
        self.mert = Mert(model=mert, layer="mean")
        self.mert_cache = Path(mert_cache).expanduser() if mert_cache else None

    # -- where the weights are ----------------------------------------------------------------
    def checkpoint_file(self) -> hub.Located:
        """The CLaMP 3 ``.pth``: ``model`` itself when it is a file, else ``checkpoint`` inside ``model``."""
        hint = f"the file is {self.checkpoint} in https://huggingface.co/{DEFAULT_MODEL}"
        if Path(self.model_ref).expanduser().is_file() or self.model_ref.endswith((".pth", ".pt")):
            return hub.locate_file(self.model_ref, embedder=self.name, hint=hint)
        found = hub.locate(self.model_ref, required=(self.checkpoint,), embedder=self.name, hint=hint)
        return hub.Located(found.path / self.checkpoint, found.source, found.revision, found.looked)

    def tokenizer_dir(self) -> hub.Located:
        return hub.locate(self.tokenizer_ref, required=("tokenizer.json",), weights=False, embedder=self.name,
                          hint="CLaMP 3's text tower reads XLM-RoBERTa-base's tokenizer (its weights are in the .pth)")

    def locate_weights(self) -> hub.Located:
        """The checkpoint; raises :class:`WeightsNotFoundError` when it, MERT or the tokenizer is missing."""
        found = self.checkpoint_file()
        self.mert.locate_weights()
        self.tokenizer_dir()
        return found

    def weights_identity(self) -> dict:
        return {**hub.identity(self.locate_weights()), "mert": self.mert.weights_identity(),
                "tokenizer": str(self.tokenizer_dir().path)}

    @property
    def dim(self) -> int:
        return int(self._shapes[0])

    @cached_property
    def _shapes(self) -> tuple[int, int]:
        """(output dim, audio encoder width), read from the memory-mapped checkpoint without loading it."""
        weight = load_state(self.checkpoint_file().path)["audio_proj.weight"]
        return int(weight.shape[0]), int(weight.shape[1])

    # -- loading --------------------------------------------------------------------------------
    def load_model(self) -> Towers:
        towers = load_towers(self.checkpoint_file().path)
        width = towers.audio_model.config.hidden_size
        if width != int(self.mert.dim):
            raise WeightsNotFoundError(f"clamp3: the audio encoder takes {width}-D features, MERT at "
                                       f"{self.mert.model_ref} gives {self.mert.dim}-D")
        return towers

    @cached_property
    def tokenizer(self):
        return hub.pretrained(hub.transformers().AutoTokenizer, self.tokenizer_dir().path)

    # -- stage 1: MERT features (cached) ----------------------------------------------------------
    def prepare_window(self, y: np.ndarray) -> list[np.ndarray]:
        """The window normalised (zero mean, unit variance) and cut into its 5 s chunks."""
        y = np.asarray(y, dtype=np.float32)
        y = (y - y.mean()) / np.sqrt(y.var() + 1e-7)
        return [np.ascontiguousarray(y[s:e]) for s, e in chunk_bounds(len(y))]

    @cached_property
    def _cache_dir(self) -> Path | None:
        if self.mert_cache is None:
            return None
        ident = self.mert.weights_identity()
        return self.mert_cache / str(ident.get("sha256", "")).removeprefix("sha256:")[:16]

    def _cache_path(self, chunks: list[np.ndarray]) -> Path:
        h = hashlib.sha256()
        for c in chunks:
            h.update(np.int64(len(c)).tobytes())
            h.update(c.tobytes())
        digest = h.hexdigest()
        return self._cache_dir / digest[:2] / f"{digest[2:34]}.npy"

    def mert_features(self, prepared: list[list[np.ndarray]]) -> list[np.ndarray]:
        """Each window's ``float32[n_chunks, 768]`` MERT features, from the cache when it has them."""
        out: list[np.ndarray | None] = [None] * len(prepared)
        paths = [self._cache_path(p) for p in prepared] if self._cache_dir is not None else [None] * len(prepared)
        todo = []
        for i, path in enumerate(paths):
            if path is not None and path.exists():
                out[i] = np.load(path)
            else:
                todo.append(i)
        if todo:
            chunks = [c for i in todo for c in prepared[i]]
            vectors = self.mert.run(chunks)["vectors"]
            at = 0
            for i in todo:
                n = len(prepared[i])
                out[i] = vectors[at:at + n]
                at += n
                if paths[i] is not None:
                    io.make_dirs(paths[i].parent)
                    io.write_with(paths[i], lambda f, v=out[i]: np.save(f, v))
        return out

    # -- stage 2: the CLaMP 3 audio encoder ------------------------------------------------------
    def encode_features(self, features: list[np.ndarray]) -> np.ndarray:
        """CLaMP 3 vectors ``float32[n, dim]`` of per-window MERT features (``[n_chunks, width]`` each)."""
        towers = self.model
        rows, owners, weights = [], [], []
        for i, f in enumerate(features):
            seq = np.concatenate([np.zeros((1, f.shape[1]), np.float32), f, np.zeros((1, f.shape[1]), np.float32)])
            for s, e, w in segments(len(seq)):
                rows.append(seq[s:e])
                owners.append(i)
                weights.append(w)
        width = max(len(r) for r in rows)
        embeds = torch.zeros(len(rows), width, rows[0].shape[1])
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for j, r in enumerate(rows):
            embeds[j, :len(r)] = torch.from_numpy(r)
            mask[j, :len(r)] = 1
        with torch.inference_mode():
            vecs = towers.audio(embeds, mask)
        w = torch.tensor(weights, dtype=vecs.dtype)[:, None]
        index = torch.tensor(owners)
        total = torch.zeros(len(features), vecs.shape[1]).index_add_(0, index, vecs * w)
        return (total / torch.zeros(len(features), 1).index_add_(0, index, w)).numpy()

    def forward(self, prepared: list) -> dict[str, np.ndarray]:
        return {"vectors": self.encode_features(self.mert_features(prepared))}

    # -- text -------------------------------------------------------------------------------------
    def embed_text(self, texts: list[str]) -> np.ndarray:
        """Text-tower vectors ``float32[len(texts), dim]`` (lines de-duplicated, joined by ``</s>``)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        lines = [[ln.strip() for ln in dict.fromkeys(str(t).split("\n")) if ln.strip()] for t in texts]
        if not lines or not all(lines):
            raise ParameterError("clamp3.embed_text: expected non-empty texts")
        tok, towers = self.tokenizer, self.model
        out = []
        for parts in lines:
            ids = tok(tok.sep_token.join(parts), return_tensors="pt")["input_ids"][0]
            vecs, ws = [], []
            for s, e, w in segments(len(ids)):
                seg = ids[s:e][None]
                with torch.inference_mode():
                    vecs.append(towers.text(seg, torch.ones_like(seg)))
                ws.append(w)
            w = torch.tensor(ws, dtype=torch.float32)[:, None]
            out.append((torch.cat(vecs) * w).sum(0) / w.sum())
        return torch.stack(out).numpy().astype(np.float32)
