"""Spool: bounded on-disk queue — order, acknowledgement, restart, torn tail, drop oldest."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.stream.spool import RECORD, Spool, SpoolError


def payload(i: int, size: int = 100) -> bytes:
    return (f"batch {i:04d} ".encode() * size)[:size]


def drain(spool: Spool, after: int = -1) -> list[tuple[int, bytes]]:
    out = []
    while (record := spool.read_after(after)) is not None:
        out.append(record)
        after = record[0]
    return out


def test_records_come_back_in_order_and_acks_forget_whole_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, segment_bytes=3 * (RECORD.size + 100))
    assert [spool.append(payload(i)) for i in range(7)] == list(range(7))
    assert drain(spool) == [(i, payload(i)) for i in range(7)]
    assert drain(spool, after=4) == [(5, payload(5)), (6, payload(6))]
    assert len(list(tmp_path.glob("*.seg"))) == 3  # 0-2, 3-5, 6
    assert spool.backlog() == (7, 700)
    spool.ack(4)
    assert spool.backlog() == (2, 200)
    assert spool.first_pending() == 5
    assert sorted(p.name for p in tmp_path.glob("*.seg")) == [  # 0-2 gone; 3-5 still holds 5
        "00000000000000000003.seg", "00000000000000000006.seg"]
    spool.ack(6)
    # the newest segment stays, even acknowledged: it holds the highest number given
    assert [p.name for p in tmp_path.glob("*.seg")] == ["00000000000000000006.seg"]
    assert spool.backlog() == (0, 0)
    assert spool.first_pending() == 7
    spool.close()


def test_reopening_resumes_pending_batches_and_numbering(tmp_path: Path) -> None:
    with Spool(tmp_path, 1 << 20, collector_id="c1", segment_bytes=250) as spool:
        for i in range(5):
            spool.append(payload(i))
        spool.ack(1)
    with Spool(tmp_path, 1 << 20, collector_id="c1", segment_bytes=250) as spool:
        assert spool.acked == 1
        assert spool.backlog() == (3, 300)
        assert [seq for seq, _ in drain(spool, spool.acked)] == [2, 3, 4]
        assert spool.append(payload(5)) == 5
        spool.ack(5)
    with Spool(tmp_path, 1 << 20, collector_id="c1") as spool:
        # everything acknowledged and forgotten but the newest segment: numbering goes on
        assert spool.backlog() == (0, 0)
        assert spool.append(payload(6)) == 6


def test_a_torn_last_record_is_truncated(tmp_path: Path) -> None:
    with Spool(tmp_path, 1 << 20) as spool:
        for i in range(3):
            spool.append(payload(i))
    (segment,) = tmp_path.glob("*.seg")
    whole = segment.stat().st_size
    with open(segment, "r+b") as f:  # a crash in the middle of writing record 2
        f.truncate(whole - 30)
    with Spool(tmp_path, 1 << 20) as spool:
        assert drain(spool) == [(0, payload(0)), (1, payload(1))]
        assert segment.stat().st_size == 2 * (RECORD.size + 100)
        # numbering never goes back (spool.json says 3 were numbered): a number the server may
        # have acknowledged is never given to another batch
        assert spool.append(payload(3)) == 3
        assert drain(spool, 1) == [(3, payload(3))]


def test_a_corrupt_last_record_is_truncated(tmp_path: Path) -> None:
    with Spool(tmp_path, 1 << 20) as spool:
        for i in range(3):
            spool.append(payload(i))
    (segment,) = tmp_path.glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF  # the CRC no longer matches
    segment.write_bytes(bytes(data))
    with Spool(tmp_path, 1 << 20) as spool:
        assert [seq for seq, _ in drain(spool)] == [0, 1]


def test_full_spool_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    record = RECORD.size + 100
    spool = Spool(tmp_path, 6 * record, segment_bytes=2 * record)
    for i in range(10):
        spool.append(payload(i))
    # segments of 2 records; 6 records fit: the 4 oldest (two segments) went
    assert spool.dropped == 4
    assert [seq for seq, _ in drain(spool)] == [4, 5, 6, 7, 8, 9]
    spool.ack(5)
    for i in range(10, 14):
        spool.append(payload(i))
    assert spool.dropped == 6  # 4, 5 were acknowledged: dropping them lost nothing; 6, 7 lost
    assert [seq for seq, _ in drain(spool, spool.acked)] == [8, 9, 10, 11, 12, 13]
    spool.close()
    with Spool(tmp_path, 6 * record) as again:
        assert again.dropped == 6


def test_a_batch_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    with Spool(tmp_path, 1000) as spool, pytest.raises(SpoolError, match="raise the limit"):
        spool.append(b"x" * 1000)


def test_a_spool_belongs_to_one_collector(tmp_path: Path) -> None:
    Spool(tmp_path, 1 << 20, collector_id="rack1").close()
    with pytest.raises(SpoolError, match="belongs to collector 'rack1', not 'rack2'"):
        Spool(tmp_path, 1 << 20, collector_id="rack2")


def test_every_append_synced_when_asked(tmp_path: Path) -> None:
    with Spool(tmp_path, 1 << 20, fsync_interval=0) as spool:
        spool.append(payload(0))
        assert not spool._dirty  # synced before append returned


ops = st.lists(st.one_of(st.tuples(st.just("append"), st.integers(0, 300)),
                         st.tuples(st.just("ack"), st.integers(0, 5)),
                         st.tuples(st.just("reopen"), st.just(0))), max_size=60)


@settings(max_examples=80, deadline=None)
@given(ops=ops, limit=st.integers(400, 3000), segment=st.integers(50, 1000))
def test_spool_keeps_the_newest_unacknowledged_records_in_order(
        ops: list[tuple[str, int]], limit: int, segment: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        spool = Spool(directory, limit, segment_bytes=segment)
        appended: list[tuple[int, bytes]] = []
        acked, lost, present = -1, 0, set()
        for op, arg in ops:
            if op == "append":
                data = payload(len(appended), arg)
                appended.append((spool.append(data), data))
            elif op == "ack" and appended:
                acked = max(acked, min(acked + arg, appended[-1][0]))
                spool.ack(acked)
            elif op == "reopen":
                spool.close()
                spool = Spool(directory, limit, segment_bytes=segment)
            now = {seq for seq, _ in drain(spool)}
            lost += sum(1 for seq in present - now if seq > acked)  # gone unacknowledged
            present = now
        held = drain(spool, acked)
        wanted = [r for r in appended if r[0] > acked]
        assert held == wanted[len(wanted) - len(held):]  # the oldest go first, nothing else
        assert spool.dropped == lost
        assert spool.backlog() == (len(held), sum(len(p) for _, p in held))
        assert [s for s, _ in appended] == list(range(len(appended)))
        assert sum(p.stat().st_size for p in Path(directory).glob("*.seg")) <= max(
            limit, RECORD.size + 300)
        spool.close()


@settings(max_examples=200, deadline=None)
@given(garbage=st.binary(max_size=200), records=st.integers(0, 3))
def test_a_damaged_segment_never_stops_the_spool(garbage: bytes, records: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        with Spool(directory, 1 << 20) as spool:
            for i in range(records):
                spool.append(payload(i))
        with open(Path(directory) / "00000000000000000000.seg", "ab") as f:
            f.write(garbage)
        with Spool(directory, 1 << 20) as spool:
            held = drain(spool)
            assert held[:records] == [(i, payload(i)) for i in range(records)]
            assert [s for s, _ in held] == sorted({s for s, _ in held})
            seq = spool.append(b"after")
            assert drain(spool, seq - 1) == [(seq, b"after")]
