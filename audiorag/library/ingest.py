"""Growing a library: add files, embed them, remove and replace tracks — every batch one commit.

All of it runs under the library's writers' lock. ``add`` commits each batch of files (their
rows per embedding under ``embeddings/<key>/parts/`` and their tracks under ``staging/``) as a
generation of its own, then folds the batches into the tables and arrays (:func:`consolidate`)
and updates the indexes. A build killed anywhere resumes from its last committed batch.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import engines, io
from ..audio import short_tail
from ..datasets import Dataset, TrackSource, resolve
from ..embedders import Embedder, get_embedder
from ..errors import IncompatibleLibraryError, ParameterError
from ..io import decode_path, encode_path
from ..segment import segment_table
from . import derived, descriptors, fingerprints
from .embedding import Embedding
from .store import append_jsonl, read_jsonl, read_npz, read_parquet, write_json, write_jsonl, write_npz, write_parquet

log = logging.getLogger(__name__)
TRACK_COLUMNS = ["track_id", "uri", "duration", "sample_rate", "channels", "content_hash"]


@dataclass
class BuildReport:
    """Counts of one ``add``/``embed`` call; ``errors`` lists the failed items' records, then the
    duplicate files' (``stage`` "duplicate": the same bytes as another file, ``message`` names it)."""

    added: int = 0
    duplicates: int = 0
    duplicate_files: int = 0
    replaced: int = 0
    failed: int = 0
    embedded: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        s = f"added {self.added} tracks, skipped {self.duplicates} already present, "
        s += f"replaced {self.replaced} changed, " if self.replaced else ""
        s += f"{self.duplicate_files} duplicate files (the same bytes as another; not added), " \
            if self.duplicate_files else ""
        s += f"{self.failed} failed"
        return s + (" (see errors.jsonl)" if self.failed else "") + f" in {self.seconds:.1f}s"


class _Errors:
    """The library's current failures, keyed by (uri, stage); committed with each batch."""

    def __init__(self, lib):
        self.lib = lib
        self.rows = {(r.get("uri"), r.get("stage")): r for r in read_jsonl(lib.data / "errors.jsonl")}
        self.changed = False

    def record(self, rec: dict) -> dict:
        rec = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **rec, "uri": encode_path(str(rec.get("uri", "")))}
        self.rows[(rec["uri"], rec["stage"])] = rec
        append_jsonl(self.lib.path / "errors-history.jsonl", rec)
        self.changed = True
        return rec

    def clear(self, uri: str, *, keep: str | None = None) -> None:
        """``uri`` decodes and embeds now: its earlier failures are gone (but the records of stage ``keep``)."""
        key = encode_path(uri)
        gone = [k for k in self.rows if k[0] == key and k[1] != keep]
        for k in gone:
            del self.rows[k]
        self.changed |= bool(gone)

    def forget_gone(self) -> None:
        """Failures of files that no longer exist are not current any more."""
        gone = [k for k in self.rows if k[0] and not os.path.lexists(decode_path(k[0]))]
        for k in gone:
            del self.rows[k]
        self.changed |= bool(gone)

    def write(self) -> None:
        write_jsonl(self.lib.data / "errors.jsonl", [self.rows[k] for k in sorted(self.rows)])
        self.changed = False


