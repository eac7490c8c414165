"""Connections (TCP, UDP, ICMP, other IP): Zeek's states and history, Wireshark's analysis.

One compiled pass over each batch, in capture-time order.  Every packet finds its
connection in a :class:`~flowscope.analyse.flowtable.FlowStore` (key: mirror session, the
two addresses and ports sorted, protocol) and moves that connection's state:

- **Zeek** (``src/packet_analysis/protocol/tcp/TCPSessionAdapter.cc``,
  ``TCP_Endpoint.cc``, ``scripts/base/protocols/conn/main.zeek``): the endpoint state
  machine (INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET) from
  ``UpdateStateMachine``, history letters from ``update_history`` / ``CheckHistory``
  (once per direction; S/H/F/R again when their sequence number changes) and
  ``ScaledHistoryEntry`` (t, w, g at 1, 10, 100, ... occurrences), and the sequence-based
  payload size of ``TCP_Endpoint::Size``.  ``conn_state`` itself is computed after the run
  from the two endpoint states (:mod:`flowscope.analyse.verdicts`).
- **Wireshark** (``epan/dissectors/packet-tcp.c``, ``tcp_analyze_sequence_number``):
  zero window, previous segment not captured, keep-alive, duplicate ACK, fast / spurious
  retransmission, out-of-order and retransmission, with relative sequence numbers.

The originator is the SYN sender: a connection whose first packet is a SYN-ACK starts
flipped; one seen without any SYN gets the side with the ephemeral-looking port as
originator, and says so.
"""

from __future__ import annotations

import numpy as np

from flowscope.analyse import copies
from flowscope.analyse.flowtable import BASIS_1, BASIS_2, find, insert, mix, mix_addr
from flowscope.analyse.qp import EV_COPY, EV_NEW, EV_RETRANS
from flowscope.decode import roce
from flowscope.jit import njit

# Zeek TCP endpoint states (init-bare.zeek: TCP_INACTIVE = 0 ... TCP_RESET = 6).
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)
# UDP/ICMP/other endpoints: active once they have sent.
KIND_TCP, KIND_UDP, KIND_ICMP, KIND_OTHER = 1, 2, 3, 4

FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16

# History letters (main.zeek, "history"), upper case = originator.  Index = bit in the
# once-per-direction mask; the three scaled ones keep counters instead.
H_SYN, H_SYNACK, H_ACK, H_DATA, H_FIN, H_RST, H_MULTI, H_FINRST = range(8)
HISTORY_LETTERS = "SHADFRQI"
HISTORY_LEN = 40

# Origin guesses, for evidence.
ORIG_SYN, ORIG_SYNACK, ORIG_PORTS, ORIG_FIRST = 0, 1, 2, 3

OOO_THRESHOLD_NS = 3_000_000  # Wireshark: 3 ms until the first RTT is known
FAST_RETRANS_NS = 20_000_000  # within 20 ms of the last duplicate ACK
SEQ_MOD = 1 << 32
TOO_LARGE_SEQ_DELTA = 1048576  # Zeek TCP_Endpoint.h

CONN_STATE = np.dtype([
    # key
    ("mirror_session", np.int64), ("kind", np.uint8), ("proto", np.int16), ("ipver", np.uint8),
    ("addr", np.uint8, (2, 16)), ("port", np.int32, (2,)),  # [0] originator, [1] responder
    ("orig_guess", np.uint8),
    # both kinds
    ("first_ts", np.int64), ("last_ts", np.int64),  # last_ts: any packet (idle flush)
    ("end_ts", np.int64),  # Zeek's last_time: not moved once both sides closed (duration)
    ("pkts", np.int64, (2,)), ("payload", np.int64, (2,)), ("ip_bytes", np.int64, (2,)),
    ("sliced", np.int64), ("cut", np.int64), ("truncated_t", np.int64),
    ("mirror_gaps_seen", np.int64),  # GRE gaps of the mirror stream during the connection
    ("mirror_gaps_last", np.int64),
    # Zeek endpoints
    ("state", np.uint8, (2,)), ("prev_state", np.uint8, (2,)),
    ("start_seq", np.int64, (2,)), ("last_seq", np.int64, (2,)),  # 64-bit unwrapped, absolute
    ("ack_seq", np.int64, (2,)),  # highest ack the peer sent for this endpoint's data
    ("seq_known", np.uint8, (2,)), ("fin_cnt", np.int64, (2,)),
    ("hist_last_syn", np.int64, (2,)), ("hist_last_fin", np.int64, (2,)),
    ("hist_last_rst", np.int64, (2,)),
    ("hist_seen", np.uint32), ("history", np.uint8, (HISTORY_LEN,)), ("hist_len", np.uint8),
    ("rxmt_cnt", np.int64, (2,)), ("rxmt_thr", np.int64, (2,)),
    ("win0_cnt", np.int64, (2,)), ("win0_thr", np.int64, (2,)),
    ("gap_cnt", np.int64, (2,)), ("gap_thr", np.int64, (2,)),
    ("did_close", np.uint8, (2,)), ("gap_end", np.int64, (2,)),
    # Wireshark per-direction analysis (relative sequence numbers, 0 = unset)
    ("ws_base", np.int64, (2,)), ("ws_base_set", np.uint8, (2,)),
    ("ws_nextseq", np.int64, (2,)), ("ws_nextseq_ts", np.int64, (2,)),
    ("ws_lastack", np.int64, (2,)), ("ws_lastack_ts", np.int64, (2,)),
    ("ws_window", np.int64, (2,)),
    ("ws_dupacknum", np.int64, (2,)), ("ws_segflags", np.uint8, (2,)),
    ("ws_maxseq", np.int64, (2,)),  # maxseqtobeacked
    ("ws_first_rtt", np.int64), ("ws_mru_syn", np.int64),
    ("retrans", np.int64, (2,)), ("out_of_order", np.int64, (2,)),
    ("dup_acks", np.int64, (2,)), ("zero_window", np.int64, (2,)),
    ("holes", np.int64, (2,)), ("mirror_holes", np.int64, (2,)), ("missed", np.int64, (2,)),
    # handshake timing and resets
    ("syn_ts", np.int64), ("syns", np.int64), ("synack_ts", np.int64), ("ack_ts", np.int64),
    ("reset_by", np.int8), ("rst_ts", np.int64),
    *copies.FIELDS,
])


