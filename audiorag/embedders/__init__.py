"""Embedder registry: names map to embedder families and their default params.

>>> from audiorag.embedders import get_embedder, list_embedders
>>> "features45" in list_embedders()
True
>>> e = get_embedder("features45")
>>> (e.dim, e.sample_rate)
(45, 22050)
"""

from __future__ import annotations

import importlib
from typing import Callable

from ..errors import UnknownEmbedderError
from .base import Embedder, l2_normalise

_REGISTRY: dict[str, Callable[..., Embedder]] = {}


def register(name: str):
    """Decorator registering an embedder factory (usually the class) under ``name``."""
    def deco(factory):
        _REGISTRY[name] = factory
        return factory
    return deco


def register_lazy(name: str, target: str) -> None:
    """Register ``name`` for the class at ``"module:Class"``, imported only when it is asked for
    (model embedders need torch; the registry must not)."""
    module, _, cls = target.partition(":")

    def factory(**params):
        return getattr(importlib.import_module(module), cls)(**params)
    _REGISTRY[name] = factory


def list_embedders() -> list[str]:
    """Names of all registered embedders."""
    return sorted(_REGISTRY)


def get_embedder(name: str, **params) -> Embedder:
    """Instantiate a registered embedder with ``params``; unknown names raise :class:`UnknownEmbedderError`."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownEmbedderError(f"unknown embedder {name!r}; registered: {', '.join(list_embedders())}") from None
    return factory(**params)


from . import features  # noqa: E402,F401  (registers its embedders)

register_lazy("musicnn-mtt", "audiorag.embedders.musicnn:MusicnnMTT")
register_lazy("musicnn-msd", "audiorag.embedders.musicnn:MusicnnMSD")
register_lazy("aisfx", "audiorag.embedders.aisfx:Aisfx")

__all__ = ["Embedder", "get_embedder", "list_embedders", "register", "l2_normalise"]
