"""Classic libpcap files: tcpdump.org/manpages/pcap-savefile.5.html (and the IETF
draft-ietf-opsawg-pcap).  Microsecond (0xA1B2C3D4) and nanosecond (0xA1B23C4D) magics,
either byte order.  Records are walked by a compiled kernel over chunks of the file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np

from flowscope.batch import PacketBatch
from flowscope.jit import njit
from flowscope.sources.chunks import MAX_RECORD, ChunkReader, Problems

GLOBAL_HEADER_LEN = 24
RECORD_HEADER_LEN = 16
MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
MAGICS = {
    struct.pack("<I", MAGIC_US): ("<", 1000),
    struct.pack(">I", MAGIC_US): (">", 1000),
    struct.pack("<I", MAGIC_NS): ("<", 1),
    struct.pack(">I", MAGIC_NS): (">", 1),
}

NEED_MORE, BAD_RECORD = 0, 1


@njit(inline="always", cache=True)
def _u32(buf, p, big):  # pragma: no cover - compiled
    if big:
        return (np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16) | (
            np.int64(buf[p + 2]) << 8) | np.int64(buf[p + 3])
    return (np.int64(buf[p + 3]) << 24) | (np.int64(buf[p + 2]) << 16) | (
        np.int64(buf[p + 1]) << 8) | np.int64(buf[p])


@njit(cache=True)
def walk_records(buf, pos, end, big, frac_ns, max_caplen, offset, caplen, wirelen,
                 ts_ns):  # pragma: no cover - compiled
    """Index the complete records in buf[pos:end]; stop when the columns are full, at a
    partial record (NEED_MORE) or at a record header no writer would produce (BAD_RECORD)."""
    k = 0
    while k < offset.shape[0]:
        if pos + RECORD_HEADER_LEN > end:
            return k, pos, NEED_MORE
        incl = _u32(buf, pos + 8, big)
        if incl > max_caplen:
            return k, pos, BAD_RECORD
        if pos + RECORD_HEADER_LEN + incl > end:
            return k, pos, NEED_MORE
        offset[k] = pos + RECORD_HEADER_LEN
        caplen[k] = incl
        wirelen[k] = min(_u32(buf, pos + 12, big), 0x7FFFFFFF)
        ts_ns[k] = _u32(buf, pos, big) * 1_000_000_000 + _u32(buf, pos + 4, big) * frac_ns
        k += 1
        pos += RECORD_HEADER_LEN + incl
    return k, pos, NEED_MORE


def read_pcap(name: str, reader: ChunkReader, problems: Problems,
              batch_frames: int) -> Iterator[PacketBatch]:
    """Read the global header now (a short file fails here), the records lazily."""
    header = reader.read_exact(GLOBAL_HEADER_LEN)
    order, frac_ns = MAGICS[header[:4]]
    snaplen, network = struct.unpack(order + "II", header[16:24])
    linktype = network & 0x0FFFFFFF  # upper bits: FCS length (pcap-savefile(5))
    max_caplen = min(max(snaplen, 262144), MAX_RECORD)
    return _records(name, reader, problems, batch_frames, order == ">", frac_ns, linktype,
                    max_caplen)


def _records(name: str, reader: ChunkReader, problems: Problems, batch_frames: int, big: bool,
             frac_ns: int, linktype: int, max_caplen: int) -> Iterator[PacketBatch]:
    for chunk, base in reader.chunks():
        pos = 0
        end = chunk.shape[0]
        while True:
            offset = np.empty(batch_frames, np.int64)
            caplen = np.empty(batch_frames, np.int32)
            wirelen = np.empty(batch_frames, np.int32)
            ts_ns = np.empty(batch_frames, np.int64)
            k, pos, status = walk_records(chunk, pos, end, big, frac_ns, max_caplen, offset,
                                          caplen, wirelen, ts_ns)
            if k:
                yield PacketBatch(chunk, offset[:k], caplen[:k], wirelen[:k], ts_ns[:k],
                                  np.full(k, linktype, np.int32), np.zeros(k, np.int64))
            if status == BAD_RECORD:
                incl = int(_u32(chunk, pos + 8, big))
                problems.add(name, base + pos, "corrupt_record",
                             f"record header claims {incl} captured bytes (limit "
                             f"{max_caplen}); the rest of the file is not read")
                return
            if k < batch_frames:
                break
        reader.consumed(pos)
    leftover = reader.leftover()
    if leftover:
        problems.add(name, reader.position, "truncated_file",
                     f"file ends inside a record ({leftover} bytes of it present)")
