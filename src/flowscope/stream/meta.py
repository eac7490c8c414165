"""What travels with every batch of mirrored frames from a collector to the analysis server.

A collector (``flowscope listen --upstream``) numbers its batches per collector id; the server
acknowledges a batch only once it is durably stored, and ignores a sequence number it already
holds, so a reconnect or a restart on either side loses nothing and duplicates nothing.

Sampling and slicing done by the collector (or the switch) travel with the frames so that the
analysis can say "unknown" for what they hide.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BatchMeta:
    collector_id: str  # stable name of the collector (hostname by default)
    seq: int  # 0, 1, 2 ... per collector id, never reused
    sample_rate: int = 1  # 1-in-N sampling applied before this batch (1 = every frame)
    snaplen: int = 0  # mirrored frames sliced to this many bytes (0 = not sliced)
    filter: str = ""  # the filter/UDF rules the collector applied, as the user wrote them
    # collector counters at the time the batch was cut (cumulative since it started)
    received: int = 0  # frames read from the sockets/ring
    kernel_drops: int = 0  # frames the kernel dropped before flowscope saw them
    filtered_out: int = 0  # frames removed by filter/UDF rules
    sampled_out: int = 0  # frames removed by sampling
    spool_dropped: int = 0  # batches lost because the on-disk queue was full
    sent_ns: int = 0  # collector wall clock when the batch was cut, ns since the epoch
