"""What a library holds (:func:`info`) and whether it is whole (:func:`check`, with repair).

``check`` verifies, for the committed generation: every file named in ``manifest.json`` exists
with its recorded size and sha256 (and nothing else is there); the tables parse, segment ids
are row numbers, track ids are unique and every live segment's track exists; each embedding's
arrays have one row per covered segment, the embedder's dimension, finite values, unit rows
where valid and zero rows elsewhere; each index opens, holds as many vectors as its sidecar
says, and was built from the vectors present. Each problem is one dict (``file``, ``problem``,
``repaired``). ``repair=True`` rewrites what can be derived — vectors from raw rows, indexes
from vectors, an interrupted build's consolidation — in one new generation, and says what
cannot be (tables, raw rows, tags: those come from the audio; re-run the build).
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import AudioragError, LibraryDamagedError
from .store import files_of, read_json, read_npy


def info(lib, *, memory: bool = False) -> dict:
    """See :meth:`audiorag.Library.info`."""
    from ..errors import IncompatibleLibraryError, ParameterError
    from ..index import list_indexes, load_index, mapped_memory, resident_memory
    embs = []
    for emb in lib.embeddings():
        indexes = []
        for i in list_indexes(emb):
            entry = {k: i.get(k) for k in ("name", "factory", "n", "search_params", "bytes_per_segment", "quality")}
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
           "errors": int(len(lib.errors())), "embeddings": embs}
    if memory:
        out["resident_bytes"] = resident_memory()
    return out


def check(lib, *, repair: bool = False, checksums: bool = True) -> list[dict]:
    """See :meth:`audiorag.Library.check`."""
    problems = _problems(lib, checksums=checksums)
    if not repair or not problems:
        return problems
    _repair(lib, problems)
    after = _problems(lib.reload(), checksums=checksums)
    remaining = {(p["file"], p["problem"]) for p in after}
    for p in problems:
        p["repaired"] = (p["file"], p["problem"]) not in remaining if p["repaired"] is None else p["repaired"]
    return problems + [dict(p, repaired=False) for p in after
                       if (p["file"], p["problem"]) not in {(q["file"], q["problem"]) for q in problems}]


def _problem(file, problem: str, fix: tuple | None = None) -> dict:
    """One problem; ``fix`` says how :func:`_repair` derives the file again (None: it cannot)."""
    return {"file": str(file), "problem": problem, "repaired": None if fix else False, "fix": fix}


def _fix_for(name: str) -> tuple | None:
    """How a damaged file of the manifest (path relative to the generation) can be derived."""
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == "embeddings":
        if parts[2] == "vectors.npy":
            return ("vectors", parts[1])
        if parts[2].startswith("index-"):
            return ("index", parts[1], parts[2].removeprefix("index-").rsplit(".", 1)[0])
    return None


def _problems(lib, *, checksums: bool) -> list[dict]:
    out: list[dict] = []
    root = lib.path
    try:
        gen = lib.store.current
    except LibraryDamagedError as exc:
        return [_problem(root / "CURRENT", str(exc))]
    rel = os.path.relpath(gen, root)
    try:
        manifest = read_json(gen / "manifest.json")
    except LibraryDamagedError as exc:
        return [_problem(gen / "manifest.json", str(exc))]
    listed = manifest.get("files", {})
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
    for p in sorted(root.iterdir()):
        if p.name.startswith("gen-") and p.name > gen.name or ".tmp-" in p.name:
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
    from ..index import load_index
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


def _repair(lib, problems: list[dict]) -> None:
    """Rewrite what can be derived, in one new generation; files that cannot be derived stay."""
    from .. import io
    from ..index import build_index
    from .ingest import consolidate
    fixes = {p["fix"] for p in problems if p["fix"]}
    with lib.store.transaction(verify=False) as gen:  # taking the lock already removes what dead writers left
        for fix in sorted(f for f in fixes if f[0] == "stray"):
            io.remove(gen / fix[1])
        for fix in sorted(f for f in fixes if f[0] == "vectors"):
            emb = lib.embedding(fix[1])
            if (emb.path / "raw.npy").exists():
                emb.write(read_npy(emb.path / "raw.npy", mmap=False), dict(emb.meta),
                          emb.valid_rows(lib.segments["track_id"].to_numpy()))
        for _, key, name in sorted(f for f in fixes if f[0] == "index"):
            emb = lib.embedding(key)
            factory = _factory(emb.path / f"index-{name}.json")
            io.remove(emb.path / f"index-{name}.faiss")
            io.remove(emb.path / f"index-{name}.json")
            if factory:  # without its sidecar the index is dropped: build it again with `audiorag build`
                build_index(lib, emb.reload(), factory, name=name)
        if ("pending",) in fixes:
            consolidate(lib)


def _factory(sidecar) -> str | None:
    try:
        return read_json(sidecar).get("factory")
    except LibraryDamagedError:
        return None
