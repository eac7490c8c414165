"""RoCEv2 queue-pair health, one flow per (mirror session, source, destination, DestQP).

Wire format: :mod:`flowscope.decode.roce` (IBTA Vol. 1 §9.2 BTH, §9.3.5 AETH, Annex A17).
Only UDP destination port 4791 is RoCEv2; the source port is entropy and not part of the key.

A *request flow* carries requests (SEND, RDMA WRITE/READ request, atomics) with PSNs that
advance by one per packet modulo 2^24.  Per request flow:

- a forward PSN jump is a *gap* (``psn_gaps`` events, ``missing`` PSNs): packets lost
  before the mirror point, or by the mirror itself when its GRE sequence had a gap too;
- a PSN at or behind the highest seen is a *duplicate* (retransmitted); the first one after
  forward progress starts a *go-back-N burst* (``gbn_bursts``);
- ``messages`` counts packets that end a message (``*_LAST``, ``*_ONLY``, read requests,
  atomics).

A *response flow* (the reverse direction, DestQP = the requester's QP) carries ACKs, NAKs
(AETH syndrome) and read responses; it is paired with the request flow whose PSN range its
first ACKs fall in, which gives request-to-ACK latency.  CNPs (opcode 0x81) travel the
reverse way too, addressed to the QP of the congested flow's *sender*, so the pairing also
says which flow a CNP throttles.  Rows are merged after the run (:mod:`flowscope.analyse.qp_table`).
"""

from __future__ import annotations

import numpy as np

from flowscope.analyse import copies
from flowscope.analyse.flowtable import BASIS_1, BASIS_2, find, insert, mix, mix_addr
from flowscope.decode import roce
from flowscope.jit import njit

PSN_HALF = roce.PSN_MOD // 2
LATENCY_RING = 32  # recent request PSNs remembered per flow, for request-to-ACK latency
PAIRING_TRIES = 8  # ACKs of an unpaired response flow that look for their request flow
N_NAK = 6  # psn_seq_err, invalid_req, remote_access, remote_op, invalid_rd, rnr

# events column bits, shared with the TCP tracker
EV_NEW, EV_RETRANS, EV_CNP, EV_NAK, EV_CE, EV_COPY = 1, 2, 4, 8, 16, 32

QP_STATE = np.dtype([
    ("key", np.uint64, (2,)),  # this flow's key hashes (peers refer to each other by them)
    ("mirror_session", np.int64), ("ipver", np.uint8),
    ("src", np.uint8, (16,)), ("dst", np.uint8, (16,)), ("dest_qp", np.int64),
    ("first_ts", np.int64), ("last_ts", np.int64),
    ("pkts", np.int64), ("bytes", np.int64), ("sliced", np.int64),
    ("opcodes", np.uint8, (32,)),  # bitmap of opcodes seen
    ("requests", np.int64), ("responses", np.int64), ("cnp", np.int64),
    ("messages", np.int64), ("psn_first", np.int64), ("psn_max", np.int64),
    ("psn_gaps", np.int64), ("missing", np.int64), ("mirror_gap_psn_gaps", np.int64),
    ("duplicates", np.int64), ("gbn_bursts", np.int64), ("in_burst", np.uint8),
    ("recovered", np.int64), ("seen", np.uint64),  # PSNs psn_max-63..psn_max received
    ("acks", np.int64), ("nak", np.int64, (N_NAK,)),
    ("ack_psn_min", np.int64), ("ack_psn_max", np.int64),
    ("ce_marked", np.int64), ("ect_pkts", np.int64), ("fecn", np.int64),
    ("last_mirror_gaps", np.int64),
    ("peer", np.uint64, (2,)), ("paired", np.uint8), ("pair_tries", np.int64),
    ("ring_psn", np.int64, (LATENCY_RING,)), ("ring_ts", np.int64, (LATENCY_RING,)),
    ("ring_next", np.int64),
    ("lat_n", np.int64), ("lat_sum", np.int64), ("lat_max", np.int64),
    *copies.FIELDS,
])


@njit(inline="always", cache=True)
def _psn_diff(a, b):  # pragma: no cover - compiled
    """a - b on the 24-bit PSN circle, in [-2^23, 2^23)."""
    d = (a - b) % roce.PSN_MOD
    return d - roce.PSN_MOD if d >= PSN_HALF else d


@njit(inline="always", cache=True)
def _hashes(r, src, dst, qp):  # pragma: no cover - compiled
    ms = copies.mirror_session(r)
    h1 = mix(mix_addr(mix(mix(BASIS_1, ms), r.ipver), src), qp)
    h1 = mix_addr(h1, dst)
    h2 = mix(mix_addr(mix(mix(BASIS_2, qp), r.ipver), dst), ms)
    h2 = mix_addr(h2, src)
    return h1, h2


@njit(cache=True)
def _flow(r, slots, hashes, state, used):  # pragma: no cover - compiled
    qp = np.int64(r.bth_qp)
    h1, h2 = _hashes(r, r.src, r.dst, qp)
    j = find(slots, hashes, h1, h2)
    if j >= 0:
        return j, False
    j = insert(slots, hashes, used, j, h1, h2)
    st = state[j]
    st.key[0] = h1
    st.key[1] = h2
    st.mirror_session = copies.mirror_session(r)
    st.ipver = r.ipver
    for k in range(16):
        st.src[k] = r.src[k]
        st.dst[k] = r.dst[k]
    st.dest_qp = qp
    st.first_ts = r.ts_ns
    st.psn_first = -1
    st.psn_max = -1
    st.ack_psn_min = -1
    st.ack_psn_max = -1
    st.last_mirror_gaps = r.mirror_gaps
    return j, True


