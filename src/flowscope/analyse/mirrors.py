"""Mirror streams: who mirrors to whom, and did the mirror itself lose packets.

A mirror stream is one sequence space: (outer source, outer destination, tunnel kind, GRE
key, ERSPAN session or VNI).  ERSPAN ingress and egress copies of one session share the
GRE sequence counter (draft-foschiano-erspan-03 §4.1: "increments per packet per
session"), so direction is reported per stream, not used to split it.

Loss comes from GRE sequence numbers (RFC 2890 §2.2): a forward jump of d counts d-1 lost,
a repeat is a duplicate, a late packet that fills a hole is reordered (and un-counts one
loss), a large jump either way is a counter reset.  A counter that never advances (stuck at
zero, as some devices send) makes loss *not measurable* rather than "no loss".

ERSPAN Type III timestamps are restored here too, because unwrapping a 32-bit counter needs
the previous packet of the same stream.
"""

from __future__ import annotations

import numpy as np

from flowscope.decode.columns import NO_TS
from flowscope.jit import njit

REORDER_WINDOW = 64  # up to 64 late: reordering; further back: a reset if the next continues
RESET_JUMP = 1 << 20  # a forward jump this large is a counter reset, not a million losses
SEQ_MOD = 1 << 32

STREAM_KEY = np.dtype([
    ("outer_src", np.uint8, (16,)), ("outer_dst", np.uint8, (16,)), ("outer_ipver", np.uint8),
    ("tunnel", np.uint8), ("gre_key", np.int64), ("erspan_session", np.int16),
    ("vni", np.int32), ("erspan_type", np.int8),
])

# Per-stream state, one row per stream, grown as streams appear.
STATE = np.dtype([
    ("packets", np.int64), ("bytes", np.int64), ("first_ts", np.int64), ("last_ts", np.int64),
    ("seq_packets", np.int64), ("max_seq", np.int64), ("base_seq", np.int64),
    ("pending", np.int64), ("window", np.uint64),
    ("advances", np.int64), ("lost", np.int64), ("duplicates", np.int64),
    ("reordered", np.int64), ("seq_resets", np.int64), ("directions", np.uint8),
    ("quirks", np.uint16), ("last_hw_ts", np.int64), ("last_hw_full", np.int64),
    ("gaps", np.int64),
])


@njit(inline="always", cache=True)
def _signed(d):  # pragma: no cover - compiled
    d = d % SEQ_MOD
    return d - SEQ_MOD if d >= SEQ_MOD // 2 else d


@njit(cache=True)
def _late(st, q):  # pragma: no cover - compiled
    """A packet older than the newest: it fills a hole counted as lost, unless it is older
    than the first packet of this counter epoch (no hole was counted for it)."""
    st.reordered += 1
    if _signed(q - st.base_seq) >= 0:
        st.lost -= 1


@njit(cache=True)
def _sequence(st, q):  # pragma: no cover - compiled
    st.seq_packets += 1
    if st.seq_packets == 1:
        st.max_seq = q
        st.base_seq = q
        st.pending = -1
        st.window = np.uint64(1)
        return
    if st.pending >= 0:
        # A far jump back is a reset only if the next packet continues from it; otherwise
        # it was one very late packet.
        dp = _signed(q - st.pending)
        if 0 < dp <= REORDER_WINDOW:
            st.seq_resets += 1
            st.lost += dp - 1
            st.advances += 1
            st.gaps += dp > 1
            st.base_seq = st.pending
            st.max_seq = q
            st.window = (np.uint64(1) << np.uint64(dp)) | np.uint64(1)
            st.pending = -1
            return
        _late(st, st.pending)
        st.pending = -1
    d = _signed(q - st.max_seq)
    if d == 0:
        st.duplicates += 1
    elif d > 0:
        if d > RESET_JUMP:
            st.seq_resets += 1
            st.base_seq = q
            st.window = np.uint64(1)
        else:
            st.lost += d - 1
            st.advances += 1
            st.gaps += d > 1
            st.window = (st.window << np.uint64(d)) | np.uint64(1) if d < 64 else np.uint64(1)
        st.max_seq = q
    else:
        back = -d
        if back < REORDER_WINDOW:
            bit = np.uint64(1) << np.uint64(back)
            if st.window & bit:
                st.duplicates += 1
            else:
                st.window |= bit
                _late(st, q)
        else:
            st.pending = q


