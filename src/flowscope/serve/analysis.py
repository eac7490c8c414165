"""One session view over many collectors: the analysers of ``flowscope sessions``, fed live.

Batches arrive from the collectors interleaved, in the order the server accepted them (the
store's arrival order, so a restart that replays the store rebuilds exactly the same state).
Per collector: the mirror-stream accounting (:class:`~flowscope.analyse.mirrors.MirrorTracker`
- GRE sequence numbers only make sense along one collector's stream, and its gaps feed the
mirror-loss evidence of the sessions) and the collector's counters.  Shared: one
:class:`~flowscope.analyse.sessions.SessionTracker` (a connection whose packets reach two
collectors is one session), one time series, and the finished sessions as Arrow tables
(``schema.SESSIONS``, converted once when they finish).

The session view is finished sessions plus the ones still live, converted from a copy of the
tracker's state (:meth:`SessionTracker.snapshot`) - with everything fed, it is row for row what
``flowscope sessions`` prints for the same frames.  What sampling and slicing hide is marked
by :mod:`flowscope.serve.coverage`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from flowscope import schema
from flowscope.analyse.mirrors import MirrorTracker
from flowscope.analyse.qp_rows import merge
from flowscope.analyse.sessions import SECOND, SessionTracker
from flowscope.analyse.timeline import Timeline
from flowscope.batch import PacketBatch
from flowscope.decode import DecodeConfig, decode
from flowscope.decode.codes import ERRORS
from flowscope.errors import FlowscopeError
from flowscope.serve.coverage import Coverage, host_pair_keys
from flowscope.sinks.arrow import mirrors_table
from flowscope.sinks.sessions import conn_table, problems_first, qp_table
from flowscope.stream.meta import BatchMeta

COMPACT_AFTER = 64  # the latest finished-session tables are concatenated past this many


@dataclass
class CollectorCounters:
    """What the server saw of one collector, and the collector's own last counters."""

    batches: int = 0
    frames: int = 0
    bytes: int = 0
    first_received_ns: int = 0
    last_received_ns: int = 0
    last_meta: BatchMeta | None = None
    decode_errors: np.ndarray = field(default_factory=lambda: np.zeros(len(ERRORS), np.int64))

    def as_dict(self) -> dict[str, Any]:
        m = self.last_meta
        return {
            "batches": self.batches, "frames": self.frames, "bytes": self.bytes,
            "first_received": self.first_received_ns / 1e9 if self.batches else None,
            "last_received": self.last_received_ns / 1e9 if self.batches else None,
            "last_seq": m.seq if m else -1,
            "sample_rate": m.sample_rate if m else 1, "snaplen": m.snaplen if m else 0,
            "filter": m.filter if m else "",
            "received": m.received if m else 0, "kernel_drops": m.kernel_drops if m else 0,
            "filtered_out": m.filtered_out if m else 0,
            "sampled_out": m.sampled_out if m else 0,
            "spool_dropped": m.spool_dropped if m else 0,
            "sent": m.sent_ns / 1e9 if m and m.sent_ns else None,
            "decode_errors": {ERRORS[i]: int(n) for i, n in enumerate(self.decode_errors)
                              if i and n},
        }


def _conn_keys(state: np.ndarray) -> np.ndarray:
    return host_pair_keys(state["ipver"], state["mirror_session"], state["addr"][:, 0, :],
                          state["addr"][:, 1, :])


def _qp_keys(rows: list[dict[str, Any]]) -> np.ndarray:
    n = len(rows)
    return host_pair_keys(np.array([r["ipver"] for r in rows], np.uint8),
                          np.array([r["mirror_session"] for r in rows], np.int64),
                          np.frombuffer(b"".join(r["src"] for r in rows), np.uint8).reshape(n, 16),
                          np.frombuffer(b"".join(r["dst"] for r in rows), np.uint8).reshape(n, 16))