@njit(inline="always", cache=True)
def _seq_delta(a, b):  # pragma: no cover - compiled
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d >= SEQ_MOD // 2 else d


@njit(inline="always", cache=True)
def _addr_less(r, sp, dp):  # pragma: no cover - compiled
    """Is (src, sp) the smaller side of the packet's canonical key?"""
    for k in range(16):
        if r.src[k] != r.dst[k]:
            return r.src[k] < r.dst[k]
    return sp <= dp


@njit(inline="always", cache=True)
def _kind(proto):  # pragma: no cover - compiled
    if proto == 6:
        return KIND_TCP
    if proto == 17:
        return KIND_UDP
    if proto == 1 or proto == 58:
        return KIND_ICMP
    return KIND_OTHER


# ICMP request/reply counterparts (Zeek ICMP4_counterpart / ICMP6_counterpart): a request
# and its reply share a connection; other messages are one-way, keyed by their code.
ICMP4_PAIRS = ((8, 0), (13, 14), (15, 16), (17, 18), (10, 9))
ICMP6_PAIRS = ((128, 129), (133, 134), (135, 136), (130, 131), (139, 140), (144, 145),
               (146, 147))


@njit(cache=True)
def _icmp_ports(r):  # pragma: no cover - compiled
    """(this message's type, its counterpart type or its code, is it a reply)."""
    t = np.int64(r.icmp_type)
    if r.proto == 1:
        for request, reply in ICMP4_PAIRS:
            if t == request:
                return t, np.int64(reply), False
            if t == reply:
                return t, np.int64(request), True
    else:
        for request, reply in ICMP6_PAIRS:
            if t == request:
                return t, np.int64(reply), False
            if t == reply:
                return t, np.int64(request), True
    return t, np.int64(r.icmp_code), False


@njit(inline="always", cache=True)
def _ports(r, kind):  # pragma: no cover - compiled
    if kind == KIND_TCP or kind == KIND_UDP:
        return np.int64(r.sport), np.int64(r.dport)
    if kind == KIND_ICMP:
        t, other, _ = _icmp_ports(r)
        return t, other
    return np.int64(0), np.int64(0)


@njit(inline="always", cache=True)
def _hashes(r, kind):  # pragma: no cover - compiled
    """Direction-independent key hashes: the smaller (address, port) side first."""
    sp, dp = _ports(r, kind)
    ms = copies.mirror_session(r)
    if _addr_less(r, sp, dp):
        a, b, pa, pb = r.src, r.dst, sp, dp
    else:
        a, b, pa, pb = r.dst, r.src, dp, sp
    h1 = mix(mix(mix(BASIS_1, ms), r.proto), r.ipver)
    h1 = mix(mix(mix_addr(mix_addr(h1, a), b), pa), pb)
    h2 = mix(mix(BASIS_2, pb), pa)
    h2 = mix(mix(mix_addr(mix_addr(h2, b), a), r.proto), ms)
    return h1, h2


@njit(inline="always", cache=True)
def _ephemeral(port):  # pragma: no cover - compiled
    """Client-looking ports: the IANA and Linux ephemeral ranges."""
    return port >= 32768


