"""pcapng files: draft-ietf-opsawg-pcapng (sections 4.1 SHB, 4.2 IDB, 4.3 EPB, 4.4 SPB,
Appendix A OPB).

Packet blocks are walked by a compiled kernel; the rare control blocks (a new section or a
new interface) return to Python, which reads their options (if_tsresol, if_tsoffset) and
resumes.  Byte order is per section.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np

from flowscope.batch import PacketBatch
from flowscope.jit import njit
from flowscope.sources.chunks import MAX_RECORD, ChunkReader, Problems
from flowscope.sources.pcap import _u32

SHB = 0x0A0D0D0A
IDB = 0x00000001
OPB = 0x00000002  # obsolete Packet Block
SPB = 0x00000003
EPB = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_IF_TSRESOL = 9
OPT_IF_TSOFFSET = 14

NEED_MORE, BAD_BLOCK, CONTROL, BAD_PACKET = 0, 1, 2, 3
# How a timestamp in interface units becomes ns: mode 0 multiply, 1 divide, 2 binary fraction.
TS_MUL, TS_DIV, TS_POW2 = 0, 1, 2


@njit(inline="always", cache=True)
def _u16(buf, p, big):  # pragma: no cover - compiled
    if big:
        return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])
    return (np.int64(buf[p + 1]) << 8) | np.int64(buf[p])


@njit(inline="always", cache=True)
def _to_ns(units, mode, factor, offset_ns):  # pragma: no cover - compiled
    if mode == TS_MUL:
        return units * factor + offset_ns
    if mode == TS_DIV:
        return units // factor + offset_ns
    sec = units >> factor
    frac = units & ((np.int64(1) << factor) - 1)
    return sec * 1_000_000_000 + np.int64(frac * 1e9 / (np.int64(1) << factor)) + offset_ns


@njit(cache=True)
def walk_blocks(buf, pos, end, big, if_link, if_snap, if_mode, if_factor, if_offset, n_if,
                offset, caplen, wirelen, ts_ns, linktype):  # pragma: no cover - compiled
    k = 0
    while k < offset.shape[0]:
        if pos + 12 > end:
            return k, pos, NEED_MORE
        btype = _u32(buf, pos, big)
        if btype == SHB:
            return k, pos, CONTROL
        blen = _u32(buf, pos + 4, big)
        if blen < 12 or blen % 4 != 0 or blen > MAX_RECORD:
            return k, pos, BAD_BLOCK
        if pos + blen > end:
            return k, pos, NEED_MORE
        if btype == IDB:
            return k, pos, CONTROL
        if btype == EPB or btype == OPB:
            if blen < 32:
                return k, pos, BAD_PACKET
            if btype == EPB:
                ifid = _u32(buf, pos + 8, big)
            else:
                ifid = _u16(buf, pos + 8, big)
            incl = _u32(buf, pos + 20, big)
            if ifid >= n_if or 28 + incl > blen - 4:
                return k, pos, BAD_PACKET
            units = (_u32(buf, pos + 12, big) << 32) | _u32(buf, pos + 16, big)
            offset[k] = pos + 28
            caplen[k] = incl
            wirelen[k] = min(_u32(buf, pos + 24, big), 0x7FFFFFFF)
            ts_ns[k] = _to_ns(units, if_mode[ifid], if_factor[ifid], if_offset[ifid])
            linktype[k] = if_link[ifid]
            k += 1
        elif btype == SPB:
            if n_if == 0 or blen < 16:
                return k, pos, BAD_PACKET
            orig = _u32(buf, pos + 8, big)
            incl = min(orig, blen - 16)
            if if_snap[0] > 0:
                incl = min(incl, if_snap[0])
            offset[k] = pos + 12
            caplen[k] = incl
            wirelen[k] = min(orig, 0x7FFFFFFF)
            ts_ns[k] = 0  # SPBs carry no timestamp
            linktype[k] = if_link[0]
            k += 1
        pos += blen
    return k, pos, NEED_MORE


class _Section:
    def __init__(self) -> None:
        self.big = False
        self.link: list[int] = []
        self.snap: list[int] = []
        self.mode: list[int] = []
        self.factor: list[int] = []
        self.offset: list[int] = []
        self.arrays: tuple[np.ndarray, ...] = self._pack()

    def _pack(self) -> tuple[np.ndarray, ...]:
        return (np.array(self.link, np.int32), np.array(self.snap, np.int64),
                np.array(self.mode, np.int64), np.array(self.factor, np.int64),
                np.array(self.offset, np.int64))

    def add_interface(self, block: bytes) -> None:
        e = ">" if self.big else "<"
        link, _, snap = struct.unpack(e + "HHI", block[8:16])
        mode, factor, offset_ns = TS_MUL, 1000, 0  # default resolution: microseconds
        p = 16
        while p + 4 <= len(block) - 4:
            code, length = struct.unpack(e + "HH", block[p : p + 4])
            value = block[p + 4 : p + 4 + length]
            if code == 0:
                break
            if code == OPT_IF_TSRESOL and length >= 1:
                mode, factor = _resolution(value[0])
            elif code == OPT_IF_TSOFFSET and length >= 8:
                offset_ns = struct.unpack(e + "q", value[:8])[0] * 1_000_000_000
            p += 4 + ((length + 3) & ~3)
        self.link.append(link)
        self.snap.append(snap)
        self.mode.append(mode)
        self.factor.append(factor)
        self.offset.append(offset_ns)
        self.arrays = self._pack()


def _resolution(tsresol: int) -> tuple[int, int]:
    """if_tsresol: high bit clear = 10^-v seconds, set = 2^-v seconds."""
    v = tsresol & 0x7F
    if tsresol & 0x80:
        if v > 62:
            raise ValueError
        return TS_POW2, v
    if v <= 9:
        return TS_MUL, 10 ** (9 - v)
    if v > 18:
        raise ValueError
    return TS_DIV, 10 ** (v - 9)


def read_pcapng(name: str, reader: ChunkReader, problems: Problems,
                batch_frames: int) -> Iterator[PacketBatch]:
    section = _Section()
    for chunk, base in reader.chunks():
        pos = 0
        end = chunk.shape[0]
        while True:
            offset = np.empty(batch_frames, np.int64)
            caplen = np.empty(batch_frames, np.int32)
            wirelen = np.empty(batch_frames, np.int32)
            ts_ns = np.empty(batch_frames, np.int64)
            linktype = np.empty(batch_frames, np.int32)
            link, snap, mode, factor, offs = section.arrays
            k, pos, status = walk_blocks(chunk, pos, end, section.big, link, snap, mode, factor,
                                         offs, link.shape[0], offset, caplen, wirelen, ts_ns,
                                         linktype)
            if k:
                yield PacketBatch(chunk, offset[:k], caplen[:k], wirelen[:k], ts_ns[:k],
                                  linktype[:k], np.zeros(k, np.int64))
            if status == CONTROL:
                step = _control_block(name, chunk, pos, end, base, section, problems)
                if step is None:
                    return
                if step == 0:
                    break  # block not complete in this chunk
                if isinstance(step, _Section):
                    section = step
                    step = int(_u32(chunk, pos + 4, section.big))
                pos += step
                continue
            if status == BAD_PACKET:
                blen = int(_u32(chunk, pos + 4, section.big))
                problems.add(name, base + pos, "bad_packet_block",
                             "packet block inconsistent with its length or interface; skipped")
                pos += blen
                continue
            if status == BAD_BLOCK:
                problems.add(name, base + pos, "corrupt_block",
                             "block length is not a multiple of 4 or implausible; the rest of "
                             "the file is not read")
                return
            if k < batch_frames:
                break
        reader.consumed(pos)
    if reader.leftover():
        problems.add(name, reader.position, "truncated_file",
                     f"file ends inside a block ({reader.leftover()} bytes of it present)")


def _control_block(name: str, chunk: np.ndarray, pos: int, end: int, base: int,
                   section: _Section, problems: Problems) -> int | _Section | None:
    """Handle an SHB or IDB at pos. Returns bytes to skip, a new section (SHB), 0 when the
    block is incomplete in this chunk, None when the file cannot be read further."""
    if pos + 12 > end:
        return 0
    if int(_u32(chunk, pos, False)) == SHB:
        magic = bytes(chunk[pos + 8 : pos + 12])
        if magic == struct.pack("<I", BYTE_ORDER_MAGIC):
            big = False
        elif magic == struct.pack(">I", BYTE_ORDER_MAGIC):
            big = True
        else:
            problems.add(name, base + pos, "corrupt_block", "section header with an unknown "
                         "byte-order magic; the rest of the file is not read")
            return None
        blen = int(_u32(chunk, pos + 4, big))
        if blen < 28 or blen % 4 or blen > MAX_RECORD:
            problems.add(name, base + pos, "corrupt_block", "section header length "
                         f"{blen} is invalid; the rest of the file is not read")
            return None
        if pos + blen > end:
            return 0
        new = _Section()
        new.big = big
        return new
    blen = int(_u32(chunk, pos + 4, section.big))
    try:
        section.add_interface(bytes(chunk[pos : pos + blen]))
    except (struct.error, ValueError):
        problems.add(name, base + pos, "bad_interface_block",
                     "interface description unreadable; its packets will be reported")
        section.link.append(0)
        section.snap.append(0)
        section.mode.append(TS_MUL)
        section.factor.append(1000)
        section.offset.append(0)
        section.arrays = section._pack()
    return blen
