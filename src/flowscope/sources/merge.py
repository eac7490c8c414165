"""Merge several time-ordered batch streams into one, in capture-time order.

Each round takes, from every stream's current batch, the frames no later than the earliest
"last timestamp" among those batches (after it, another stream could still have an earlier
frame), orders them by time (stable: ties keep file order) and copies them into one new
buffer.  The stream that set the horizon is always used up, so every round makes progress.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from flowscope.batch import PacketBatch
from flowscope.jit import njit


@njit(cache=True)
def gather(src, src_off, length, dst, dst_off):  # pragma: no cover - compiled
    for i in range(src_off.shape[0]):
        dst[dst_off[i] : dst_off[i] + length[i]] = src[src_off[i] : src_off[i] + length[i]]


def merge_by_time(streams: list[Iterator[PacketBatch]], batch_frames: int) -> Iterator[PacketBatch]:
    heads: list[PacketBatch | None] = [next(s, None) for s in streams]
    while True:
        live = [i for i, h in enumerate(heads) if h is not None]
        if not live:
            return
        horizon = min(int(heads[i].ts_ns.max()) for i in live)  # type: ignore[union-attr]
        parts: list[PacketBatch] = []
        for i in live:
            h = heads[i]
            assert h is not None
            take = h.ts_ns <= horizon
            parts.append(h.take(np.flatnonzero(take)))
            rest = np.flatnonzero(~take)
            heads[i] = h.take(rest) if rest.size else next(streams[i], None)
        yield _combine(parts)


def _combine(parts: list[PacketBatch]) -> PacketBatch:
    ts = np.concatenate([p.ts_ns for p in parts])
    order = np.argsort(ts, kind="stable")
    caplen = np.concatenate([p.caplen for p in parts])
    sizes = caplen[order].astype(np.int64)
    dst_off_sorted = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    dst_off = np.empty_like(dst_off_sorted)
    dst_off[order] = dst_off_sorted
    buf = np.empty(int(sizes.sum()), np.uint8)
    start = 0
    for p in parts:
        n = len(p)
        gather(p.buf, p.offset, p.caplen, buf, dst_off[start : start + n])
        start += n
    return PacketBatch(buf, dst_off[order], caplen[order],
                       np.concatenate([p.wirelen for p in parts])[order], ts[order],
                       np.concatenate([p.linktype for p in parts])[order],
                       np.zeros(order.shape[0], np.int64))