def add(lib, source, *, embedders=None, workers: int | None = None, progress: bool = True,
        batch_tracks: int = 16, labels=None, fingerprint: bool = False, engine: str = "local",
        ray_address: str | None = None) -> BuildReport:
    """See :meth:`audiorag.Library.add`."""
    t0 = time.perf_counter()
    dataset = _dataset(source, labels)
    sources = list(dataset.sources()) if dataset else _sources(source)
    requested = [_as_embedder(e) for e in (embedders or [])]
    report = BuildReport()
    with lib.store.lock():
        if dataset and lib.meta.get("dataset") is None:
            lib.meta["dataset"] = dataset.id
            write_json(lib.path / "library.json", lib.meta)
        consolidate(lib)
        if fingerprint:
            fingerprints.enable(lib)
        stored = [e.embedder for e in lib.embeddings() if "derived" not in e.meta]  # derived: computed, not embedded
        run = list({e.key: e for e in stored + requested}.values())
        if any(not (lib.data / "embeddings" / e.key / "embedder.json").exists() for e in run):
            with lib.store.transaction():
                for e in run:
                    _ensure_embedding_dir(lib, e)
        errors = _Errors(lib)
        errors.forget_gone()
        for problem in getattr(dataset, "problems", None) or []:
            report.failed += 1
            report.errors.append(errors.record(problem))
        live = lib.tracks
        known = set(live["content_hash"])
        by_uri = dict(zip(live["uri"], live["track_id"]))
        owner = dict(zip(live["content_hash"], live["uri"]))  # content → the file it was added from
        state = {"used": set(live["track_id"].tolist()), "committed": 0}
        # the windows' descriptors serve searches of an embedding: a library of fingerprints alone skips them
        # (identification ingest at the decode + landmarks rate); its first embedding describes its tracks
        job = engines.Job(lib.segmentation, run, frozenset(known), descriptors=bool(run),
                          fingerprints=fingerprints.enabled(lib), conditioning=lib.conditioning)
        results = engines.run([engines.FileTask(s.uri) for s in sources], job, engine=engine, workers=workers,
                              ray_address=ray_address, desc="ingest", progress=progress)
        batch, edits = [], []
        for src, res in zip(sources, results):
            if res.status == "error":
                report.failed += 1
                report.errors.append(errors.record(res.error))
                continue
            if res.status == "duplicate" or res.content_hash in known:
                first = owner.get(res.content_hash)
                errors.clear(src.uri, keep="short-tail" if first == encode_path(src.uri) else None)
                if first is not None and first != encode_path(src.uri):  # the same bytes at another path
                    report.duplicate_files += 1
                    report.errors.append(errors.record({"uri": src.uri, "stage": "duplicate", "error": "Duplicate",
                                                        "message": f"duplicate of {first}"}))
                else:
                    report.duplicates += 1
                continue
            errors.clear(src.uri)
            if encode_path(src.uri) in by_uri:  # same path, new content: the file was edited
                edits.append((int(by_uri[encode_path(src.uri)]), src))
                continue
            missing = short_tail(res.info, round(res.duration * res.info.sample_rate))
            if missing:  # accepted: the header promised a little more than decodes (codec end trim)
                errors.record({"uri": src.uri, "stage": "short-tail", "error": "ShortTail",
                               "message": f"accepted {missing / res.info.sample_rate:.3f}s short of the "
                                          f"{res.info.duration:.3f}s its header promises"})
            known.add(res.content_hash)
            owner[res.content_hash] = encode_path(src.uri)
            batch.append((src, res))
            if len(batch) >= batch_tracks:
                report.added += _commit_batch(lib, batch, run, state, errors)
                batch = []
        _finish(results)
        if batch or errors.changed:
            report.added += _commit_batch(lib, batch, run, state, errors)
        consolidate(lib)
        if run:  # tracks added before descriptors existed, or while the library had no embedding
            descriptors.backfill(lib, workers=workers, progress=progress)
        if fingerprints.enabled(lib):  # tracks added before fingerprints were enabled
            fingerprints.backfill(lib, workers=workers, progress=progress)
        for e in requested:  # embeddings new to this library also need the tracks added before
            if _covered(lib, lib.embedding(e.key)) < len(lib.tracks):
                embed(lib, e, workers=workers, progress=progress, engine=engine, ray_address=ray_address)
        for track_id, src in edits:
            replace(lib, track_id, src, workers=workers, progress=False)
            report.replaced += 1
        report.embedded = {e.key: len(lib.tracks) for e in run}
    report.seconds = time.perf_counter() - t0
    log.info("%s", report.summary())
    return report


