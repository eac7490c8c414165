"""The server's durable store: every accepted batch, per collector, in an append-only log.

``flowscope serve`` acknowledges a batch only once :meth:`BatchStore.append` has returned:
the record is written and ``fdatasync``'ed (and a new segment's directory entry fsync'ed),
so a crash (``kill -9``, power loss) after the acknowledgement loses nothing.  On start the
store is scanned: the last sequence number of every collector is recovered, and a *torn
tail* - the record a crash interrupted, which was never acknowledged - is detected (short
header, bad magic, length past the end of the file or CRC mismatch), reported and cut off,
so the collector's resend lands on a clean log.

Layout (``DIR`` = ``--store``)::

    DIR/collectors/c-<collector id, percent-encoded>/<first seq, 20 digits>.fsb
    DIR/analysis/sessions.parquet, timeline.parquet, mirrors.parquet   (serve/sink.py)

Why not pcapng segments: a batch must be stored atomically (all its frames or none) with
its :class:`~flowscope.stream.meta.BatchMeta` and the server-wide arrival number that
orders replay across collectors; pcapng stores packets one block at a time and has no
integrity check, so a torn batch could not be told from a short one.  A record here is one
batch: a fixed header, the meta as JSON, the columns as little-endian arrays and the frame
bytes back to back, all under one CRC-32 - written and read with no per-frame Python.

Record (little-endian)::

    magic "FSRB" | meta_len u32 | frames u32 | data_len u64 | crc32 u32
    meta (JSON, meta_len bytes)
    ts_ns i64[frames] | caplen i32[frames] | wirelen i32[frames] | linktype i32[frames]
    frame i64[frames] | frame bytes (data_len)
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np

from flowscope.batch import PacketBatch
from flowscope.errors import FlowscopeError
from flowscope.jit import njit
from flowscope.stream.meta import BatchMeta

SEGMENT_MAGIC = b"FSSEG001"  # first 8 bytes of every segment file
RECORD_MAGIC = b"FSRB"
HEADER = struct.Struct("<4sIIQI")
COLUMN_BYTES = 8 + 4 + 4 + 4 + 8  # ts_ns, caplen, wirelen, linktype, frame per frame
SEGMENT_BYTES = 64 << 20  # a new segment once the current one passes 64 MiB
META_FIELDS = tuple(f.name for f in dataclasses.fields(BatchMeta))


@njit(cache=True)
def _gather(buf, offset, caplen, out):  # pragma: no cover - compiled
    """The frames' bytes back to back (a batch's buffer may hold record headers between)."""
    pos = 0
    for i in range(offset.shape[0]):
        o = offset[i]
        n = caplen[i]
        out[pos: pos + n] = buf[o: o + n]
        pos += n


def frame_bytes(batch: PacketBatch) -> np.ndarray:
    """The captured bytes of every frame, concatenated in batch order."""
    caplen = batch.caplen.astype(np.int64)
    total = int(caplen.sum())
    n = len(batch)
    if n and int(batch.offset[0]) + total <= batch.buf.shape[0] and np.array_equal(
            batch.offset[1:], batch.offset[:-1] + caplen[:-1]):
        start = int(batch.offset[0])
        return batch.buf[start: start + total]  # already contiguous: no copy
    out = np.empty(total, np.uint8)
    _gather(batch.buf, batch.offset.astype(np.int64), caplen, out)
    return out


def encode_record(meta: BatchMeta, arrival: int, received_ns: int, batch: PacketBatch) -> bytes:
    doc = dataclasses.asdict(meta)
    doc["arrival"] = arrival
    doc["received_ns"] = received_ns
    meta_bytes = json.dumps(doc, separators=(",", ":")).encode()
    data = frame_bytes(batch)
    body = [meta_bytes,
            batch.ts_ns.astype("<i8").tobytes(), batch.caplen.astype("<i4").tobytes(),
            batch.wirelen.astype("<i4").tobytes(), batch.linktype.astype("<i4").tobytes(),
            batch.frame.astype("<i8").tobytes(), data.tobytes()]
    crc = 0
    for part in body:
        crc = zlib.crc32(part, crc)
    head = HEADER.pack(RECORD_MAGIC, len(meta_bytes), len(batch), data.shape[0], crc)
    return b"".join([head, *body])


@dataclass(frozen=True, slots=True)
class StoredBatch:
    meta: BatchMeta
    arrival: int  # server-wide order in which batches were accepted
    received_ns: int  # server wall clock at acceptance
    batch: PacketBatch


def decode_record(head: bytes, body: bytes | memoryview, where: str) -> StoredBatch:
    magic, meta_len, n, data_len, crc = HEADER.unpack(head)
    if zlib.crc32(body) != crc:
        raise FlowscopeError(f"{where}: batch record fails its CRC check: the store is damaged; "
                             "move this segment aside to start without it")
    doc = json.loads(bytes(body[:meta_len]))
    meta = BatchMeta(**{k: doc[k] for k in META_FIELDS if k in doc})
    pos = meta_len

    def column(dtype: str) -> np.ndarray:
        nonlocal pos
        a = np.frombuffer(body, dtype, n, pos)
        pos += a.nbytes
        return a.astype(dtype[1:])  # native order, writable

    ts_ns, caplen, wirelen = column("<i8"), column("<i4"), column("<i4")
    linktype, frame = column("<i4"), column("<i8")
    buf = np.frombuffer(body, np.uint8, data_len, pos)
    offset = np.zeros(n, np.int64)
    np.cumsum(caplen[:-1], out=offset[1:])
    return StoredBatch(meta, int(doc["arrival"]), int(doc.get("received_ns", 0)),
                       PacketBatch(buf, offset, caplen, wirelen, ts_ns, linktype, frame))


@dataclass
class CollectorLog:
    """One collector's segments and what the scan learnt about them."""

    collector_id: str
    directory: Path
    segments: list[Path] = field(default_factory=list)
    # (arrival, segment index, offset, record length) of every record, in log order
    index: list[tuple[int, int, int, int]] = field(default_factory=list)
    last_seq: int = -1
    batches: int = 0
    frames: int = 0
    bytes: int = 0  # frame bytes stored
    tail_bytes: int = 0  # bytes written after the last segment's first byte (for rotation)
    fd: int = -1


