"""Demucs as a stem source (``build --stems demucs``): drums, bass, vocals, other — the model's ``sources``.

Weights are found on this machine, never downloaded. A model name (``htdemucs`` by default, or a single
model's signature such as ``955717e8``) is looked for, in order:

1. ``repo`` (``--demucs-repo DIR``), else ``$AUDIORAG_DEMUCS_REPO``: a folder in the layout of demucs' own
   ``LocalRepo`` (``demucs --repo DIR``): ``SIG[-CHECKSUM].th`` files and bags ``NAME.yaml`` listing them;
2. torch hub's cache, ``torch.hub.get_dir()/checkpoints`` — where demucs' legacy downloader puts the
   ``.th`` files — with the bag's ``.yaml`` that ships in the demucs package (``demucs/remote``);
3. the Hugging Face cache (``adefossez/HTDemucs`` …), where demucs 4.1 downloads by default, read with the
   hub switched off (:func:`audiorag.embedders.hub.offline`).

Only ``repo`` is searched when it is given. Loading goes through demucs' own classes (``LocalRepo``,
``BagOnlyRepo``, ``demucs.hf``), so a ``-CHECKSUM`` in a file name is verified as demucs does.

Separation: mono audio is resampled (soxr, :func:`audiorag.audio.resample`) to the model's rate (44.1 kHz),
copied to its channels, normalised as demucs' own separator does, and run through
``demucs.apply.apply_model`` with ``split=True, overlap=0.25, shifts=0`` (deterministic) under
``torch.no_grad``, on the torch threads the caller set; each stem is the mean of its channels, resampled back.

>>> sep = Demucs(model="htdemucs")
>>> sep.params
{'demucs_model': 'htdemucs'}
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import resample
from ..errors import AudioragError, WeightsNotFoundError

REPO_ENV = "AUDIORAG_DEMUCS_REPO"
#: apply_model's settings: 25 % overlapping segments of the model's own length, no random shifts
SPLIT, OVERLAP, SHIFTS = True, 0.25, 0


@dataclass(frozen=True)
class DemucsWeights:
    """Where a Demucs model's files were found: ``source`` is ``directory``, ``torch-hub`` or ``hf-cache``."""

    name: str
    source: str
    path: Path
    files: tuple[Path, ...]  # the weights (.th or .safetensors), in the bag's order

    def identity(self) -> dict:
        """The embedding metadata's record: where, which files, their sha256 (one hash for a bag)."""
        from .torchmodel import file_identity
        files = [{k: v for k, v in file_identity(p).items() if k != "source"} for p in self.files]
        digest = files[0]["sha256"] if len(files) == 1 else "sha256:" + hashlib.sha256(
            "\n".join(f["sha256"] for f in files).encode()).hexdigest()
        return {"source": self.source, "path": str(self.path), "model": self.name, "files": files,
                "sha256": digest, "bytes": sum(p.stat().st_size for p in self.files)}


def _signatures(bag: Path) -> list[str]:
    import yaml
    return list(yaml.safe_load(bag.read_text())["models"])


def _local_models(folder: Path) -> dict[str, Path]:
    """``signature → .th file`` as demucs' ``LocalRepo`` scans a folder (``SIG-CHECKSUM.th`` or ``SIG.th``)."""
    return {(f.stem.rsplit("-", 1)[0] if "-" in f.stem else f.stem): f for f in sorted(folder.glob("*.th"))}


def _in_folder(name: str, models: Path, bags: Path, looked: list[str], label: str) -> tuple[Path, ...] | None:
    """The files of ``name`` with ``.th`` files in ``models`` and bag ``.yaml`` files in ``bags``."""
    have = _local_models(models) if models.is_dir() else {}
    if name in have:
        return (have[name],)
    bag = bags / f"{name}.yaml"
    if not bag.is_file():
        looked.append(f"{label} (no {name}.yaml, no {name}*.th)")
        return None
    sigs = _signatures(bag)
    missing = [s for s in sigs if s not in have]
    if missing:
        looked.append(f"{label} ({name}.yaml lists {', '.join(missing)}: no {missing[0]}*.th there)")
        return None
    return tuple(have[s] for s in sigs)