@njit(cache=True)
def _originator_is_src(r, kind):  # pragma: no cover - compiled
    """Who originates a new connection, and how we know (ORIG_*)."""
    if kind == KIND_TCP and r.tcp_flags >= 0:
        syn = (r.tcp_flags & SYN) != 0
        ack = (r.tcp_flags & ACK) != 0
        if syn and not ack:
            return True, ORIG_SYN
        if syn and ack:
            return False, ORIG_SYNACK
    if kind == KIND_ICMP:
        _, _, reply = _icmp_ports(r)
        return not reply, ORIG_FIRST
    if kind == KIND_TCP or kind == KIND_UDP:
        if r.sport < 1024 <= r.dport or (_ephemeral(r.dport) and not _ephemeral(r.sport)
                                         and r.dport >= 1024):
            return False, ORIG_PORTS
        if r.dport < 1024 <= r.sport or (_ephemeral(r.sport) and not _ephemeral(r.dport)
                                         and r.sport >= 1024):
            return True, ORIG_PORTS if kind == KIND_TCP else ORIG_FIRST
    return True, ORIG_FIRST


@njit(cache=True)
def _new_conn(st, r, kind, now):  # pragma: no cover - compiled
    src_is_orig, how = _originator_is_src(r, kind)
    if not src_is_orig and kind != KIND_ICMP:
        _add_history(st, ord("^"), 0)  # Zeek FlipRoles at creation: '^' comes first
    st.mirror_session = copies.mirror_session(r)
    st.kind = kind
    st.proto = r.proto
    st.ipver = r.ipver
    st.orig_guess = how
    for k in range(16):
        st.addr[0, k] = r.src[k] if src_is_orig else r.dst[k]
        st.addr[1, k] = r.dst[k] if src_is_orig else r.src[k]
    sp, dp = _ports(r, kind)
    st.port[0] = sp if src_is_orig else dp
    st.port[1] = dp if src_is_orig else sp
    st.first_ts = now
    st.mirror_gaps_last = r.mirror_gaps
    for d in range(2):
        st.rxmt_thr[d] = 1
        st.win0_thr[d] = 1
        st.gap_thr[d] = 1
        st.hist_last_syn[d] = -1
        st.hist_last_fin[d] = -1
        st.hist_last_rst[d] = -1
    st.syn_ts = -1
    st.synack_ts = -1
    st.ack_ts = -1
    st.reset_by = -1
    st.rst_ts = -1
    st.ws_mru_syn = -1


@njit(inline="always", cache=True)
def _side(st, r):  # pragma: no cover - compiled
    """0 if the packet comes from the originator, 1 from the responder."""
    for k in range(16):
        if r.src[k] != st.addr[0, k]:
            return 1
    for k in range(16):
        if r.dst[k] != st.addr[1, k]:
            return 1
    sp, _ = _ports(r, st.kind)
    return 0 if sp == st.port[0] else 1


# ---------------------------------------------------------------------------- history


@njit(inline="always", cache=True)
def _add_history(st, letter, side):  # pragma: no cover - compiled
    if st.hist_len < HISTORY_LEN:
        st.history[st.hist_len] = letter + (32 if side else 0)  # lower case for the responder
        st.hist_len += 1


@njit(inline="always", cache=True)
def _check_history(st, which, side):  # pragma: no cover - compiled
    """Zeek Connection::CheckHistory: record the letter the first time; True if seen before."""
    bit = np.uint32(1) << np.uint32(which + 16 * side)
    if st.hist_seen & bit:
        return True
    st.hist_seen |= bit
    _add_history(st, ord(HISTORY_LETTERS[which]), side)
    return False


@njit(inline="always", cache=True)
def _scaled(st, counter, threshold, letter, side):  # pragma: no cover - compiled
    """Zeek Connection::ScaledHistoryEntry: the letter at 1, 10, 100, ... occurrences."""
    counter[side] += 1
    if counter[side] == threshold[side]:
        _add_history(st, letter, side)
        threshold[side] *= 10


@njit(cache=True)
def _update_history(st, flags, side, rel_seq, length):  # pragma: no cover - compiled
    """Zeek update_history (TCPSessionAdapter.cc)."""
    syn = (flags & SYN) != 0
    fin = (flags & FIN) != 0
    rst = (flags & RST) != 0
    bits = np.int64(syn) + np.int64(fin) + np.int64(rst)
    if bits > 1:
        if fin and rst:
            _check_history(st, H_FINRST, side)
        else:
            _check_history(st, H_MULTI, side)
    elif bits == 1:
        if syn:
            which = H_SYNACK if flags & ACK else H_SYN
            if _check_history(st, which, side) and rel_seq != st.hist_last_syn[side]:
                _add_history(st, ord(HISTORY_LETTERS[which]), side)
            st.hist_last_syn[side] = rel_seq
        if fin:
            if _check_history(st, H_FIN, side) and rel_seq + length != st.hist_last_fin[side]:
                _add_history(st, ord("F"), side)
            st.hist_last_fin[side] = rel_seq + length
        if rst:
            if _check_history(st, H_RST, side) and rel_seq != st.hist_last_rst[side]:
                _add_history(st, ord("R"), side)
            st.hist_last_rst[side] = rel_seq
    else:
        if length:
            _check_history(st, H_DATA, side)
        elif flags & ACK:
            _check_history(st, H_ACK, side)


