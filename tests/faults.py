"""Deterministic fault injection for library changes (run by tests/test_integrity.py in a fresh process).

``python tests/faults.py SPEC.json OUT.json`` — for one operation on a copy of a base library:
counts its file-system changes, then for every *n* from 1 to that count runs the operation
in a forked child that is killed (or gets ENOSPC) at the *n*-th change, re-runs it without
faults, and records a digest of the library's tables, arrays and indexes and what
``Library.check`` reports. Everything runs in forked children: this parent never starts
the thread pools (OpenMP, Arrow) that do not survive a fork.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import traceback
from pathlib import Path

import numpy as np


def operation(name: str, path: str, spec: dict) -> None:
    """Apply ``name`` to the library at ``path``; a re-run after it committed changes nothing."""
    from audiorag import Library
    lib = Library.open(path)
    if name == "add":
        lib.add(spec["add"], workers=1, progress=False, batch_tracks=2)
    elif name == "embed":
        lib.embed("features45", n_mels=32, workers=1, progress=False, batch_tracks=2)
    elif name == "remove":
        if spec["remove"] in lib.tracks["track_id"].tolist():
            lib.remove([spec["remove"]])
    elif name == "replace":
        from audiorag.audio import load_with_hash
        digest = load_with_hash(spec["replace"][1])[2]
        if digest not in set(lib.tracks["content_hash"]):
            lib.replace(spec["replace"][0], spec["replace"][1])
    elif name == "index":
        lib.build_index("features45", "HNSW32", target_recall=0.9)
    else:
        raise ValueError(name)


def digest(path: str) -> dict:
    """What must be equal after a re-run: tables, arrays, indexes (their answers), current errors."""
    from audiorag import Library
    from audiorag.library.indexes import list_indexes, load_index
    lib = Library.open(path)
    h = hashlib.sha256()
    h.update(lib.tracks.sort_index(axis=1).to_json().encode())
    h.update(lib.segments.to_json().encode())
    for emb in lib.embeddings():
        h.update(emb.key.encode())
        for a in (emb.raw(), emb.vectors(), emb.tags()):
            h.update(np.ascontiguousarray(a).tobytes())
        q = np.ascontiguousarray(lib.vectors(emb.key)[:8])
        for side in list_indexes(emb):
            index = load_index(lib, emb, side["name"])
            h.update(f"{side['name']}:{side['factory']}:{index.ntotal}".encode())
            h.update(index.search(q, 5)[1].tobytes())
    errors = sorted(lib.errors()["uri"].tolist()) if len(lib.errors()) else []
    leftovers = sorted(p.name for p in Path(path).iterdir() if ".tmp-" in p.name)
    return {"digest": h.hexdigest(), "errors": errors, "generation": lib.generation,
            "problems": [f"{p['file']}: {p['problem']}" for p in lib.check()], "leftovers": leftovers}


def in_child(func, *args, env: dict | None = None) -> int:
    """Run ``func(*args)`` in a forked child; its exit code (137 when the fault hook killed it)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.environ.update(env or {})
            func(*args)
        except BaseException as exc:  # the parent reads the kind of failure from the exit code
            from audiorag.errors import StorageError
            code = 3 if isinstance(exc, StorageError) else 4
            if code == 4:
                traceback.print_exc()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _write(out: str, obj) -> None:
    Path(out).write_text(json.dumps(obj))


def _faulty(name, path, spec, out):
    """The operation with the fault hook on; records which change the fault hit (ENOSPC only: a kill
    leaves no time to write)."""
    from audiorag import io
    try:
        operation(name, path, spec)
    finally:
        _write(out, io._FAULT.get("what", ""))


def _rerun(name, path, spec, out):
    operation(name, path, spec)
    _write(out, digest(path))


def _count(name, path, spec, out):
    from audiorag import io
    operation(name, path, spec)
    _write(out, io.fault_count())


def _warm_up() -> None:
    """Import what the children use and compile librosa's kernels once, before any fork
    (no thread pool is started here)."""
    import audiorag.index  # noqa: F401  (faiss)
    import audiorag.search  # noqa: F401
    from audiorag.embedders import get_embedder
    from audiorag.engines import warm_up
    from audiorag.library import Library  # noqa: F401  (pandas, pyarrow)
    warm_up([get_embedder("features45")])


def main(spec_path: str, out_path: str) -> None:
    _warm_up()
    spec = json.loads(Path(spec_path).read_text())
    work, base, name = Path(spec["work"]), spec["base"], spec["operation"]
    tmp = work / "tmp.json"

    def fresh(dst):
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(base, dst)
        return str(dst)

    ref = fresh(work / "reference")
    assert in_child(operation, name, ref, spec) == 0
    assert in_child(lambda: _write(tmp, digest(ref))) == 0
    reference = json.loads(tmp.read_text())
    count_lib = fresh(work / "count")
    assert in_child(_count, name, count_lib, spec, tmp, env={"AUDIORAG_FAULT_AT": str(10 ** 9)}) == 0
    n_points = json.loads(tmp.read_text())
    results = []
    for kind in spec["kinds"]:
        for n in range(1, n_points + 1):
            lib = fresh(work / "faulty")
            what = work / "what.json"
            what.unlink(missing_ok=True)
            failed = in_child(_faulty, name, lib, spec, what,
                              env={"AUDIORAG_FAULT_AT": str(n), "AUDIORAG_FAULT": kind})
            hit = json.loads(what.read_text()) if what.exists() else ""
            tmp.unlink(missing_ok=True)
            rerun = in_child(_rerun, name, lib, spec, tmp)
            got = json.loads(tmp.read_text()) if tmp.exists() else {}
            results.append({"kind": kind, "n": n, "exit": failed, "hit": hit, "rerun": rerun, **got})
    _write(out_path, {"reference": reference, "points": n_points, "results": results})


if __name__ == "__main__":
    main(*sys.argv[1:3])
