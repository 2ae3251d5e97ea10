"""The on-disk library: the facade over tracks, segments, errors, embeddings and indexes.

Building (add, embed, remove, replace) is in :mod:`.ingest`; the files, generations and the
writers' lock in :mod:`.store`; :meth:`Library.check` / :meth:`Library.info` in :mod:`.check`.

>>> import tempfile, os, numpy as np, soundfile as sf
>>> d = tempfile.mkdtemp()
>>> y = np.random.default_rng(0).standard_normal(22050 * 12).astype("float32") * .1
>>> sf.write(os.path.join(d, "a.wav"), y, 22050)
>>> lib = Library.create(os.path.join(d, "lib"), window=5, hop=2.5)
>>> report = lib.add(d, embedders=["features45"], workers=1, progress=False)
>>> report.added, len(lib.segments), lib.vectors("features45").shape
(1, 4, (4, 45))
>>> lib.remove([0]), len(lib.tracks), lib.generation > 1
(1, 0, True)
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..descriptors.conditioning import Conditioning
from ..embedders import Embedder
from ..errors import IncompatibleLibraryError, LibraryNotFoundError, ParameterError, UnknownEmbedderError
from ..segment import Segmentation, segment_table
from . import check as _check
from . import ingest
from .embedding import Embedding
from .ingest import TRACK_COLUMNS, BuildReport
from .store import (
    LibraryMeta,
    Store,
    damaged,
    read_json,
    read_jsonl,
    read_manifest,
    read_parquet,
    unpin,
    validated,
    write_json,
    write_parquet,
)

log = logging.getLogger(__name__)
FORMAT_VERSION = 2


class Library:
    """A directory holding one corpus cut into segments, its embeddings and indexes.

    Create with :meth:`create`, open with :meth:`open`; grow with :meth:`add`; embed with
    :meth:`embed`; index with :meth:`build_index`; query with :func:`audiorag.search.search`.
    One process changes a library at a time (others get :class:`~audiorag.errors.LibraryLockedError`,
    or wait with ``wait=True``); a reader sees one committed generation (:meth:`reload` moves on).
    """

    def __init__(self, path: Path, meta: dict, *, wait: bool | float = False, settle: bool = True):
        self.path = Path(path)
        self.meta = meta
        self.segmentation = Segmentation(**meta["segmentation"])
        self.store = Store(self.path, wait=wait)
        if settle:  # a writer that died just before its switch: see what the next change will see
            self.store.settle()
        self._pinned, self._pin_fd = self.store.pin()
        try:
            read_manifest(self._pinned)  # a manifest of another shape is named here, not deep inside a command
        except BaseException:
            self.close()
            raise
        self._cache: dict = {}
        self._cache_key: tuple | None = None
        self._manifest: dict = {}
        self._manifest_of: Path | None = None

    # -- lifecycle --------------------------------------------------------------------------
    @classmethod
    def create(cls, path, *, window: float = 10.0, hop: float = 2.0, tail: str = "keep-short",
               dataset: str | None = None, exist_ok: bool = False, wait: bool | float = False,
               conditioning: Conditioning | None = None) -> Library:
        """Create an empty library (or, with ``exist_ok``, open an existing one with the same segmentation).

        ``conditioning``: levelling to a loudness and/or noise reduction of every track and query clip
        (:mod:`audiorag.descriptors.conditioning`); stored in ``library.json``. None: none for a new
        library; an existing one keeps its own (another one asked for is refused).
        """
        path = Path(path)
        seg = Segmentation(window, hop, tail)
        if (path / "library.json").exists():
            if not exist_ok:
                raise ParameterError(f"{path}: a library already exists here (use Library.open or exist_ok=True)")
            lib = cls.open(path, wait=wait)
            if lib.segmentation != seg:
                raise IncompatibleLibraryError(
                    f"{path}: library was made with {lib.segmentation.to_dict()}, asked for {seg.to_dict()}; "
                    "use another directory for another segmentation")
            if conditioning is not None and lib.conditioning != conditioning:
                raise IncompatibleLibraryError(
                    f"{path}: library was made with conditioning {lib.conditioning.to_dict()}, asked for "
                    f"{conditioning.to_dict()}; use another directory for another conditioning")
            return lib
        if path.exists() and not path.is_dir():
            raise ParameterError(f"{path}: exists and is not a folder")
        Store.create(path, wait=wait)
        meta = {"format_version": FORMAT_VERSION, "segmentation": seg.to_dict(), "dataset": dataset,
                "audiorag_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if conditioning is not None and not conditioning.is_identity:
            meta["conditioning"] = conditioning.to_dict()
        write_json(path / "library.json", meta)  # last: its presence says "a library is here"
        return cls(path, meta, wait=wait)

    @classmethod
    def open(cls, path, *, wait: bool | float = False, settle: bool = True) -> Library:
        """Open an existing library at its committed generation.

        ``wait``: when another process is changing the library, this one's changes wait for it
        (``True``, or at most that many seconds) instead of failing with ``LibraryLockedError``.
        ``settle``: make current a complete generation a dead writer left just before its switch
        (:meth:`~audiorag.library.store.Store.settle`); ``audiorag check`` opens with ``False``: it changes nothing.
        """
        path = Path(path)
        if (path / "shards.json").exists():  # a sharded library (.shards) is opened as one by a few commands
            from .shards import refuse
            refuse(path)
        if not (path / "library.json").exists():
            raise LibraryNotFoundError(f"{path}: no audiorag library here (library.json missing)")
        meta = validated(path / "library.json", LibraryMeta)  # a file of another shape: one line naming the field
        if meta["format_version"] == 1:
            _migrate_v1(path, meta, wait)
        elif meta["format_version"] != FORMAT_VERSION:
            raise IncompatibleLibraryError(f"{path}: library format {meta['format_version']}, "
                                           f"this audiorag reads format {FORMAT_VERSION}")
        return cls(path, meta, wait=wait, settle=settle)

    @property
    def data(self) -> Path:
        """The generation directory this object reads (and, inside a change, writes)."""
        change = self.store.open_change
        if change is not None:
            return change
        if self.store.last_commit is not None:  # this object's own commit: read it from now on
            self.store.last_commit = None
            self.reload()
        elif self.store.locked and self._pinned != self.store.current:  # a writer reads the latest
            self.reload()
        return self._pinned

    @property
    def conditioning(self) -> Conditioning:
        """What is done to every track and query clip after decoding (``library.json``; see :func:`conditioning`)."""
        return conditioning(self)

    @property
    def generation(self) -> int:
        """The number of the generation this object reads."""
        return int(self.data.name.split("-")[1])

    def reload(self) -> Library:
        """Move to the latest committed generation (what other writers committed since)."""
        old = self._pin_fd
        self._pinned, self._pin_fd = self.store.pin()
        unpin(old)
        return self

    def close(self) -> None:
        """Release the generation this object reads (it may then be deleted by a writer)."""
        unpin(self._pin_fd)
        self._pin_fd = None

    def __del__(self):
        try:
            unpin(getattr(self, "_pin_fd", None))
        except Exception:  # noqa: BLE001, S110 - at interpreter exit the modules it needs may be gone
            pass

    def _tables(self) -> dict:
        """Tables read from :attr:`data`; forgotten when it changes or a change begins (what was read
        inside a change that failed must not outlive it)."""
        key = (self.data, self.store.serial)
        if self._cache_key != key:
            self._cache, self._cache_key = {}, key
        return self._cache

    def _expected(self, rel: str) -> bool:
        """Whether the committed generation lists ``rel`` (so its absence is damage, not emptiness)."""
        gen = self._pinned if self.store.open_change is None else self.store.current
        if self._manifest_of != gen:
            self._manifest = read_manifest(gen)["files"]
            self._manifest_of = gen
        return rel in self._manifest

    def verify(self, path: Path) -> None:
        """Before a change rewrites a file from its old content: the content is the one recorded at
        commit (sha256), else :class:`~audiorag.errors.LibraryDamagedError` — damage is never carried
        into a new generation."""
        from ..io import file_sha256
        rel = os.path.relpath(path, self.data)
        committed = self.store.current / rel
        if self.store.open_change is not None:  # a file already rewritten by this change is its own
            try:
                if not os.path.samefile(path, committed):
                    return
            except FileNotFoundError:
                return
        self._expected(rel)
        entry = self._manifest.get(rel)
        if entry is not None and file_sha256(path) != entry["sha256"]:
            raise damaged(path, "content differs from the sha256 recorded at commit")

    def _table(self, name: str, empty):
        p = self.data / name
        if p.exists():
            return read_parquet(p)
        if self._expected(name):
            raise damaged(p, "missing")
        return empty()

    # -- tables -----------------------------------------------------------------------------
    @property
    def tracks(self) -> pd.DataFrame:
        """One row per track: ``track_id, uri, duration, sample_rate, channels, content_hash`` + metadata.

        ``uri`` is the path as stored: names that are not valid UTF-8 are escaped
        (see :func:`audiorag.io.encode_path`)."""
        cache = self._tables()
        if "tracks" not in cache:
            cache["tracks"] = self._table("tracks.parquet", lambda: pd.DataFrame(
                {c: pd.Series(dtype="int64" if c in ("track_id", "sample_rate", "channels") else
                              "float64" if c == "duration" else "object") for c in TRACK_COLUMNS}))
        return cache["tracks"]

    @property
    def segments(self) -> pd.DataFrame:
        """One row per segment: ``segment_id, track_id, start, end``; ``segment_id`` is the vectors row."""
        cache = self._tables()
        if "segments" not in cache:
            cache["segments"] = self._table("segments.parquet", lambda: segment_table([], [], self.segmentation))
        return cache["segments"]

    def _set_tables(self, tracks: pd.DataFrame | None = None, segments: pd.DataFrame | None = None) -> None:
        """Write tables inside the open change (:meth:`Store.transaction`)."""
        cache = self._tables()
        if segments is not None:
            write_parquet(self.data / "segments.parquet", segments)
            cache["segments"] = segments
        if tracks is not None:
            write_parquet(self.data / "tracks.parquet", tracks)
            cache["tracks"] = tracks

    def set_track_column(self, name: str, values: dict) -> None:
        """Store ``values`` (track_id → value; missing tracks get NA) as track column ``name``,
        e.g. cluster ids from :mod:`audiorag.analysis.clusters`, usable in search filters."""
        if name in TRACK_COLUMNS or not name:
            raise ParameterError(f"{name!r} is a reserved track column: {', '.join(TRACK_COLUMNS)}")
        with self.store.transaction():
            tracks = self.tracks.copy()
            tracks[name] = tracks["track_id"].map(values)
            self._set_tables(tracks=tracks)

    def errors(self) -> pd.DataFrame:
        """The items that fail now (one row per uri and stage): ``time, uri, stage, error, message``.
        A file that was fixed and added since is no longer listed; every failure ever seen is in
        ``errors-history.jsonl``."""
        rows = read_jsonl(self.data / "errors.jsonl")
        cols = ["time", "uri", "stage", "error", "message"]
        return pd.DataFrame(rows, columns=None if rows else cols)

    # -- embeddings -------------------------------------------------------------------------
    def embeddings(self) -> list[Embedding]:
        root = self.data / "embeddings"
        return [Embedding(p) for p in sorted(root.iterdir()) if (p / "embedder.json").exists()] if root.exists() else []

    def embedding(self, ref: str | Embedder | None = None) -> Embedding:
        """The embedding named by key (``features45-6b0fdaa4``), by name when unambiguous, or (``None``) the
        library's default (:attr:`default_embedding`: the first one built, or the one set with
        :meth:`set_default_embedding`)."""
        found = self.embeddings()
        if isinstance(ref, Embedder):
            ref = ref.key
        if ref is None:
            default = self._default(found)
            if default is not None:
                return default
            raise ParameterError(f"{self.path}: {len(found)} embeddings ({', '.join(e.key for e in found) or 'none'}) "
                                 "and no default; name one (--embedder on the command line, embedder= in Python, "
                                 "the embedder field in the API) or set one with: audiorag default "
                                 f"{self.path} EMBEDDER")
        exact = [e for e in found if e.key == ref]
        by_name = [e for e in found if e.name == ref]
        if exact or len(by_name) == 1:
            emb = (exact or by_name)[0]
            self._check_embedding(emb)
            return emb
        if by_name:
            raise ParameterError(f"embedder {ref!r} is ambiguous here: {', '.join(e.key for e in by_name)}")
        how = f"audiorag fuse {self.path} {' '.join(str(ref).split('+'))}" if "+" in str(ref) else \
            f"lib.embed({ref!r})"  # E1+E2: an early fusion (library/derived.py)
        raise UnknownEmbedderError(f"{self.path}: no embedding {ref!r}; present: "
                                   f"{', '.join(e.key for e in found) or 'none'} (run {how})")

    @property
    def default_embedding(self) -> str | None:
        """The key of the embedding used where none is named: the one stored in ``library.json``
        (set with :meth:`set_default_embedding`, or on the first build), else the first primary
        embedding built (see :attr:`Embedding.is_primary`), else the only embedding; ``None`` when
        there is none to choose.

        >>> import tempfile
        >>> lib = Library.create(tempfile.mkdtemp() + "/lib")
        >>> lib.default_embedding is None
        True
        """
        default = self._default(self.embeddings())
        return None if default is None else default.key

    def set_default_embedding(self, ref: str) -> str:
        """Make embedding ``ref`` (key, or name when unambiguous) the library's default and return its
        key; stored in ``library.json``, so every later search, evaluation and server uses it."""
        emb = self.embedding(ref)
        if emb.kind == "melody":  # interval histograms: they answer hum queries, which find it themselves
            raise ParameterError(f"{emb.key} holds melody contours for --hum queries (found without a default); "
                                 f"a default embedding answers moment, clip and text searches: choose another of "
                                 f"{', '.join(e.key for e in self.embeddings() if e.kind != 'melody') or 'none yet'}")
        with self.store.lock():
            self._store_meta(default_embedding=emb.key)
        return emb.key

    def _default(self, found: list[Embedding]) -> Embedding | None:
        stored = [e for e in found if e.key == self.meta.get("default_embedding")]
        if stored:
            return stored[0]
        # libraries made before defaults were stored: the first primary one built (fusions, stems and
        # melody contours are never chosen unless they are all there is)
        primary = sorted((e for e in found if e.is_primary), key=lambda e: e.meta.get("created") or "")
        return primary[0] if primary else found[0] if len(found) == 1 else None

    def _store_meta(self, **values) -> None:
        """Rewrite ``library.json`` with ``values`` (atomically, from its current content: another
        process may have changed it since this one opened the library)."""
        meta = {**read_json(self.path / "library.json"), **values}
        write_json(self.path / "library.json", meta)
        self.meta = meta

    def _remember_default(self, named=()) -> None:
        """After a build: store the first primary embedding built as the default, unless one is stored
        (among embeddings built in the same second, the first named in ``named``)."""
        if self.meta.get("default_embedding") in {e.key for e in self.embeddings()}:
            return
        order = [getattr(n, "key", n) for n in named or ()]
        rank = {k: i for i, k in enumerate(order)}
        primary = sorted((e for e in self.embeddings() if e.is_primary), key=lambda e: (
            e.meta.get("created") or "", min(rank.get(e.key, len(order)), rank.get(e.name, len(order)))))
        if primary:
            self._store_meta(default_embedding=primary[0].key)

    def tagger(self, embedder: str | None = None) -> Embedding:
        """The embedding that stores tag probabilities (``embedder`` or the only tagger present)."""
        if embedder is not None:
            emb = self.embedding(embedder)
            if not emb.is_tagger:  # melody stores contours, not tags
                raise ParameterError(f"embeddings/{emb.key} has no tags; taggers: musicnn-mtt, musicnn-msd")
            return emb
        taggers = [e for e in self.embeddings() if e.is_tagger]
        if len(taggers) != 1:
            present = ", ".join(e.key for e in taggers) or 'none; add one with lib.embed("musicnn-mtt")'
            raise ParameterError(f"{self.path}: {len(taggers)} tagging embeddings ({present}); name one with embedder=")
        return taggers[0]

    def tags(self, track_id: int | None = None, segment_id: int | None = None, *,
             embedder: str | None = None) -> pd.DataFrame:
        """Tag probabilities (columns: tag names) of segments, indexed by ``segment_id``.

        ``segment_id`` → that segment; ``track_id`` → the mean over the track's segments
        (one row, indexed by the track id); neither → every segment.
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

    def descriptors(self, *, harmony: bool = False):
        """Musical descriptors per segment, computed at build time (:mod:`.descriptors`): a table aligned
        with :attr:`segments` (``key`` like "A minor", ``mode``, ``key_confidence``, ``tempo``,
        ``loudness_db``), or with ``harmony=True`` the harmonic-progression array ``[n_segments, 48]``."""
        from . import descriptors
        return descriptors.harmony(self) if harmony else descriptors.table(self)

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

    # -- building (see .ingest) -------------------------------------------------------------
    def add(self, source, *, embedders=None, workers: int | None = None, progress: bool = True,
            batch_tracks: int = 16, labels=None, fingerprint: bool = False, engine: str = "local",
            ray_address: str | None = None) -> BuildReport:
        """Add new audio files and embed them with every embedding of the library plus ``embedders``.

        ``source`` is a :class:`~audiorag.datasets.Dataset`, a dataset spec (``"synthetic:96"``,
        ``"folder:/x"``), a folder path, or a list of paths / :class:`~audiorag.datasets.TrackSource`.
        Files already present (same content) are skipped; a file whose content changed at the same
        path replaces its track; a file that failed before and decodes now is added and leaves
        :meth:`errors`. A build killed at any point resumes on the next call and produces the same
        vectors. Files that fail are recorded in :meth:`errors` and counted; the rest proceeds.
        ``fingerprint``: keep landmark fingerprints too (then every later ``add`` computes them; see
        :func:`audiorag.identify.identify`). ``engine="ray"`` decodes and embeds on a Ray cluster's
        workers (``ray_address``: None starts a local Ray, ``"auto"``/``"HOST:PORT"`` joins one; docs/cluster.md).
        """
        report = ingest.add(self, source, embedders=embedders, workers=workers, progress=progress,
                            batch_tracks=batch_tracks, labels=labels, fingerprint=fingerprint, engine=engine,
                            ray_address=ray_address)
        self._remember_default([embedders] if isinstance(embedders, (str, Embedder)) else embedders)
        return report

    def embed(self, embedder, *, workers: int | None = None, progress: bool = True, batch_tracks: int = 16,
              engine: str = "local", ray_address: str | None = None, **params) -> str:
        """Embed every track not yet embedded by ``embedder`` (a name with ``params``, or an Embedder).
        Returns the embedding key. Resumable like :meth:`add`; ``engine``/``ray_address`` as in :meth:`add`."""
        key = ingest.embed(self, embedder, workers=workers, progress=progress, batch_tracks=batch_tracks,
                           engine=engine, ray_address=ray_address, **params)
        self._remember_default([key])
        return key

    def remove(self, track_ids) -> int:
        """Remove tracks: their rows leave ``tracks``, their segments and vectors leave every index.

        Segment ids of the other tracks do not change (a removed track's segment rows stay,
        with ``track_id`` -1, and are never indexed or returned). Returns the number of tracks
        removed; unknown ids raise :class:`ParameterError` before anything changes.
        """
        return ingest.remove(self, track_ids)

    def replace(self, track_id: int, source, *, workers: int | None = None, progress: bool = False) -> BuildReport:
        """Replace a track's audio with ``source`` (a path or TrackSource), keeping its ``track_id``
        and metadata — in one commit: a crash leaves the old track or the new one, never neither."""
        return ingest.replace(self, track_id, source, workers=workers, progress=progress)

    # -- indexes ----------------------------------------------------------------------------
    def build_index(self, embedder=None, factory: str = "Flat", *, name: str | None = None,
                    max_memory: float | None = None, target_recall: float = 0.95,
                    max_resident: float | None = None) -> dict:
        """Build a FAISS index over an embedding's vectors and return its sidecar.

        ``factory`` is a FAISS factory string or ``"auto"`` (the index family chosen from the
        number of vectors, their dimension and ``max_memory`` bytes); search parameters are
        tuned to ``target_recall`` (recall@10 against exact search on held-out segments), and
        the measured recall, latency and bytes per segment are recorded in the sidecar.
        ``max_resident`` (bytes in RAM) lets ``auto`` re-rank compressed codes from the vectors on disk.
        See :func:`audiorag.library.indexes.build_index`.
        """
        from .indexes import build_index
        with self.store.transaction():
            return build_index(self, self.embedding(embedder), factory, name=name, max_memory=max_memory,
                               target_recall=target_recall, max_resident=max_resident)

    def drop_index(self, embedder=None, name: str = "flat") -> None:
        """Delete an index (its ``.faiss`` file and sidecar) of an embedding."""
        from .. import io
        from ..index import index_name
        with self.store.transaction():
            emb = self.embedding(embedder)
            found = [n for n in (name, index_name(name)) if (emb.path / f"index-{n}.json").exists()]
            if not found:
                raise ParameterError(f"no index {name!r} for {emb.key}")
            io.remove(emb.path / f"index-{found[0]}.faiss")
            io.remove(emb.path / f"index-{found[0]}.json")

    # -- checking (see .check) --------------------------------------------------------------
    def info(self, *, memory: bool = False) -> dict:
        """A summary: paths, segmentation, counts, embeddings and their indexes (with measured quality).
        ``memory`` adds the bytes each index maps and holds resident when opened as search does."""
        return {**_check.info(self, memory=memory), "default_embedding": self.default_embedding,
                "conditioning": self.conditioning.to_dict()}

    def check(self, *, repair: bool = False, checksums: bool = True) -> list[dict]:
        """Verify every invariant of the library; one dict per problem (``file``, ``problem``,
        ``repaired``). ``repair`` rebuilds what can be derived (vectors from raw rows, indexes,
        an interrupted build's consolidation) in one new generation and says what cannot be."""
        return _check.check(self, repair=repair, checksums=checksums)


def conditioning(lib) -> Conditioning:
    """The conditioning (levelling, noise reduction) of a library's tracks, which its query clips get too:
    from its ``library.json`` (a sharded library's shards are not conditioned: the identity).

    >>> import tempfile
    >>> conditioning(Library.create(tempfile.mkdtemp() + "/lib", conditioning=Conditioning(loudness=-23)))
    Conditioning(loudness=-23.0, denoise=False)
    """
    return Conditioning.from_dict(lib.meta.get("conditioning"))


def _migrate_v1(path: Path, meta: dict, wait) -> None:
    """Move a format-1 library (files at the top level) into generation 1, in place."""
    store = Store(path, wait=wait)
    with store.lock():
        store.adopt(["tracks.parquet", "segments.parquet", "errors.jsonl", "embeddings", "staging"])
        write_json(path / "library.json", {**meta, "format_version": FORMAT_VERSION})
    meta["format_version"] = FORMAT_VERSION
    log.info("%s: moved to library format %d", path, FORMAT_VERSION)


__all__ = ["Library", "BuildReport", "Embedding", "Conditioning", "conditioning"]
