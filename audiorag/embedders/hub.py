"""Finding hub models' weights on this machine — never downloading them.

A hub model (``laion/clap-htsat-unfused``, ``m-a-p/MERT-v1-95M``, ...) is looked for, in
order:

1. the ``model`` parameter itself, when it is an existing directory (a
   ``save_pretrained`` folder or a ``hf download --local-dir`` copy);
2. ``$AUDIORAG_MODELS/<org>/<name>`` and ``$AUDIORAG_MODELS/<name>``;
3. the Hugging Face cache (``$HF_HUB_CACHE``, or ``$HF_HOME/hub``, default
   ``~/.cache/huggingface/hub``), resolved with ``local_files_only=True``.

Nothing here touches the network: every load passes ``local_files_only=True`` and runs
inside :func:`offline` (``HF_HUB_OFFLINE=1`` for that call only, never for the whole
process), so a missing file fails at once with :class:`~audiorag.errors.WeightsNotFoundError`
saying where it looked and how to get the weights, instead of waiting on a hub.

>>> import pathlib, tempfile
>>> folder = pathlib.Path(tempfile.mkdtemp())          # a save_pretrained folder, in miniature
>>> _ = (folder / "config.json").write_text("{}"), (folder / "model.safetensors").write_bytes(b"0")
>>> found = locate(str(folder))
>>> found.source, [p.name for p in found.weight_files()]
('directory', ['model.safetensors'])
>>> try:
...     locate("/nowhere/clap-htsat-unfused", embedder="clap")
... except WeightsNotFoundError as exc:
...     print(str(exc).splitlines()[0])
clap: weights for '/nowhere/clap-htsat-unfused' not found. Looked in: /nowhere/clap-htsat-unfused.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import WeightsNotFoundError

MODELS_ENV = "AUDIORAG_MODELS"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
#: set while :func:`offline` runs (a value the user already set is left alone)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


@contextmanager
def offline():
    """Within the block, transformers / huggingface_hub fail fast instead of reaching for a hub, and
    show no progress bars; everything is put back on exit (nothing changes process-wide).

    huggingface_hub reads ``HF_HUB_OFFLINE`` once, when it is first imported, so it is imported
    before the variables are set and its constant is switched for the block only.

    >>> import os
    >>> before = os.environ.get("HF_HUB_OFFLINE")
    >>> with offline():
    ...     inside = os.environ["HF_HUB_OFFLINE"]
    >>> inside, os.environ.get("HF_HUB_OFFLINE") == before
    ('1', True)
    """
    try:
        from huggingface_hub import constants
    except ModuleNotFoundError:  # nothing to switch off
        constants = None
    tf_logging = getattr(getattr(sys.modules.get("transformers"), "utils", None), "logging", None)
    saved_env = {k: os.environ.get(k) for k in OFFLINE_ENV}
    saved_hub = constants.HF_HUB_OFFLINE if constants is not None else None
    saved_bars = tf_logging.is_progress_bar_enabled() if tf_logging is not None else False
    os.environ.update({k: v for k, v in OFFLINE_ENV.items() if saved_env[k] is None})
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    if saved_bars:
        tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if constants is not None:
            constants.HF_HUB_OFFLINE = saved_hub
        if saved_bars:
            tf_logging.enable_progress_bar()


def transformers():
    """The ``transformers`` module; :class:`~audiorag.errors.MissingDependencyError` naming the extra when absent."""
    try:
        import transformers as tf
    except ModuleNotFoundError as exc:
        from . import missing_dependency
        raise missing_dependency("this embedder", exc.name) from None
    return tf


def pretrained(cls, path, **kwargs):
    """``cls.from_pretrained(path, local_files_only=True, **kwargs)`` inside :func:`offline`."""
    with offline():
        return cls.from_pretrained(path, local_files_only=True, **kwargs)


@dataclass(frozen=True)
class Located:
    """Where a model's files were found: a directory (or one checkpoint file) and its revision."""

    path: Path
    source: str  # "directory" | "AUDIORAG_MODELS" | "hf-cache"
    revision: str | None = None
    looked: tuple[str, ...] = field(default=(), compare=False)
    #: the weights files when they are not recognisable by suffix (e.g. a TF checkpoint's)
    files: tuple[Path, ...] = ()

    def weight_files(self) -> list[Path]:
        """The weights files (a checkpoint file itself, or the weights inside the directory)."""
        if self.files:
            return list(self.files)
        if self.path.is_file():
            return [self.path]
        return sorted(p for p in self.path.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())

    @property
    def size(self) -> int:
        """Bytes of weights."""
        return sum(p.stat().st_size for p in self.weight_files())


