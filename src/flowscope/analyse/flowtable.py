"""An open-addressing hash table from a flow key to a row of a tracker's state array.

Flow keys are hashed twice, from two different offset bases and in two different field
orders; the table stores both 64-bit hashes, so two different flows share a slot only if 128
bits collide (with a million live flows, about 10^-27).  The key itself lives in the
tracker's state rows.  The hash takes a 64-bit word per step (a multiply by 2^64 / golden
ratio, then the high half folded into the low half, which picks the slot): FNV-1a's byte
per step made hashing a third of a tracker's time.

Deletion is by rebuilding: trackers flush idle flows in bulk, compact their state array and
call :func:`rebuild`, which is cheaper and simpler than tombstones.
"""

from __future__ import annotations

import numpy as np

from flowscope.jit import njit

MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd (Knuth, TAOCP 6.4)
BASIS_1 = np.uint64(0xCBF29CE484222325)
BASIS_2 = np.uint64(0x84222325CBF29CE4)
EMPTY = -1


@njit(inline="always", cache=True)
def mix(h, v):  # pragma: no cover - compiled
    """One step over the 64-bit word v (an integer field, sign-extended)."""
    h = (h ^ np.uint64(v)) * MULTIPLIER
    return h ^ (h >> np.uint64(32))


@njit(inline="always", cache=True)
def mix_addr(h, a):  # pragma: no cover - compiled
    """Two steps over a 16-byte address (IPv4 in the first 4 bytes), as little-endian words."""
    for k in range(0, 16, 8):
        w = np.uint64(0)
        for b in range(8):
            w |= np.uint64(a[k + b]) << np.uint64(8 * b)
        h = mix(h, w)
    return h


@njit(cache=True)
def find(slots, hashes, h1, h2):  # pragma: no cover - compiled
    """The state row of flow (h1, h2), or -(slot + 2) where it would be inserted."""
    mask = slots.shape[0] - 1
    i = np.int64(h1 & np.uint64(mask))
    while True:
        j = slots[i]
        if j == EMPTY:
            return -(i + 2)
        if hashes[j, 0] == h1 and hashes[j, 1] == h2:
            return j
        i = (i + 1) & mask


@njit(inline="always", cache=True)
def insert(slots, hashes, used, miss, h1, h2):  # pragma: no cover - compiled
    """Add flow (h1, h2) where :func:`find` missed (``miss`` = its negative answer); the new
    row's index.  The caller keeps room (FlowStore.reserve) and initialises the row."""
    j = used[0]
    used[0] += 1
    slots[-miss - 2] = j
    hashes[j, 0] = h1
    hashes[j, 1] = h2
    return j


@njit(cache=True)
def rebuild(slots, hashes, n):  # pragma: no cover - compiled
    """Re-insert rows 0..n-1 after a compaction or a resize."""
    slots[:] = EMPTY
    mask = slots.shape[0] - 1
    for j in range(n):
        i = np.int64(hashes[j, 0] & np.uint64(mask))
        while slots[i] != EMPTY:
            i = (i + 1) & mask
        slots[i] = j


def table_size(capacity: int) -> int:
    """A power of two at least twice the capacity (load factor <= 0.5)."""
    size = 16
    while size < 2 * capacity:
        size *= 2
    return size


def raw(a: np.ndarray) -> np.ndarray:
    """A structured array's rows as bytes: NumPy copies structured rows field by field (over
    100x slower than copying the bytes), so bulk moves go through this view."""
    return a.view(np.uint8).reshape(a.shape[0], a.dtype.itemsize)


class FlowStore:
    """A tracker's live flows: state rows, their key hashes and the table over them.

    The compiled tracker appends rows itself (it gets ``n`` back through ``used``); between
    batches, :meth:`reserve` makes room for a batch's worth of new flows and :meth:`take`
    removes flushed flows, returning their final state.
    """

    def __init__(self, dtype: np.dtype, capacity: int = 1024) -> None:
        self.dtype = dtype
        self.state = np.zeros(capacity, dtype)
        self.hashes = np.zeros((capacity, 2), np.uint64)
        self.slots = np.full(table_size(capacity), EMPTY, np.int64)
        self.used = np.zeros(1, np.int64)  # rows in use; written by the compiled tracker

    @property
    def n(self) -> int:
        return int(self.used[0])

    def live(self) -> np.ndarray:
        return self.state[: self.n]

    def reserve(self, extra: int) -> None:
        need = self.n + extra
        if need <= self.state.shape[0]:
            return
        capacity = max(need, 2 * self.state.shape[0])
        state = np.zeros(capacity, self.dtype)
        raw(state)[: self.n] = raw(self.state)[: self.n]
        hashes = np.zeros((capacity, 2), np.uint64)
        hashes[: self.n] = self.hashes[: self.n]
        self.state, self.hashes = state, hashes
        self.slots = np.full(table_size(capacity), EMPTY, np.int64)
        rebuild(self.slots, self.hashes, self.n)

    def take_all(self) -> np.ndarray:
        """Every live flow, handed over without a copy; the store starts empty again."""
        out = self.state[: self.n]
        self.state = np.zeros(16, self.dtype)
        self.hashes = np.zeros((16, 2), np.uint64)
        self.slots = np.full(table_size(16), EMPTY, np.int64)
        self.used[0] = 0
        return out

    def take(self, done: np.ndarray) -> np.ndarray:
        """Remove the flows where ``done`` (a mask over the live rows) is true; their rows."""
        n = self.n
        if not done.any():
            return self.state[:0].copy()
        if done.all():
            return self.take_all()
        rows = raw(self.state)
        out = rows[:n][done].view(self.dtype).ravel()
        keep = ~done
        kept = int(keep.sum())
        rows[:kept] = rows[:n][keep]
        self.hashes[:kept] = self.hashes[:n][keep]
        rows[kept:n] = 0
        self.used[0] = kept
        rebuild(self.slots, self.hashes, kept)
        return out