# ------------------------------------------------------------------- Zeek state machine


@njit(inline="always", cache=True)
def _set_state(st, side, state):  # pragma: no cover - compiled
    st.prev_state[side] = st.state[side]
    st.state[side] = state


@njit(inline="always", cache=True)
def _swap(a):  # pragma: no cover - compiled
    t = a[0]
    a[0] = a[1]
    a[1] = t


@njit(inline="always", cache=True)
def _close(st, side, state):  # pragma: no cover - compiled
    """FIN or RST: the endpoint's new state, and Zeek's did_close (ConnectionClosed)."""
    _set_state(st, side, state)
    st.did_close[side] = 1


@njit(cache=True)
def _flip(st):  # pragma: no cover - compiled
    """Zeek Connection::FlipRoles: swap originator and responder; history gets '^'."""
    for k in range(16):
        t = st.addr[0, k]
        st.addr[0, k] = st.addr[1, k]
        st.addr[1, k] = t
    _swap(st.port)
    _swap(st.pkts)
    _swap(st.payload)
    _swap(st.ip_bytes)
    _swap(st.state)
    _swap(st.prev_state)
    _swap(st.start_seq)
    _swap(st.last_seq)
    _swap(st.ack_seq)
    _swap(st.seq_known)
    _swap(st.fin_cnt)
    _swap(st.hist_last_syn)
    _swap(st.hist_last_fin)
    _swap(st.hist_last_rst)
    _swap(st.rxmt_cnt)
    _swap(st.rxmt_thr)
    _swap(st.win0_cnt)
    _swap(st.win0_thr)
    _swap(st.gap_cnt)
    _swap(st.gap_thr)
    _swap(st.did_close)
    _swap(st.gap_end)
    _swap(st.ws_base)
    _swap(st.ws_base_set)
    _swap(st.ws_nextseq)
    _swap(st.ws_nextseq_ts)
    _swap(st.ws_lastack)
    _swap(st.ws_lastack_ts)
    _swap(st.ws_window)
    _swap(st.ws_dupacknum)
    _swap(st.ws_segflags)
    _swap(st.ws_maxseq)
    _swap(st.retrans)
    _swap(st.out_of_order)
    _swap(st.dup_acks)
    _swap(st.zero_window)
    _swap(st.holes)
    _swap(st.mirror_holes)
    _swap(st.missed)
    seen = st.hist_seen
    st.hist_seen = ((seen & np.uint32(0xFFFF)) << np.uint32(16)) | (seen >> np.uint32(16))
    if st.reset_by >= 0:
        st.reset_by = 1 - st.reset_by
    _add_history(st, ord("^"), 0)


@njit(cache=True)
def _state_machine(st, side, flags, length, base_seq, delta_last):  # pragma: no cover
    """Zeek TCPSessionAdapter::UpdateStateMachine and its Update*State helpers."""
    peer = 1 - side
    syn = (flags & SYN) != 0
    fin = (flags & FIN) != 0
    rst = (flags & RST) != 0
    ack = (flags & ACK) != 0
    state = st.state[side]
    if state == INACTIVE:
        if syn:
            if side == 0:
                _set_state(st, side, SYN_ACK_SENT if ack else SYN_SENT)
            else:
                if not ack and st.state[peer] == SYN_ACK_SENT \
                        and base_seq == st.start_seq[side]:
                    _flip(st)  # SYN/SYN-ACK reversal (Zeek IsReuse discussion)
                    side, peer = peer, side
                    _set_state(st, peer, ESTABLISHED)
                if st.state[peer] == SYN_SENT:
                    _set_state(st, peer, ESTABLISHED)
                _set_state(st, side, ESTABLISHED)
        if fin:
            _close(st, side, CLOSED)
        if rst:
            _close(st, side, RESET)
        if st.state[side] == INACTIVE:
            if side == 1 and length == 0 and st.state[0] == SYN_SENT:
                pass  # an ACK before the SYN-ACK: not a partial connection
            elif ack and st.state[peer] == ESTABLISHED:
                _set_state(st, side, ESTABLISHED)
            else:
                _set_state(st, side, PARTIAL)
    elif state == SYN_SENT or state == SYN_ACK_SENT:
        if fin:
            _close(st, side, CLOSED)
        if rst:
            _close(st, side, RESET)
    elif state == ESTABLISHED or state == PARTIAL:
        if syn and state == PARTIAL and st.state[peer] == INACTIVE and not ack:
            _set_state(st, side, SYN_SENT)
        if fin and not rst:
            _close(st, side, CLOSED)
            if st.state[peer] == RESET and st.prev_state[peer] == CLOSED:
                _set_state(st, peer, CLOSED)  # the peer's FIN then RST: normal termination
        if rst:
            _close(st, side, RESET)
    elif state == CLOSED:
        if rst and st.state[peer] != CLOSED:
            _set_state(st, side, RESET)
    return side


