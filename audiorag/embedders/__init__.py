"""Embedder registry: names map to embedder families and their default params.

Every family is registered by name and imported only when it is asked for, so
``import audiorag.embedders`` loads neither librosa nor torch; a family whose framework is
not installed raises :class:`~audiorag.errors.MissingDependencyError` naming the package
and the extra that installs it.

>>> from audiorag.embedders import get_embedder, list_embedders
>>> "features45" in list_embedders()
True
>>> e = get_embedder("features45")
>>> (e.dim, e.sample_rate)
(45, 22050)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ..errors import MissingDependencyError, ParameterError, UnknownEmbedderError, WeightsNotFoundError
from .base import Embedder, l2_normalise

_REGISTRY: dict[str, Callable[..., Embedder]] = {}
#: the extra that installs each optional framework an embedder family may need
EXTRAS = {"torch": "models", "transformers": "models", "tokenizers": "models", "huggingface_hub": "models",
          "sentence_transformers": "models", "safetensors": "models", "demucs": "stems"}


def register(name: str):
    """Decorator registering an embedder factory (usually the class) under ``name``.

    >>> import numpy as np
    >>> @register("ones3")
    ... class Ones(Embedder):
    ...     name, sample_rate, dim = "ones3", 8000, 3
    ...     def embed(self, batch):
    ...         return np.ones((len(batch), 3), np.float32)
    >>> get_embedder("ones3").embed(np.zeros((2, 800), np.float32)).shape
    (2, 3)
    >>> _ = _REGISTRY.pop("ones3")
    """
    def deco(factory):
        _REGISTRY[name] = factory
        return factory
    return deco


def register_lazy(name: str, target: str) -> None:
    """Register ``name`` for the class at ``"module:Class"``, imported only when it is asked for
    (model embedders need torch; the registry must not).

    A module that cannot be imported because an optional package is missing raises
    :class:`~audiorag.errors.MissingDependencyError` saying what to install.
    """
    module, _, cls = target.partition(":")

    def factory(**params):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] == "audiorag":
                raise
            raise missing_dependency(name, exc.name) from None
        return getattr(mod, cls)(**params)
    _REGISTRY[name] = factory


def missing_dependency(what: str, package: str | None) -> MissingDependencyError:
    """The error for ``what`` needing an optional ``package`` that is not installed.

    >>> print(missing_dependency("aisfx", "torch"))
    aisfx needs torch, which is not installed: pip install 'audiorag[models]'
    """
    top = (package or "?").split(".")[0]
    extra = EXTRAS.get(top)
    how = f"pip install 'audiorag[{extra}]'" if extra else f"pip install {top}"
    return MissingDependencyError(f"{what} needs {top}, which is not installed: {how}")


def list_embedders() -> list[str]:
    """Names of all registered embedders."""
    return sorted(_REGISTRY)


def get_embedder(name: str, **params) -> Embedder:
    """Instantiate a registered embedder with ``params``; unknown names raise :class:`UnknownEmbedderError`.
    ``NAME@STEM`` (``aisfx@percussive``) embeds one separated stem of each track (:mod:`.stems`)."""
    if "@" in name:
        from .stems import named_stem_embedder
        return named_stem_embedder(name, **params)
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownEmbedderError(f"unknown embedder {name!r}; registered: {', '.join(list_embedders())}") from None
    return factory(**params)


def parse_spec(spec: str) -> tuple[str, dict]:
    """``"NAME[:key=value,...]"`` (the CLI's ``--embedder``) → name and params; values are YAML scalars/lists.

    >>> parse_spec("mert:layer=all,model=/models/MERT-v1-95M")
    ('mert', {'layer': 'all', 'model': '/models/MERT-v1-95M'})
    >>> parse_spec("mert:layer=[0, 0, 1]")
    ('mert', {'layer': [0, 0, 1]})
    """
    import re

    import yaml
    name, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, (p.strip() for p in re.split(r",(?![^\[]*\])", rest))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"embedder spec {spec!r}: expected key=value, got {item!r}")
        try:
            params[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:  # "k=[", "k=*x": not a value; one line, not the YAML parser's report
            reason = str(getattr(exc, "problem", None) or type(exc).__name__)
            raise ParameterError(f"embedder spec {spec!r}: {key.strip()}={value!r} is not a value ({reason})") from None
    return name.strip(), params


def weights_status(name: str, **params) -> dict:
    """Whether ``name``'s weights are on this machine: where, how big, which (for ``audiorag models``)."""
    e = get_embedder(name, **params)
    row = {"name": name, "family": type(e).__name__, "text_tower": e.has_text, "tags": len(e.tag_names)}
    try:
        found = e.locate_weights()
    except WeightsNotFoundError as exc:
        return {**row, "available": False, "where": None, "bytes": None, "identity": None, "message": str(exc)}
    if found is None:
        return {**row, "available": True, "where": "(no weights: hand-crafted)", "bytes": 0, "identity": None,
                "message": ""}
    ident = e.weights_identity()
    return {**row, "available": True, "where": str(found.path), "bytes": found.size, "message": "",
            "identity": ident.get("revision") or ident.get("sha256")}


register_lazy("features45", "audiorag.embedders.features:Features45")
register_lazy("musicnn-mtt", "audiorag.embedders.musicnn:MusicnnMTT")
register_lazy("musicnn-msd", "audiorag.embedders.musicnn:MusicnnMSD")
register_lazy("aisfx", "audiorag.embedders.aisfx:Aisfx")
register_lazy("clap", "audiorag.embedders.clap:Clap")
register_lazy("clamp3", "audiorag.embedders.clamp3:Clamp3")
register_lazy("ttmr", "audiorag.embedders.ttmr:Ttmr")
register_lazy("mert", "audiorag.embedders.wav2vec:Mert")
register_lazy("wav2vec2", "audiorag.embedders.wav2vec:Wav2Vec2")
register_lazy("hubert", "audiorag.embedders.wav2vec:Hubert")
register_lazy("melody", "audiorag.embedders.melody:Melody")


__all__ = ["Embedder", "get_embedder", "list_embedders", "parse_spec", "register", "register_lazy", "l2_normalise",
           "weights_status", "missing_dependency"]
