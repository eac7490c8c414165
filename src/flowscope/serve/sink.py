"""The server side of the stream: store each batch durably, then analyse it.

:class:`StoreSink` is the ``BatchSink`` the gRPC transport (:mod:`flowscope.stream`) calls:

- ``last_seq(collector_id)``: the highest sequence number durably stored (-1 if none), so a
  reconnecting collector resumes after it;
- ``accept(meta, batch)``: durable when it returns (:class:`~flowscope.serve.store.BatchStore`
  fdatasyncs the record), then fed to the :class:`~flowscope.serve.analysis.Analysis`.

Storing and analysing happen under one lock, so the analysis sees batches in exactly the
store's arrival order; :meth:`StoreSink.open` replays the store in that order, so a restart
rebuilds the same sessions - nothing lost (every acknowledged batch is in the store), nothing
counted twice (a resend of a stored sequence number is acknowledged and dropped).

:meth:`StoreSink.persist` writes the session view, the time series and the mirror streams as
Parquet under ``DIR/analysis`` (atomically: write, fsync, rename), for DuckDB and friends.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from flowscope.batch import PacketBatch
from flowscope.decode import DecodeConfig
from flowscope.serve.analysis import Analysis
from flowscope.serve.store import BatchStore
from flowscope.stream.meta import BatchMeta


class StoreSink:
    def __init__(self, store: BatchStore, analysis: Analysis) -> None:
        self.store = store
        self.analysis = analysis
        self.lock = threading.Lock()
        self.persisted_version = -1
        self.duplicates = 0  # resends of stored batches, acknowledged and dropped

    @classmethod
    def open(cls, directory: str | os.PathLike[str], config: DecodeConfig | None = None,
             **store_options: Any) -> StoreSink:
        """Open (or create) the store and rebuild the analysis by replaying it."""
        sink = cls(BatchStore(directory, **store_options), Analysis(config))
        for stored in sink.store.replay():
            sink.analysis.feed(stored.meta, stored.batch, stored.received_ns)
        return sink

    # -- BatchSink --------------------------------------------------------------------------

    def last_seq(self, collector_id: str) -> int:
        with self.lock:
            return self.store.last_seq(collector_id)

    def accept(self, meta: BatchMeta, batch: PacketBatch) -> None:
        with self.lock:
            stored = self.store.append(meta, batch)
            if stored is None:
                self.duplicates += 1
                return
            self.analysis.feed(meta, batch, stored.received_ns)

    # -- reading --------------------------------------------------------------------------

    def collectors(self) -> list[dict[str, Any]]:
        """Per collector: what the store holds and what the analysis counted."""
        counters = self.analysis.collector_counters()
        with self.lock:
            logs = {cid: (log.last_seq, log.batches, log.frames, log.bytes)
                    for cid, log in self.store.logs.items()}
        out = []
        for cid in sorted(logs):
            last_seq, batches, frames, size = logs[cid]
            row: dict[str, Any] = {"collector_id": cid}
            row.update(counters.get(cid, {}))
            row.update({"last_seq": last_seq, "stored_batches": batches,
                        "stored_frames": frames, "stored_bytes": size})
            out.append(row)
        return out

    def persist(self, force: bool = False) -> bool:
        """Write sessions, timeline (1 s) and mirrors as Parquet; False if nothing changed."""
        version = self.analysis.version
        if version == self.persisted_version and not force:
            return False
        out = self.store.root / "analysis"
        out.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.analysis.sessions(), out / "sessions.parquet")
        _write_atomic(self.analysis.timeline(), out / "timeline.parquet")
        _write_atomic(self.analysis.mirrors(), out / "mirrors.parquet")
        self.persisted_version = version
        return True

    def close(self) -> None:
        with self.lock:
            self.store.close()


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
