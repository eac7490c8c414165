"""The time series behind ``sessions --interval``: per interval of capture time, new
sessions, failures by state, retransmissions, CNPs, NAKs and CE-marked packets.

Packet events are binned per batch with ``np.bincount`` (no loop over packets); failures
are binned by the start time of the failed session once the sessions are known.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowscope import schema
from flowscope.analyse.qp import EV_CE, EV_CNP, EV_COPY, EV_NAK, EV_NEW, EV_RETRANS

COUNTERS = (("new_sessions", EV_NEW), ("retrans", EV_RETRANS), ("cnp", EV_CNP),
            ("nak", EV_NAK), ("ce_marked", EV_CE))


class Timeline:
    def __init__(self, interval_ns: int) -> None:
        self.interval = interval_ns
        self.origin: int | None = None
        self.counts = {name: np.zeros(0, np.int64) for name, _ in COUNTERS}
        self.packets = np.zeros(0, np.int64)

    def _grow(self, n: int) -> None:
        if n > self.packets.shape[0]:
            extra = n - self.packets.shape[0]
            self.packets = np.concatenate([self.packets, np.zeros(extra, np.int64)])
            for name in self.counts:
                self.counts[name] = np.concatenate([self.counts[name], np.zeros(extra, np.int64)])

    def _bins(self, ts_ns: np.ndarray) -> np.ndarray:
        if self.origin is None:
            self.origin = int(ts_ns.min()) // self.interval * self.interval
        # time going backwards across files before the origin lands in the first interval
        return np.maximum((ts_ns - self.origin) // self.interval, 0)

    def update(self, ts_ns: np.ndarray, events: np.ndarray) -> None:
        if ts_ns.shape[0] == 0:
            return
        bins = self._bins(ts_ns)
        self._grow(int(bins.max()) + 1)
        counted = (events & EV_COPY) == 0
        self.packets[: int(bins.max()) + 1] += np.bincount(bins[counted],
                                                           minlength=int(bins.max()) + 1)
        for name, bit in COUNTERS:
            hit = (events & bit) != 0
            if hit.any():
                c = np.bincount(bins[hit])
                self.counts[name][: c.shape[0]] += c

    def table(self, sessions: pa.Table) -> pa.Table:
        n = self.packets.shape[0]
        failures: list[dict[str, int]] = [{} for _ in range(n)]
        if n and sessions.num_rows:
            failed = sessions.filter(sessions.column("problem"))
            ts = (failed.column("ts").to_numpy() * 1e9).astype(np.int64)
            counted = pa.table({
                "bin": pa.array(np.clip(self._bins(ts), 0, n - 1)),
                # the Zeek state where there is one (TCP), else the verdict (RoCE)
                "label": pc.coalesce(failed.column("conn_state"), failed.column("verdict")),
            }).group_by(["bin", "label"]).aggregate([("label", "count")])
            for b, label, count in zip(*(counted[c].to_pylist() for c in counted.column_names),
                                       strict=True):
                failures[b][label] = count  # one step per (interval, label)
        start = (self.origin or 0) + np.arange(n) * self.interval
        return pa.table({
            "interval_start": pa.array(start / 1e9, pa.float64()),
            "interval": pa.array(np.full(n, self.interval / 1e9), pa.float64()),
            "new_sessions": pa.array(self.counts["new_sessions"]),
            "failures": pa.array([list(f.items()) for f in failures],
                                 pa.map_(pa.string(), pa.int64())),
            "retrans": pa.array(self.counts["retrans"]),
            "cnp": pa.array(self.counts["cnp"]),
            "nak": pa.array(self.counts["nak"]),
            "ce_marked": pa.array(self.counts["ce_marked"]),
            "packets": pa.array(self.packets),
        }, schema=schema.TIMELINE)
