"""What an ingest engine is given and what it gives back, and the work it does for one file.

An engine receives plain items: a :class:`Job` (the segmentation, the embedders, which extras to
compute, the content hashes already known) and a list of :class:`FileTask` (a path, and for files
already in a library the content hash they must still have). It yields one :class:`FileResult` per
task, in task order: the file's header, its raw vectors and tags per embedder key, its descriptors
and landmarks, or an error record. It knows nothing of a library: the caller (the library's
``add``/``embed``) stays the one writer and commits the results.

:func:`process_file` is the whole per-file step every engine runs (decode + hash + validate + embed
+ describe + fingerprint); model embedders only *prepare* their windows there, and :func:`forward`
runs the model once over the prepared windows of several files.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..audio import AudioInfo, load_with_hash, resample
from ..descriptors import landmarks
from ..descriptors.conditioning import Conditioning
from ..descriptors.tonal import STEPS, describe
from ..embedders import Embedder
from ..errors import AudioDecodeError, AudioragError
from ..segment import Segmentation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """What to compute for every file of a run.

    ``known_hashes``: a file with one of these content hashes comes back ``"duplicate"``, unembedded;
    ``descriptors``/``fingerprints``: also compute the windows' musical descriptors / the file's landmarks;
    ``conditioning``: levelling / noise reduction applied to the decoded audio before anything else.
    """

    segmentation: Segmentation
    embedders: list = field(default_factory=list)
    known_hashes: frozenset = frozenset()
    descriptors: bool = True
    fingerprints: bool = False
    conditioning: Conditioning = Conditioning()


class FileTask(NamedTuple):
    """One file to process: its path, and the content hash it must have (None: a new file)."""

    uri: str
    expected_hash: str | None = None


@dataclass
class FileResult:
    """What an engine produced for one file."""

    uri: str
    status: str  # "ok" | "duplicate" | "error"
    content_hash: str | None = None
    info: AudioInfo | None = None
    duration: float = 0.0
    raw: dict = field(default_factory=dict)  # embedder key -> float32[n_segments, dim]
    tags: dict = field(default_factory=dict)  # embedder key -> float32[n_segments, n_tags] (taggers)
    prepared: dict = field(default_factory=dict)  # embedder key -> model inputs awaiting the forward pass
    error: dict | None = None
    descriptors: dict | None = None  # musical descriptors of its windows (see describe_windows)
    landmarks: tuple | None = None  # (hashes, frames, n_frames) when the job asks for fingerprints


def process_file(job: Job, task: FileTask) -> FileResult:
    """Read + hash + decode + validate + embed (+ describe, + fingerprint) one file; never raises.

    >>> from audiorag.embedders import get_embedder
    >>> job = Job(Segmentation(10, 2), [get_embedder("features45")])
    >>> r = process_file(job, FileTask("/no/such.wav"))
    >>> r.status, r.error["stage"], r.error["error"]
    ('error', 'decode', 'AudioDecodeError')
    """
    uri, expected = task
    try:
        y, sr, digest, header = load_with_hash(uri)
        if expected is not None and digest != expected:
            raise AudioDecodeError(uri, f"content changed since it was added ({expected[:15]}… → {digest[:15]}…)")
        if digest in job.known_hashes:
            return FileResult(uri, "duplicate", content_hash=digest)
        duration = len(y) / sr
        y = job.conditioning.apply(y, sr)
        raw, prepared, tags = _embed_all(job, y, sr, duration)
        described = describe_windows(y, sr, job.segmentation, duration) if job.descriptors else None
        marks = file_landmarks(y, sr) if job.fingerprints else None
        return FileResult(uri, "ok", digest, header, duration, raw, tags, prepared=prepared, descriptors=described,
                          landmarks=marks)
    except Exception as exc:
        return FileResult(uri, "error", error=error_record(uri, getattr(exc, "stage", "decode"), exc))


def _embed_all(job: Job, y: np.ndarray, sr: int, duration: float) -> tuple[dict, dict, dict]:
    from ..embedders.stems import shared_separation
    with shared_separation(y, sr):  # one separation per track and stem source, shared by its stem embedders
        return _embed_each(job, y, sr, duration)


def _embed_each(job: Job, y: np.ndarray, sr: int, duration: float) -> tuple[dict, dict, dict]:
    starts, ends = job.segmentation.windows(duration)
    by_rate: dict[int, np.ndarray] = {}
    raw, prepared, tags = {}, {}, {}
    for e in job.embedders:
        try:
            if e.sample_rate not in by_rate:
                by_rate[e.sample_rate] = resample(y, sr, e.sample_rate)
            if is_model(e):  # the model runs batched over several files (forward)
                prepared[e.key] = e.prepare_track(by_rate[e.sample_rate], starts, ends)
                continue
            if e.tag_names:  # a tagger without a model (melody: its contours) gives its tags with the vectors
                vectors, tags[e.key] = e.embed_track_tagged(by_rate[e.sample_rate], starts, ends)
            else:
                vectors = e.embed_track(by_rate[e.sample_rate], starts, ends)
            raw[e.key] = check_output(e, vectors, len(starts))
        except Exception as exc:
            exc.stage = f"embed:{e.key}"  # type: ignore[attr-defined]
            raise
    return raw, prepared, tags


def is_model(e: Embedder) -> bool:
    """A model embedder (:class:`~audiorag.embedders.torchmodel.TorchEmbedder`): its windows are
    prepared per file and its forward pass runs batched over several files. Tested by its interface
    so that importing this module does not import torch.

    >>> from audiorag.embedders import get_embedder
    >>> is_model(get_embedder("features45"))
    False
    """
    return callable(getattr(e, "prepare_track", None)) and callable(getattr(e, "run", None))


def forward(models: list, results: list[FileResult]) -> None:
    """Run each model once over the prepared windows of ``results`` and give each file its rows.

    A failing forward pass turns the files of that batch into error records.
    """
    for e in models:
        ok = [r for r in results if r.status == "ok"]
        counts = [len(r.prepared[e.key]) for r in ok]
        try:
            out = e.run([w for r in ok for w in r.prepared.pop(e.key)])
            offsets = np.cumsum([0] + counts)
            for r, lo, hi in zip(ok, offsets[:-1], offsets[1:]):
                r.raw[e.key] = check_output(e, out["vectors"][lo:hi], hi - lo)
                if "tags" in out:
                    r.tags[e.key] = out["tags"][lo:hi]
        except Exception as exc:
            for r in ok:
                r.status, r.error = "error", error_record(r.uri, f"embed:{e.key}", exc)


def warm_up(embedders: list[Embedder]) -> None:
    """Run each embedder once on a short noise clip (compiles JIT kernels before workers fork)."""
    from ..embedders.stems import shared_separation
    noise = (0.1 * np.random.default_rng(0).standard_normal(int(44100 * 1.5))).astype(np.float32)
    with shared_separation(noise, 44100):  # stem embedders separate it once per source (Demucs is heavy)
        for e in embedders:
            e.embed_track(resample(noise, 44100, e.sample_rate), [0.0], [1.5])


def check_output(e: Embedder, raw, n: int) -> np.ndarray:
    """An embedder's output as float32 ``[n, dim]``, or :class:`~audiorag.errors.AudioragError` naming it."""
    raw = np.asarray(raw, dtype=np.float32)
    if raw.shape != (n, e.dim):
        raise AudioragError(f"{e.name} returned shape {raw.shape}, expected {(n, e.dim)}")
    if not np.isfinite(raw).all():
        raise AudioragError(f"{e.name} returned non-finite values")
    return raw


