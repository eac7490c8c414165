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

import numpy as np

from flowscope import __version__
from flowscope.analyse.mirrors import MirrorTracker
from flowscope.batch import PacketBatch
from flowscope.decode import codes
from flowscope.decode.columns import NO_TS
from flowscope.jit import njit
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


# Positions in the block buffer are int64; they index it as uint64 (`_at`), which spares
# Numba the negative-index wraparound test on every byte stored and lets LLVM vectorise
# the copies.
@njit(inline="always", cache=True)
def _at(p):  # pragma: no cover - compiled
    return np.uint64(p)


@njit(inline="always", cache=True)
def _put_u32(out, p, v):  # pragma: no cover - compiled
    out[_at(p)] = v & 0xFF  # little-endian section
    out[_at(p + 1)] = (v >> 8) & 0xFF
    out[_at(p + 2)] = (v >> 16) & 0xFF
    out[_at(p + 3)] = (v >> 24) & 0xFF


@njit(inline="always", cache=True)
def _put_bytes(out, p, src, start, n):  # pragma: no cover - compiled
    for k in range(n):
        out[_at(p + k)] = src[_at(start + k)]
    return p + n


@njit(inline="always", cache=True)
def _put_word(out, p, table, lengths, i):  # pragma: no cover - compiled
    """Word i of a text table.  The tables are module globals, which Numba freezes into the
    kernel as constants: with the word known at compile time the copy becomes a few stores."""
    n = lengths[i]
    for k in range(n):
        out[_at(p + k)] = table[i, k]
    return p + n


@njit(inline="always", cache=True)
def _put_zeros(out, p):  # pragma: no cover - compiled
    """Pad to a multiple of 32 bits."""
    while p % 4:
        out[_at(p)] = 0
        p += 1
    return p