def _remote_files() -> dict[str, str]:
    """``signature → download URL`` of demucs' published models (its packaged ``remote/files.txt``)."""
    from demucs.pretrained import REMOTE_ROOT, _parse_remote_files
    return _parse_remote_files(REMOTE_ROOT / "files.txt")


def _hf_files(name: str, looked: list[str]) -> tuple[Path, ...] | None:
    """The bag ``.yaml`` and ``.safetensors`` of ``name`` in the Hugging Face cache (no network)."""
    try:
        from demucs.hf import DEFAULT_NAMESPACE, hf_repo_name
        from huggingface_hub import constants, try_to_load_from_cache
    except ModuleNotFoundError:
        return None
    namespace, _, short = name.rpartition("/")
    repo_id = f"{namespace or DEFAULT_NAMESPACE}/{hf_repo_name(short)}"
    looked.append(f"{constants.HF_HUB_CACHE} (Hugging Face cache, {repo_id})")
    bag = try_to_load_from_cache(repo_id, f"{short}.yaml")
    if not isinstance(bag, str):
        return None
    files = [try_to_load_from_cache(repo_id, f"{sig}.safetensors") for sig in _signatures(Path(bag))]
    return tuple(Path(f) for f in files) if all(isinstance(f, str) for f in files) else None


def locate(name: str = "htdemucs", repo: str | Path | None = None) -> DemucsWeights:
    """Find Demucs model ``name`` on this machine (see the module docstring for the order); raise
    :class:`~audiorag.errors.WeightsNotFoundError` — one line naming every place looked and how to get the
    weights — when it is nowhere.

    >>> try:
    ...     locate("htdemucs", "/nowhere")
    ... except WeightsNotFoundError as exc:
    ...     print(str(exc).split(". ")[:2])
    ["demucs: weights of 'htdemucs' not found", 'Looked in: /nowhere (no such folder)']
    """
    import torch
    looked: list[str] = []
    folders = [Path(repo).expanduser()] if repo else [Path(p).expanduser() for p in [os.environ.get(REPO_ENV)] if p]
    if not repo and not folders:
        looked.append(f"${REPO_ENV} (not set)")
    for folder in folders:
        if not folder.is_dir():
            looked.append(f"{folder} (no such folder)")
            continue
        found = _in_folder(name, folder, folder, looked, str(folder))
        if found:
            return DemucsWeights(name, "directory", folder.resolve(), found)
    if not repo:
        from demucs.pretrained import REMOTE_ROOT
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        found = _in_folder(name, hub, REMOTE_ROOT, looked, f"{hub} (torch hub cache)")
        if found:
            return DemucsWeights(name, "torch-hub", hub, found)
        found = _hf_files(name, looked)
        if found:
            return DemucsWeights(name, "hf-cache", found[0].parent, found)
    raise WeightsNotFoundError(f"demucs: weights of {name!r} not found. Looked in: {'; '.join(looked)}. "
                               f"{_how_to_get(name)}")


def _how_to_get(name: str) -> str:
    from demucs.pretrained import REMOTE_ROOT
    bag = REMOTE_ROOT / f"{name}.yaml"
    remote = _remote_files()
    urls = [remote[s] for s in (_signatures(bag) if bag.is_file() else [name]) if s in remote]
    where = f"download {' '.join(urls)} and put the file(s) with {bag} " if urls else \
        "put its .th file(s) and bag .yaml "
    return (f"On a machine with internet access, {where}in a folder here, then pass --demucs-repo FOLDER "
            f"(or set ${REPO_ENV}); a copied torch hub or Hugging Face cache with the model works too.")


