"""Mirror copies: the same packet mirrored twice must count once.

A switch mirroring both the ingress and the egress port of a path (or a VLAN) sends two
copies of one packet, microseconds apart; an ERSPAN session mirroring both directions of a
port marks them with the direction bit.  A real retransmission is a *new* packet: it comes
at least a retransmission timeout or a round trip later and (IPv4) carries a new
identification.  So a packet is a copy when its signature - the header fields that a
retransmission would not reproduce all together (sequence/PSN, acknowledgement, flags,
length, window, IPv4 identification) - matches one of the last ``RING`` packets of its flow
within ``COPY_WINDOW_NS``, or within ``COPY_WINDOW_DIRECTION_NS`` when the two copies carry
opposite ERSPAN direction bits (ingress and egress of the same packet).
"""

from __future__ import annotations

import numpy as np

from flowscope.analyse.flowtable import BASIS_1, mix
from flowscope.jit import njit

RING = 4
COPY_WINDOW_NS = 100_000  # 100 us: switch latency, far below any retransmission timer
COPY_WINDOW_DIRECTION_NS = 10_000_000  # 10 ms when the ERSPAN direction bits differ

# Fields a tracker's state dtype includes to use these helpers.
FIELDS = [
    ("copy_sig", np.uint64, (RING,)), ("copy_ts", np.int64, (RING,)),
    ("copy_dir", np.int8, (RING,)), ("copy_next", np.uint8), ("copies", np.int64),
]


@njit(inline="always", cache=True)
def signature(r, side):  # pragma: no cover - compiled
    h = mix(BASIS_1, side)
    h = mix(h, r.tcp_seq)
    h = mix(h, r.tcp_ack)
    h = mix(h, r.tcp_flags)
    h = mix(h, r.tcp_window)
    h = mix(h, r.payload_len)
    h = mix(h, r.ip_id)
    h = mix(h, r.bth_opcode)
    h = mix(h, r.bth_psn)
    h = mix(h, r.aeth_syndrome)
    h = mix(h, r.icmp_type)
    return h | np.uint64(1)  # 0 marks an empty ring entry


@njit(cache=True)
def is_copy(st, r, side):  # pragma: no cover - compiled
    """True if r repeats a recent packet of this flow; otherwise remember r."""
    sig = signature(r, side)
    for k in range(RING):
        if st.copy_sig[k] == sig:
            dt = r.ts_ns - st.copy_ts[k]
            window = COPY_WINDOW_NS
            if r.direction > 0 and st.copy_dir[k] > 0 and r.direction != st.copy_dir[k]:
                window = COPY_WINDOW_DIRECTION_NS
            if 0 <= dt <= window:
                st.copies += 1
                return True
    k = st.copy_next
    st.copy_sig[k] = sig
    st.copy_ts[k] = r.ts_ns
    st.copy_dir[k] = r.direction
    st.copy_next = (k + 1) % RING
    return False


@njit(inline="always", cache=True)
def mirror_session(r):  # pragma: no cover - compiled
    """The mirror session a packet came in: ERSPAN session id, else VNI, else -1."""
    if r.erspan_type >= 2 or (r.erspan_type == 1 and r.erspan_session >= 0):
        return np.int64(r.erspan_session)
    return np.int64(r.vni)