_POW10 = np.array([10**k for k in range(20)], np.uint64)
_DIGITS2 = np.array([[48 + k // 10, 48 + k % 10] for k in range(100)], np.uint8)  # "00".."99"


@njit(inline="always", cache=True)
def _put_decimal(out, p, v):  # pragma: no cover - compiled
    """v >= 0 in ASCII decimal, two digits per (unsigned) division."""
    u = np.uint64(v)
    digits = 1
    while digits < 20 and u >= _POW10[digits]:
        digits += 1
    e = p + digits
    while u >= np.uint64(100):
        d = u % np.uint64(100)
        u //= np.uint64(100)
        e -= 2
        out[_at(e)] = _DIGITS2[d, 0]
        out[_at(e + 1)] = _DIGITS2[d, 1]
    if u >= np.uint64(10):
        out[_at(p)] = _DIGITS2[u, 0]
        out[_at(p + 1)] = _DIGITS2[u, 1]
    else:
        out[_at(p)] = np.uint64(48) + u
    return p + digits


@njit(inline="always", cache=True)
def _put_field(out, p, word, value):  # pragma: no cover - compiled
    """' name=value' when the column has a value (>= 0)."""
    if value < 0:
        return p
    return _put_decimal(out, _put_word(out, p, _WORD_TEXT, _WORD_LEN, word), value)


SPLIT_CODES = {"session": 0, "vni": 1, "none": 2}
DONE, NEW_INTERFACE, OUT_FULL = 0, 1, 2  # why build_blocks stopped


@njit(inline="always", cache=True)
def _iface_key(r, split):  # pragma: no cover - compiled
    """(group + 1) << 16 | link: the interface a frame goes to (see PcapngWriter)."""
    group = np.int64(r.stream) if split == 0 else np.int64(r.vni) if split == 1 else 0
    return (group + 1) << 16 | np.int64(r.inner_link)


@njit(cache=True)
def build_blocks(buf, rows, i, p, split, restore, known_keys, known_ids,
                 out):  # pragma: no cover - compiled
    """Lay out one Enhanced Packet Block (§4.3) per decapsulated frame of rows[i:] in
    out[p:]: header, frame bytes, padding to 32 bits, options, trailing length.

    Frames without an inner frame (inner_off or inner_caplen < 0) are skipped.  Stops at
    the end of rows (DONE), at a frame whose interface is not in known_keys yet
    (NEW_INTERFACE: its Interface Description Block must come first), or when out has no
    room for the worst case of the next block (OUT_FULL).  Returns (status, the row it
    stopped at, bytes of out used, frames written)."""
    written = 0
    last_key = np.int64(-1)
    last_id = 0
    n = rows.shape[0]
    while i < n:
        r = rows[i]
        src = r.inner_off
        caplen = r.inner_caplen
        if src < 0 or caplen < 0:
            i += 1
            continue
        key = _iface_key(r, split)
        if key != last_key:
            found = -1
            for k in range(known_keys.shape[0]):  # a handful of interfaces
                if known_keys[k] == key:
                    found = k
                    break
            if found < 0:
                return NEW_INTERFACE, i, p, written
            last_key = key
            last_id = known_ids[found]
        if p + EPB_FIXED + caplen + 3 + MAX_OPTIONS > out.shape[0]:
            return OUT_FULL, i, p, written
        start = p
        t = r.ts_ns
        if restore and r.orig_ts != NO_TS:
            t = r.orig_ts
        _put_u32(out, p, 6)  # Enhanced Packet Block
        _put_u32(out, p + 8, last_id)
        _put_u32(out, p + 12, (t >> 32) & 0xFFFFFFFF)
        _put_u32(out, p + 16, t & 0xFFFFFFFF)
        _put_u32(out, p + 20, caplen)
        _put_u32(out, p + 24, r.len)
        q = _put_zeros(out, _put_bytes(out, p + 28, buf, src, caplen))
        if r.direction > 0:  # epb_flags: inbound 01 / outbound 10
            _put_u32(out, q, 2 | (4 << 16))
            _put_u32(out, q + 4, r.direction)
            q += 8
        c = q + 4  # opt_comment text
        e = _put_word(out, c, _TUNNEL_TEXT, _TUNNEL_LEN, r.tunnel)
        e = _put_field(out, e, W_SESSION, r.erspan_session)
        e = _put_field(out, e, W_SEQ, r.gre_seq)
        e = _put_field(out, e, W_VNI, r.vni)
        e = _put_field(out, e, W_VLAN, r.erspan_vlan)
        if r.direction == 1:
            e = _put_word(out, e, _WORD_TEXT, _WORD_LEN, W_INGRESS)
        elif r.direction == 2:
            e = _put_word(out, e, _WORD_TEXT, _WORD_LEN, W_EGRESS)
        if r.erspan_t == 1:
            e = _put_word(out, e, _WORD_TEXT, _WORD_LEN, W_SLICED)
        e = _put_field(out, e, W_HWTS, r.orig_ts)  # none when NO_TS (< 0)
        _put_u32(out, q, 1 | ((e - c) << 16))
        q = _put_zeros(out, e)
        _put_u32(out, q, 0)  # opt_endofopt
        q += 4
        blen = q + 4 - start
        _put_u32(out, start + 4, blen)
        _put_u32(out, q, blen)
        p = q + 4
        written += 1
        i += 1
    return DONE, i, p, written


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
        self._known_keys = np.zeros(0, np.int64)  # interface keys, as build_blocks sees them
        self._known_ids = np.zeros(0, np.int64)
        self._head: list[bytes] = []  # Interface Description Blocks not written yet
        shb = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _option(
            4, f"flowscope {__version__} decap".encode()) + _option(0, b"")
        out.write(_block(0x0A0D0D0A, shb))

    def _describe(self, key: int, row: np.void) -> bytes:
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
        """The batch's decapsulated frames, with one write() of its blocks (after the
        descriptions of the interfaces it is the first to use)."""
        n = rows.shape[0]
        estimate = n * (EPB_FIXED + 3 + MAX_OPTIONS) + int(batch.caplen.sum())
        if self._blocks.shape[0] < estimate:
            self._blocks = np.empty(max(estimate, 2 * self._blocks.shape[0]), np.uint8)
        i = used = written = 0
        while True:
            status, i, used, w = build_blocks(
                batch.buf, rows, i, used, SPLIT_CODES[self.split_by], self.restore_timestamps,
                self._known_keys, self._known_ids, self._blocks)
            written += w
            if status == DONE:
                break
            if status == NEW_INTERFACE:
                self._add_interfaces(rows[i:])
            else:  # OUT_FULL: keep the batch in one buffer (its interfaces precede it)
                grown = np.empty(2 * self._blocks.shape[0], np.uint8)
                grown[:used] = self._blocks[:used]
                self._blocks = grown
        if self._head:
            self.out.write(b"".join(self._head))
            self._head.clear()
        if used:
            self.out.write(self._blocks[:used].data)
        self.written += written
        self.skipped += n - written

    def _add_interfaces(self, rows: np.ndarray) -> None:
        """Number the interfaces first used in rows (in key order) and describe them."""
        index = np.flatnonzero((rows["inner_off"] >= 0) & (rows["inner_caplen"] >= 0))
        link = rows["inner_link"][index].astype(np.int64)
        if self.split_by == "session":
            group = rows["stream"][index].astype(np.int64)
        elif self.split_by == "vni":
            group = rows["vni"][index].astype(np.int64)
        else:
            group = np.zeros(index.shape[0], np.int64)
        keys = (group + 1) << 16 | link
        uniq, first = np.unique(keys, return_index=True)
        for j, key in enumerate(uniq.tolist()):  # once per distinct interface
            pair = (key >> 16, key & 0xFFFF)
            if pair not in self.interfaces:
                self.interfaces[pair] = len(self.interfaces)
                self._head.append(self._describe(key, rows[index[first[j]]]))
        self._known_keys = np.array([(g << 16) | k for g, k in self.interfaces], np.int64)
        self._known_ids = np.array(list(self.interfaces.values()), np.int64)
