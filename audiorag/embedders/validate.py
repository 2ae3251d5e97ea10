"""The embedder validator (after hear-validator): run an embedder on white noise of odd lengths.

Every registered embedder must pass it (``tests/test_embedders.py``), and
``audiorag models verify NAME`` runs it on the real weights. Checks: output shape and
dtype, finite and non-zero vectors, determinism, batching does not change a window's
vector, ``embed_track`` shapes, NaN input rejected, and for text towers: text vectors of the
right shape that differ between texts.

>>> from audiorag.embedders import get_embedder
>>> report = validate(get_embedder("features45"), lengths=(0.5, 2.0))
>>> report.ok, [c.name for c in report.checks][:3]
(True, ['shape 0.5s', 'finite 0.5s', 'nonzero 0.5s'])
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..segment import Segmentation
from .base import Embedder

LENGTHS = (0.5, 1.98, 4.0, 10.0, 31.0)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Report:
    """Outcome of :func:`validate`: one :class:`Check` per property tested."""

    embedder: str
    key: str
    dim: int
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(name, bool(ok), detail))

    def summary(self) -> str:
        lines = [f"{self.embedder} ({self.key}, {self.dim}-D): {'OK' if self.ok else 'FAILED'}, "
                 f"{len(self.checks)} checks in {self.seconds:.1f}s"]
        lines += [f"  FAILED {c.name}: {c.detail}" for c in self.failures]
        return "\n".join(lines)


def validate(e: Embedder, *, lengths=LENGTHS, seed: int = 0) -> Report:
    """Run the checks on ``e`` and return a :class:`Report` (never raises for a failed check)."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    report = Report(e.name, e.key, e.dim)
    for seconds in lengths:
        batch = (0.1 * rng.standard_normal((2, int(seconds * e.sample_rate)))).astype(np.float32)
        out = e.embed(batch)
        tag = f"{seconds:g}s"
        report.add(f"shape {tag}", out.shape == (2, e.dim) and out.dtype == np.float32,
                   f"got {out.shape} {out.dtype}, expected (2, {e.dim}) float32")
        report.add(f"finite {tag}", np.isfinite(out).all())
        report.add(f"nonzero {tag}", (np.linalg.norm(out, axis=1) > 0).all())
        again = e.embed(batch)
        report.add(f"deterministic {tag}", np.array_equal(out, again), f"max |Δ| {np.abs(out - again).max():.3g}")
        one_by_one = np.concatenate([e.embed(batch[i:i + 1]) for i in range(2)])
        tol = 1e-4 * np.abs(out) + 1e-5 * np.abs(out).max()
        report.add(f"batch == one by one {tag}", (np.abs(one_by_one - out) <= tol).all(),
                   f"max |Δ| {np.abs(one_by_one - out).max():.3g}")
    y = (0.1 * rng.standard_normal(int(12.5 * e.sample_rate))).astype(np.float32)
    starts, ends = Segmentation(5, 2.5).windows(12.5)
    shape = e.embed_track(y, starts, ends).shape
    report.add("embed_track shape", shape == (len(starts), e.dim), f"got {shape}")
    try:
        e.embed(np.full((1, 1000), np.nan, dtype=np.float32))
        report.add("NaN input rejected", False, "embed accepted NaN audio")
    except Exception as exc:  # any clear error is fine; silently embedding NaN is not
        report.add("NaN input rejected", True, type(exc).__name__)
    if e.has_text:
        texts = ["a dog barking", "slow piano ballad"]
        tv = e.embed_text(texts)
        report.add("text shape", tv.shape == (2, e.dim) and tv.dtype == np.float32, f"got {tv.shape} {tv.dtype}")
        report.add("text finite", np.isfinite(tv).all())
        report.add("text deterministic", np.array_equal(tv, e.embed_text(texts)))
        report.add("texts differ", not np.allclose(tv[0], tv[1]))
    report.seconds = time.perf_counter() - t0
    return report