def embed(lib, embedder, *, workers: int | None = None, progress: bool = True, batch_tracks: int = 16,
          engine: str = "local", ray_address: str | None = None, **params) -> str:
    """See :meth:`audiorag.Library.embed`."""
    e = _as_embedder(embedder, **params)
    with lib.store.lock():
        consolidate(lib)
        if not (lib.data / "embeddings" / e.key / "embedder.json").exists():
            with lib.store.transaction():
                _ensure_embedding_dir(lib, e)
        emb = _ensure_embedding_dir(lib, e)
        tracks = lib.tracks
        done = set(_parts_track_ids(emb))
        todo = tracks.iloc[_covered(lib, emb):]
        todo = todo[~todo["track_id"].isin(done)]
        if len(todo):
            errors = _Errors(lib)
            tasks = [engines.FileTask(decode_path(u), h) for u, h in zip(todo["uri"], todo["content_hash"])]
            results = engines.run(tasks, engines.Job(lib.segmentation, [e], descriptors=False,
                                                      conditioning=lib.conditioning), engine=engine,
                                  workers=workers, ray_address=ray_address, desc=f"embed {e.key}", progress=progress)
            ids, raws, tags, failed = [], [], [], []
            counts = lib.segments.groupby("track_id").size()
            for tid, res in zip(todo["track_id"].tolist(), results):
                n = int(counts.get(tid, 0))
                if res.status == "ok":
                    raws.append(res.raw[e.key])
                    tags.append(res.tags.get(e.key))
                else:
                    errors.record(res.error)
                    raws.append(np.zeros((n, e.dim), np.float32))
                    tags.append(np.zeros((n, len(e.tag_names)), np.float32))
                    failed.append(tid)
                ids.append(tid)
                if len(ids) >= batch_tracks:
                    _commit_part(lib, e.key, ids, raws, failed, tags, errors)
                    ids, raws, tags, failed = [], [], [], []
            _finish(results)
            if ids:
                _commit_part(lib, e.key, ids, raws, failed, tags, errors)
        consolidate(lib)
        descriptors.backfill(lib, workers=workers, progress=progress)  # a library's first embedding: its tracks
    return e.key


def remove(lib, track_ids) -> int:
    """See :meth:`audiorag.Library.remove`."""
    from .indexes import refresh
    wanted = {int(t) for t in np.atleast_1d(track_ids)}
    with lib.store.transaction():
        consolidate(lib)
        unknown = sorted(wanted - set(lib.tracks["track_id"].tolist()))
        if unknown:
            raise ParameterError(f"remove: track ids {unknown} are not in this library")
        segments = lib.segments.copy()
        segments.loc[segments["track_id"].isin(wanted), "track_id"] = -1
        tracks = lib.tracks[~lib.tracks["track_id"].isin(wanted)].reset_index(drop=True)
        lib._set_tables(tracks=tracks, segments=segments)
        fingerprints.remove(lib, wanted)
        for emb in lib.embeddings():
            meta = dict(emb.meta, n_tracks=_covered(lib, emb), updated=time.strftime("%Y-%m-%dT%H:%M:%S"))
            write_json(emb.path / "embedder.json", meta)
            refresh(lib, emb.reload())
    log.info("removed %d tracks", len(wanted))
    return len(wanted)


def replace(lib, track_id: int, source, *, workers: int | None = None, progress: bool = False) -> BuildReport:
    """See :meth:`audiorag.Library.replace`."""
    from ..audio import load_with_hash
    src = source if isinstance(source, TrackSource) else TrackSource(os.path.abspath(str(source)))
    _, _, digest, _ = load_with_hash(src.uri)  # a file that does not decode fails here, before any change
    with lib.store.transaction():  # one commit: the old track or the new one, never neither
        row = lib.tracks[lib.tracks["track_id"] == int(track_id)]
        if row.empty:
            raise ParameterError(f"replace: track id {track_id} is not in this library")
        if digest in set(lib.tracks["content_hash"]):
            raise ParameterError(f"replace: {encode_path(src.uri)} is already in the library")
        meta = {k: v for k, v in row.iloc[0].items() if k not in TRACK_COLUMNS and not pd.isna(v)}
        remove(lib, [track_id])
        report = add(lib, [TrackSource(src.uri, {**meta, **src.metadata, "track_id": int(track_id)})],
                     workers=workers, progress=progress)
        if report.added != 1:
            raise ParameterError(f"replace: {encode_path(src.uri)} could not be added: {report.errors}")
    return report


