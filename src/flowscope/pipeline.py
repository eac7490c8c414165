"""The packet path wired once: sources -> decode -> mirror accounting, batch by batch.
The CLI commands and the library API both start here."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from flowscope.analyse.mirrors import MirrorTracker
from flowscope.batch import PacketBatch
from flowscope.decode import DecodeConfig, decode
from flowscope.decode.codes import ERRORS
from flowscope.sources import Problems, read_captures

if TYPE_CHECKING:  # pyarrow is imported by the session path only: decap starts without it
    import pyarrow as pa


@dataclass
class PacketRun:
    """One pass over some captures: the decoded batches, and what was learnt on the way."""

    paths: list[str]
    config: DecodeConfig = field(default_factory=DecodeConfig)
    problems: Problems = field(default_factory=Problems)
    mirrors: MirrorTracker = field(default_factory=MirrorTracker)
    frames: int = 0
    error_counts: np.ndarray = field(default_factory=lambda: np.zeros(len(ERRORS), np.int64))
    # Streaming consumers that finish with each batch's rows before asking for the next let
    # the decoder reuse one row buffer (no fresh pages to fault in per batch).
    reuse_rows: bool = False

    def batches(self) -> Iterator[tuple[PacketBatch, np.ndarray]]:
        spare: np.ndarray | None = None
        for batch in read_captures(self.paths, self.problems):
            rows = decode(batch, self.config, spare)
            if self.reuse_rows and (spare is None or spare.shape[0] < rows.shape[0]):
                spare = rows
            self.mirrors.update(rows)
            self.frames += len(batch)
            self.error_counts += np.bincount(rows["error"], minlength=len(ERRORS))
            yield batch, rows

    def error_summary(self) -> dict[str, int]:
        return {str(ERRORS[i]): int(n) for i, n in enumerate(self.error_counts) if i and n}


def decode_files(paths: Iterable[str], config: DecodeConfig | None = None) -> np.ndarray:
    """Every frame of the given captures, decoded (small inputs; for tests and notebooks)."""
    run = PacketRun(list(paths), config or DecodeConfig())
    parts = [rows for _, rows in run.batches()]
    from flowscope.decode.columns import DECODED

    return np.concatenate(parts) if parts else np.zeros(0, DECODED)


@dataclass
class SessionResult:
    """``flowscope sessions``: one row per session (schema.SESSIONS), problems first, and
    the time series when an interval was asked for (schema.TIMELINE)."""

    table: pa.Table
    timeline: pa.Table | None


def track_sessions(run: PacketRun, batches: Iterable[tuple[PacketBatch, np.ndarray]] | None = None,
                   interval_ns: int | None = None) -> SessionResult:
    """Run the session trackers over a packet run (its batches, or the given iterator of
    them, e.g. one wrapped in a progress bar)."""
    import pyarrow as pa

    from flowscope.analyse.qp_rows import merge
    from flowscope.analyse.sessions import SessionTracker
    from flowscope.analyse.timeline import Timeline
    from flowscope.sinks.sessions import conn_table, problems_first, qp_table

    tracker = SessionTracker()
    timeline = Timeline(interval_ns) if interval_ns else None
    tables: list[pa.Table] = []
    for _, rows in batches if batches is not None else run.batches():
        events = tracker.update(rows)
        if timeline is not None:
            timeline.update(rows["ts_ns"], events)
        tables.extend(conn_table(c) for c in tracker.drain_conns())
    tracker.close()
    tables.extend(conn_table(c) for c in tracker.drain_conns())
    qps = tracker.queue_pairs()
    if qps.shape[0]:
        tables.append(qp_table(merge(qps)))
    from flowscope import schema

    table = problems_first(pa.concat_tables(tables) if tables else schema.SESSIONS.empty_table())
    return SessionResult(table, timeline.table(table) if timeline is not None else None)
