"""The on-disk library: tracks, segments, errors, embeddings, indexes; incremental, resumable builds.

>>> import tempfile, numpy as np, soundfile as sf, os
>>> d = tempfile.mkdtemp()
>>> sf.write(os.path.join(d, "a.wav"), np.random.default_rng(0).standard_normal(22050 * 12).astype("float32") * .1, 22050)
>>> lib = Library.create(os.path.join(d, "lib"), window=5, hop=2.5)
>>> report = lib.add(d, embedders=["features45"], workers=1, progress=False)
>>> report.added, len(lib.segments), lib.vectors("features45").shape
(1, 4, (4, 45))
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..datasets import Dataset, TrackSource, resolve
from ..embedders import Embedder, get_embedder
from ..errors import (IncompatibleLibraryError, LibraryNotFoundError, ParameterError,
                      UnknownEmbedderError)
from ..segment import Segmentation, segment_table
from . import build
from .embedding import Embedding
from .store import append_jsonl, read_json, read_jsonl, write_json, write_npz, write_parquet

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
TRACK_COLUMNS = ["track_id", "uri", "duration", "sample_rate", "channels", "content_hash"]


@dataclass
class BuildReport:
    """Counts of one ``add``/``embed`` call; ``errors`` lists the failed items' records."""

    added: int = 0
    duplicates: int = 0
    failed: int = 0
    embedded: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        s = f"added {self.added} tracks, skipped {self.duplicates} already present, {self.failed} failed"
        return s + (" (see errors.jsonl)" if self.failed else "") + f" in {self.seconds:.1f}s"