@njit(cache=True)
def finish(state):  # pragma: no cover - compiled
    """Resolve a far-back packet still waiting at the end of the input: a late packet."""
    for s in range(state.shape[0]):
        if state[s].seq_packets > 0 and state[s].pending >= 0:
            _late(state[s], state[s].pending)
            state[s].pending = -1


@njit(cache=True)
def _hw_time(st, ts32, gra, platform, info, capture_ns):  # pragma: no cover - compiled
    """Restore a Type III hardware timestamp in ns since the epoch, or NO_TS.

    draft-foschiano-erspan-03 §4.2-4.3: the 32-bit field counts Gra units (100 us, 100 ns,
    IEEE 1588 ns, or platform-defined); platforms 0x3/0x7 (0x0) give the upper 32 bits,
    0x5/0x6 give 1588 seconds.  Otherwise the counter is unwrapped along the stream and its
    epoch anchored to the capture clock (the draft's clock is synchronised to system time).
    """
    word = info & 0xFFFFFFFF
    upper_bits = platform == 3 or platform == 7 or platform == 0
    if gra == 0:
        unit = 100_000
    elif gra == 1:
        unit = 100
    elif gra == 2 or (gra == 3 and upper_bits):
        unit = 1
    else:
        return NO_TS
    if upper_bits and gra != 2:
        return ((word << 32) | ts32) * unit
    if gra == 2:
        if platform == 5 or platform == 6:
            return word * 1_000_000_000 + ts32
        sec = (capture_ns - ts32 + 500_000_000) // 1_000_000_000
        return sec * 1_000_000_000 + ts32
    if st.last_hw_ts >= 0:
        d = (ts32 - st.last_hw_ts) % SEQ_MOD
        if d >= SEQ_MOD // 2:
            d -= SEQ_MOD
        full = st.last_hw_full + d
    else:
        k = (capture_ns // unit - ts32 + SEQ_MOD // 2) // SEQ_MOD
        full = k * SEQ_MOD + ts32
    st.last_hw_ts = ts32
    st.last_hw_full = full
    return full * unit


@njit(inline="always", cache=True)
def _stream_hash(r):  # pragma: no cover - compiled
    """FNV-1a over the row's stream key (64 bits: a collision between two of the few
    streams of a capture has probability ~n^2/2^64); never 0, the "no stream" hash."""
    h = np.uint64(0xCBF29CE484222325)
    for k in range(16):
        h = (h ^ np.uint64(r.outer_src[k])) * np.uint64(0x100000001B3)
        h = (h ^ np.uint64(r.outer_dst[k])) * np.uint64(0x100000001B3)
    for v in (np.int64(r.outer_ipver), np.int64(r.tunnel), r.gre_key,
              np.int64(r.erspan_session), np.int64(r.vni), np.int64(r.erspan_type)):
        h = (h ^ np.uint64(v & 0xFFFFFFFFFFFF)) * np.uint64(0x100000001B3)
    return h | np.uint64(1)


@njit(inline="always", cache=True)
def _same_stream(a, b):  # pragma: no cover - compiled
    """Whether two rows have the same stream key (STREAM_KEY's fields)."""
    if (a.tunnel != b.tunnel or a.gre_key != b.gre_key or a.erspan_session != b.erspan_session
            or a.vni != b.vni or a.erspan_type != b.erspan_type
            or a.outer_ipver != b.outer_ipver):
        return False
    for k in range(16):
        if a.outer_src[k] != b.outer_src[k] or a.outer_dst[k] != b.outer_dst[k]:
            return False
    return True


@njit(cache=True)
def stream_hashes(rows, out):  # pragma: no cover - compiled
    for i in range(rows.shape[0]):
        if rows[i].tunnel == 0:
            out[i] = 0
        else:
            out[i] = _stream_hash(rows[i])


RECENT = 8  # streams remembered by row (a key comparison is cheaper than the hash)


@njit(cache=True)
def track(rows, i, known_hash, known_id, state):  # pragma: no cover - compiled
    """Stream id (r.stream) and accounting for rows[i:], until a row whose stream is not in
    known_hash (sorted) yet: returns that row's index, or the number of rows when done.
    A row of the same stream as one of the last RECENT streams met is matched by key,
    without hashing."""
    recent = np.full(RECENT, -1, np.int64)  # row indices, one per recently met stream
    slot = 0
    n = rows.shape[0]
    while i < n:
        r = rows[i]
        if r.tunnel == 0:
            r.stream = -1
            i += 1
            continue
        s = -1
        for k in range(RECENT):
            j = recent[k]
            if j >= 0 and _same_stream(r, rows[j]):
                s = rows[j].stream
                break
        if s < 0:
            h = _stream_hash(r)
            k = np.searchsorted(known_hash, h)
            if k == known_hash.shape[0] or known_hash[k] != h:
                return i
            s = known_id[k]
            recent[slot] = i
            slot = (slot + 1) % RECENT
        r.stream = s
        _account(r, state[s])
        i += 1
    return n


@njit(inline="always", cache=True)
def _account(r, st):  # pragma: no cover - compiled
    if st.packets == 0:
        st.first_ts = r.ts_ns
        st.last_hw_ts = -1
    st.packets += 1
    st.bytes += r.wirelen
    st.first_ts = min(st.first_ts, r.ts_ns)
    st.last_ts = max(st.last_ts, r.ts_ns)
    st.quirks |= r.quirks
    if r.direction > 0:
        st.directions |= np.uint8(1 << (r.direction - 1))
    if r.gre_seq >= 0:
        _sequence(st, r.gre_seq)
        r.mirror_gaps = st.gaps
    if r.erspan_ts >= 0:
        r.orig_ts = _hw_time(st, r.erspan_ts, r.erspan_gra, r.erspan_platform,
                             r.erspan_platform_info, r.ts_ns)


class MirrorTracker:
    """Assigns each decoded row its mirror stream and keeps every stream's accounting."""

    def __init__(self) -> None:
        self.ids: dict[int, int] = {}  # stream key hash -> stream id
        self.keys = np.zeros(0, STREAM_KEY)
        self.state = np.zeros(0, STATE)
        self._known: tuple[dict[int, int], int, np.ndarray, np.ndarray] | None = None

    def update(self, rows: np.ndarray) -> None:
        i = 0
        while True:
            known_hash, known_id = self._lookup()
            i = track(rows, i, known_hash, known_id, self.state)
            if i == rows.shape[0]:
                return
            self._add_streams(rows[i:])

    def _lookup(self) -> tuple[np.ndarray, np.ndarray]:
        """self.ids as sorted arrays for track (rebuilt when streams are added, or when
        ids is replaced, as a copy of the tracker does)."""
        if self._known is None or self._known[0] is not self.ids or \
                self._known[1] != len(self.ids):
            pairs = sorted(self.ids.items())
            self._known = (self.ids, len(self.ids),
                           np.array([h for h, _ in pairs], np.uint64),
                           np.array([s for _, s in pairs], np.int64))
        return self._known[2], self._known[3]

    def _add_streams(self, rows: np.ndarray) -> None:
        """Number the streams first met in rows, in hash order."""
        hashes = np.empty(rows.shape[0], np.uint64)
        stream_hashes(rows, hashes)
        uniq, first = np.unique(hashes, return_index=True)
        for j, h in enumerate(uniq.tolist()):  # one step per distinct stream, not per packet
            if h and h not in self.ids:
                self._new_stream(h, rows[first[j]])

    def _new_stream(self, key: int, row: np.void) -> None:
        sid = len(self.ids)
        self.ids[key] = sid
        if sid >= self.state.shape[0]:
            grow = max(16, 2 * self.state.shape[0])
            self.state = np.concatenate([self.state, np.zeros(grow, STATE)])
            self.keys = np.concatenate([self.keys, np.zeros(grow, STREAM_KEY)])
        for name in STREAM_KEY.names or ():
            self.keys[sid][name] = row[name]

    def __len__(self) -> int:
        return len(self.ids)
