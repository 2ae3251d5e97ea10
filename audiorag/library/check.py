"""What a library holds (:func:`info`) and whether it is whole (:func:`check`, with repair).

``check`` verifies, for the committed generation: every file named in ``manifest.json`` exists
with its recorded size and sha256 (and nothing else is there); the tables parse, segment ids
are row numbers, track ids are unique and every live segment's track exists; each embedding's
arrays have one row per covered segment, the embedder's dimension, finite values, unit rows
where valid and zero rows elsewhere; the per-track vectors match the library; each index opens,
holds as many vectors as its sidecar says, and was built from the vectors present. Each problem is
one dict (``file``, ``problem``, ``repaired``). ``repair=True`` rewrites what can be derived —
vectors from raw rows, per-track vectors and indexes from vectors, an interrupted build's
consolidation — in one new generation, and says what cannot be (tables, raw rows, tags: those come
from the audio; re-run the build).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from .. import io
from ..errors import AudioragError, LibraryDamagedError, LibraryNotFoundError, ParameterError
from . import trackvectors
from .store import (
    GEN,
    LibraryMeta,
    Store,
    files_of,
    generations,
    incomplete,
    read_json,
    read_manifest,
    read_npy,
    validated,
)

log = logging.getLogger(__name__)
ORDER = ("stray", "vectors", "tracks", "index", "pending")  # repairs, in this order (unlisted ones first)


def info(lib, *, memory: bool = False) -> dict:
    """See :meth:`audiorag.Library.info`."""
    from ..errors import IncompatibleLibraryError, ParameterError
    from ..index import mapped_memory, resident_memory
    from .indexes import list_indexes, load_index
    embs = []
    for emb in lib.embeddings():
        indexes = []
        for i in list_indexes(emb):
            entry = {k: i.get(k) for k in ("name", "factory", "n", "search_params", "bytes_per_segment", "quality",
                                           "refine")}
            entry["quality"] = {k: v for k, v in (i.get("quality") or {}).items() if k != "curve"}
            if memory:
                try:
                    load_index(lib, emb, i["name"])
                    entry.update(mapped_memory(emb.path / f"index-{i['name']}.faiss"))
                except (IncompatibleLibraryError, ParameterError) as exc:
                    entry["error"] = str(exc)
            indexes.append(entry)
        embs.append({"key": emb.key, "name": emb.name, "dim": emb.dim, "n_segments": emb.n_segments,
                     "n_tracks": emb.meta.get("n_tracks", 0), "missing_tracks": len(emb.meta.get("missing_tracks", [])),
                     "weights": emb.meta.get("weights"), "indexes": indexes})
    out = {"path": str(lib.path), "format_version": lib.meta["format_version"], "generation": lib.generation,
           "segmentation": lib.segmentation.to_dict(), "dataset": lib.meta.get("dataset"),
           "tracks": int(len(lib.tracks)), "segments": int((lib.segments["track_id"] >= 0).sum()),
           "removed_segments": int((lib.segments["track_id"] < 0).sum()),
           "hours": round(float(lib.tracks["duration"].sum()) / 3600, 3),
           "embeddings": embs}
    errors = lib.errors()  # with the duplicate files and the files accepted with a short tail
    stage = errors["stage"].to_numpy() if len(errors) else np.zeros(0, object)
    dup = stage == "duplicate"
    out["errors"] = int((~dup & (stage != "short-tail")).sum())
    out["short_tails"] = int((stage == "short-tail").sum())
    out["duplicates"] = [{"uri": r["uri"], "of": r["message"].removeprefix("duplicate of ")}
                         for r in errors[dup].to_dict("records")]
    from .fingerprints import summary
    out["fingerprints"] = summary(lib)
    if memory:
        out["resident_bytes"] = resident_memory()
    return out


def check(lib, *, repair: bool = False, checksums: bool = True) -> list[dict]:
    """See :meth:`audiorag.Library.check`."""
    problems = _problems(lib, checksums=checksums)
    if not repair or not problems:
        return problems
    failed = _repair(lib, problems)
    remaining = {_key(p) for p in _problems(lib.reload(), checksums=checksums)}
    for p in problems:
        if p["repaired"] is None:
            p["repaired"] = _key(p) not in remaining and p["fix"] not in failed
    return problems


def check_path(path, *, repair: bool = False, checksums: bool = True, wait: bool | float = False,
               to: str | None = None) -> list[dict]:
    """:func:`check` for a library that may not even open: CURRENT and the generations come first.

    CURRENT missing, garbled, or naming a generation that is gone or incomplete (a manifest of the
    wrong shape, an underivable file missing) → ``repair`` points it at the newest complete
    generation (verified against its manifest). CURRENT older than complete generations → reported;
    ``repair`` makes the newest current and keeps the older ones until the next change (``to``
    goes back to one). ``to`` (``"gen-000004"``): make that complete generation current; newer
    complete ones are kept beside it as ``gen-NNNNNN.kept``. A generation CURRENT named that is set
    aside is kept as ``gen-NNNNNN.damaged``. Only incomplete generations newer than CURRENT that no
    commit ever named, temporary files, and generations older than CURRENT that no reader pins are
    deleted — each one listed.

    >>> import tempfile
    >>> from audiorag import Library
    >>> d = tempfile.mkdtemp()
    >>> _ = Library.create(d, window=2, hop=1)
    >>> (Path(d) / "CURRENT").unlink()
    >>> [p["problem"][:18] for p in check_path(d)]
    ['missing; the newes']
    >>> [p["repaired"] for p in check_path(d, repair=True)], check_path(d)
    ([True], [])
    """
    from . import Library
    path = Path(path)
    if (path / "shards.json").exists():  # check works on each shard of a sharded library
        from .shards import refuse
        refuse(path)
    if not (path / "library.json").exists():
        raise LibraryNotFoundError(f"{path}: no audiorag library here (library.json missing)")
    validated(path / "library.json", LibraryMeta)
    store = Store(path, wait=wait)
    if to is not None:
        return _point(store, _target(store, to), to_chosen=True) + \
            check(Library.open(path, wait=wait, settle=False), repair=repair, checksums=checksums)
    head = _current_problems(store)
    moved = False
    if head and repair:
        target = _newest_complete(store)
        if target is None:
            for p in head:
                p["repaired"] = False
            return head
        head = [dict(p, repaired=True) for p in head] + _point(store, target)
        moved = True
    elif head and any(p["fix"] == ("current",) and not p.get("opens") for p in head):
        return head  # the library cannot be opened as it is
    if repair and not moved:
        with store.lock(recover=False):
            head += [_problem(name, why, ("removed",)) | {"repaired": True} for name, why in _collect(store)]
    return [{k: v for k, v in p.items() if k != "opens"} for p in head] + \
        check(Library.open(path, wait=wait, settle=False), repair=repair, checksums=checksums)


def _current_problems(store: Store) -> list[dict]:
    """What is wrong with CURRENT (read-only): unreadable, naming a gone or incomplete generation,
    or older than complete generations."""
    newest = _newest_complete(store)
    hint = f"; the newest complete generation is {newest.name}" if newest else "; no generation is complete"
    try:
        cur = store.current
    except LibraryDamagedError as exc:
        reason = "missing" if not (store.root / "CURRENT").exists() else \
            str(exc).split("CURRENT: ", 1)[-1].split("; run")[0]
        return [_problem("CURRENT", reason + hint, ("current",))]
    if not cur.is_dir():
        return [_problem("CURRENT", f"names {cur.name}, which does not exist{hint}", ("current",))]
    why = incomplete(cur)
    if why is not None and newest is not None and not _derivable(cur):
        return [_problem("CURRENT", f"names {cur.name}, which is incomplete ({why}){hint}", ("current",))]
    newer = [p.name for n, p in generations(store.root) if n > store.generation and incomplete(p) is None]
    if newer:
        return [_problem("CURRENT", f"names {cur.name}, older than the complete {', '.join(newer)}; --repair makes "
                         f"{newer[-1]} current (--to {cur.name} goes back while it is kept)", ("current",))
                | {"opens": True}]
    return []


def _derivable(gen: Path) -> bool:
    """Whether every damaged file of a generation whose manifest is valid can be derived again."""
    try:
        files = read_manifest(gen)["files"]
    except LibraryDamagedError:
        return False
    for rel, entry in files.items():
        p = gen / rel
        if (not p.exists() or p.stat().st_size != entry["bytes"]) and _fix_for(rel) is None:
            return False
    return True


def _newest_complete(store: Store) -> Path | None:
    done = [p for _, p in generations(store.root) if incomplete(p) is None]
    return done[-1] if done else None


def _target(store: Store, name: str) -> Path:
    gen = store.root / name
    if not GEN.fullmatch(name) or not gen.is_dir():
        names = ", ".join(p.name for _, p in generations(store.root)) or "none"
        raise ParameterError(f"--to {name}: no such generation in {store.root} (there: {names})")
    why = incomplete(gen)
    if why is not None:
        raise ParameterError(f"--to {name}: not complete ({why})")
    return gen


def _point(store: Store, target: Path, *, to_chosen: bool = False) -> list[dict]:
    """Make ``target`` (complete) current; what is newer is kept aside, what an interrupted writer
    left is removed. One problem dict per change."""
    out = []
    with store.lock(recover=False):
        try:
            named = store.current.name
        except LibraryDamagedError:
            named = None
        for n, p in generations(store.root):
            if n <= int(GEN.fullmatch(target.name).group(1)):
                continue
            if incomplete(p) is None or p.name == named:
                kept = p.with_name(p.name + (".kept" if incomplete(p) is None else ".damaged"))
                io.remove(kept)
                io.move(p, kept)
                out.append(_problem(p.name, f"newer than {target.name}: kept as {kept.name}", ("kept",)))
            else:
                io.remove(p)
                out.append(_problem(p.name, "left incomplete by an interrupted writer: removed", ("removed",)))
        io.write_atomic(store.root / "CURRENT", target.name + "\n")
    if to_chosen:
        out.append(_problem("CURRENT", f"now names {target.name}" + (f" (it named {named})" if named else ""),
                            ("current",)))
    return [p | {"repaired": True} for p in out]


def _collect(store: Store) -> list[tuple[str, str]]:
    """Remove what no one needs (see :meth:`Store.recover`); each removal with its reason."""
    before = store.generation
    out = []
    for name in store.recover():
        m = GEN.fullmatch(name)
        if m and int(m.group(1)) < before:
            out.append((name, "an older generation no reader uses: removed"))
        elif m:
            out.append((name, "left incomplete by an interrupted writer: removed"))
        else:
            out.append((name, "a temporary file an interrupted writer left: removed"))
    return out


def _key(p: dict) -> tuple:
    """A problem's identity across generations (its file without the generation's folder)."""
    return re.sub(r"^gen-\d+/", "", p["file"]), p["problem"]


def _problem(file, problem: str, fix: tuple | None = None) -> dict:
    """One problem; ``fix`` says how :func:`_repair` derives the file again (None: it cannot)."""
    return {"file": str(file), "problem": problem, "repaired": None if fix else False, "fix": fix}


def _fix_for(name: str) -> tuple | None:
    """How a damaged file of the manifest (path relative to the generation) can be derived."""
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == "embeddings":
        if parts[2] == "vectors.npy":
            return ("vectors", parts[1])
        if parts[2] == trackvectors.FILE:
            return ("tracks", parts[1])
        if parts[2].startswith("index-"):
            return ("index", parts[1], parts[2].removeprefix("index-").rsplit(".", 1)[0])
    return None


def _problems(lib, *, checksums: bool) -> list[dict]:
    out: list[dict] = []
    root = lib.path
    gen = lib.data  # the generation this object reads: its manifest, its tables
    rel = os.path.relpath(gen, root)
    try:
        listed = read_manifest(gen)["files"]
    except LibraryDamagedError as exc:
        return [_problem(gen / "manifest.json", str(exc).split(" — ")[0])]
    bad_files = set()
    for name, entry in sorted(listed.items()):
        p = gen / name
        if not p.exists():
            out.append(_problem(f"{rel}/{name}", "missing", _fix_for(name)))
            bad_files.add(name)
            continue
        size = p.stat().st_size
        if size != entry["bytes"]:
            out.append(_problem(f"{rel}/{name}", f"{size} bytes, {entry['bytes']} recorded at commit",
                                _fix_for(name)))
            bad_files.add(name)
        elif checksums:
            from ..io import file_sha256
            if file_sha256(p) != entry["sha256"]:
                out.append(_problem(f"{rel}/{name}", "content differs from the sha256 recorded at commit",
                                    _fix_for(name)))
                bad_files.add(name)
    for name in sorted(set(files_of(gen)) - set(listed)):
        out.append(_problem(f"{rel}/{name}", "not part of the committed generation", ("stray", name)))
    if not lib.store.busy():  # a live writer's new generation is work in progress, not a leftover
        for n, p in generations(root):
            if n > lib.store.generation and incomplete(p) is not None:
                out.append(_problem(p.name, "left by an interrupted writer", ("recover",)))
        for p in sorted(root.iterdir()):
            if ".tmp-" in p.name:
                out.append(_problem(p.name, "left by an interrupted writer", ("recover",)))
    if bad_files & {"tracks.parquet", "segments.parquet"}:
        return out  # the rest cannot be judged without the tables
    try:
        tracks, segments = lib.tracks, lib.segments
    except LibraryDamagedError as exc:
        return out + [_problem(gen, str(exc))]
    out += _table_problems(rel, tracks, segments)
    if (gen / "staging").exists() or any((e.path / "parts").exists() for e in lib.embeddings()):
        out.append(_problem(f"{rel}/staging", "an interrupted build left batches to fold in", ("pending",)))
    for emb in lib.embeddings():
        out += _embedding_problems(lib, emb, f"{rel}/embeddings/{emb.key}", segments, bad_files)
    return out


def _table_problems(rel: str, tracks, segments) -> list[dict]:
    out = []
    if not np.array_equal(segments["segment_id"].to_numpy(), np.arange(len(segments))):
        out.append(_problem(f"{rel}/segments.parquet", "segment ids are not the row numbers"))
    if tracks["track_id"].duplicated().any():
        out.append(_problem(f"{rel}/tracks.parquet", "duplicate track ids"))
    live = segments["track_id"].to_numpy()
    orphans = set(live[live >= 0].tolist()) - set(tracks["track_id"].tolist())
    if orphans:
        out.append(_problem(f"{rel}/segments.parquet", f"segments of {len(orphans)} tracks not in tracks.parquet"))
    without = set(tracks["track_id"].tolist()) - set(live.tolist())
    if without:
        out.append(_problem(f"{rel}/tracks.parquet", f"{len(without)} tracks have no segments"))
    if len(segments) and not (segments["end"].to_numpy() > segments["start"].to_numpy()).all():
        out.append(_problem(f"{rel}/segments.parquet", "segments with end <= start"))
    return out


def _embedding_problems(lib, emb, rel: str, segments, bad_files: set) -> list[dict]:
    from .indexes import load_index
    out = []
    prefix = rel.split("/", 1)[1] + "/"
    try:
        n, dim = emb.n_segments, emb.dim
    except (LibraryDamagedError, KeyError, ValueError) as exc:
        return [_problem(f"{rel}/embedder.json", f"unreadable ({exc})")]
    if n > len(segments):
        out.append(_problem(f"{rel}/embedder.json", f"{n} segments covered, the library has {len(segments)}"))
        return out
    arrays = ["raw.npy", "vectors.npy"] + (["tags.npy"] if emb.tag_names else [])
    loaded = {}
    for name in arrays:
        fix = ("vectors", emb.key) if name == "vectors.npy" else None
        if prefix + name in bad_files or not (emb.path / name).exists() and n == 0:
            continue
        try:
            a = read_npy(emb.path / name)
        except LibraryDamagedError as exc:
            out.append(_problem(f"{rel}/{name}", str(exc).split(" — ")[0], fix))
            continue
        width = len(emb.tag_names) if name == "tags.npy" else dim
        if a.shape != (n, width):
            out.append(_problem(f"{rel}/{name}", f"shape {a.shape}, expected {(n, width)}", fix))
            continue
        loaded[name] = a
    vectors = loaded.get("vectors.npy")
    if vectors is not None and n:
        valid = emb.valid_rows(segments["track_id"].to_numpy())
        norms = np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=1)
        if not np.isfinite(norms).all() or not np.allclose(norms[valid], 1.0, atol=1e-3):
            out.append(_problem(f"{rel}/vectors.npy", "rows of live tracks are not finite unit vectors",
                                ("vectors", emb.key)))
    if vectors is not None and prefix + trackvectors.FILE not in bad_files and not trackvectors.is_current(lib, emb):
        out.append(_problem(f"{rel}/{trackvectors.FILE}", "the per-track vectors do not match the library",
                            ("tracks", emb.key)))
    for sidecar in _sidecars(emb, rel, out):
        name = sidecar.get("name", "?")
        if prefix + f"index-{name}.faiss" in bad_files:
            continue
        try:
            index = load_index(lib, emb, name)
            if index.ntotal != sidecar.get("n"):
                out.append(_problem(f"{rel}/index-{name}.faiss", f"{index.ntotal} vectors, sidecar says "
                                    f"{sidecar.get('n')}", ("index", emb.key, name)))
        except AudioragError as exc:
            out.append(_problem(f"{rel}/index-{name}.faiss", str(exc).split(" — ")[0], ("index", emb.key, name)))
    return out


def _sidecars(emb, rel: str, out: list) -> list[dict]:
    found = []
    for p in sorted(emb.path.glob("index-*.json")):
        try:
            found.append(read_json(p))
        except LibraryDamagedError as exc:
            out.append(_problem(f"{rel}/{p.name}", str(exc).split(" — ")[0],
                                ("index", emb.key, p.stem.removeprefix("index-"))))
    return found


def _repair(lib, problems: list[dict]) -> set:
    """Rewrite what can be derived, in one new generation; returns the fixes that could not be made.
    Files that cannot be derived stay as they are, listed in the manifest as they were."""
    from .indexes import build_index
    from .ingest import consolidate
    fixes = {p["fix"] for p in problems if p["fix"]}
    keep = tuple(_key(p)[0] for p in problems if not p["fix"])
    failed = set()
    with lib.store.transaction(verify=False, carry=keep) as gen:  # the lock removes what dead writers left
        for fix in sorted(fixes, key=lambda f: ORDER.index(f[0]) if f[0] in ORDER else -1):
            try:
                if fix[0] == "stray":
                    io.remove(gen / fix[1])
                elif fix[0] == "vectors":
                    emb = lib.embedding(fix[1])
                    emb.write(read_npy(emb.path / "raw.npy", mmap=False), dict(emb.meta),
                              emb.valid_rows(lib.segments["track_id"].to_numpy()))
                    trackvectors.update(lib, emb.reload())
                elif fix[0] == "tracks":
                    trackvectors.update(lib, lib.embedding(fix[1]))
                elif fix[0] == "index":
                    emb = lib.embedding(fix[1])
                    factory = _factory(emb.path / f"index-{fix[2]}.json")
                    io.remove(emb.path / f"index-{fix[2]}.faiss")
                    io.remove(emb.path / f"index-{fix[2]}.json")
                    if factory:  # without its sidecar the index is dropped: build it again with `audiorag build`
                        build_index(lib, emb.reload(), factory, name=fix[2])
                elif fix[0] == "pending":
                    consolidate(lib)
            except AudioragError as exc:  # e.g. the raw rows a vectors file comes from are damaged too
                log.warning("cannot repair %s: %s", fix, exc)
                failed.add(fix)
    return failed


def _factory(sidecar) -> str | None:
    try:
        return read_json(sidecar).get("factory")
    except LibraryDamagedError:
        return None