# ------------------------------------------------------------- Wireshark TCP analysis


@njit(inline="always", cache=True)
def _gt(a, b):  # pragma: no cover - compiled
    return _seq_delta(a, b) > 0


KA, ZWP = 1, 2  # lastsegmentflags bits: keep-alive, zero-window probe
U32 = 0xFFFFFFFF


@njit(inline="always", cache=True)
def _lt(a, b):  # pragma: no cover - compiled
    return _seq_delta(a, b) < 0


@njit(cache=True)
def _wireshark(st, r, side, flags, seglen, now, events, i):  # pragma: no cover - compiled
    """tcp_analyze_sequence_number (packet-tcp.c, Wireshark 4.0), in its order.  Raw
    (absolute) sequence numbers; 0 means "unset", as in Wireshark."""
    peer = 1 - side
    seq = np.int64(r.tcp_seq)
    ack = np.int64(r.tcp_ack)
    win = np.int64(r.tcp_window)
    ctl = flags & (SYN | FIN | RST)
    if not st.ws_base_set[side]:
        st.ws_base[side] = seq if flags & SYN else (seq - 1) & U32
        st.ws_base_set[side] = 1
        st.ws_window[side] = U32
    if not st.ws_base_set[peer]:
        st.ws_window[peer] = U32
        if flags & ACK:
            st.ws_base[peer] = (ack - 1) & U32
            st.ws_base_set[peer] = 1
    if (flags & (SYN | ACK)) == SYN and seq == st.ws_base[side]:
        st.ws_nextseq[side] = st.ws_maxseq[side]  # a SYN sent again (dissect_tcp)
    nextseq = st.ws_nextseq[side]
    segflags = 0
    dupack = False
    if seglen == 1 and seq == nextseq and st.ws_window[peer] == 0:
        segflags = ZWP  # (1) zero-window probe
    else:
        if win == 0 and ctl == 0:  # (2)
            st.zero_window[side] += 1
        if nextseq and _gt(seq, nextseq) and not flags & RST:  # (3) previous segment lost
            st.holes[side] += 1
            st.missed[side] += _seq_delta(seq, nextseq)
            st.gap_end[side] = seq  # Zeek reports the gap once the peer ACKs past it
            if r.mirror_gaps > st.mirror_gaps_last >= 0:
                st.mirror_holes[side] += 1
        if seglen <= 1 and seq == ((nextseq - 1) & U32) and ctl == 0:  # (4)
            segflags = KA
        same = (seglen == 0 and win != 0 and win == st.ws_window[side] and seq == nextseq
                and ack == st.ws_lastack[side] and ctl == 0)
        if same and st.ws_segflags[peer] & KA:
            pass  # (7) keep-alive ACK
        elif seglen == 0 and win == 0 and win == st.ws_window[side] and seq == nextseq \
                and ack == st.ws_lastack[side] and ctl == 0 and st.ws_segflags[peer] & ZWP:
            st.zero_window[side] += 0  # (8) zero-window probe ACK (already counted above)
        elif same:  # (9) duplicate ACK
            dupack = True
            st.ws_dupacknum[side] = 1 if st.ws_dupacknum[side] < 0 else st.ws_dupacknum[side] + 1
            st.dup_acks[side] += 1
    if ack != st.ws_lastack[side] and not dupack:
        st.ws_dupacknum[side] = 0
    # (10) ACKed unseen segment
    if st.ws_maxseq[peer] != 0 and _gt(ack, st.ws_maxseq[peer]) and flags & ACK:
        if _lt(st.ws_maxseq[peer], st.ws_nextseq[peer]):
            st.ws_maxseq[peer] = st.ws_nextseq[peer]
        else:
            st.ws_dupacknum[peer] = -1
    # (11) retransmission family
    if (seglen > 0 or flags & (SYN | FIN)) and not segflags & KA:
        not_advanced = nextseq != 0 and _lt(seq, nextseq)
        if seglen > 1 and ((nextseq - 1) & U32) == seq:
            not_advanced = False
        if seglen > 0 and st.ws_lastack[peer] != 0 \
                and _seq_delta((seq + seglen) & U32, st.ws_lastack[peer]) <= 0:
            st.retrans[side] += 1  # spurious
            events[i] |= EV_RETRANS
        elif not_advanced and (st.ws_dupacknum[peer] >= 2 or st.ws_dupacknum[peer] < 0) \
                and st.ws_lastack[peer] == seq \
                and 0 <= now - st.ws_lastack_ts[peer] < FAST_RETRANS_NS:
            st.retrans[side] += 1  # fast retransmission
            events[i] |= EV_RETRANS
        else:
            thres = st.ws_first_rtt if st.ws_first_rtt > 0 else OOO_THRESHOLD_NS
            syn_fin = 1 if flags & (SYN | FIN) else 0
            if not_advanced and 0 <= now - st.ws_nextseq_ts[side] < thres \
                    and nextseq != ((seq + seglen + syn_fin) & U32):
                st.out_of_order[side] += 1
            elif not_advanced:
                st.retrans[side] += 1
                events[i] |= EV_RETRANS
    # (12) state update
    nxt = (seq + seglen) & U32
    if seglen > 0 or flags & (SYN | FIN):
        if flags & (SYN | FIN):
            nxt = (nxt + 1) & U32
    if (_gt(nxt, nextseq) or nextseq == 0) and segflags != ZWP:
        st.ws_nextseq[side] = nxt
        st.ws_nextseq_ts[side] = now
    if (seq == st.ws_maxseq[side] or st.ws_maxseq[side] == 0) and segflags != ZWP:
        st.ws_maxseq[side] = st.ws_nextseq[side]
    st.ws_window[side] = win
    st.ws_lastack[side] = ack
    st.ws_lastack_ts[side] = now
    st.ws_segflags[side] = segflags
    # iRTT: most recent pure SYN to the first pure-ACK-flagged packet, either direction
    if (flags & (SYN | ACK)) == SYN:
        st.ws_mru_syn = now
    elif (flags & (SYN | ACK)) == ACK and st.ws_mru_syn > 0 and st.ws_first_rtt == 0:
        st.ws_first_rtt = now - st.ws_mru_syn


