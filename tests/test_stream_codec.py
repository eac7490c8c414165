"""FrameBatch codec: PacketBatch + BatchMeta survive the wire exactly; bad messages are errors."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.batch import PacketBatch
from flowscope.stream import regen
from flowscope.stream.codec import COLUMNS, META_FIELDS, FrameBatchError, decode, encode
from flowscope.stream.meta import BatchMeta
from flowscope.stream.mirror_pb2 import COMPRESSION_ZSTD, FrameBatch


def make_batch(caplens: list[int], seed: int) -> PacketBatch:
    """Frames of random bytes laid out back to back, with random per-frame columns."""
    rng = np.random.default_rng(seed)
    caplen = np.array(caplens, np.int32)
    offset = np.zeros(len(caplens), np.int64)
    np.cumsum(caplen[:-1], out=offset[1:])
    buf = rng.integers(0, 256, int(caplen.sum()), dtype=np.uint8)
    n = len(caplens)
    return PacketBatch(buf, offset, caplen,
                       caplen + rng.integers(0, 1500, n).astype(np.int32),
                       rng.integers(0, 2**62, n, dtype=np.int64),
                       rng.choice(np.array([1, 101, 228], np.int32), n),
                       np.arange(1, n + 1, dtype=np.int64) + int(rng.integers(0, 1 << 40)))


def frames(batch: PacketBatch) -> list[bytes]:
    return [batch.frame_bytes(i) for i in range(len(batch))]


metas = st.builds(BatchMeta, collector_id=st.text(max_size=20), seq=st.integers(0, 2**62),
                  sample_rate=st.integers(1, 1 << 20), snaplen=st.integers(0, 65535),
                  filter=st.text(max_size=40), received=st.integers(0, 2**62),
                  kernel_drops=st.integers(0, 2**62), filtered_out=st.integers(0, 2**62),
                  sampled_out=st.integers(0, 2**62), spool_dropped=st.integers(0, 2**40),
                  sent_ns=st.integers(0, 2**62))


@settings(max_examples=200, deadline=None)
@given(caplens=st.lists(st.integers(0, 300), max_size=60), seed=st.integers(0, 2**32 - 1),
       meta=metas, data=st.data())
def test_round_trip_is_exact(caplens: list[int], seed: int, meta: BatchMeta,
                             data: st.DataObject) -> None:
    whole = make_batch(caplens, seed)
    # a subset in any order, as a filter (take) leaves it: frames no longer back to back
    index = np.array(data.draw(st.lists(st.integers(0, max(len(caplens) - 1, 0)),
                                        max_size=len(caplens) * 2)) if caplens else [], np.int64)
    batch = whole.take(index) if data.draw(st.booleans()) else whole
    wire = encode(batch, meta, compress=data.draw(st.booleans())).SerializeToString()
    meta2, batch2 = decode(FrameBatch.FromString(wire))
    assert meta2 == meta
    assert len(batch2) == len(batch)
    assert frames(batch2) == frames(batch)
    for name in ("caplen", "wirelen", "ts_ns", "linktype", "frame"):
        column = getattr(batch2, name)
        assert column.dtype == getattr(batch, name).dtype
        assert np.array_equal(column, getattr(batch, name))
    assert batch2.offset.dtype == np.int64
    assert batch2.buf.size == int(batch.caplen.sum())  # compacted, nothing else


def test_back_to_back_frames_are_sent_as_they_are() -> None:
    batch = make_batch([60, 0, 1514, 64], seed=1)
    msg = encode(batch, BatchMeta("c", 7))
    assert msg.buf == batch.buf.tobytes()
    assert np.frombuffer(msg.offset, "<i4").tolist() == [0, 60, 60, 1574]
    assert msg.count == 4


def test_every_batch_meta_field_travels_in_the_frame_batch() -> None:
    proto_fields = {f.name for f in FrameBatch.DESCRIPTOR.fields}
    assert {f.name for f in fields(BatchMeta)} <= proto_fields
    assert set(META_FIELDS) | {name for name, _ in COLUMNS} | {
        "count", "buf", "buf_compression", "buf_size"} == proto_fields


@settings(max_examples=300, deadline=None)
@given(count=st.integers(0, 8), parts=st.lists(st.binary(max_size=48), min_size=7, max_size=7))
def test_malformed_batches_are_refused_or_stay_in_bounds(count: int, parts: list[bytes]) -> None:
    buf, *cols = parts
    msg = FrameBatch(collector_id="x", seq=3, count=count, buf=buf,
                     **{name: raw for (name, _), raw in zip(COLUMNS, cols, strict=True)})
    try:
        _, batch = decode(msg)
    except FrameBatchError as e:
        assert "seq 3 from 'x'" in str(e)
        return
    assert len(batch) == count
    assert np.all(batch.offset + batch.caplen <= len(buf))
    assert np.all((batch.offset >= 0) & (batch.caplen >= 0))


@settings(max_examples=100, deadline=None)
@given(compressed=st.binary(max_size=64), size=st.integers(0, 1 << 20))
def test_bad_zstd_is_refused(compressed: bytes, size: int) -> None:
    msg = FrameBatch(collector_id="x", seq=3, buf=compressed, buf_size=size,
                     buf_compression=COMPRESSION_ZSTD)
    try:
        _, batch = decode(msg)
    except FrameBatchError as e:
        assert str(e).startswith("FrameBatch seq 3 from 'x': buf")
        return
    assert batch.buf.size == size


def test_compressed_frames_are_smaller_and_equal() -> None:
    batch = make_batch([200] * 50, seed=3)
    batch.buf[::2] = 0  # half zeros: compressible
    msg = encode(batch, BatchMeta("c", 1), compress=True)
    assert msg.buf_compression == COMPRESSION_ZSTD and msg.buf_size == 10_000
    assert len(msg.buf) < 7_000
    assert frames(decode(msg)[1]) == frames(batch)


def test_frame_outside_the_buffer_is_named() -> None:
    batch = make_batch([10, 20], seed=2)
    msg = encode(batch, BatchMeta("col", 5))
    msg.caplen = np.array([10, 21], "<i4").tobytes()
    with pytest.raises(FrameBatchError, match="frame 1 \\(offset 10, caplen 21\\) lies outside "
                                               "its 30-byte buffer"):
        decode(msg)


def test_regenerating_the_protobuf_modules_changes_nothing() -> None:
    for name, data in regen.generate().items():
        assert (regen.PACKAGE_DIR / name).read_bytes() == data, (
            f"{name} is stale: run python -m flowscope.stream.regen")
