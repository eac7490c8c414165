"""A mirror session's encapsulator: its settings, its GRE sequence counter, and the batch of
tunnel payloads it produces.

Sequence numbers run per session (draft-foschiano-erspan-03 §4.1: "increments per packet
per session") from ``first_seq``, over every frame encapsulated, and wrap at 2^32.  A frame
that later fails to send leaves a gap the collector counts as mirror loss, which is what
it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flowscope.batch import PacketBatch
from flowscope.decode.codes import LINKTYPE_ETHERNET, LINKTYPE_RAW
from flowscope.encap import erspan, gre, vxlan
from flowscope.errors import FlowscopeError

ERSPAN2, ERSPAN3, VXLAN = "erspan2", "erspan3", "vxlan"
KINDS = {"2": ERSPAN2, "3": ERSPAN3, "vxlan": VXLAN}  # --type values
HEADER_LEN = {ERSPAN2: erspan.TYPE2_LEN, ERSPAN3: erspan.TYPE3_LEN, VXLAN: vxlan.HEADER_LEN}
# What each encapsulation can carry: ERSPAN II and VXLAN carry Ethernet frames only; Type
# III also raw IP packets (FT=2).
CARRIES = {ERSPAN2: (LINKTYPE_ETHERNET,), ERSPAN3: (LINKTYPE_ETHERNET, LINKTYPE_RAW),
           VXLAN: (LINKTYPE_ETHERNET,)}


@dataclass(frozen=True)
class MirrorSession:
    """What the mirror announces in every header.

    ``session``: ERSPAN session id (0-1023) or VXLAN VNI (0-16777215).  ``port_index``:
    the mirrored port (Type II Index, 20 bits; Type III platform 0x5 Port ID, 16 bits),
    normally the interface's ifindex.  ``hw_id`` (6 bits) and ``switch_id`` (10 bits):
    Type III's hardware and switch ids.
    """

    kind: str = ERSPAN2
    session: int = 1
    port_index: int = 0
    hw_id: int = 0
    switch_id: int = 0

    def __post_init__(self) -> None:
        if self.kind not in HEADER_LEN:
            raise FlowscopeError(f"unknown mirror encapsulation {self.kind!r}; choose "
                                 f"{', '.join(KINDS)}")
        top = vxlan.MAX_VNI if self.kind == VXLAN else erspan.MAX_SESSION
        what = "VXLAN VNI" if self.kind == VXLAN else "ERSPAN session id"
        if not 0 <= self.session <= top:
            raise FlowscopeError(f"{what} {self.session} is out of range (0-{top})")
        if not 0 <= self.port_index:
            raise FlowscopeError(f"port index {self.port_index} is negative")
        if not 0 <= self.hw_id <= erspan.MAX_HW_ID:
            raise FlowscopeError(f"hardware id {self.hw_id} is out of range (0-63)")
        if not 0 <= self.switch_id <= erspan.MAX_SWITCH_ID:
            raise FlowscopeError(f"switch id {self.switch_id} is out of range (0-1023)")

    @property
    def header_len(self) -> int:
        """Bytes added in front of every frame (GRE + ERSPAN, or VXLAN)."""
        return HEADER_LEN[self.kind]


@dataclass(frozen=True, slots=True)
class TunnelBatch:
    """Tunnel payloads back to back in ``buf``: payload i is buf[offset[i]:offset[i]+length[i]].

    ``frame`` and ``seq`` say which input frame each came from and the GRE sequence number
    it carries (-1 for VXLAN)."""

    buf: np.ndarray  # uint8
    offset: np.ndarray  # int64
    length: np.ndarray  # int64
    frame: np.ndarray  # int64
    seq: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.offset.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.length.sum())

    def payload(self, i: int) -> bytes:
        o = int(self.offset[i])
        return self.buf[o : o + int(self.length[i])].tobytes()


class Encapsulator:
    """Wraps batches of captured frames for one mirror session.

    The returned :class:`TunnelBatch` lives in a buffer this object reuses: it is valid
    until the next :meth:`encapsulate` call (send it, or copy it, before then).
    """

    def __init__(self, session: MirrorSession, first_seq: int = 0) -> None:
        self.session = session
        self.next_seq = first_seq % gre.SEQ_MOD
        self.frames = 0  # frames encapsulated
        self.unsupported = 0  # frames whose link type this encapsulation cannot carry
        self._buf = np.empty(1 << 20, np.uint8)

    def encapsulate(self, batch: PacketBatch,
                    direction: np.ndarray | None = None) -> TunnelBatch:
        """Every frame of ``batch`` wrapped; ``direction`` (codes.DIRECTIONS per frame: 1
        ingress, 2 egress, 0 unknown = ingress) sets Type III's D bit."""
        s = self.session
        carried = np.isin(batch.linktype, CARRIES[s.kind])
        if not carried.all():
            self.unsupported += int((~carried).sum())
            keep = np.flatnonzero(carried)
            batch = batch.take(keep)
            if direction is not None:
                direction = direction[keep]
        n = len(batch)
        caplen = batch.caplen.astype(np.int64)
        length = caplen + s.header_len
        out_off = np.zeros(n, np.int64)
        if n > 1:
            np.cumsum(length[:-1], out=out_off[1:])
        total = int(length.sum())
        if total > self._buf.shape[0]:
            self._buf = np.empty(max(total, 2 * self._buf.shape[0]), np.uint8)
        out = self._buf
        seq0 = self.next_seq
        if s.kind == ERSPAN2:
            erspan.encapsulate_type2(batch.buf, batch.offset, caplen, batch.wirelen, out,
                                     out_off, seq0, s.session,
                                     s.port_index & erspan.MAX_INDEX)
        elif s.kind == ERSPAN3:
            d = (np.zeros(n, np.int8) if direction is None
                 else np.ascontiguousarray(direction, np.int8))
            erspan.encapsulate_type3(batch.buf, batch.offset, caplen, batch.wirelen,
                                     batch.linktype, batch.ts_ns, d, out, out_off, seq0,
                                     s.session, s.hw_id, s.switch_id,
                                     s.port_index & erspan.MAX_PORT_ID)
        else:
            vxlan.encapsulate(batch.buf, batch.offset, caplen, out, out_off, s.session)
        if s.kind == VXLAN:
            seq = np.full(n, -1, np.int64)
        else:
            seq = (seq0 + np.arange(n, dtype=np.int64)) % gre.SEQ_MOD
            self.next_seq = (seq0 + n) % gre.SEQ_MOD
        self.frames += n
        return TunnelBatch(out, out_off, length, batch.frame, seq)
