"""Warm-up: one query of every kind a library offers, run when a server process starts, so the first
client does not pay for imports, model loading or compiled-code caches.

``/health`` answers ``"status": "warming"`` until it is done, then ``"ok"``; each query runs on the
library's own data (a moment of its first track, that moment's audio as an uploaded clip, a hum of
it, a text query where the embedding has a text tower or tags), so nothing is generated that the
library does not already hold.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

import numpy as np

from ..errors import AudioragError
from ..rerank import Rerank
from ..search import Query, context, search
from .answers import track_cards
from .contract import vocabulary
from .tracks import positions

log = logging.getLogger(__name__)


def queries(lib) -> list[tuple[str, str, Query, dict]]:
    """``(embedding key, query kind, query, search options)`` for each kind of query the library can answer.

    >>> import tempfile
    >>> from audiorag import Library
    >>> queries(Library.create(tempfile.mkdtemp(), window=2, hop=1))  # no tracks: nothing to warm
    []
    """
    if len(lib.tracks) == 0:
        return []
    track, clip = int(lib.tracks["track_id"].iloc[0]), None
    for row in lib.tracks.head(5).itertuples():  # the first track whose file still decodes
        clip = _clip(str(row.uri), lib.segmentation.window)
        if clip is not None:
            track = int(row.track_id)
            break
    rerank = {"rerank": Rerank(harmonic=0.2, tempo=0.2)}
    out = []
    for emb in lib.embeddings():
        if not emb.n_segments:
            continue
        if emb.kind == "melody":
            if clip is not None:
                out.append((emb.key, "hum", Query.hum(clip[0], sr=clip[1]), {}))
            continue
        out.append((emb.key, "moment", Query.moment(track, 0.0), {}))
        if clip is not None:
            out.append((emb.key, "audio", Query.audio(clip[0], sr=clip[1]), {}))
            # re-ranking estimates the clip's key and tempo (the descriptors' code path)
            out.append((emb.key, "audio+rerank", Query.audio(clip[0], sr=clip[1]), rerank))
        if emb.has_text or emb.is_tagger:
            out.append((emb.key, "text", Query.text("music"), {}))
    return out


def warm(lib) -> dict[str, float]:
    """Run :func:`queries` once; ``{"EMBEDDING kind": seconds}`` of each that answered (one that cannot,
    e.g. re-ranking in a library without descriptors, is skipped with a debug line)."""
    took = {}
    for key, kind, query, options in queries(lib):
        t0 = time.perf_counter()
        try:
            search(lib, query, embedder=key, k=1, **options)
        except AudioragError as exc:
            log.debug("warm-up: %s %s skipped: %s", key, kind, exc)
            continue
        took[f"{key} {kind}"] = round(time.perf_counter() - t0, 3)
    return took


def prepare(lib) -> None:
    """Fill what requests to a newly opened generation read first: the schema's names and patterns, the track
    tables and cards, each embedding's search context (its index opened); called in a thread before any request
    gets the generation (:class:`.state.Libraries`). A step that fails is left to the requests, which answer
    its error as they would without preparation (this is only a head start)."""
    steps = [vocabulary, positions, track_cards] + [
        lambda lib, key=emb.key: context(lib, key) for emb in lib.embeddings()]
    for step in steps:
        try:
            step(lib)
        except Exception as exc:  # noqa: BLE001 - e.g. an embedding a build is filling: its first query says why
            log.debug("prepare: %s: %s", getattr(step, "__name__", step), exc)


def freeze_heap() -> None:
    """Collect garbage, then take every object alive now (imports, models, the opened library) out of the cyclic
    collector's scans (:func:`gc.freeze`): a full collection of a warmed server's ~600 k objects took 0.4 s on 2
    busy cores, a pause that every request in flight waits out (the p99 of a server whose caches grow, as during a
    build). Frozen objects are still freed when no longer referenced; only cycles among them stay."""
    gc.collect()
    gc.freeze()


class Warmer:
    """Runs :func:`warm` in a background thread; :attr:`ready` is set when it ends (even by an error:
    a failed warm-up only means the first client waits as it would have). ``announce`` receives one line
    saying what was warmed and how long it took (the ``serve`` command prints it); with ``freeze``, the
    heap is frozen (:func:`freeze_heap`) before ready."""

    def __init__(self, libraries, announce=None, *, freeze: bool = False):
        self.libraries = libraries
        self.announce = announce or log.info
        self.freeze = freeze
        self.ready = threading.Event()
        self.took: dict[str, float] = {}

    def start(self) -> None:
        threading.Thread(target=self._run, name="audiorag-warm", daemon=True).start()

    def _run(self) -> None:
        t0 = time.perf_counter()
        try:
            self.took = warm(self.libraries.current())
        except Exception:  # noqa: BLE001 - never take the server down; the log keeps the cause
            log.exception("warm-up failed")
        finally:
            if self.freeze:
                freeze_heap()
            self.ready.set()
        kinds = ", ".join(sorted({key.split()[-1] for key in self.took}))
        self.announce(f"ready: warmed {len(self.took)} queries ({kinds}) in {time.perf_counter() - t0:.1f} s")


def _clip(uri: str, seconds: float) -> tuple[np.ndarray, int] | None:
    """The first ``seconds`` of a track's file as a clip (samples, rate), or None when it does not decode."""
    from ..audio import load_clip
    from ..io import decode_path
    try:
        clip = load_clip(decode_path(uri), start=0.0, end=seconds)
    except AudioragError as exc:
        log.debug("warm-up: no clip from %s: %s", uri, exc)
        return None
    return clip.y, clip.sr