def _finish(results) -> None:
    """Stop the workers now: ``zip`` leaves the results generator suspended after the last file."""
    close = getattr(results, "close", None)
    if close is not None:
        close()


# -- batches, parts and consolidation ---------------------------------------------------------
def _commit_batch(lib, batch, embedders: list[Embedder], state: dict, errors: _Errors) -> int:
    """Commit one add batch: each embedding's part and the staged tracks, with the current errors.

    A source may carry its own ``track_id`` (e.g. FMA's); others get the next free id. A
    ``track_id`` already in use is an error record for that item.
    """
    used = state["used"]
    next_id = int(max(used)) + 1 if used else 0
    rows, kept = [], []
    for src, res in batch:
        wanted = src.metadata.get("track_id")
        if wanted is not None and int(wanted) in used:
            errors.record({"uri": src.uri, "stage": "add", "error": "ParameterError",
                           "message": f"track_id {int(wanted)} is already in the library"})
            continue
        tid = int(wanted) if wanted is not None else next_id
        used.add(tid)
        next_id = max(next_id, tid + 1)
        meta = {k: v for k, v in src.metadata.items() if k not in TRACK_COLUMNS}
        rows.append({"track_id": tid, "uri": encode_path(src.uri), "duration": res.duration,
                     "sample_rate": res.info.sample_rate, "channels": res.info.channels,
                     "content_hash": res.content_hash, **meta})
        kept.append(res)
    with lib.store.transaction():
        if rows:
            seq = f"add-{state['committed']:06d}-{rows[0]['track_id']:012d}"  # commit order, then first track
            ids = [r["track_id"] for r in rows]
            for e in embedders:
                _write_part(Embedding(lib.data / "embeddings" / e.key), seq, ids, [res.raw[e.key] for res in kept],
                            [], [res.tags.get(e.key) for res in kept])
            described = [(r["track_id"], res) for r, res in zip(rows, kept) if res.descriptors is not None]
            if described:  # the others (a library without embeddings) stay undescribed until it gets one
                descriptors.write_part(lib, seq, [t for t, _ in described], [res.descriptors for _, res in described])
            fingerprints.write_part(lib, seq, ids, [res.landmarks for res in kept])
            io.make_dirs(lib.data / "staging")
            write_parquet(lib.data / "staging" / f"{seq}.parquet", pd.DataFrame(rows))
            state["committed"] += 1
        errors.write()
    return len(rows)


def _commit_part(lib, key: str, ids, raws, failed, tags, errors: _Errors) -> None:
    with lib.store.transaction():
        _write_part(Embedding(lib.data / "embeddings" / key), f"embed-{ids[0]:012d}", ids, raws, failed, tags)
        errors.write()


def _write_part(emb: Embedding, name: str, track_ids, raws, failed, tags=None) -> None:
    io.make_dirs(emb.path / "parts")
    extra = {}
    if tags and all(t is not None for t in tags):
        extra["tags"] = np.concatenate(tags).astype(np.float32)
    write_npz(emb.path / "parts" / f"{name}.npz", track_ids=np.asarray(track_ids, np.int64),
              counts=np.asarray([len(r) for r in raws], np.int64),
              raw=np.concatenate(raws).astype(np.float32) if raws else np.zeros((0, emb.dim), np.float32),
              failed=np.asarray(failed, np.int64), **extra)


def _parts(emb: Embedding) -> list:
    return sorted((emb.path / "parts").glob("*.npz")) if (emb.path / "parts").exists() else []


def _parts_track_ids(emb: Embedding) -> list[int]:
    return [t for p in _parts(emb) for t in read_npz(p)["track_ids"].tolist()]