def _copy_mirrors(tracker: MirrorTracker) -> MirrorTracker:
    """A frozen copy: mirrors_table resolves pending sequence numbers in place, which must
    not touch the live accounting."""
    out = MirrorTracker()
    out.ids = dict(tracker.ids)
    out.keys = tracker.keys.copy()
    out.state = tracker.state.copy()
    return out


def _copy_timeline(t: Timeline) -> Timeline:
    out = Timeline(t.interval)
    out.origin = t.origin
    out.counts = {k: v.copy() for k, v in t.counts.items()}
    out.packets = t.packets.copy()
    return out


@dataclass(frozen=True)
class SessionSnapshot:
    """The session state at one moment, copied under the lock, converted off it."""

    version: int
    finished: tuple[pa.Table, ...]
    live_conns: np.ndarray
    qps: np.ndarray
    coverage: Coverage

    def table(self) -> pa.Table:
        tables = list(self.finished)
        if self.live_conns.shape[0]:
            tables.append(self.coverage.mark(conn_table(self.live_conns),
                                             _conn_keys(self.live_conns)))
        if self.qps.shape[0]:
            rows = merge(self.qps)
            tables.append(self.coverage.mark(qp_table(rows), _qp_keys(rows)))
        return problems_first(pa.concat_tables(tables) if tables
                              else schema.SESSIONS.empty_table())


def coarsen(base: pa.Table, base_ns: int, interval_ns: int) -> pa.Table:
    """A TIMELINE at ``base_ns`` re-binned to ``interval_ns`` (a whole multiple of it), with
    bins aligned as ``Timeline`` aligns them: to multiples of the interval since the epoch."""
    if interval_ns % base_ns:
        raise FlowscopeError(f"the interval must be a whole multiple of {base_ns / 1e9:g} s")
    if base.num_rows == 0:
        return base
    start_ns = np.rint(base.column("interval_start").to_numpy() * 1e9).astype(np.int64)
    origin = int(start_ns[0]) // interval_ns * interval_ns
    group = (start_ns - origin) // interval_ns
    n = int(group[-1]) + 1
    cols: dict[str, Any] = {
        "interval_start": pa.array((origin + np.arange(n) * interval_ns) / 1e9, pa.float64()),
        "interval": pa.array(np.full(n, interval_ns / 1e9), pa.float64()),
    }
    failures: list[dict[str, int]] = [{} for _ in range(n)]
    for g, m in zip(group.tolist(), base.column("failures").to_pylist(), strict=True):
        for label, count in m:  # one step per (interval, label), as Timeline.table
            failures[g][label] = failures[g].get(label, 0) + count
    for name in ("new_sessions", "failures", "retrans", "cnp", "nak", "ce_marked", "packets"):
        if name == "failures":
            cols[name] = pa.array([list(f.items()) for f in failures],
                                  pa.map_(pa.string(), pa.int64()))
        else:
            cols[name] = pa.array(np.bincount(group, base.column(name).to_numpy(),
                                              minlength=n).astype(np.int64))
    return pa.table(cols, schema=schema.TIMELINE)