# ------------------------------------------------------------------------ one packet


@njit(cache=True)
def _tcp(st, r, side, now, events, i):  # pragma: no cover - compiled
    flags = np.int64(r.tcp_flags)
    length = np.int64(r.payload_len)
    seq = np.int64(r.tcp_seq)
    syn = (flags & SYN) != 0
    fin = (flags & FIN) != 0
    rst = (flags & RST) != 0
    # Zeek: sequence space of this endpoint, unwrapped to 64 bits
    if not st.seq_known[side]:
        st.start_seq[side] = seq if syn else seq - 1
        st.last_seq[side] = st.start_seq[side] + 1 if not syn else seq
        st.ack_seq[side] = st.start_seq[side]
        st.seq_known[side] = 1
    elif syn and st.state[side] in (SYN_SENT, SYN_ACK_SENT) \
            and seq != st.start_seq[side] % SEQ_MOD:
        st.start_seq[side] = seq  # Zeek SYN_seq_jump: the endpoint restarted
        st.last_seq[side] = seq
        st.ack_seq[side] = seq
    base = st.last_seq[side] - st.last_seq[side] % SEQ_MOD
    abs_seq = base + seq
    if abs_seq - st.last_seq[side] > SEQ_MOD // 2:
        abs_seq -= SEQ_MOD
    elif st.last_seq[side] - abs_seq > SEQ_MOD // 2:
        abs_seq += SEQ_MOD
    seq_len = length + np.int64(syn) + np.int64(fin)
    if rst:
        seq_len -= length  # Zeek: data on a RST does not occupy sequence space
    end = abs_seq + seq_len
    rel_seq = abs_seq - st.start_seq[side]
    _update_history(st, flags, side, rel_seq, length)
    if fin:
        st.fin_cnt[side] += 1
    # Zeek update_last_seq
    delta_last = end - st.last_seq[side]
    if (syn or rst) and (delta_last > TOO_LARGE_SEQ_DELTA or delta_last < -TOO_LARGE_SEQ_DELTA):
        pass
    elif fin and st.last_seq[side] == st.start_seq[side] + 1:
        st.last_seq[side] = end
    elif delta_last > 0:
        st.last_seq[side] = end
    elif length > 0:
        _scaled(st, st.rxmt_cnt, st.rxmt_thr, ord("T"), side)
    # the ACK this packet carries, for the peer's size
    peer = 1 - side
    if flags & ACK and not st.seq_known[peer]:
        a = np.int64(r.tcp_ack)  # init_peer: numbering as if the peer had sent a SYN
        st.start_seq[peer] = a - 1
        st.ack_seq[peer] = a - 1
        st.last_seq[peer] = a - 1
        st.seq_known[peer] = 1
    elif flags & ACK and not rst:
        a = np.int64(r.tcp_ack)
        pbase = st.ack_seq[peer] - st.ack_seq[peer] % SEQ_MOD
        abs_ack = pbase + a
        if abs_ack - st.ack_seq[peer] > SEQ_MOD // 2:
            abs_ack -= SEQ_MOD
        elif st.ack_seq[peer] - abs_ack > SEQ_MOD // 2:
            abs_ack += SEQ_MOD
        if abs_ack > st.ack_seq[peer] and abs_ack - st.ack_seq[peer] < TOO_LARGE_SEQ_DELTA * 64:
            st.ack_seq[peer] = abs_ack
    # Zeek update_window: a zero window advertised outside a reset (history w/W)
    if r.tcp_window == 0 and not rst and st.state[1 - side] != CLOSED \
            and st.state[side] != RESET:
        _scaled(st, st.win0_cnt, st.win0_thr, ord("W"), side)
    # handshake timing at the mirror
    if syn and not flags & ACK and side == 0:
        st.syns += 1
        if st.synack_ts < 0:
            st.syn_ts = now
    elif syn and flags & ACK and side == 1 and st.synack_ts < 0:
        st.synack_ts = now
    elif flags & ACK and not syn and side == 0 and st.synack_ts >= 0 and st.ack_ts < 0:
        st.ack_ts = now
    if rst and st.reset_by < 0:
        st.reset_by = side
        st.rst_ts = now
    _wireshark(st, r, side, flags, length, now, events, i)
    side = _state_machine(st, side, flags, length, seq, delta_last)
    # Zeek TCP_Reassembler::Gap via AckReceived: the peer ACKs past a hole in our data
    peer = 1 - side
    if flags & ACK and st.gap_end[peer] and _seq_delta(np.int64(r.tcp_ack), st.gap_end[peer]) > 0:
        st.gap_end[peer] = 0
        if _clean(st, 0) and _clean(st, 1):
            _scaled(st, st.gap_cnt, st.gap_thr, ord("G"), peer)