def load(found: DemucsWeights):
    """The model (a demucs ``BagOfModels``) from the files :func:`locate` found, in eval mode, offline."""
    from demucs.pretrained import REMOTE_ROOT
    from demucs.repo import AnyModelRepo, BagOnlyRepo, LocalRepo, ModelLoadingError
    try:
        if found.source == "hf-cache":
            from demucs.hf import get_hf_model

            from .hub import offline
            with offline():
                model = get_hf_model(found.name)
        else:
            bags = found.path if found.source == "directory" else REMOTE_ROOT
            models = LocalRepo(found.path)
            model = AnyModelRepo(models, BagOnlyRepo(bags, models)).get_model(found.name)
    except (ModelLoadingError, OSError, KeyError, RuntimeError) as exc:
        raise AudioragError(f"demucs: cannot load {found.name!r} from {found.path}: {exc}") from None
    except SystemExit:  # demucs' fatal(): a quantised model (mdx_q, mdx_extra_q) without the diffq package
        raise AudioragError(f"demucs: {found.name!r} is a quantised model and needs diffq: pip install diffq, "
                            "or use htdemucs") from None
    return model.eval()


class Demucs:
    """The Demucs stem source: :meth:`separate` gives every stem of a track in one pass of the model.

    ``model`` names the model (``htdemucs``), ``repo`` an optional weights folder; both go into
    :attr:`params` (and so into the stem embedders' keys). The model is located and loaded on first use.
    """

    name = "demucs"
    #: every stem a published Demucs model gives (htdemucs_6s adds guitar and piano)
    known_stems = ("drums", "bass", "vocals", "other", "guitar", "piano")

    def __init__(self, *, model: str = "htdemucs", repo: str | Path | None = None):
        self.model_name = model
        self.repo = str(Path(repo).expanduser().resolve()) if repo else None
        self.params = {"demucs_model": model, **({"demucs_repo": self.repo} if self.repo else {})}
        self._found: DemucsWeights | None = None
        self._model = None
        self._lock = threading.Lock()

    def locate(self) -> DemucsWeights:
        """Where the weights are (found once)."""
        if self._found is None:
            self._found = locate(self.model_name, self.repo)
        return self._found

    @property
    def model(self):
        """The loaded model (once per process, shared by every stem embedder of this source)."""
        with self._lock:
            if self._model is None:
                self._model = load(self.locate())
        return self._model

    @property
    def stems(self) -> tuple[str, ...]:
        """The model's ``sources``, in its order."""
        return tuple(self.model.sources)

    @property
    def sample_rate(self) -> int:
        return int(self.model.samplerate)

    def describe(self) -> dict:
        return {"name": self.name, "model": self.model_name, "weights": self.locate().identity(),
                "stems": list(self.stems), "sample_rate": self.sample_rate, "split": SPLIT, "overlap": OVERLAP,
                "shifts": SHIFTS}

    def versions(self) -> dict:
        from importlib.metadata import version

        import torch
        return {"demucs": version("demucs"), "torch": torch.__version__}

    def separate(self, y: np.ndarray, sr: int) -> dict[str, np.ndarray]:
        """Every stem of mono ``y`` at ``sr``: ``{stem: float32 mono, same length and rate}``."""
        import torch
        from demucs.apply import apply_model
        model = self.model
        x = torch.from_numpy(np.ascontiguousarray(resample(np.asarray(y, np.float32), sr, model.samplerate)))
        wav = x[None].expand(model.audio_channels, -1)
        mean, std = x.mean(), (x.std() if len(x) > 1 else torch.tensor(0.0)) + 1e-8
        with torch.no_grad():
            out = apply_model(model, ((wav - mean) / std)[None], shifts=SHIFTS, split=SPLIT, overlap=OVERLAP,
                              progress=False)[0]
        out = (out * std + mean).mean(dim=1).numpy()
        stems = {}
        for name, part in zip(model.sources, out):
            back = resample(part, model.samplerate, sr)[: len(y)]
            stems[name] = np.pad(back, (0, len(y) - len(back))).astype(np.float32, copy=False)
        return stems