def error_record(uri: str, stage: str, exc: Exception) -> dict:
    """The error record of a file that failed ``stage`` (a line of a library's ``errors.jsonl``)."""
    reason = exc.reason if isinstance(exc, AudioDecodeError) else str(exc)
    record = {"uri": uri, "stage": stage, "error": type(exc).__name__, "message": reason}
    if not isinstance(exc, AudioragError):  # unexpected: keep the trace for a bug report
        record["traceback"] = traceback.format_exc(limit=5)
    return record


def describe_windows(y: np.ndarray, sr: int, segmentation: Segmentation, duration: float) -> dict:
    """The musical descriptors of a decoded track's windows; a track they cannot be computed for gets
    empty ones (:func:`empty_descriptors`) rather than failing its build."""
    starts, ends = segmentation.windows(duration)
    try:
        return describe(y, sr, starts, ends)
    except Exception as exc:  # noqa: BLE001 - descriptors are an extra: the track is still indexed
        log.warning("descriptors: %d windows left empty (%s: %s)", len(starts), type(exc).__name__, exc)
        return empty_descriptors(len(starts))


def empty_descriptors(n: int) -> dict:
    """Descriptors of ``n`` windows that have none (tonic and mode −1, NaN values, zero harmony).

    >>> empty_descriptors(2)["tonic"].tolist()
    [-1, -1]
    """
    return {"tonic": np.full(n, -1, np.int8), "mode": np.full(n, -1, np.int8),
            **{c: np.full(n, np.nan, np.float32) for c in ("key_confidence", "tempo", "loudness_db", "onset_rate",
                                                          "centroid_hz")},
            "harmony": np.zeros((n, 12 * STEPS), np.float32)}


def file_landmarks(y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The landmarks of one decoded file: ``(hashes, frames, n_frames)``."""
    h, f = landmarks.fingerprint(y, sr)
    return h, f, int(np.ceil(y.shape[-1] / sr / landmarks.FRAME_SECONDS))