@njit(inline="always", cache=True)
def _clean(st, d):  # pragma: no cover - compiled
    """Zeek is_clean(): established, or closed after being established."""
    return st.state[d] == ESTABLISHED or (st.state[d] == CLOSED
                                          and st.prev_state[d] == ESTABLISHED)


@njit(inline="always", cache=True)
def _reused(st, r):  # pragma: no cover - compiled
    """Zeek IsReuse: a SYN with a new initial sequence number on a connection past its
    handshake (or after a close/reset) starts a new connection (Wireshark: "TCP port
    numbers reused")."""
    if r.tcp_flags < 0 or (r.tcp_flags & (SYN | ACK)) != SYN:
        return False
    past = False
    for d in range(2):
        if st.state[d] == ESTABLISHED or st.state[d] == CLOSED or st.state[d] == RESET:
            past = True
    side = _side(st, r)
    return past and st.seq_known[side] and np.int64(r.tcp_seq) != st.start_seq[side] % SEQ_MOD


@njit(cache=True)
def track(rows, slots, hashes, state, used, events, retired, n_retired):  # pragma: no cover
    """Account every non-RoCE IP row of a batch, in time order.  A connection replaced by
    port reuse is copied to ``retired`` (n_retired[0] rows so far)."""
    for i in range(rows.shape[0]):
        r = rows[i]
        if r.ipver == 0 or (r.proto == 17 and r.dport == roce.UDP_PORT):
            continue
        kind = _kind(r.proto)
        if kind == KIND_TCP and r.tcp_flags < 0:
            kind = KIND_OTHER if r.error == 0 else KIND_TCP  # a fragment, or a cut header
        h1, h2 = _hashes(r, kind)
        j = find(slots, hashes, h1, h2)
        now = r.ts_ns
        if j >= 0 and kind == KIND_TCP and _reused(state[j], r):
            retired[n_retired[0]] = state[j]
            n_retired[0] += 1
            state[j] = np.zeros(1, state.dtype)[0]
            _new_conn(state[j], r, kind, now)
            events[i] |= EV_NEW
        elif j < 0:
            j = insert(slots, hashes, used, j, h1, h2)
            _new_conn(state[j], r, kind, now)
            events[i] |= EV_NEW
        st = state[j]
        side = _side(st, r)
        if copies.is_copy(st, r, side):
            events[i] |= EV_COPY
            continue
        st.last_ts = now
        if not (st.did_close[0] and st.did_close[1]):
            st.end_ts = now  # TCPSessionAdapter::DeliverPacket
        st.pkts[side] += 1
        st.ip_bytes[side] += max(0, r.ip_len)  # Zeek's *_ip_bytes: IP length fields
        if r.erspan_t == 1:
            st.truncated_t += 1
        if r.mirror_gaps > st.mirror_gaps_last >= 0:
            st.mirror_gaps_seen += r.mirror_gaps - st.mirror_gaps_last
        if kind == KIND_TCP and r.tcp_flags < 0:
            st.cut += 1  # the copy ends inside the TCP header: flags unknown
        elif kind == KIND_TCP:
            _tcp(st, r, side, now, events, i)
        else:
            st.payload[side] += max(0, r.payload_len)
            if kind == KIND_UDP and r.payload_len > 0:
                _check_history(st, H_DATA, side)  # Zeek UDP analyzer: D/d
        if r.mirror_gaps >= 0:
            st.mirror_gaps_last = r.mirror_gaps


