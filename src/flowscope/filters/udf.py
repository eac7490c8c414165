"""UDF rules as switches define them: a 16-bit word at (base header + offset), masked, compared.

Switch ACLs match "user-defined fields" that the packet parser locates relative to a header
it found: the base (``l2`` the Ethernet frame, ``l3`` the IP header, ``l4`` the transport
header, ``l5`` the first byte after the transport header), a byte offset from it, and a
16-bit value and mask (Broadcom UDF chunks, Arista ``user-defined field``, Cisco NX-OS
``udf name offset-base``).  A rule is written ``l4+8=0x8100/0xff00``: the word at the UDP
header + 8 (a RoCEv2 BTH's OpCode byte and the byte after it), AND 0xff00, equals 0x8100.
Up to :data:`MAX_RULES` rules are ANDed, as one switch ACL entry would.

The rules look at the mirrored (inner) packet, which is what the switch matched on: the
frame the outermost tunnel carries, or the capture's own frame when it is not tunnelled.
A word that does not lie wholly inside the captured bytes of that frame does not match,
nor does a base the frame lacks (``l2`` of a raw-IP copy, ``l4`` of a non-first IP
fragment, ``l5`` of a protocol whose header length is unknown here).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flowscope.batch import PacketBatch
from flowscope.decode import codes
from flowscope.filters.errors import FilterSyntaxError

BASES = ("l2", "l3", "l4", "l5")
MAX_OFFSET = 126  # a 128-byte window, the reach of common switch parsers
MAX_RULES = 8
WORD_MASK = 0xFFFF

# Length of the transport header before ``l5`` for the protocols whose header is fixed:
# UDP (RFC 768) 8, SCTP common header (RFC 9260 §3.1) 12, ICMP/ICMPv6 (RFC 792/4443) 8.
# TCP's comes from its Data Offset (RFC 9293 §3.1), read from the packet.
FIXED_L4_LEN = {17: 8, 132: 12}
ICMP_LEN = 8
TCP_DATA_OFFSET_BYTE = 12  # high nibble: header length in 32-bit words
IPV4_FRAG_WORD = 6  # flags (3) | fragment offset (13), RFC 791 §3.1
IPV4_FRAG_OFFSET_MASK = 0x1FFF


@dataclass(frozen=True, slots=True)
class UdfRule:
    base: str  # one of BASES
    offset: int  # bytes from the base, 0..MAX_OFFSET
    value: int  # 16 bits
    mask: int = WORD_MASK

    def __str__(self) -> str:
        return f"{self.base}+{self.offset}=0x{self.value:04x}/0x{self.mask:04x}"

    def words(self, frames: FrameBases) -> tuple[np.ndarray, np.ndarray]:
        """The 16-bit word each frame holds here (uint16), and whether it has one."""
        return frames.word_at(frames.base(self.base) + self.offset, frames.base(self.base) >= 0)

    def matches(self, frames: FrameBases) -> np.ndarray:
        word, present = self.words(frames)
        return present & ((word & np.uint16(self.mask)) == np.uint16(self.value))


class FrameBases:
    """Where each base starts in ``batch.buf`` (-1: the frame has none), computed once per
    batch for all rules.  Offsets in the decoded rows are absolute in ``batch.buf``."""

    def __init__(self, batch: PacketBatch, rows: np.ndarray) -> None:
        self.buf = batch.buf
        self.rows = rows
        tunnelled = rows["inner_off"] >= 0
        self.start = np.where(tunnelled, rows["inner_off"], batch.offset).astype(np.int64)
        # The captured bytes of the mirrored frame: up to the copy's end, or the frame's.
        self.end = np.where(tunnelled, rows["inner_off"] + np.maximum(rows["inner_caplen"], 0),
                            batch.offset + batch.caplen).astype(np.int64)
        self.link = np.where(tunnelled, rows["inner_link"], batch.linktype)
        self._bases: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def word_at(self, pos: np.ndarray, present: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """Big-endian 16-bit words at absolute positions; 0 and False beyond the frame."""
        ok = (pos >= self.start) & (pos + 2 <= self.end)
        if present is not None:
            ok &= present
        if self.buf.shape[0] < 2:
            return np.zeros(pos.shape, np.uint16), np.zeros(pos.shape, bool)
        p = np.where(ok, pos, 0)
        word = (self.buf[p].astype(np.uint16) << np.uint16(8)) | self.buf[p + 1]
        word[~ok] = 0
        return word, ok

    def base(self, name: str) -> np.ndarray:
        got = self._bases.get(name)
        if got is None:
            got = self._bases[name] = getattr(self, f"_{name}")()
        return got

    def _l2(self) -> np.ndarray:
        return np.where(self.link == codes.LINKTYPE_ETHERNET, self.start, -1)

    def _l3(self) -> np.ndarray:
        return np.asarray(self.rows["l3_off"], np.int64)

    def _l4(self) -> np.ndarray:
        """The transport header, absent in a non-first fragment (it is in the first one)."""
        rows = self.rows
        l4 = np.asarray(rows["l4_off"], np.int64)
        v4 = rows["ipver"] == 4
        frag, ok = self.word_at(np.asarray(rows["l3_off"], np.int64) + IPV4_FRAG_WORD, v4)
        later = ok & ((frag & IPV4_FRAG_OFFSET_MASK) != 0)
        # IPv6: the decoder stops at a Fragment header with a non-zero offset, leaving the
        # IPv6 layer last although the next header is a transport it would have decoded.
        n = rows.shape[0]
        last = rows["encap"][np.arange(n), np.maximum(rows["n_layers"].astype(np.int64) - 1, 0)]
        later |= ((rows["ipver"] == 6) & ((rows["quirks"] & codes.Q_IP_FRAGMENT) != 0)
                  & (rows["error"] == 0) & (last == codes.L_IPV6)
                  & np.isin(rows["proto"], (6, 17, 1, 58, 132)))
        return np.where(later, -1, l4)

    def _l5(self) -> np.ndarray:
        rows = self.rows
        l4 = self.base("l4")
        proto = rows["proto"]
        hlen = np.full(l4.shape, -1, np.int64)
        for number, length in FIXED_L4_LEN.items():
            hlen[proto == number] = length
        ipver = rows["ipver"]
        hlen[((proto == 1) & (ipver == 4)) | ((proto == 58) & (ipver == 6))] = ICMP_LEN
        tcp = (proto == 6) & (l4 >= 0)
        word, ok = self.word_at(l4 + TCP_DATA_OFFSET_BYTE, tcp)
        doff = (word >> np.uint16(12)).astype(np.int64) * 4
        hlen[tcp] = np.where(ok[tcp] & (doff[tcp] >= 20), doff[tcp], -1)
        return np.where((l4 >= 0) & (hlen >= 0), l4 + hlen, -1)


def match_rules(rules: Sequence[UdfRule], frames: FrameBases) -> np.ndarray:
    """All rules ANDed (True for every frame when there are none)."""
    out = np.ones(len(frames), bool)
    for rule in rules:
        out &= rule.matches(frames)
    return out


# -- parsing -------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<word>[A-Za-z0-9_]+)|(?P<op>\S))")


def _number(text: str) -> int | None:
    t = text.lower()
    if re.fullmatch(r"0x[0-9a-f]+", t):
        return int(t, 16)
    if re.fullmatch(r"[0-9]+", t):
        return int(t)
    return None


def parse_rule(text: str) -> UdfRule:
    """``BASE+OFFSET=VALUE[/MASK]``, numbers decimal or 0x-hex, spaces allowed between parts."""
    tokens = [(m.group("word") or m.group("op"), m.start(m.lastgroup or 0) + 1)
              for m in _TOKEN.finditer(text)]
    end = len(text) + 1
    it = iter(tokens)

    def fail(problem: str, at: tuple[str, int] | None) -> FilterSyntaxError:
        return FilterSyntaxError("udf", problem, text, at[1] if at else end,
                                 len(at[0]) if at else 1)

    def expect_op(op: str, after: str) -> None:
        tok = next(it, None)
        if tok is None or tok[0] != op:
            raise fail(f"expected '{op}' after {after}", tok)

    def number(what: str, after: str, limit: int) -> tuple[int, tuple[str, int]]:
        tok = next(it, None)
        value = _number(tok[0]) if tok else None
        if tok is None or value is None:
            raise fail(f"expected {what} after '{after}'", tok)
        if value > limit:
            bound = f"0-{limit:#x}" if limit == WORD_MASK else f"0-{limit}"
            raise fail(f"{what.split(' ', 1)[1]} {tok[0]} is out of range {bound}", tok)
        return value, tok

    if not text.strip():
        raise fail("empty rule; write BASE+OFFSET=VALUE/MASK, e.g. l4+8=0x8100/0xff00", None)
    tok = next(it, None)
    assert tok is not None
    if tok[0].lower() not in BASES:
        raise fail(f"unknown base '{tok[0]}' (use l2, l3, l4 or l5)", tok)
    base = tok[0].lower()
    expect_op("+", f"the base '{tok[0]}'")
    offset, _ = number("an offset", "+", MAX_OFFSET)
    expect_op("=", "the offset")
    value, value_tok = number("a 16-bit value", "=", WORD_MASK)
    mask = WORD_MASK
    tok = next(it, None)
    if tok is not None:
        if tok[0] != "/":
            raise fail("expected '/' and a mask, or the end of the rule", tok)
        mask, _ = number("a 16-bit mask", "/", WORD_MASK)
        tok = next(it, None)
        if tok is not None:
            raise fail("unexpected text after the rule", tok)
    if value & ~mask:
        raise fail(f"value {value:#06x} has bits outside mask {mask:#06x}, so it can never "
                   "match", value_tok)
    return UdfRule(base, offset, value, mask)


def parse_rules(texts: Sequence[str]) -> tuple[UdfRule, ...]:
    rules = tuple(parse_rule(t) for t in texts)
    if len(rules) > MAX_RULES:
        raise FilterSyntaxError("udf", f"{len(rules)} rules given; a switch ANDs at most "
                                f"{MAX_RULES}", texts[MAX_RULES], 1, len(texts[MAX_RULES]))
    return rules