class Analysis:
    """The merged analysis: :meth:`feed` batches in acceptance order; read with
    :meth:`sessions`, :meth:`timeline`, :meth:`mirrors`.  Thread-safe: feeding and copying
    state take one lock; tables are built from the copies, off the lock."""

    def __init__(self, config: DecodeConfig | None = None, resolution_ns: int = SECOND) -> None:
        self.config = config or DecodeConfig()
        self.tracker = SessionTracker()
        self.series = Timeline(resolution_ns)
        self.coverage = Coverage()
        self.mirrors_by_collector: dict[str, MirrorTracker] = {}
        self.collectors: dict[str, CollectorCounters] = {}
        self.finished: list[pa.Table] = []
        self._compacted = 0  # finished[:_compacted] are already compacted tables
        self.version = 0
        self.lock = threading.Lock()
        self._cache: tuple[int, pa.Table] | None = None
        self._cache_lock = threading.Lock()

    def feed(self, meta: BatchMeta, batch: PacketBatch, received_ns: int = 0) -> None:
        rows = decode(batch, self.config)
        with self.lock:
            mirrors = self.mirrors_by_collector.get(meta.collector_id)
            if mirrors is None:
                mirrors = self.mirrors_by_collector[meta.collector_id] = MirrorTracker()
            mirrors.update(rows)
            self.coverage.update(rows, meta.sample_rate, meta.snaplen)
            events = self.tracker.update(rows)
            self.series.update(rows["ts_ns"], events)
            for finished in self.tracker.drain_conns():
                self.finished.append(self.coverage.mark(conn_table(finished),
                                                        _conn_keys(finished)))
            if len(self.finished) - self._compacted > COMPACT_AFTER:
                # the small tables of the latest batches become one; older ones stay as they
                # are (no recopying of everything finished so far)
                tail = self.finished[self._compacted:]
                self.finished[self._compacted:] = [pa.concat_tables(tail).combine_chunks()]
                self._compacted += 1
            c = self.collectors.get(meta.collector_id)
            if c is None:
                c = self.collectors[meta.collector_id] = CollectorCounters(
                    first_received_ns=received_ns)
            c.batches += 1
            c.frames += len(batch)
            c.bytes += int(batch.caplen.sum())
            c.last_received_ns = received_ns
            c.last_meta = meta
            c.decode_errors += np.bincount(rows["error"], minlength=len(ERRORS))
            self.version += 1

    def snapshot(self) -> SessionSnapshot:
        with self.lock:
            conns, qps = self.tracker.snapshot()
            finished_qps = self.tracker.queue_pairs()
            if finished_qps.shape[0]:
                qps = np.concatenate([finished_qps, qps])
            # Coverage.update replaces its arrays, never writes into them: sharing is a copy
            coverage = Coverage()
            coverage.keys, coverage.rate, coverage.snaplen = (
                self.coverage.keys, self.coverage.rate, self.coverage.snaplen)
            return SessionSnapshot(self.version, tuple(self.finished), conns, qps, coverage)

    def sessions(self) -> pa.Table:
        """Every session, finished and live, problems first (built once per version)."""
        with self._cache_lock:
            cached = self._cache
        if cached is not None and cached[0] == self.version:
            return cached[1]
        snapshot = self.snapshot()
        table = snapshot.table()
        with self._cache_lock:
            self._cache = (snapshot.version, table)
        return table

    @property
    def resolution_ns(self) -> int:
        return self.series.interval

    def timeline(self, interval_ns: int | None = None) -> pa.Table:
        """The time series (schema.TIMELINE) at ``interval_ns``, a whole multiple of the
        resolution (default: the resolution)."""
        with self.lock:
            timeline = _copy_timeline(self.series)
        base = timeline.table(self.sessions())
        if interval_ns is None or interval_ns == timeline.interval:
            return base
        return coarsen(base, timeline.interval, interval_ns)

    def mirrors(self) -> pa.Table:
        """The mirror streams of every collector (schema.MIRRORS plus ``collector`` first)."""
        with self.lock:
            trackers = {k: _copy_mirrors(v) for k, v in self.mirrors_by_collector.items()}
        collector = pa.field("collector", pa.string(), False)
        tables = []
        for cid, tracker in trackers.items():
            t = mirrors_table(tracker)
            tables.append(t.add_column(0, collector, pa.array([cid] * t.num_rows, pa.string())))
        if not tables:
            return schema.MIRRORS.empty_table().add_column(0, collector, pa.array([], pa.string()))
        return pa.concat_tables(tables)

    def collector_counters(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {k: replace(v, decode_errors=v.decode_errors.copy()).as_dict()
                    for k, v in self.collectors.items()}