def _dir_name(collector_id: str) -> str:
    return "c-" + quote(collector_id, safe="")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BatchStore:
    """Append-only per-collector batch logs under ``root``; see the module docstring."""

    def __init__(self, root: str | os.PathLike[str], segment_bytes: int = SEGMENT_BYTES) -> None:
        self.root = Path(root)
        self.segment_bytes = segment_bytes
        self.logs: dict[str, CollectorLog] = {}
        self.next_arrival = 0
        self.torn: list[str] = []  # what the scan cut off, for the log
        try:
            (self.root / "collectors").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FlowscopeError(f"{self.root}: cannot create the store: {e.strerror}") from None
        for d in sorted((self.root / "collectors").iterdir()):
            if d.is_dir() and d.name.startswith("c-"):
                self._scan(CollectorLog(unquote(d.name[2:]), d))

    # -- recovery -------------------------------------------------------------------------

    def _scan(self, log: CollectorLog) -> None:
        log.segments = sorted(log.directory.glob("*.fsb"))
        for k, path in enumerate(log.segments):
            last = k == len(log.segments) - 1
            good = self._scan_segment(log, k, path, verify=last)
            size = path.stat().st_size
            if good < size:
                if not last:
                    raise FlowscopeError(
                        f"{path}: damaged at byte {good} in the middle of the log (not a torn "
                        "tail); move this segment aside to start without it")
                self.torn.append(f"{path}: discarded a torn tail of {size - good} bytes at "
                                 f"byte {good} (a batch never acknowledged)")
                with open(path, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())
            if last:
                log.tail_bytes = good
        self.logs[log.collector_id] = log

    def _scan_segment(self, log: CollectorLog, k: int, path: Path, verify: bool) -> int:
        """Walk the records of one segment; the byte offset where the good records end.
        Only the last segment can hold a torn tail, so only its records are CRC-checked
        here (replay checks every record it reads)."""
        with open(path, "rb") as f:
            if f.read(len(SEGMENT_MAGIC)) != SEGMENT_MAGIC:
                if verify and path.stat().st_size < len(SEGMENT_MAGIC):
                    return 0  # the crash came before the segment header was complete
                raise FlowscopeError(f"{path}: not a flowscope store segment")
            pos = len(SEGMENT_MAGIC)
            while True:
                head = f.read(HEADER.size)
                if len(head) < HEADER.size:
                    return pos
                magic, meta_len, n, data_len, crc = HEADER.unpack(head)
                length = meta_len + n * COLUMN_BYTES + data_len
                if magic != RECORD_MAGIC:
                    return pos
                if verify:
                    body = f.read(length)
                    if len(body) < length or zlib.crc32(body) != crc:
                        return pos
                    meta_json = body[:meta_len]
                else:
                    meta_json = f.read(meta_len)
                    f.seek(length - meta_len, os.SEEK_CUR)
                    if f.tell() > os.fstat(f.fileno()).st_size:
                        return pos
                try:
                    doc = json.loads(meta_json)
                    arrival, seq = int(doc["arrival"]), int(doc["seq"])
                except (ValueError, KeyError, TypeError):
                    return pos
                log.index.append((arrival, k, pos, HEADER.size + length))
                log.last_seq = max(log.last_seq, seq)
                log.batches += 1
                log.frames += n
                log.bytes += data_len
                self.next_arrival = max(self.next_arrival, arrival + 1)
                pos += HEADER.size + length

    def replay(self) -> Iterator[StoredBatch]:
        """Every stored batch, in the order the server accepted them (across collectors)."""
        def records(log: CollectorLog) -> Iterator[tuple[int, StoredBatch]]:
            files: dict[int, object] = {}
            try:
                for arrival, k, pos, length in log.index:
                    if k not in files:
                        files[k] = open(log.segments[k], "rb")  # noqa: SIM115
                    f = files[k]
                    f.seek(pos)  # type: ignore[attr-defined]
                    raw = bytearray(length)  # writable: the decoder may take the buffer as is
                    if f.readinto(raw) != length:  # type: ignore[attr-defined]
                        raise FlowscopeError(f"{log.segments[k]}: shorter than when scanned; "
                                             "was the store changed while serve ran?")
                    yield arrival, decode_record(bytes(raw[:HEADER.size]),
                                                 memoryview(raw)[HEADER.size:],
                                                 f"{log.segments[k]}@{pos}")
            finally:
                for f in files.values():
                    f.close()  # type: ignore[attr-defined]

        streams = [records(log) for log in self.logs.values()]
        for _, stored in heapq.merge(*streams, key=lambda item: item[0]):
            yield stored

    # -- appending ------------------------------------------------------------------------

    def last_seq(self, collector_id: str) -> int:
        log = self.logs.get(collector_id)
        return log.last_seq if log is not None else -1

    def append(self, meta: BatchMeta, batch: PacketBatch) -> StoredBatch | None:
        """Store one batch durably (fdatasync'ed when this returns); ``None`` if the store
        already holds this (collector, seq) - a resend is acknowledged, not stored twice."""
        log = self.logs.get(meta.collector_id)
        if log is None:
            log = CollectorLog(meta.collector_id, self.root / "collectors" /
                               _dir_name(meta.collector_id))
            log.directory.mkdir(parents=True, exist_ok=True)
            _fsync_dir(log.directory.parent)
            self.logs[meta.collector_id] = log
        if meta.seq <= log.last_seq:
            return None
        if log.fd < 0 or log.tail_bytes >= self.segment_bytes or not log.segments:
            self._open_segment(log, meta.seq)
        arrival = self.next_arrival
        received_ns = time.time_ns()
        record = encode_record(meta, arrival, received_ns, batch)
        view = memoryview(record)
        while view:
            view = view[os.write(log.fd, view):]
        os.fdatasync(log.fd)
        log.index.append((arrival, len(log.segments) - 1, log.tail_bytes, len(record)))
        log.tail_bytes += len(record)
        log.last_seq = meta.seq
        log.batches += 1
        log.frames += len(batch)
        log.bytes += int(batch.caplen.sum())
        self.next_arrival += 1
        return StoredBatch(meta, arrival, received_ns, batch)

    def _open_segment(self, log: CollectorLog, first_seq: int) -> None:
        if log.fd >= 0:
            os.close(log.fd)
            log.fd = -1
        if log.segments and log.tail_bytes < self.segment_bytes:
            path = log.segments[-1]  # continue the last segment after a restart
        else:
            path = log.directory / f"{first_seq:020d}.fsb"
            log.segments.append(path)
            log.tail_bytes = 0
        log.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if log.tail_bytes == 0:
            os.write(log.fd, SEGMENT_MAGIC)
            log.tail_bytes = len(SEGMENT_MAGIC)
            os.fsync(log.fd)
            _fsync_dir(log.directory)

    def close(self) -> None:
        for log in self.logs.values():
            if log.fd >= 0:
                os.close(log.fd)
                log.fd = -1
