"""What a server is allowed to do: the library it serves, its limits and its security settings.

>>> s = Settings("my-lib", max_upload=parse_size("20MB"), max_clip=parse_seconds("60s"))
>>> s.max_upload, s.max_clip, s.token is None
(20000000, 60.0, True)
>>> check_bind("0.0.0.0", None)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
audiorag.errors.ParameterError: --host 0.0.0.0 is not a loopback address: ... a token is required ...
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass, field

from ..errors import ParameterError

#: the environment variable holding the token (``audiorag serve --token`` defaults to it)
TOKEN_ENV = "AUDIORAG_TOKEN"
#: how the ``serve`` command hands its settings to uvicorn's worker processes
SETTINGS_ENV = "AUDIORAG_SERVE_SETTINGS"
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


@dataclass(frozen=True)
class Settings:
    """A server's configuration (see ``audiorag serve --help``).

    ``max_upload``: bytes of an uploaded request body (413 beyond, before it is read whole);
    ``max_clip``: seconds of decoded upload audio (422 beyond); ``max_span``: seconds of audio
    one ``/tracks/{id}/audio`` response may hold; ``timeout``: seconds a request may take
    (upload included) before 504; ``threads``: the pool decoding and embedding uploads (default:
    the cores); ``queue``: requests that may wait for that pool before 503; ``warm``: run one query of
    each kind at start (:mod:`audiorag.serve.warm`; ``/health`` says ``warming`` meanwhile);
    ``missing_shards``: a sharded library's answer when shards did not answer: ``"partial"`` (the other
    shards' hits, ``missing_shards`` naming them) or ``"503"`` (no hits: 503 naming them).
    """

    library: str
    token: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_upload: int = 20_000_000
    max_clip: float = 60.0
    max_span: float = 600.0
    timeout: float = 30.0
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    queue: int = 64
    warm: bool = True
    ray_address: str | None = None  # a sharded library: served by its shard actors on this Ray cluster
    missing_shards: str = "partial"  # shards that did not answer: "partial" hits naming them, or "503"

    def __post_init__(self):
        if self.token is not None and not self.token.strip():
            raise ParameterError("--token must not be empty")
        for name in ("max_upload", "max_clip", "max_span", "timeout", "threads", "queue"):
            if not getattr(self, name) > 0:
                raise ParameterError(f"serve: {name} must be > 0, got {getattr(self, name)}")
        if self.missing_shards not in ("partial", "503"):
            raise ParameterError(f"--missing-shards must be partial or 503, got {self.missing_shards!r}")
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return cls(**json.loads(text))


def parse_size(text: str) -> int:
    """``"20MB"`` → 20000000 bytes (kB/MB/GB are powers of 10, KiB/MiB/GiB of 2; no unit: bytes).

    >>> parse_size("512KiB"), parse_size("1.5 GB"), parse_size("300")
    (524288, 1500000000, 300)
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ParameterError(f"expected a size such as 20MB, 512KiB or 300 (bytes), got {text!r}")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise ParameterError(f"a size must be > 0, got {text!r}")
    return value


def parse_seconds(text: str) -> float:
    """``"60s"``, ``"2min"``, ``"1.5"`` → seconds.

    >>> parse_seconds("2min"), parse_seconds("90s"), parse_seconds("1.5")
    (120.0, 90.0, 1.5)
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|sec|min|m|h)?\s*", str(text))
    if not m:
        raise ParameterError(f"expected a duration such as 60s, 2min or 1.5 (seconds), got {text!r}")
    value = float(m.group(1)) * {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]
    if value <= 0:
        raise ParameterError(f"a duration must be > 0, got {text!r}")
    return value


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def check_bind(host: str, token: str | None) -> None:
    """Refuse a bind other machines can reach unless requests must carry a token."""
    if not is_loopback(host) and not token:
        raise ParameterError(f"--host {host} is not a loopback address: other machines could reach the library, "
                             f"so a token is required (--token or ${TOKEN_ENV})")
