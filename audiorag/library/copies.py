"""Copy a shard of a sharded library to a node of a Ray cluster (or to another directory), then place it there.

``audiorag shards copy LIB --shard 3 --node NODE --path /data/shard-003 --ray-address auto`` sends the
shard's *committed generation* (pinned for the length of the copy, so a build may go on) to a
:class:`ShardReceiver` actor pinned on ``NODE``, file by file in chunks through Ray's object store. The
receiver writes a new generation directory under ``path`` with the source generation's name, checks every
file it received against the source manifest (size and sha256), writes that manifest and only then renames
``CURRENT``: the library's own commit protocol (:mod:`.store`). A copy interrupted at any point leaves the
earlier copy current; an actor still reading an older copied generation keeps it (pinned generations are not
pruned). Copying again after the shard changed sends only the files whose sha256 the copy does not already
hold; the others are hard-linked from the copy's current generation. Then ``shards.json`` places the shard
there and the shard's running actor is stopped, so the next query opens the copy on that node.

Without ``node`` the copy is written by this process (another disk, a mount that every node sees).

>>> import tempfile
>>> from audiorag.library.shards import ShardedLibrary
>>> lib = ShardedLibrary.create(tempfile.mkdtemp() + "/lib", 2, window=5, hop=2.5)
>>> got = copy_shard(lib, 1, path=tempfile.mkdtemp() + "/copy")
>>> got["generation"], lib.placement(1)["node"]
(0, None)
"""

from __future__ import annotations

import logging
from pathlib import Path

from .. import io
from ..errors import ParameterError, StorageError
from . import Library
from .store import GEN, Store, read_json, read_manifest, switch, unpin, write_json

log = logging.getLogger(__name__)
#: bytes per chunk sent to the receiver
CHUNK = 16 << 20
#: in a copy's directory: which shard of which sharded library it copies
COPY_FILE = "copy.json"
#: chunks in flight to a receiver actor at once (bounds the memory of a copy)
IN_FLIGHT = 4


class ShardReceiver:
    """The writing end of a shard copy, at ``path`` (an actor on the target node, or an object here).

    >>> ShardReceiver.__name__
    'ShardReceiver'
    """

    def __init__(self, path: str):
        self.root = Path(path)
        self.new: Path | None = None
        self.manifest: dict = {}
        self.written: set[str] = set()

    def begin(self, origin: dict, library_json: bytes, gen_name: str, manifest: dict) -> list[str] | None:
        """Prepare generation ``gen_name`` of the copy of ``origin`` (``{"library", "shard"}``, kept in
        ``copy.json``); the files to send (the others are linked), or None when the copy is at that generation."""
        root = self.root
        if (root / COPY_FILE).exists():
            held = read_json(root / COPY_FILE)
            if held != origin:
                raise ParameterError(f"{root}: holds a copy of {held.get('shard')} of {held.get('library')}, not of "
                                     f"{origin['shard']} of {origin['library']}; copy into a new directory")
        elif root.exists() and any(root.iterdir()):
            raise ParameterError(f"{root}: not empty and not a copy of a shard; copy into a new directory")
        io.make_dirs(root)
        io.write_atomic(root / "library.json", library_json)
        write_json(root / COPY_FILE, origin)
        current = Store(root).current if (root / "CURRENT").exists() else None
        if current is not None and current.name == gen_name:
            return None
        held = {}
        if current is not None:
            held = {e["sha256"]: current / rel for rel, e in read_manifest(current)["files"].items()}
        self.new, self.manifest = root / gen_name, manifest
        if self.new.exists():  # an earlier copy of this generation, interrupted: start it again
            io.remove(self.new)
        io.make_dirs(self.new)
        send = []
        for rel, entry in sorted(manifest["files"].items()):
            if entry["sha256"] in held and held[entry["sha256"]].exists():
                io.make_dirs((self.new / rel).parent)
                io.link_or_copy(held[entry["sha256"]], self.new / rel)
            else:
                send.append(rel)
        return send

    def write(self, rel: str, data: bytes) -> int:
        """Append ``data`` to the file ``rel`` of the new generation; its size so far."""
        if rel not in self.manifest.get("files", {}):
            raise ParameterError(f"{rel}: not a file of the generation being copied")
        dst = self.new / rel
        io.make_dirs(dst.parent)
        with open(dst, "ab" if rel in self.written else "wb") as f:
            f.write(data)
        self.written.add(rel)
        return dst.stat().st_size

    def finish(self) -> dict:
        """Check every received file against the manifest, write it, switch ``CURRENT``, prune what no reader
        pins. A file that does not match leaves the earlier copy current and is named."""
        new, files = self.new, self.manifest["files"]
        for rel, entry in files.items():
            got = new / rel
            size = got.stat().st_size if got.exists() else None
            sha = io.file_sha256(got) if rel in self.written and size == entry["bytes"] else None
            why = (f"{size} bytes, {entry['bytes']} expected" if size != entry["bytes"] else
                   "its sha256 differs" if rel in self.written and sha != entry["sha256"] else None)
            if why:
                io.remove(new)
                raise StorageError(f"{self.root}: the copy of {rel} does not match the shard's manifest ({why}); "
                                   "the earlier copy stays current")
        write_json(new / "manifest.json", self.manifest)
        gen = int(GEN.fullmatch(new.name).group(1))
        switch(self.root, gen)
        Store(self.root).prune(gen)  # the copy's older generations that no reader pins
        return {"generation": gen, "sent": len(self.written), "linked": len(files) - len(self.written)}

    def node(self) -> str:
        """The Ray node id this receiver runs on."""
        import ray
        return ray.get_runtime_context().get_node_id()


