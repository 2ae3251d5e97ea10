"""Read TensorFlow (TF1/TF2) checkpoints without TensorFlow.

A checkpoint ``prefix`` is two files: ``prefix.index``, a LevelDB-format table
(SSTable) mapping each variable name to a ``BundleEntryProto`` (dtype, shape,
shard, offset, size), and ``prefix.data-00000-of-0000N``, the raw little-endian
tensor bytes. Both formats are small and stable, so a pure-Python reader is
enough to take the weights of models that ship as TF checkpoints (musicnn).

Examples
--------
The musicnn wheel's MagnaTagATune checkpoint (``pip install --no-deps musicnn==0.1.0``):

>>> from audiorag.embedders.musicnn import checkpoint_prefix
>>> tensors = read_checkpoint(str(checkpoint_prefix("MTT_musicnn")) + "/")
>>> tensors["dense/kernel"].shape, tensors["dense/kernel"].dtype
((1506, 200), dtype('float32'))
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import CheckpointFormatError

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER = 5  # compression type byte + crc32c
# tensorflow/core/framework/types.proto
_DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 19: "<f2"}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes):
    """Yield ``(field_number, value)`` of a protobuf message (varint/bytes/fixed)."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        else:
            raise CheckpointFormatError(f"unsupported protobuf wire type {wire}")
        yield field, value


def _block_entries(table: bytes, offset: int, size: int):
    """Yield ``(key, value)`` of one uncompressed SSTable block."""
    if table[offset + size] != 0:
        raise CheckpointFormatError("compressed SSTable blocks are not supported")
    block = table[offset:offset + size]
    n_restarts = struct.unpack_from("<I", block, size - 4)[0]
    end = size - 4 - 4 * n_restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + value_len]
        pos += value_len


def _table_entries(table: bytes):
    footer = table[-_FOOTER_SIZE:]
    if struct.unpack("<Q", footer[-8:])[0] != _TABLE_MAGIC:
        raise CheckpointFormatError("not a TF checkpoint index (bad table magic)")
    _, pos = _varint(footer, 0)  # metaindex handle: offset
    _, pos = _varint(footer, pos)  # metaindex handle: size
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    for _, handle in _block_entries(table, index_offset, index_size):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        yield from _block_entries(table, offset, size)


def _entry(value: bytes) -> dict:
    entry = {"dtype": 1, "shape": [], "shard": 0, "offset": 0, "size": 0}
    for field, val in _proto_fields(value):
        if field == 1:
            entry["dtype"] = val
        elif field == 2:
            entry["shape"] = [
                next((v for f, v in _proto_fields(dim) if f == 1), 0)
                for f, dim in _proto_fields(val) if f == 2
            ]
        elif field == 3:
            entry["shard"] = val
        elif field == 4:
            entry["offset"] = val
        elif field == 5:
            entry["size"] = val
        elif field == 7:
            raise CheckpointFormatError("partitioned (sliced) variables are not supported")
    return entry


def read_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """All tensors of the TF checkpoint at ``prefix`` as numpy arrays, by variable name.

    ``prefix`` is the path without ``.index``/``.data-*`` (it may end with ``/``
    when the files are named ``.index`` inside a directory, as musicnn's are).
    """
    prefix = str(prefix)
    index_path = Path(prefix + ".index")
    if not index_path.is_file():
        raise CheckpointFormatError(f"{index_path}: no TF checkpoint index there")
    table = index_path.read_bytes()
    entries = {key.decode(): _entry(value) for key, value in _table_entries(table) if key}
    n_shards = max((e["shard"] for e in entries.values()), default=0) + 1
    shards = {}
    tensors = {}
    for name, e in sorted(entries.items()):
        if e["dtype"] not in _DTYPES:
            continue  # strings and resources are not weights
        if e["shard"] not in shards:
            data_path = f"{prefix}.data-{e['shard']:05d}-of-{n_shards:05d}"
            shards[e["shard"]] = np.memmap(data_path, dtype=np.uint8, mode="r")
        raw = shards[e["shard"]][e["offset"]:e["offset"] + e["size"]]
        array = np.frombuffer(raw.tobytes(), dtype=_DTYPES[e["dtype"]])
        tensors[name] = array.reshape(e["shape"]).astype(array.dtype.newbyteorder("="))
    return tensors