def hf_cache() -> Path:
    """The Hugging Face hub cache directory this process would use."""
    from huggingface_hub import constants
    return Path(constants.HF_HUB_CACHE)


def _env_candidates(name: str) -> list[Path]:
    root = os.environ.get(MODELS_ENV)
    if not root:
        return []
    root = Path(root).expanduser()
    return [root / name, root / Path(name).name] if "/" in name else [root / name]


def locate(model: str, *, revision: str | None = None, required: tuple[str, ...] = ("config.json",),
           weights: bool = True, embedder: str = "", hint: str = "") -> Located:
    """Find ``model`` (a directory or a hub id) locally; raise :class:`WeightsNotFoundError` if absent.

    ``required`` files must be present in the directory found (``config.json`` by default),
    and a weights file too unless ``weights=False`` (e.g. a tokenizer folder).
    The error names every place looked at and how to download the weights elsewhere.
    """
    looked: list[str] = []
    path = Path(model).expanduser()
    if path.is_dir():
        return _checked(Located(path.resolve(), "directory", revision, (str(path),)), required, weights, embedder)
    if path.is_absolute() or model.startswith("."):
        looked.append(str(path))
    else:
        if not os.environ.get(MODELS_ENV):
            looked.append(f"${MODELS_ENV} (not set)")
        for cand in _env_candidates(model):
            looked.append(str(cand))
            if cand.is_dir():
                return _checked(Located(cand.resolve(), MODELS_ENV, revision, tuple(looked)), required, weights,
                                embedder)
        try:
            from huggingface_hub import snapshot_download
            from huggingface_hub.errors import LocalEntryNotFoundError
        except ModuleNotFoundError as exc:
            from . import missing_dependency
            raise missing_dependency(embedder or model, exc.name) from None
        looked.append(f"{hf_cache()} (Hugging Face cache, revision {revision or 'main'})")
        try:
            with offline():
                snap = Path(snapshot_download(model, revision=revision, local_files_only=True))
        except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
            snap = None
        if snap is not None and snap.is_dir():
            return _checked(Located(snap, "hf-cache", snap.name, tuple(looked)), required, weights, embedder)
    raise WeightsNotFoundError(_missing_message(model, looked, embedder, hint))


def locate_file(checkpoint: str, *, embedder: str = "", hint: str = "") -> Located:
    """A single checkpoint file (e.g. a laion-clap ``.pt``): a path, or a name under ``$AUDIORAG_MODELS``."""
    path = Path(checkpoint).expanduser()
    looked = [str(path)]
    if path.is_file():
        return Located(path.resolve(), "file", None, tuple(looked))
    for cand in _env_candidates(checkpoint) if not path.is_absolute() else []:
        looked.append(str(cand))
        if cand.is_file():
            return Located(cand.resolve(), MODELS_ENV, None, tuple(looked))
    raise WeightsNotFoundError(
        f"{embedder or 'model'}: checkpoint {checkpoint!r} not found. Looked at: {', '.join(looked)}. "
        f"Put the file there (or under ${MODELS_ENV}) and pass its path. {hint}".strip())


def _checked(found: Located, required: tuple[str, ...], weights: bool, embedder: str) -> Located:
    missing = [f for f in required if not (found.path / f).exists()]
    if missing:
        raise WeightsNotFoundError(f"{embedder or 'model'}: {found.path} has no {', '.join(missing)} — "
                                   "not a complete save_pretrained / hub download")
    if weights and not found.weight_files():
        raise WeightsNotFoundError(f"{embedder or 'model'}: {found.path} has no weights file "
                                   f"({', '.join(WEIGHT_SUFFIXES)})")
    return found


def _missing_message(model: str, looked: list[str], embedder: str, hint: str) -> str:
    name = Path(model).name
    return (f"{embedder or 'model'}: weights for {model!r} not found. Looked in: {'; '.join(looked)}.\n"
            f"On a machine with internet access: `hf download {model} --local-dir {name}` (pip install "
            f"huggingface_hub), copy the folder here and either pass its path as the model parameter "
            f"(e.g. --embedder '{embedder or 'NAME'}:model=/path/{name}') or put it under ${MODELS_ENV}/{model}; "
            f"a copied Hugging Face cache works too (set HF_HOME or HF_HUB_CACHE). {hint}").strip()


def identity(found: Located) -> dict:
    """``embedder.json``'s weights identity: source, path, revision, and the main weights file's sha256."""
    from .torchmodel import file_identity
    files = found.weight_files()
    main = max(files, key=lambda p: p.stat().st_size)
    return {**file_identity(main), "source": found.source, "path": str(found.path), "revision": found.revision,
            "bytes": found.size}