class Library:
    """A directory holding one corpus cut into segments, its embeddings and indexes.

    Create with :meth:`create`, open with :meth:`open`; grow with :meth:`add`;
    embed with :meth:`embed`; index with :meth:`build_index`; query with :meth:`search`.
    """

    def __init__(self, path: Path, meta: dict):
        self.path = Path(path)
        self.meta = meta
        self.segmentation = Segmentation(**meta["segmentation"])
        self._tracks: pd.DataFrame | None = None
        self._segments: pd.DataFrame | None = None

    # -- lifecycle --------------------------------------------------------------------------
    @classmethod
    def create(cls, path, *, window: float = 10.0, hop: float = 2.0, tail: str = "keep-short",
               dataset: str | None = None, exist_ok: bool = False) -> "Library":
        """Create an empty library (or, with ``exist_ok``, open an existing one with the same segmentation)."""
        path = Path(path)
        seg = Segmentation(window, hop, tail)
        if (path / "library.json").exists():
            if not exist_ok:
                raise ParameterError(f"{path}: a library already exists here (use Library.open or exist_ok=True)")
            lib = cls.open(path)
            if lib.segmentation != seg:
                raise IncompatibleLibraryError(
                    f"{path}: library was made with {lib.segmentation.to_dict()}, asked for {seg.to_dict()}; "
                    "use another directory for another segmentation")
            return lib
        path.mkdir(parents=True, exist_ok=True)
        meta = {"format_version": FORMAT_VERSION, "segmentation": seg.to_dict(), "dataset": dataset,
                "audiorag_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json(path / "library.json", meta)
        return cls(path, meta)

    @classmethod
    def open(cls, path) -> "Library":
        """Open an existing library; finishes consolidating a build that was interrupted."""
        path = Path(path)
        if not (path / "library.json").exists():
            raise LibraryNotFoundError(f"{path}: no audiorag library here (library.json missing)")
        meta = read_json(path / "library.json")
        if meta.get("format_version") != FORMAT_VERSION:
            raise IncompatibleLibraryError(f"{path}: library format {meta.get('format_version')}, "
                                           f"this audiorag reads format {FORMAT_VERSION}")
        return cls(path, meta)

    # -- tables -----------------------------------------------------------------------------
    @property
    def tracks(self) -> pd.DataFrame:
        """One row per track: ``track_id, uri, duration, sample_rate, channels, content_hash`` + metadata."""
        if self._tracks is None:
            p = self.path / "tracks.parquet"
            self._tracks = pd.read_parquet(p) if p.exists() else pd.DataFrame(
                {c: pd.Series(dtype="int64" if c in ("track_id", "sample_rate", "channels") else
                              "float64" if c == "duration" else "object") for c in TRACK_COLUMNS})
        return self._tracks

    def set_track_column(self, name: str, values: dict) -> None:
        """Store ``values`` (track_id → value; missing tracks get NA) as track column ``name``,
        e.g. cluster ids from :mod:`audiorag.analysis.clusters`, usable in search filters."""
        if name in TRACK_COLUMNS or not name:
            raise ParameterError(f"{name!r} is a reserved track column: {', '.join(TRACK_COLUMNS)}")
        tracks = self.tracks.copy()
        tracks[name] = tracks["track_id"].map(values)
        write_parquet(self.path / "tracks.parquet", tracks)
        self._tracks = None

    @property
    def segments(self) -> pd.DataFrame:
        """One row per segment: ``segment_id, track_id, start, end``; ``segment_id`` is the vectors row."""
        if self._segments is None:
            p = self.path / "segments.parquet"
            self._segments = pd.read_parquet(p) if p.exists() else segment_table([], [], self.segmentation)
        return self._segments

    def errors(self) -> pd.DataFrame:
        """Items that failed, latest record per (uri, stage)."""
        rows = read_jsonl(self.path / "errors.jsonl")
        df = pd.DataFrame(rows, columns=["time", "uri", "stage", "error", "message"] if not rows else None)
        return df.drop_duplicates(["uri", "stage"], keep="last").reset_index(drop=True) if len(df) else df

    # -- embeddings -------------------------------------------------------------------------
    def embeddings(self) -> list[Embedding]:
        root = self.path / "embeddings"
        return [Embedding(p) for p in sorted(root.iterdir()) if (p / "embedder.json").exists()] if root.exists() else []

    def embedding(self, ref: str | Embedder | None = None) -> Embedding:
        """The embedding named by key (``features45-6b0fdaa4``), by name when unambiguous, or the only one."""
        found = self.embeddings()
        if isinstance(ref, Embedder):
            ref = ref.key
        if ref is None:
            if len(found) == 1:
                return found[0]
            raise ParameterError(f"{self.path}: {len(found)} embeddings ({', '.join(e.key for e in found) or 'none'}); "
                                 "name one with embedder=")
        exact = [e for e in found if e.key == ref]
        by_name = [e for e in found if e.name == ref]
        if exact or len(by_name) == 1:
            emb = (exact or by_name)[0]
            self._check_embedding(emb)
            return emb
        if by_name:
            raise ParameterError(f"embedder {ref!r} is ambiguous here: {', '.join(e.key for e in by_name)}")
        raise UnknownEmbedderError(f"{self.path}: no embedding {ref!r}; present: "
                                   f"{', '.join(e.key for e in found) or 'none'} (run lib.embed({ref!r}))")

    def tagger(self, embedder: str | None = None) -> Embedding:
        """The embedding that stores tag probabilities (``embedder`` or the only tagger present)."""
        if embedder is not None:
            emb = self.embedding(embedder)
            if not emb.tag_names:
                raise ParameterError(f"embeddings/{emb.key} has no tags; taggers: musicnn-mtt, musicnn-msd")
            return emb
        taggers = [e for e in self.embeddings() if e.tag_names]
        if len(taggers) != 1:
            present = ", ".join(e.key for e in taggers) or 'none; add one with lib.embed("musicnn-mtt")'
            raise ParameterError(f"{self.path}: {len(taggers)} tagging embeddings ({present}); name one with embedder=")
        return taggers[0]

    def tags(self, track_id: int | None = None, segment_id: int | None = None, *,
             embedder: str | None = None) -> pd.DataFrame:
        """Tag probabilities (columns: tag names) of segments, indexed by ``segment_id``.

        ``segment_id`` → that segment; ``track_id`` → the mean over the track's segments
        (one row, indexed by the track id); neither → every segment.

        >>> lib.tags(segment_id=3).T.nlargest(3, 3)        # doctest: +SKIP
        """
        emb = self.tagger(embedder)
        tags = emb.tags()
        if len(tags) != len(self.segments):
            raise IncompatibleLibraryError(f"embeddings/{emb.key}: {len(tags)} tag rows for {len(self.segments)} "
                                           f"segments; finish the build with lib.embed({emb.name!r})")
        if segment_id is not None:
            if not 0 <= segment_id < len(tags):
                raise ParameterError(f"segment_id {segment_id} is not in this library (0–{len(tags) - 1})")
            return pd.DataFrame(tags[[segment_id]], index=pd.Index([segment_id], name="segment_id"),
                                columns=emb.tag_names)
        if track_id is not None:
            rows = np.flatnonzero(self.segments["track_id"].to_numpy() == track_id)
            if not len(rows):
                raise ParameterError(f"track_id {track_id} is not in this library")
            return pd.DataFrame(np.asarray(tags[rows]).mean(axis=0, keepdims=True),
                                index=pd.Index([track_id], name="track_id"), columns=emb.tag_names)
        return pd.DataFrame(np.asarray(tags), index=pd.Index(range(len(tags)), name="segment_id"),
                            columns=emb.tag_names)

    def vectors(self, embedder: str | None = None) -> np.ndarray:
        """The L2-normalised vectors of an embedding, memory-mapped, ``[n_segments, dim]``."""
        emb = self.embedding(embedder)
        vectors = emb.vectors()
        if len(vectors) != len(self.segments):
            raise IncompatibleLibraryError(f"embeddings/{emb.key}: {len(vectors)} vectors for {len(self.segments)} "
                                           f"segments; finish the build with lib.embed({emb.name!r})")
        return vectors

    def _check_embedding(self, emb: Embedding) -> None:
        if emb.meta.get("segmentation") != self.segmentation.to_dict():
            raise IncompatibleLibraryError(
                f"embeddings/{emb.key} was made with segmentation {emb.meta.get('segmentation')}, "
                f"the library uses {self.segmentation.to_dict()}; refusing to mix them")

    # -- building ---------------------------------------------------------------------------
    def add(self, source, *, embedders=None, workers: int | None = None, progress: bool = True,
            batch_tracks: int = 16, labels=None) -> BuildReport:
        """Add new audio files (by content hash) and embed them with every embedding of the library
        plus ``embedders``.

        ``source`` is a :class:`Dataset`, a dataset spec (``"synthetic:96"``, ``"folder:/x"``),
        a folder path, or a list of paths / :class:`TrackSource`. A build killed at any point
        resumes on the next call and produces the same vectors. Files that fail are recorded
        in ``errors.jsonl`` and counted in the report; the rest proceeds.
        """
        t0 = time.perf_counter()
        dataset = _dataset(source, labels)
        sources = dataset.sources() if dataset else _sources(source)
        if dataset and self.meta.get("dataset") is None:
            self.meta["dataset"] = dataset.id
            write_json(self.path / "library.json", self.meta)
        self._consolidate()
        requested = [_as_embedder(e) for e in (embedders or [])]
        existing = [e.embedder for e in self.embeddings()]
        run = list({e.key: e for e in existing + requested}.values())
        for e in run:
            self._ensure_embedding_dir(e)
        pending = self._staged_tracks()
        known = set(self.tracks["content_hash"]) | set(pending["content_hash"] if len(pending) else [])
        # commit state kept in memory for the whole add: no re-reading of staged batches per batch
        state = {"used": set(self.tracks["track_id"]) | set(pending.get("track_id", [])),
                 "committed": len(list(self._staging().glob("add-*.parquet"))) if self._staging().exists() else 0}
        todo = sources
        report = BuildReport()
        build.warm_up(run)
        results = build.run(build.ingest_file, [s.uri for s in todo],
                                 {"segmentation": self.segmentation, "embedders": run, "known_hashes": known},
                                 workers=workers or build.default_workers(), desc="ingest", progress=progress)
        batch: list[tuple[TrackSource, build.FileResult]] = []
        for src, res in zip(todo, results):
            if res.status == "duplicate" or (res.status == "ok" and res.content_hash in known):
                report.duplicates += 1
                continue
            if res.status == "error":
                report.failed += 1
                report.errors.append(res.error)
                append_jsonl(self.path / "errors.jsonl", res.error)
                continue
            known.add(res.content_hash)
            batch.append((src, res))
            if len(batch) >= batch_tracks:
                report.added += self._commit_batch(batch, run, state)
                batch = []
        if batch:
            report.added += self._commit_batch(batch, run, state)
        self._consolidate()
        for e in requested:  # embeddings new to this library also need the tracks added before
            if self._covered(self.embedding(e.key)) < len(self.tracks):
                self.embed(e, workers=workers, progress=progress)
        report.embedded = {e.key: len(self.tracks) for e in run}
        report.seconds = time.perf_counter() - t0
        log.info("%s", report.summary())
        return report

    def embed(self, embedder, *, workers: int | None = None, progress: bool = True, batch_tracks: int = 16,
              **params) -> str:
        """Embed every track not yet embedded by ``embedder`` (a name with ``params``, or an Embedder).

        Returns the embedding key. Resumable like :meth:`add`.
        """
        e = _as_embedder(embedder, **params)
        self._consolidate()
        emb = self._ensure_embedding_dir(e)
        tracks = self.tracks
        covered = self._covered(emb)
        done = set(self._parts_track_ids(emb))
        todo = tracks.iloc[covered:]
        todo = todo[~todo["track_id"].isin(done)]
        if len(todo):
            build.warm_up([e])
            results = build.run(build.embed_file, list(zip(todo["uri"], todo["content_hash"])),
                                     {"segmentation": self.segmentation, "embedders": [e], "known_hashes": set()},
                                     workers=workers or build.default_workers(), desc=f"embed {e.key}",
                                     progress=progress)
            ids, raws, tags, failed = [], [], [], []
            for (tid, seg_count), res in zip(self._segment_counts(todo), results):
                if res.status == "ok":
                    raws.append(res.raw[e.key])
                    tags.append(res.tags.get(e.key))
                else:
                    append_jsonl(self.path / "errors.jsonl", res.error)
                    raws.append(np.zeros((seg_count, e.dim), np.float32))
                    tags.append(np.zeros((seg_count, len(e.tag_names)), np.float32))
                    failed.append(tid)
                ids.append(tid)
                if len(ids) >= batch_tracks:
                    self._write_part(emb, f"embed-{ids[0]:012d}", ids, raws, failed, tags)
                    ids, raws, tags, failed = [], [], [], []
            if ids:
                self._write_part(emb, f"embed-{ids[0]:012d}", ids, raws, failed, tags)
        self._consolidate()
        return e.key

    def remove(self, track_ids) -> int:
        """Remove tracks: their rows leave ``tracks``, their segments and vectors leave every index.

        Segment ids of the other tracks do not change (a removed track's segment rows stay,
        with ``track_id`` -1, and are never indexed or returned). Indexes are updated in
        place where the index type allows (see :func:`audiorag.index.refresh`). Returns the
        number of tracks removed; unknown ids raise :class:`ParameterError` before anything changes.

        >>> lib.remove([3])                      # doctest: +SKIP
        1
        """
        from ..index import refresh
        self._consolidate()
        wanted = {int(t) for t in np.atleast_1d(track_ids)}
        unknown = sorted(wanted - set(self.tracks["track_id"].tolist()))
        if unknown:
            raise ParameterError(f"remove: track ids {unknown} are not in this library")
        segments = self.segments.copy()
        segments.loc[segments["track_id"].isin(wanted), "track_id"] = -1
        tracks = self.tracks[~self.tracks["track_id"].isin(wanted)].reset_index(drop=True)
        # segments first: a crash before the tracks are written leaves tracks without segments, which
        # the next remove() of the same ids completes
        write_parquet(self.path / "segments.parquet", segments)
        write_parquet(self.path / "tracks.parquet", tracks)
        self._tracks, self._segments = tracks, segments
        for emb in self.embeddings():
            meta = dict(emb.meta, n_tracks=self._covered(emb), updated=time.strftime("%Y-%m-%dT%H:%M:%S"))
            write_json(emb.path / "embedder.json", meta)
            refresh(self, emb.reload())
        log.info("removed %d tracks (%d segments)", len(wanted), int((self.segments["track_id"] < 0).sum()))
        return len(wanted)

    def replace(self, track_id: int, source, *, workers: int | None = None, progress: bool = False) -> BuildReport:
        """Replace a track's audio with ``source`` (a path or :class:`TrackSource`), keeping its
        ``track_id`` and metadata: the old segments are removed and the new audio is added and
        embedded by every embedding of the library."""
        row = self.tracks[self.tracks["track_id"] == int(track_id)]
        if row.empty:
            raise ParameterError(f"replace: track id {track_id} is not in this library")
        from ..audio import load_with_hash
        src = source if isinstance(source, TrackSource) else TrackSource(os.path.abspath(str(source)))
        _, _, digest, _ = load_with_hash(src.uri)  # a file that does not decode fails here, before any removal
        if digest in set(self.tracks["content_hash"]):
            raise ParameterError(f"replace: {src.uri} is already in the library")
        meta = {k: v for k, v in row.iloc[0].items() if k not in TRACK_COLUMNS and not pd.isna(v)}
        self.remove([track_id])
        report = self.add([TrackSource(src.uri, {**meta, **src.metadata, "track_id": int(track_id)})],
                          workers=workers, progress=progress)
        if report.added != 1:
            raise ParameterError(f"replace: track {track_id} was removed but {src.uri} could not be added: "
                                 f"{report.errors}")
        return report

    def _segment_counts(self, tracks: pd.DataFrame):
        counts = self.segments.groupby("track_id").size()
        for tid in tracks["track_id"]:
            yield int(tid), int(counts.get(tid, 0))

    def _ensure_embedding_dir(self, e: Embedder) -> Embedding:
        path = self.path / "embeddings" / e.key
        if (path / "embedder.json").exists():
            emb = Embedding(path)
            self._check_embedding(emb)
            stored = {k: emb.meta.get(k) for k in ("name", "params", "dim")}
            if stored != {"name": e.name, "params": e.params, "dim": e.dim}:
                raise IncompatibleLibraryError(f"embeddings/{e.key} holds {stored}, not {e.name} {e.params}")
            return emb
        (path / "parts").mkdir(parents=True, exist_ok=True)
        meta = {**e.describe(), "segmentation": self.segmentation.to_dict(), "n_tracks": 0, "n_segments": 0,
                "missing_tracks": [], "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json(path / "embedder.json", meta)
        return Embedding(path)

    # -- staging & consolidation ------------------------------------------------------------
    def _staging(self) -> Path:
        return self.path / "staging"

    def _staged_tracks(self) -> pd.DataFrame:
        files = sorted(self._staging().glob("add-*.parquet")) if self._staging().exists() else []
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame()

    def _commit_batch(self, batch, embedders: list[Embedder], state: dict) -> int:
        """Write one add batch: each embedding's part, then the staged tracks (the commit point).

        A source may carry its own ``track_id`` (e.g. FMA's); others get the next free id. A
        ``track_id`` already in use is an error record for that item.
        """
        used = state["used"]
        next_id = int(max(used)) + 1 if used else 0
        rows, kept = [], []
        for src, res in batch:
            wanted = src.metadata.get("track_id")
            if wanted is not None and int(wanted) in used:
                err = {"uri": src.uri, "stage": "add", "error": "ParameterError",
                       "message": f"track_id {int(wanted)} is already in the library"}
                append_jsonl(self.path / "errors.jsonl", err)
                continue
            tid = int(wanted) if wanted is not None else next_id
            used.add(tid)
            next_id = max(next_id, tid + 1)
            meta = {k: v for k, v in src.metadata.items() if k not in TRACK_COLUMNS}
            rows.append({"track_id": tid, "uri": src.uri, "duration": res.duration,
                         "sample_rate": res.info.sample_rate, "channels": res.info.channels,
                         "content_hash": res.content_hash, **meta})
            kept.append(res)
        if not rows:
            return 0
        seq = f"add-{state['committed']:06d}-{rows[0]['track_id']:012d}"  # commit order, then first track
        ids = [r["track_id"] for r in rows]
        for e in embedders:
            self._write_part(Embedding(self.path / "embeddings" / e.key), seq, ids, [res.raw[e.key] for res in kept], [],
                             [res.tags.get(e.key) for res in kept])
        self._staging().mkdir(exist_ok=True)
        write_parquet(self._staging() / f"{seq}.parquet", pd.DataFrame(rows))
        state["committed"] += 1
        return len(rows)

    @staticmethod
    def _write_part(emb: Embedding, name: str, track_ids, raws, failed, tags=None) -> None:
        (emb.path / "parts").mkdir(exist_ok=True)
        extra = {}
        if tags and all(t is not None for t in tags):
            extra["tags"] = np.concatenate(tags).astype(np.float32)
        write_npz(emb.path / "parts" / f"{name}.npz", track_ids=np.asarray(track_ids, np.int64),
                  counts=np.asarray([len(r) for r in raws], np.int64),
                  raw=np.concatenate(raws).astype(np.float32) if raws else np.zeros((0, emb.dim), np.float32),
                  failed=np.asarray(failed, np.int64), **extra)

    @staticmethod
    def _parts_track_ids(emb: Embedding) -> list[int]:
        ids = []
        for p in sorted((emb.path / "parts").glob("*.npz")):
            with np.load(p) as z:
                ids.extend(z["track_ids"].tolist())
        return ids

    def _consolidate(self) -> None:
        """Fold committed batches into tracks/segments and each embedding (idempotent, crash-safe).

        Order: drop orphan parts of uncommitted add batches; write every embedding (raw, vectors,
        description); then tracks and segments; then delete the folded batches.
        """
        staged = self._staged_tracks()
        committed = {p.stem for p in self._staging().glob("add-*.parquet")} if self._staging().exists() else set()
        for emb in self.embeddings():
            for p in (emb.path / "parts").glob("add-*.npz"):
                if p.stem not in committed:
                    p.unlink()  # a batch killed before its commit point; it will be redone
        if len(staged):
            staged = staged[~staged["track_id"].isin(self.tracks["track_id"])]
        tracks = pd.concat([self.tracks, staged], ignore_index=True) if len(staged) else self.tracks
        # segment rows are appended, never renumbered: rows of removed tracks stay (track_id -1)
        segments = self.segments
        if len(staged):
            segments = pd.concat([segments, segment_table(staged["track_id"], staged["duration"], self.segmentation,
                                                          first_segment_id=len(segments))], ignore_index=True)
        from ..index import refresh
        changed = [emb.key for emb in self.embeddings() if self._consolidate_embedding(emb, tracks, segments)]
        if len(staged):
            write_parquet(self.path / "tracks.parquet", tracks)
            write_parquet(self.path / "segments.parquet", segments)
        self._tracks, self._segments = tracks, segments
        if self._staging().exists():
            shutil.rmtree(self._staging())
        for emb in self.embeddings():
            parts = emb.path / "parts"
            if parts.exists() and self._covered(emb) == len(tracks):
                shutil.rmtree(parts)
            if emb.key in changed:
                refresh(self, emb)

    def _covered(self, emb: Embedding, tracks: pd.DataFrame | None = None, segments: pd.DataFrame | None = None) -> int:
        """How many of the library's tracks (a prefix) ``emb`` has vectors for."""
        tracks = self.tracks if tracks is None else tracks
        segments = self.segments if segments is None else segments
        first = segments.drop_duplicates("track_id").set_index("track_id")["segment_id"]
        return int((tracks["track_id"].map(first).to_numpy() < emb.n_segments).sum())

    def _consolidate_embedding(self, emb: Embedding, tracks, segments) -> bool:
        """Append the vectors of the next tracks whose parts are written; True when it grew."""
        meta = dict(emb.meta)
        covered = self._covered(emb, tracks, segments)
        if covered >= len(tracks):
            return False
        n_tags = len(meta.get("tag_names") or [])
        parts: dict[int, tuple[np.ndarray, np.ndarray, bool]] = {}
        for p in sorted((emb.path / "parts").glob("*.npz")) if (emb.path / "parts").exists() else []:
            with np.load(p) as z:
                offsets = np.concatenate([[0], np.cumsum(z["counts"])])
                failed = set(z["failed"].tolist())
                tags = z["tags"] if "tags" in z.files else np.zeros((offsets[-1], n_tags), np.float32)
                for i, tid in enumerate(z["track_ids"].tolist()):
                    lo, hi = offsets[i], offsets[i + 1]
                    parts[tid] = (z["raw"][lo:hi], tags[lo:hi], tid in failed)
        rows = segments[segments["track_id"] >= 0].groupby("track_id", sort=False)["segment_id"].agg(["min", "size"])
        n_seg_old = emb.n_segments
        ready = []
        for tid in tracks["track_id"].iloc[covered:]:
            if tid not in parts:
                break  # the rest is not embedded yet
            first, count = rows.loc[tid]
            if len(parts[tid][0]) != count:
                raise IncompatibleLibraryError(f"embeddings/{emb.key}: track {tid} has {len(parts[tid][0])} rows "
                                               f"for {count} segments")
            ready.append((tid, int(first), int(count)))
        if not ready:
            return False
        end = ready[-1][1] + ready[-1][2]
        raw = np.zeros((end, emb.dim), np.float32)  # rows of removed tracks in between stay zero
        raw[:n_seg_old] = emb.raw()[:n_seg_old]
        tag_rows = np.zeros((end, n_tags), np.float32)
        if n_tags:
            tag_rows[:n_seg_old] = emb.tags()[:n_seg_old]
        missing = set(meta.get("missing_tracks", []))
        for tid, first, count in ready:
            raw[first:first + count], tag_rows[first:first + count], failed = parts[tid]
            if failed:
                missing.add(int(tid))
        if n_tags:
            emb.write_tags(tag_rows)
        meta.update(n_tracks=covered + len(ready), n_segments=end, missing_tracks=sorted(missing),
                    updated=time.strftime("%Y-%m-%dT%H:%M:%S"))
        emb.write(raw, meta, emb.valid_rows(segments["track_id"].to_numpy()[:end], missing=meta["missing_tracks"]))
        return True

    # -- indexes & search -------------------------------------------------------------------
    def build_index(self, embedder=None, factory: str = "Flat", *, name: str | None = None,
                    max_memory: float | None = None, target_recall: float = 0.95) -> dict:
        """Build a FAISS index over an embedding's vectors and return its sidecar.

        ``factory`` is a FAISS factory string or ``"auto"`` (the index family chosen from the
        number of vectors, their dimension and ``max_memory`` bytes); search parameters are
        tuned to ``target_recall`` (recall@10 against exact search on held-out segments), and
        the measured recall, latency and bytes per segment are recorded in the sidecar.
        See :func:`audiorag.index.build_index`.

        >>> side = lib.build_index("features45", "auto", max_memory=2e9)   # doctest: +SKIP
        >>> side["factory"], side["quality"]["recall@10"]                  # doctest: +SKIP
        ('Flat', 1.0)
        """
        from ..index import build_index
        return build_index(self, self.embedding(embedder), factory, name=name, max_memory=max_memory,
                           target_recall=target_recall)

    def search(self, query, *, embedder=None, k: int = 10, index: str | None = None,
               exclude_same_track: bool = False, filters: dict | None = None, by: str = "segment"):
        """Search the library; returns a DataFrame of hits (see :func:`audiorag.search.search`)."""
        from ..search import search
        return search(self, query, embedder=embedder, k=k, index=index, exclude_same_track=exclude_same_track,
                      filters=filters, by=by)

    def info(self, *, memory: bool = False) -> dict:
        """A summary: paths, segmentation, counts, embeddings and their indexes (with measured quality).

        ``memory`` opens every index as search does (memory-mapped, read-only) and adds the bytes
        mapped and resident for each, and this process's resident set size.
        """
        from ..index import list_indexes, load_index, mapped_memory, resident_memory
        embs = []
        for emb in self.embeddings():
            indexes = []
            for i in list_indexes(emb):
                entry = {k: i.get(k) for k in ("name", "factory", "n", "search_params", "bytes_per_segment", "quality")}
                entry["quality"] = {k: v for k, v in (i.get("quality") or {}).items() if k != "curve"}
                if memory:
                    try:
                        load_index(self, emb, i["name"])
                        entry.update(mapped_memory(emb.path / f"index-{i['name']}.faiss"))
                    except (IncompatibleLibraryError, ParameterError) as exc:
                        entry["error"] = str(exc)
                indexes.append(entry)
            embs.append({"key": emb.key, "name": emb.name, "dim": emb.dim, "n_segments": emb.n_segments,
                         "n_tracks": emb.meta.get("n_tracks", 0), "missing_tracks": len(emb.meta.get("missing_tracks", [])),
                         "weights": emb.meta.get("weights"), "indexes": indexes})
        out = {"path": str(self.path), "format_version": self.meta["format_version"],
               "segmentation": self.segmentation.to_dict(), "dataset": self.meta.get("dataset"),
               "tracks": int(len(self.tracks)), "segments": int((self.segments["track_id"] >= 0).sum()),
               "removed_segments": int((self.segments["track_id"] < 0).sum()),
               "hours": round(float(self.tracks["duration"].sum()) / 3600, 3),
               "errors": int(len(self.errors())), "embeddings": embs}
        if memory:
            out["resident_bytes"] = resident_memory()
        return out


def _as_embedder(e, **params) -> Embedder:
    if isinstance(e, Embedder):
        if params:
            raise ParameterError("pass params either to the Embedder or to embed(), not both")
        return e
    if isinstance(e, str):
        name, _, rest = e.partition("-")
        if rest and re.fullmatch(r"[0-9a-f]{8}", rest) and not params:
            raise ParameterError(f"{e!r} looks like an embedding key; pass the embedder name and its params")
        return get_embedder(e, **params)
    raise ParameterError(f"expected an embedder name or Embedder, got {type(e).__name__}")


def _dataset(source, labels=None) -> Dataset | None:
    """A Dataset for a Dataset, a folder path or a dataset spec; None for explicit files."""
    if isinstance(source, Dataset):
        return source
    if isinstance(source, (str, os.PathLike)) and (os.path.isdir(source) or not os.path.exists(source)):
        return resolve(str(source), **({"labels": labels} if labels else {}))
    return None


def _sources(source) -> list[TrackSource]:
    items = [source] if isinstance(source, (str, os.PathLike)) else source
    return [i if isinstance(i, TrackSource) else TrackSource(os.path.abspath(str(i))) for i in items]


__all__ = ["Library", "BuildReport", "Embedding"]