@njit(cache=True)
def _pair(j, st, r, slots, hashes, state, n):  # pragma: no cover - compiled
    """Find the request flow this response flow answers: reverse addresses, same mirror
    session, the ACK's PSN inside its request PSN range."""
    st.pair_tries += 1
    for k in range(n):
        q = state[k]
        if k == j or q.requests == 0 or q.paired or q.ipver != st.ipver:
            continue
        if q.mirror_session != st.mirror_session:
            continue
        same = True
        for b in range(16):
            if q.src[b] != st.dst[b] or q.dst[b] != st.src[b]:
                same = False
                break
        if not same:
            continue
        if _psn_diff(r.bth_psn, q.psn_first) >= 0 and _psn_diff(q.psn_max, r.bth_psn) >= 0:
            st.paired = 1
            q.paired = 1
            st.peer[0] = hashes[k, 0]
            st.peer[1] = hashes[k, 1]
            q.peer[0] = hashes[j, 0]
            q.peer[1] = hashes[j, 1]
            return


@njit(cache=True)
def _request(st, r, events, i):  # pragma: no cover - compiled
    psn = np.int64(r.bth_psn)
    st.requests += 1
    first_time = True
    if st.psn_max < 0:
        st.psn_first = psn
        st.psn_max = psn
        st.seen = np.uint64(1)
    else:
        d = _psn_diff(psn, st.psn_max)
        if d > 0:
            if d > 1:
                st.psn_gaps += 1
                st.missing += d - 1
                if r.mirror_gaps > st.last_mirror_gaps >= 0:
                    st.mirror_gap_psn_gaps += 1
            st.seen = ((st.seen << np.uint64(d)) | np.uint64(1)) if d < 64 else np.uint64(1)
            st.psn_max = psn
            st.in_burst = 0
        else:
            # behind the newest: a retransmission; a duplicate unless it fills a gap
            back = -d
            bit = np.uint64(1) << np.uint64(back) if back < 64 else np.uint64(0)
            if back < 64 and not st.seen & bit:
                st.seen |= bit
                st.recovered += 1
            else:
                st.duplicates += 1
                first_time = False
            events[i] |= EV_RETRANS
            if not st.in_burst:
                st.gbn_bursts += 1
                st.in_burst = 1
    if first_time and (r.bth_opcode & 0x1F) in roce.MESSAGE_END_OPERATIONS:
        st.messages += 1
    k = st.ring_next % LATENCY_RING
    st.ring_psn[k] = psn
    st.ring_ts[k] = r.ts_ns
    st.ring_next += 1


@njit(cache=True)
def _response(j, st, r, slots, hashes, state, n, events, i):  # pragma: no cover - compiled
    st.responses += 1
    syn = r.aeth_syndrome
    if syn >= 0:
        kind = syn >> 5
        psn = np.int64(r.bth_psn)
        if kind == roce.SYNDROME_ACK:
            st.acks += 1
        elif kind == roce.SYNDROME_RNR:
            st.nak[5] += 1
            events[i] |= EV_NAK
        elif kind == roce.SYNDROME_NAK:
            code = syn & 0x1F
            if code < 5:
                st.nak[code] += 1
            events[i] |= EV_NAK
        if st.ack_psn_min < 0:
            st.ack_psn_min = psn
        st.ack_psn_max = psn
        if not st.paired and st.pair_tries < PAIRING_TRIES:
            _pair(j, st, r, slots, hashes, state, n)
        if st.paired and kind == roce.SYNDROME_ACK:
            q = find(slots, hashes, st.peer[0], st.peer[1])
            if q >= 0:
                req = state[q]
                for k in range(LATENCY_RING):
                    if req.ring_psn[k] == psn and req.ring_ts[k] > 0:
                        lat = r.ts_ns - req.ring_ts[k]
                        req.lat_n += 1
                        req.lat_sum += lat
                        req.lat_max = max(req.lat_max, lat)
                        req.ring_ts[k] = 0  # one latency sample per request
                        break


@njit(cache=True)
def track(rows, slots, hashes, state, used, events):  # pragma: no cover - compiled
    """Account every RoCEv2 row (UDP destination port 4791) of a batch, in time order."""
    for i in range(rows.shape[0]):
        r = rows[i]
        if r.proto != 17 or r.dport != roce.UDP_PORT or r.error != 0:
            continue
        j, new = _flow(r, slots, hashes, state, used)
        st = state[j]
        op = r.bth_opcode
        if new and (op < 0 or (op != roce.CNP and (op & 0x1F) not in roce.RESPONSE_OPERATIONS)):
            events[i] |= EV_NEW  # a session starts with a request; responses join it
        if copies.is_copy(st, r, 0):
            events[i] |= EV_COPY
            continue
        st.pkts += 1
        st.bytes += r.payload_len
        st.last_ts = r.ts_ns
        if r.ecn > 0:
            st.ect_pkts += 1
            if r.ecn == 3:
                st.ce_marked += 1
                events[i] |= EV_CE
        if op < 0:
            st.sliced += 1  # the copy ends before the BTH
        else:
            st.opcodes[op >> 3] |= np.uint8(1 << (op & 7))
            if r.bth_flags & roce.F_FECN:
                st.fecn += 1
            if op == roce.CNP:
                st.cnp += 1
                events[i] |= EV_CNP
            elif (op & 0x1F) in roce.RESPONSE_OPERATIONS and (op >> 5) != 3:
                _response(j, st, r, slots, hashes, state, used[0], events, i)
            else:
                _request(st, r, events, i)
        if r.mirror_gaps >= 0:
            st.last_mirror_gaps = r.mirror_gaps