def _staged_tracks(lib) -> pd.DataFrame:
    root = lib.data / "staging"
    files = sorted(root.glob("add-*.parquet")) if root.exists() else []
    return pd.concat([read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame()


def consolidate(lib) -> None:
    """Fold committed batches into tracks/segments and each embedding, and update the indexes —
    one commit; nothing to do when no batch is pending."""
    from .indexes import refresh
    if not (lib.data / "staging").exists() and not any(_parts(e) for e in lib.embeddings()):
        return
    with lib.store.transaction():
        staged = _staged_tracks(lib)
        committed = {p.stem for p in (lib.data / "staging").glob("add-*.parquet")} \
            if (lib.data / "staging").exists() else set()
        for emb in lib.embeddings():
            for p in _parts(emb):
                if p.stem.startswith("add-") and p.stem not in committed:
                    io.remove(p)  # rows of a batch folded before, kept for an embedding that lagged
        if len(staged):
            staged = staged[~staged["track_id"].isin(lib.tracks["track_id"])]
        tracks = pd.concat([lib.tracks, staged], ignore_index=True) if len(staged) else lib.tracks
        # segment rows are appended, never renumbered: rows of removed tracks stay (track_id -1)
        segments = lib.segments
        if len(staged):
            segments = pd.concat([segments, segment_table(staged["track_id"], staged["duration"], lib.segmentation,
                                                          first_segment_id=len(segments))], ignore_index=True)
        changed = [emb.key for emb in lib.embeddings() if _consolidate_embedding(lib, emb, tracks, segments)]
        if len(staged):
            lib._set_tables(tracks=tracks, segments=segments)
        descriptors.consolidate(lib, segments)
        fingerprints.consolidate(lib)
        io.remove(lib.data / "staging")
        for emb in lib.embeddings():
            if _parts(emb) and _covered(lib, emb) == len(tracks):
                io.remove(emb.path / "parts")
            if emb.key in changed:
                refresh(lib, emb)
        derived.follow(lib)  # fusions and projections of what grew, in the same commit


def _covered(lib, emb: Embedding, tracks: pd.DataFrame | None = None, segments: pd.DataFrame | None = None) -> int:
    """How many of the library's tracks (a prefix) ``emb`` has vectors for."""
    tracks = lib.tracks if tracks is None else tracks
    segments = lib.segments if segments is None else segments
    first = segments.drop_duplicates("track_id").set_index("track_id")["segment_id"]
    return int((tracks["track_id"].map(first).to_numpy() < emb.n_segments).sum())


def _consolidate_embedding(lib, emb: Embedding, tracks, segments) -> bool:
    """Append the vectors of the next tracks whose parts are written; True when it grew."""
    meta = dict(emb.meta)
    covered = _covered(lib, emb, tracks, segments)
    if covered >= len(tracks):
        return False
    n_tags = len(meta.get("tag_names") or [])
    parts: dict[int, tuple[np.ndarray, np.ndarray, bool]] = {}
    for p in _parts(emb):
        z = read_npz(p)
        offsets = np.concatenate([[0], np.cumsum(z["counts"])])
        failed = set(z["failed"].tolist())
        tags = z["tags"] if "tags" in z else np.zeros((offsets[-1], n_tags), np.float32)
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
    tag_rows = np.zeros((end, n_tags), np.float32)
    if n_seg_old:
        lib.verify(emb.path / "raw.npy")
        raw[:n_seg_old] = emb.raw()[:n_seg_old]
        if n_tags:
            lib.verify(emb.path / "tags.npy")
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


def _ensure_embedding_dir(lib, e: Embedder) -> Embedding:
    """The embedding of ``e`` in the library, created (inside the open change) when absent."""
    path = lib.data / "embeddings" / e.key
    if (path / "embedder.json").exists():
        emb = Embedding(path)
        lib._check_embedding(emb)
        stored = {k: emb.meta.get(k) for k in ("name", "params", "dim")}
        if stored != {"name": e.name, "params": e.params, "dim": e.dim}:
            raise IncompatibleLibraryError(f"embeddings/{e.key} holds {stored}, not {e.name} {e.params}")
        return emb
    io.make_dirs(path)
    meta = {**e.describe(), "segmentation": lib.segmentation.to_dict(), "n_tracks": 0, "n_segments": 0,
            "missing_tracks": [], "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json(path / "embedder.json", meta)
    return Embedding(path)


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
