"""Sessions from decoded batches: connections and RoCE queue pairs, flushed when idle.

:class:`SessionTracker` feeds each decoded batch (in capture-time order) to the two compiled
trackers (:mod:`flowscope.analyse.conn`, :mod:`flowscope.analyse.qp`), keeps the per-row
events for the time series, and removes connections that can no longer change, with Zeek's
timeouts (``scripts/base/init-bare.zeek``): ``tcp_inactivity_timeout`` 5 min,
``udp_inactivity_timeout`` and ``icmp_inactivity_timeout`` 1 min, and 5 s after a close or
reset (``tcp_close_delay``, ``tcp_reset_delay``).  Memory is bounded by the connections
alive at once, not by the length of the capture.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from flowscope.analyse import conn, qp
from flowscope.analyse.flowtable import FlowStore, raw

SECOND = 1_000_000_000
TCP_INACTIVITY_NS = 300 * SECOND
UDP_INACTIVITY_NS = 60 * SECOND
ICMP_INACTIVITY_NS = 60 * SECOND
CLOSE_DELAY_NS = 5 * SECOND
QP_INACTIVITY_NS = 60 * SECOND
FLUSH_EVERY_NS = SECOND  # idle checks at most once per second of capture time


@dataclass
class Finished:
    """Sessions that ended, in the order they were flushed."""

    conns: list[np.ndarray] = field(default_factory=list)
    qps: list[np.ndarray] = field(default_factory=list)


class SessionTracker:
    def __init__(self) -> None:
        self.conns = FlowStore(conn.CONN_STATE)
        self.qps = FlowStore(qp.QP_STATE, capacity=64)
        self.retired = np.zeros(0, conn.CONN_STATE)
        self.n_retired = np.zeros(1, np.int64)
        self.last_flush = np.iinfo(np.int64).min
        self.now = 0
        self.finished = Finished()

    def update(self, rows: np.ndarray) -> np.ndarray:
        """Account one batch; returns its per-row event bits (qp.EV_*)."""
        n = rows.shape[0]
        events = np.zeros(n, np.uint8)
        if n == 0:
            return events
        self.conns.reserve(n)
        self.qps.reserve(n)
        if self.retired.shape[0] < n:
            self.retired = np.zeros(n, conn.CONN_STATE)
        self.n_retired[0] = 0
        conn.track(rows, self.conns.slots, self.conns.hashes, self.conns.state, self.conns.used,
                   events, self.retired, self.n_retired)
        if self.n_retired[0]:
            self.finished.conns.append(raw(self.retired)[: self.n_retired[0]].copy()
                                       .view(conn.CONN_STATE).ravel())
        qp.track(rows, self.qps.slots, self.qps.hashes, self.qps.state, self.qps.used, events)
        self.now = max(self.now, int(rows["ts_ns"].max()))
        if self.now - self.last_flush >= FLUSH_EVERY_NS:
            self.flush_idle()
            self.last_flush = self.now
        return events

    def flush_idle(self) -> None:
        live = self.conns.live()
        if live.shape[0]:
            idle = self.now - live["last_ts"]
            kind = live["kind"]
            state = live["state"]
            done = (state == conn.CLOSED) | (state == conn.RESET)
            timeout = np.where(kind == conn.KIND_TCP, TCP_INACTIVITY_NS,
                               np.where(kind == conn.KIND_ICMP, ICMP_INACTIVITY_NS,
                                        UDP_INACTIVITY_NS))
            # Zeek: a TCP connection still in its handshake gets the UDP timeout
            handshake = (state <= conn.SYN_ACK_SENT).all(axis=1)
            timeout = np.where((kind == conn.KIND_TCP) & handshake, UDP_INACTIVITY_NS, timeout)
            timeout = np.where((kind == conn.KIND_TCP) & done.any(axis=1),
                               np.minimum(timeout, CLOSE_DELAY_NS), timeout)
            taken = self.conns.take(idle > timeout)
            if taken.shape[0]:
                self.finished.conns.append(taken)
        # Idle queue pairs leave the live table; they are few, and are paired and merged
        # into sessions at the end (their partner may go idle later).
        live = self.qps.live()
        if live.shape[0]:
            taken = self.qps.take(self.now - live["last_ts"] > QP_INACTIVITY_NS)
            if taken.shape[0]:
                self.finished.qps.append(taken)

    def drain_conns(self) -> Iterator[np.ndarray]:
        """Connections finished so far, handed out once."""
        while self.finished.conns:
            yield self.finished.conns.pop(0)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the connections and queue-pair flows still live, left live (a running
        view, e.g. ``flowscope serve``; :meth:`close` is the end-of-input equivalent)."""
        return (raw(self.conns.live()).copy().view(conn.CONN_STATE).ravel(),
                raw(self.qps.live()).copy().view(qp.QP_STATE).ravel())

    def queue_pairs(self) -> np.ndarray:
        """Every queue-pair flow (after :meth:`close`)."""
        if not self.finished.qps:
            return np.zeros(0, qp.QP_STATE)
        return np.concatenate(self.finished.qps)

    def close(self) -> None:
        """End of input: everything still live is finished."""
        c = self.conns.take_all()
        q = self.qps.take_all()
        if c.shape[0]:
            self.finished.conns.append(c)
        if q.shape[0]:
            self.finished.qps.append(q)
