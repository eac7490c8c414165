"""PacketBatch + BatchMeta <-> FrameBatch (proto/flowscope/v1/mirror.proto), with no per-frame work.

A FrameBatch is columnar: the frames' captured bytes back to back in ``buf`` and one packed
little-endian array per PacketBatch column.  Encoding compacts the frames (a batch made by
``PacketBatch.take`` shares a larger buffer, possibly out of order) with one vectorised gather,
or a plain slice when they already lie back to back; decoding is ``numpy.frombuffer`` on each
field plus range checks, so a malformed message from the network is an error, never an
out-of-bounds read.

The frame bytes can travel Zstandard-compressed (RFC 8878; the codec Arrow ships, so no other
dependency): mirrored headers compress to about a quarter at several hundred MB/s per core.

The BatchMeta fields travel in the FrameBatch fields of the same names (a test checks that every
BatchMeta field has one).
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pyarrow as pa

from flowscope.batch import PacketBatch
from flowscope.errors import FlowscopeError
from flowscope.stream.meta import BatchMeta
from flowscope.stream.mirror_pb2 import COMPRESSION_NONE, COMPRESSION_ZSTD, FrameBatch

__all__ = ["encode", "decode", "FrameBatchError", "META_FIELDS", "COLUMNS", "MAX_BUF_BYTES"]

META_FIELDS = tuple(f.name for f in fields(BatchMeta))
# PacketBatch column -> wire dtype (little-endian, as the .proto says)
COLUMNS = (("offset", "<i4"), ("caplen", "<i4"), ("wirelen", "<i4"), ("ts_ns", "<i8"),
           ("linktype", "<i4"), ("frame", "<i8"))
MAX_BUF_BYTES = (1 << 31) - 1  # offsets are int32 on the wire
MAX_DECOMPRESSED = 256 << 20  # what a receiver allocates for one batch at most
ZSTD = pa.Codec("zstd", compression_level=1)


class FrameBatchError(FlowscopeError):
    """A FrameBatch that does not describe frames inside its own buffer."""


def compact(batch: PacketBatch) -> tuple[np.ndarray, np.ndarray]:
    """The batch's frames back to back (uint8) and where each starts in that buffer (int64)."""
    caplen = batch.caplen.astype(np.int64)
    start = np.zeros(len(batch), np.int64)
    np.cumsum(caplen[:-1], out=start[1:])
    total = int(caplen.sum())
    if len(batch) == 0:
        return np.empty(0, np.uint8), start
    shift = batch.offset.astype(np.int64) - start  # where each frame's bytes come from, minus
    if np.all(shift == shift[0]):  # already back to back: one slice, no copy
        first = int(shift[0])
        return batch.buf[first : first + total], start
    source = np.repeat(shift, caplen) + np.arange(total, dtype=np.int64)
    return batch.buf[source], start


def encode(batch: PacketBatch, meta: BatchMeta, compress: bool = False) -> FrameBatch:
    """One FrameBatch message carrying ``batch`` and ``meta``; ``compress``: zstd on the bytes."""
    buf, start = compact(batch)
    if buf.size > MAX_BUF_BYTES:
        raise FrameBatchError(f"batch of {buf.size} bytes is too large for one FrameBatch "
                              f"(at most {MAX_BUF_BYTES}); send it in parts")
    if compress and buf.size:
        msg = FrameBatch(count=len(batch), buf=ZSTD.compress(buf, asbytes=True),
                         buf_compression=COMPRESSION_ZSTD, buf_size=buf.size)
    else:
        msg = FrameBatch(count=len(batch), buf=buf.tobytes(), buf_size=buf.size)
    for name in META_FIELDS:
        setattr(msg, name, getattr(meta, name))
    columns = {"offset": start, "caplen": batch.caplen, "wirelen": batch.wirelen,
               "ts_ns": batch.ts_ns, "linktype": batch.linktype, "frame": batch.frame}
    for name, dtype in COLUMNS:
        setattr(msg, name, np.ascontiguousarray(columns[name], dtype=dtype).tobytes())
    return msg


def decode(msg: FrameBatch) -> tuple[BatchMeta, PacketBatch]:
    """The BatchMeta and PacketBatch a FrameBatch carries.

    ``buf`` is read-only (a view of the message's bytes when not compressed); the columns are
    fresh native arrays, writable, in PacketBatch's dtypes.
    """
    n = msg.count
    columns: dict[str, np.ndarray] = {}
    for name, dtype in COLUMNS:
        raw = getattr(msg, name)
        width = np.dtype(dtype).itemsize
        if len(raw) != n * width:
            raise FrameBatchError(f"FrameBatch seq {msg.seq} from {msg.collector_id!r}: {name} "
                                  f"has {len(raw)} bytes, expected {n} x {width}")
        columns[name] = np.frombuffer(raw, dtype)
    buf = _buffer(msg)
    offset = columns["offset"].astype(np.int64)
    caplen = columns["caplen"].astype(np.int32)
    bad = (offset < 0) | (caplen < 0) | (offset + caplen > buf.size)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise FrameBatchError(f"FrameBatch seq {msg.seq} from {msg.collector_id!r}: frame {i} "
                              f"(offset {offset[i]}, caplen {caplen[i]}) lies outside its "
                              f"{buf.size}-byte buffer")
    meta = BatchMeta(**{name: getattr(msg, name) for name in META_FIELDS})
    batch = PacketBatch(buf, offset, caplen, columns["wirelen"].astype(np.int32),
                        columns["ts_ns"].astype(np.int64), columns["linktype"].astype(np.int32),
                        columns["frame"].astype(np.int64))
    return meta, batch


def _buffer(msg: FrameBatch) -> np.ndarray:
    """The frame bytes, decompressed if need be."""
    if msg.buf_compression == COMPRESSION_NONE:
        return np.frombuffer(msg.buf, np.uint8)
    where = f"FrameBatch seq {msg.seq} from {msg.collector_id!r}"
    if msg.buf_compression != COMPRESSION_ZSTD:
        raise FrameBatchError(f"{where}: unknown buf_compression {msg.buf_compression}; "
                              "is the collector newer than this server?")
    if msg.buf_size > MAX_DECOMPRESSED:
        raise FrameBatchError(f"{where}: buf_size {msg.buf_size} is over {MAX_DECOMPRESSED}")
    try:
        out = ZSTD.decompress(msg.buf, msg.buf_size)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise FrameBatchError(f"{where}: buf is not {msg.buf_size} bytes of zstd: {e}") from None
    if out.size != msg.buf_size:
        raise FrameBatchError(f"{where}: buf decompressed to {out.size} bytes, "
                              f"not {msg.buf_size}")
    return np.frombuffer(out, np.uint8)
