"""Write decapsulated frames as pcapng (draft-ietf-opsawg-pcapng).

One Interface Description Block per mirror session (or per VNI, or one for all) and link
type: Ethernet for mirrored frames, LINKTYPE_RAW (101) for IP-only payloads (ERSPAN III
FT=2, Geneve carrying IP).  Each Enhanced Packet Block keeps the frame's original wire
length (so sliced copies stay honest), carries the direction in epb_flags (§4.3.1:
bits 0-1, 01 inbound, 10 outbound) and the mirror metadata in an opt_comment.
Blocks are built for a whole batch at once by a compiled kernel.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Literal

import numba as nb
import numpy as np

from flowscope import __version__
from flowscope.analyse.mirrors import MirrorTracker
from flowscope.batch import PacketBatch
from flowscope.decode import codes
from flowscope.decode.columns import NO_TS
from flowscope.sinks.addresses import ip_text

SplitBy = Literal["session", "vni", "none"]
EPB_FIXED = 28 + 4  # header through original length, plus the trailing block length
MAX_OPTIONS = 8 + 4 + 120 + 4  # epb_flags, comment header + text, end of options


def _text_table(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(w) for w in words) or 1
    table = np.zeros((len(words), width), np.uint8)
    lengths = np.zeros(len(words), np.int64)
    for i, w in enumerate(words):
        table[i, : len(w)] = np.frombuffer(w.encode(), np.uint8)
        lengths[i] = len(w)
    return table, lengths


_TUNNEL_TEXT, _TUNNEL_LEN = _text_table([codes.TUNNELS.get(i, "frame")
                                         for i in range(len(codes.LAYERS))])
_WORDS = [" session=", " seq=", " vni=", " vlan=", " dir=ingress", " dir=egress",
          " sliced", " hw_ts_ns="]
_WORD_TEXT, _WORD_LEN = _text_table(_WORDS)
W_SESSION, W_SEQ, W_VNI, W_VLAN, W_INGRESS, W_EGRESS, W_SLICED, W_HWTS = range(8)


@nb.njit(inline="always", cache=True)
def _put_u32(out, p, v):  # pragma: no cover - compiled
    out[p] = v & 0xFF  # little-endian section
    out[p + 1] = (v >> 8) & 0xFF
    out[p + 2] = (v >> 16) & 0xFF
    out[p + 3] = (v >> 24) & 0xFF


@nb.njit(inline="always", cache=True)
def _put_text(out, p, table, lengths, i):  # pragma: no cover - compiled
    for k in range(lengths[i]):
        out[p + k] = table[i, k]
    return p + lengths[i]


@nb.njit(inline="always", cache=True)
def _put_decimal(out, p, v):  # pragma: no cover - compiled
    if v == 0:
        out[p] = 48
        return p + 1
    digits = 0
    t = v
    while t > 0:
        digits += 1
        t //= 10
    for k in range(digits - 1, -1, -1):
        out[p + k] = 48 + v % 10
        v //= 10
    return p + digits


@nb.njit(inline="always", cache=True)
def _put_field(out, p, word_text, word_len, word, value):  # pragma: no cover - compiled
    """' name=value' when the column has a value (>= 0)."""
    if value < 0:
        return p
    return _put_decimal(out, _put_text(out, p, word_text, word_len, word), value)


@nb.njit(cache=True)
def build_blocks(buf, rows, index, iface, ts_ns, out, tunnel_text, tunnel_len, word_text,
                 word_len):  # pragma: no cover - compiled
    p = 0
    for j in range(index.shape[0]):
        r = rows[index[j]]
        caplen = r.inner_caplen
        start = p
        _put_u32(out, p, 6)  # Enhanced Packet Block
        _put_u32(out, p + 8, iface[j])
        t = ts_ns[j]
        _put_u32(out, p + 12, (t >> 32) & 0xFFFFFFFF)
        _put_u32(out, p + 16, t & 0xFFFFFFFF)
        _put_u32(out, p + 20, caplen)
        _put_u32(out, p + 24, r.len)
        src = r.inner_off
        out[p + 28 : p + 28 + caplen] = buf[src : src + caplen]
        q = p + 28 + caplen
        while q % 4:
            out[q] = 0
            q += 1
        if r.direction > 0:  # epb_flags: inbound 01 / outbound 10
            _put_u32(out, q, 2 | (4 << 16))
            _put_u32(out, q + 4, r.direction)
            q += 8
        c = q + 4  # opt_comment text
        e = _put_text(out, c, tunnel_text, tunnel_len, r.tunnel)
        e = _put_field(out, e, word_text, word_len, W_SESSION, r.erspan_session)
        e = _put_field(out, e, word_text, word_len, W_SEQ, r.gre_seq)
        e = _put_field(out, e, word_text, word_len, W_VNI, r.vni)
        e = _put_field(out, e, word_text, word_len, W_VLAN, r.erspan_vlan)
        if r.direction == 1:
            e = _put_text(out, e, word_text, word_len, W_INGRESS)
        elif r.direction == 2:
            e = _put_text(out, e, word_text, word_len, W_EGRESS)
        if r.erspan_t == 1:
            e = _put_text(out, e, word_text, word_len, W_SLICED)
        if r.orig_ts != NO_TS and r.orig_ts >= 0:
            e = _put_text(out, e, word_text, word_len, W_HWTS)
            e = _put_decimal(out, e, r.orig_ts)
        _put_u32(out, q, 1 | ((e - c) << 16))
        q = e
        while q % 4:
            out[q] = 0
            q += 1
        _put_u32(out, q, 0)  # opt_endofopt
        q += 4
        blen = q + 4 - start
        _put_u32(out, start + 4, blen)
        _put_u32(out, q, blen)
        p = q + 4
    return p


def _option(code: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def _block(btype: int, body: bytes) -> bytes:
    blen = 12 + len(body)
    return struct.pack("<II", btype, blen) + body + struct.pack("<I", blen)


class PcapngWriter:
    """Streams decapsulated frames to a pcapng file, batch by batch."""

    def __init__(self, out: BinaryIO, split_by: SplitBy = "session",
                 restore_timestamps: bool = False, note: str = "") -> None:
        self.out = out
        self.note = note  # appended to every interface description (e.g. sampling, slicing)
        self.split_by = split_by
        self.restore_timestamps = restore_timestamps
        self.interfaces: dict[tuple[int, int], int] = {}
        self.written = 0
        self.skipped = 0  # frames without a mirror encapsulation
        self._blocks = np.empty(0, np.uint8)  # reused block buffer
        shb = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _option(
            4, f"flowscope {__version__} decap".encode()) + _option(0, b"")
        out.write(_block(0x0A0D0D0A, shb))

    def _iface_keys(self, rows: np.ndarray, index: np.ndarray) -> np.ndarray:
        link = rows["inner_link"][index].astype(np.int64)
        if self.split_by == "session":
            group = rows["stream"][index].astype(np.int64)
        elif self.split_by == "vni":
            group = rows["vni"][index].astype(np.int64)
        else:
            group = np.zeros(index.shape[0], np.int64)
        return (group + 1) << 16 | link

    def _describe(self, key: int, row: np.void, tracker: MirrorTracker) -> bytes:
        link = key & 0xFFFF
        if self.split_by == "session":
            src = ip_text(int(row["outer_ipver"]), row["outer_src"].tobytes())
            dst = ip_text(int(row["outer_ipver"]), row["outer_dst"].tobytes())
            tunnel = codes.TUNNELS.get(int(row["tunnel"]), "tunnel")
            ident = (f" session {row['erspan_session']}" if row["erspan_session"] >= 0 else
                     f" vni {row['vni']}" if row["vni"] >= 0 else "")
            name = f"{tunnel} {src}>{dst}{ident}"
        elif self.split_by == "vni":
            name = f"vni {row['vni']}" if row["vni"] >= 0 else "no vni"
        else:
            name = "decapsulated"
        kind = "IP packets" if link == codes.LINKTYPE_RAW else "Ethernet frames"
        description = f"mirrored {kind} ({name}), decapsulated by flowscope{self.note}"
        body = struct.pack("<HHI", link, 0, 0) + _option(2, name.encode()) + _option(
            3, description.encode()) + _option(9, bytes([9])) + _option(0, b"")
        return _block(1, body)

    def write(self, batch: PacketBatch, rows: np.ndarray, tracker: MirrorTracker) -> None:
        index = np.flatnonzero((rows["inner_off"] >= 0) & (rows["inner_caplen"] >= 0))
        self.skipped += rows.shape[0] - index.size
        if not index.size:
            return
        keys = self._iface_keys(rows, index)
        uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        ids = np.empty(uniq.shape[0], np.int64)
        head = []
        for j, key in enumerate(uniq.tolist()):  # once per distinct interface
            key = (key >> 16, key & 0xFFFF)
            if key not in self.interfaces:
                self.interfaces[key] = len(self.interfaces)
                head.append(self._describe((key[0] << 16) | key[1], rows[index[first[j]]],
                                           tracker))
            ids[j] = self.interfaces[key]
        if head:
            self.out.write(b"".join(head))
        iface = ids[inverse.ravel()]
        ts = rows["ts_ns"][index]
        if self.restore_timestamps:
            orig = rows["orig_ts"][index]
            ts = np.where(orig != NO_TS, orig, ts)
        caplen = rows["inner_caplen"][index].astype(np.int64)
        size = int((EPB_FIXED + ((caplen + 3) & ~3) + MAX_OPTIONS).sum())
        if self._blocks.shape[0] < size:
            self._blocks = np.empty(max(size, 2 * self._blocks.shape[0]), np.uint8)
        out = self._blocks
        used = build_blocks(batch.buf, rows, index, iface, ts, out, _TUNNEL_TEXT, _TUNNEL_LEN,
                            _WORD_TEXT, _WORD_LEN)
        self.out.write(out[:used].data)
        self.written += index.size
