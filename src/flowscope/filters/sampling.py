"""Sampling 1-in-N and slicing to N bytes, as a switch's mirror session does them.

A switch samples deterministically (every Nth packet the session selects; Arista
``monitor session ... sample``, Cisco ERSPAN ``sampling``) and slices each copy to a
configured length (``truncate``/``mtu``) while the header keeps the original length, so the
collector sees a short copy of a long packet.  Here the slice keeps the frame's bytes in the
shared buffer and lowers its ``caplen`` so the mirrored frame holds at most N bytes; its
``wirelen`` stays, so the decoder flags the copy as truncated and session analysis reports
what the missing bytes hide as unknown.  Both count what they did.
"""

from __future__ import annotations

import numpy as np

from flowscope.batch import PacketBatch
from flowscope.errors import FlowscopeError


class Sampler:
    """Keeps the Nth, 2Nth, 3Nth ... frame offered to it, counting across batches."""

    def __init__(self, every: int) -> None:
        if every < 1:
            raise FlowscopeError(f"sampling 1-in-{every}: N must be at least 1")
        self.every = every
        self.seen = 0  # frames offered
        self.kept = 0

    def keep(self, n: int) -> np.ndarray:
        """Which of the next ``n`` frames offered are kept."""
        position = self.seen + np.arange(1, n + 1, dtype=np.int64)
        kept = position % self.every == 0
        self.seen += n
        self.kept += int(np.count_nonzero(kept))
        return kept


class Slicer:
    """Cuts the mirrored frame (the tunnel's payload, else the frame) to ``snaplen`` bytes."""

    def __init__(self, snaplen: int) -> None:
        if snaplen < 1:
            raise FlowscopeError(f"slicing to {snaplen} bytes: the length must be positive")
        self.snaplen = snaplen
        self.sliced = 0  # frames cut
        self.bytes_cut = 0  # captured bytes removed

    def slice(self, batch: PacketBatch, rows: np.ndarray) -> tuple[PacketBatch, np.ndarray]:
        """The batch with shorter ``caplen`` where needed, and which frames were cut."""
        inner = rows["inner_off"]
        start = np.where(inner >= 0, inner - batch.offset, 0)  # mirrored frame in the record
        caplen = np.minimum(batch.caplen.astype(np.int64), start + self.snaplen)
        cut = caplen < batch.caplen
        self.sliced += int(np.count_nonzero(cut))
        self.bytes_cut += int((batch.caplen - caplen).sum())
        return PacketBatch(batch.buf, batch.offset, caplen.astype(batch.caplen.dtype),
                           batch.wirelen, batch.ts_ns, batch.linktype, batch.frame), cut
