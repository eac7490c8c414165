"""The flow table under the session trackers: word-wise key hashing and open addressing."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.analyse.flowtable import (
    BASIS_1,
    EMPTY,
    MULTIPLIER,
    find,
    insert,
    mix,
    mix_addr,
    rebuild,
    table_size,
)

M64 = (1 << 64) - 1


def reference_mix(h: int, v: int) -> int:
    """mix() written out in Python integers: xor, multiply mod 2^64, fold the high half."""
    h = ((h ^ (v & M64)) * int(MULTIPLIER)) & M64
    return h ^ (h >> 32)


def test_mix_is_xor_multiply_fold() -> None:
    assert int(mix(BASIS_1, 0)) == reference_mix(int(BASIS_1), 0)
    assert int(mix(np.uint64(0), 1)) == 0x9E3779B97F4A7C15 ^ 0x9E3779B9
    # a negative field (-1: absent) hashes as its 64-bit two's complement
    assert int(mix(BASIS_1, -1)) == reference_mix(int(BASIS_1), M64)


@given(st.binary(min_size=16, max_size=16), st.integers(0, M64))
def test_mix_addr_takes_two_little_endian_words(addr: bytes, h: int) -> None:
    lo, hi = np.frombuffer(addr, "<u8")
    want = reference_mix(reference_mix(h, int(lo)), int(hi))
    assert int(mix_addr(np.uint64(h), np.frombuffer(addr, np.uint8))) == want


def test_mix_addr_separates_ipv4_neighbours() -> None:
    """10.0.0.1 and 10.0.0.2 (first 4 bytes, rest zero) land far apart, low bits included
    (the low bits pick the slot)."""
    a = np.zeros(16, np.uint8)
    b = np.zeros(16, np.uint8)
    a[:4] = (10, 0, 0, 1)
    b[:4] = (10, 0, 0, 2)
    ha, hb = int(mix_addr(BASIS_1, a)), int(mix_addr(BASIS_1, b))
    assert bin(ha ^ hb).count("1") > 16
    assert (ha & 0xFFFF) != (hb & 0xFFFF)


def _table(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    capacity = max(16, keys.shape[0])
    slots = np.full(table_size(capacity), EMPTY, np.int64)
    hashes = np.zeros((capacity, 2), np.uint64)
    used = np.zeros(1, np.int64)
    for h1, h2 in keys:
        miss = find(slots, hashes, h1, h2)
        assert miss < 0
        insert(slots, hashes, used, miss, h1, h2)
    return slots, hashes, used


@settings(max_examples=50)
@given(st.sets(st.tuples(st.integers(0, 255), st.integers(0, M64)), min_size=1, max_size=300))
def test_every_inserted_flow_is_found_again_in_insertion_order(keys: set[tuple[int, int]]) -> None:
    # few distinct first hashes (0-255): long probe runs and shared slots are exercised
    k = np.array(sorted(keys), np.uint64)
    slots, hashes, used = _table(k)
    assert used[0] == k.shape[0]
    for row, (h1, h2) in enumerate(k):
        assert find(slots, hashes, h1, h2) == row
    assert find(slots, hashes, np.uint64(256), np.uint64(0)) < 0


@settings(max_examples=50)
@given(st.sets(st.tuples(st.integers(0, 255), st.integers(0, M64)), min_size=2, max_size=200),
       st.randoms(use_true_random=False))
def test_rebuild_after_compaction_finds_the_kept_rows(keys: set[tuple[int, int]],
                                                     rnd) -> None:  # type: ignore[no-untyped-def]
    k = np.array(sorted(keys), np.uint64)
    slots, hashes, _ = _table(k)
    keep = np.array([rnd.random() < 0.5 for _ in range(k.shape[0])])
    kept = int(keep.sum())
    hashes[:kept] = hashes[: k.shape[0]][keep]
    rebuild(slots, hashes, kept)
    for row, (h1, h2) in enumerate(k[keep]):
        assert find(slots, hashes, h1, h2) == row
    for h1, h2 in k[~keep]:
        assert find(slots, hashes, h1, h2) < 0