def copy_shard(lib, shard: int, *, path: str, node: str | None = None, chunk: int = CHUNK) -> dict:
    """Copy ``shard`` of the sharded library ``lib`` to ``path`` on ``node`` (a Ray node id or address: the
    copy is written there by a receiver actor; ``lib`` opened with a ``ray_address``) or, without ``node``, by
    this process; then place the shard there (``shards.json``) and stop its running actor. Returns
    ``{"shard", "node", "path", "generation", "sent", "linked", "bytes"}`` (files sent / hard-linked from
    the copy's earlier generation, bytes sent)."""
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < lib.n:
        raise ParameterError(f"--shard must be 0..{lib.n - 1}, got {shard!r}")
    if Path(path).resolve() == lib.paths[shard].resolve():
        raise ParameterError(f"--path {path}: that is the shard itself; copy it to another directory")
    if node is not None and lib.cluster is None:
        raise ParameterError("--node: copying to a node goes through Ray; give --ray-address")
    source = Library.open(lib.paths[shard], settle=False)
    gen_dir, fd = source.store.pin()
    try:
        manifest = read_manifest(gen_dir)
        receiver = _Call(_receiver(lib, node, path))
        origin = {"library": str(lib.path.resolve()), "shard": lib.meta["shards"][shard]}
        send = receiver("begin", origin, (lib.paths[shard] / "library.json").read_bytes(), gen_dir.name, manifest)
        if send is None:
            done = {"generation": manifest["generation"], "sent": 0, "linked": 0}
        else:
            sent = _send(receiver, gen_dir, send, chunk)
            done = receiver("finish")
            done["bytes"] = sent
        node_seen = receiver("node") if node is not None else None
    finally:
        unpin(fd)
        source.close()
    placed = lib.place(shard, node=node_seen, path=str(path))
    if lib.cluster is not None:
        lib.cluster.stop([shard])  # the next query makes its actor where it is placed now
    log.info("shard %d copied to %s on node %s: %s", shard, path, node_seen or "(this machine)", done)
    return {"shard": shard, **placed, "bytes": 0, **done}


def _send(receiver, gen_dir: Path, rels: list[str], chunk: int) -> int:
    """Send the files ``rels`` of ``gen_dir`` in chunks, at most :data:`IN_FLIGHT` unanswered; bytes sent."""
    total = 0
    for rel in rels:
        with open(gen_dir / rel, "rb") as f:
            first = True
            while (data := f.read(chunk)) or first:
                receiver.submit("write", rel, data)
                total += len(data)
                first = False
    receiver.drain()
    return total


class _Call:
    """Calls on a receiver: an actor handle (remote calls, a bounded number in flight) or a local object."""

    def __init__(self, target):
        self.target, self.pending = target, []
        self.remote = hasattr(target.begin, "remote")

    def __call__(self, method: str, *args):
        self.drain()
        if not self.remote:
            return getattr(self.target, method)(*args)
        import ray
        return ray.get(getattr(self.target, method).remote(*args))

    def submit(self, method: str, *args) -> None:
        if not self.remote:
            getattr(self.target, method)(*args)
            return
        import ray
        self.pending.append(getattr(self.target, method).remote(*args))
        if len(self.pending) >= IN_FLIGHT:
            ray.get(self.pending.pop(0))

    def drain(self) -> None:
        if self.pending:
            import ray
            ray.get(self.pending)
            self.pending = []


def _receiver(lib, node: str | None, path: str):
    if node is None:
        return ShardReceiver(path)
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from .cluster import node_id
    return ray.remote(ShardReceiver).options(
        num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id(node), soft=False)).remote(str(path))