# The columns the session table needs, copied out of the (wide) tracker state in one compiled
# pass, column-major: reading ~40 fields one NumPy column at a time from 800-byte rows costs a
# cache miss per field per row, and so does every NumPy operation on a field of an array of
# records; one pass costs one per row, and the columns it writes are contiguous.
SUMMARY_SCALARS = ("mirror_session", "kind", "proto", "ipver", "orig_guess", "first_ts",
                   "last_ts", "end_ts", "truncated_t", "cut", "mirror_gaps_seen", "hist_len",
                   "syns", "syn_ts", "synack_ts", "ack_ts", "reset_by", "copies")
SUMMARY_PAIRS = ("port", "pkts", "payload", "ip_bytes", "state", "retrans", "out_of_order",
                 "dup_acks", "zero_window", "holes", "mirror_holes", "missed",
                 "size")  # size: Zeek's TCP_Endpoint::Size
_PAIRS = len(SUMMARY_SCALARS)  # the first pair's row in Summary.ints


class Summary:
    """Finished connections, column by column: ``s["kind"]`` is a contiguous int64 column,
    ``s["pkts"]`` an (n, 2) view whose ``[:, 0]`` (originator) and ``[:, 1]`` (responder)
    are contiguous; ``s["addr"]`` is (n, 2, 16) bytes, ``s["history"]`` (n, HISTORY_LEN)."""

    def __init__(self, state: np.ndarray) -> None:
        n = state.shape[0]
        self.shape = (n,)
        self.ints = np.empty((_PAIRS + 2 * len(SUMMARY_PAIRS), n), np.int64)
        self.addr = np.empty((n, 2, 16), np.uint8)
        self.history = np.empty((n, HISTORY_LEN), np.uint8)
        summarise(state, self.ints, self.addr, self.history)

    def __getitem__(self, name: str) -> np.ndarray:
        if name in ("addr", "history"):
            return getattr(self, name)  # type: ignore[no-any-return]
        if name in SUMMARY_SCALARS:
            return self.ints[SUMMARY_SCALARS.index(name)]
        row = _PAIRS + 2 * SUMMARY_PAIRS.index(name)
        return self.ints[row: row + 2].T


@njit(inline="always", cache=True)
def _pair(ints, row, i, values):  # pragma: no cover - compiled
    ints[row, i] = values[0]
    ints[row + 1, i] = values[1]


@njit(cache=True)
def summarise(st, ints, addr, history):  # pragma: no cover - compiled
    """Copy the table's columns (rows of ``ints`` in SUMMARY_SCALARS then SUMMARY_PAIRS
    order) and compute Zeek's TCP_Endpoint::Size per endpoint."""
    for i in range(st.shape[0]):
        s = st[i]
        ints[0, i] = s.mirror_session
        ints[1, i] = s.kind
        ints[2, i] = s.proto
        ints[3, i] = s.ipver
        ints[4, i] = s.orig_guess
        ints[5, i] = s.first_ts
        ints[6, i] = s.last_ts
        ints[7, i] = s.end_ts
        ints[8, i] = s.truncated_t
        ints[9, i] = s.cut
        ints[10, i] = s.mirror_gaps_seen
        ints[11, i] = s.hist_len
        ints[12, i] = s.syns
        ints[13, i] = s.syn_ts
        ints[14, i] = s.synack_ts
        ints[15, i] = s.ack_ts
        ints[16, i] = s.reset_by
        ints[17, i] = s.copies
        _pair(ints, _PAIRS, i, s.port)
        _pair(ints, _PAIRS + 2, i, s.pkts)
        _pair(ints, _PAIRS + 4, i, s.payload)
        _pair(ints, _PAIRS + 6, i, s.ip_bytes)
        _pair(ints, _PAIRS + 8, i, s.state)
        _pair(ints, _PAIRS + 10, i, s.retrans)
        _pair(ints, _PAIRS + 12, i, s.out_of_order)
        _pair(ints, _PAIRS + 14, i, s.dup_acks)
        _pair(ints, _PAIRS + 16, i, s.zero_window)
        _pair(ints, _PAIRS + 18, i, s.holes)
        _pair(ints, _PAIRS + 20, i, s.mirror_holes)
        _pair(ints, _PAIRS + 22, i, s.missed)
        for d in range(2):
            size = 0
            if s.seq_known[d]:
                size = max(s.last_seq[d], s.ack_seq[d]) - s.start_seq[d]
                if size != 0:
                    size -= 1
                if s.fin_cnt[d] > 0 and size != 0:
                    size -= 1
            ints[_PAIRS + 24 + d, i] = max(size, 0)
        for k in range(16):
            addr[i, 0, k] = s.addr[0, k]
            addr[i, 1, k] = s.addr[1, k]
        for k in range(HISTORY_LEN):
            history[i, k] = s.history[k]
