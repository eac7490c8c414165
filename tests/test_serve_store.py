"""The server's batch store: exact round trip, sequence recovery, torn tails, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowscope.errors import FlowscopeError
from flowscope.serve.store import BatchStore, frame_bytes
from flowscope.stream.meta import BatchMeta

from .serve_fixtures import ROOT, batches, make_incident


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_incident(tmp_path_factory.mktemp("incident"))


@pytest.fixture(scope="module")
def small_batches(incident: Path) -> list:
    return list(batches(incident, 50))


def frames_of(batch) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [batch.frame_bytes(i) for i in range(len(batch))]


def assert_same_batch(a, b) -> None:  # type: ignore[no-untyped-def]
    for name in ("caplen", "wirelen", "ts_ns", "linktype", "frame"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert frames_of(a) == frames_of(b)


def test_round_trip_keeps_every_frame_and_the_meta(tmp_path: Path, small_batches: list) -> None:
    store = BatchStore(tmp_path)
    meta = [BatchMeta("leaf-1", i, sample_rate=1 + i % 3, snaplen=128 * (i % 2),
                      filter="tcp port 443", received=100 * i, kernel_drops=i,
                      sent_ns=1_700_000_000_000_000_000 + i) for i in range(len(small_batches))]
    for m, b in zip(meta, small_batches, strict=True):
        assert store.append(m, b) is not None
    store.close()
    again = list(BatchStore(tmp_path).replay())
    assert [s.meta for s in again] == meta
    assert [s.arrival for s in again] == list(range(len(meta)))
    for stored, original in zip(again, small_batches[: len(again)], strict=True):
        assert_same_batch(stored.batch, original)


def test_frames_of_a_taken_batch_are_gathered(small_batches: list) -> None:
    b = small_batches[0]
    picked = b.take(np.array([5, 1, 3]))  # shares the buffer, out of order
    assert frame_bytes(picked).tobytes() == b"".join(frames_of(picked))


def test_last_seq_survives_a_restart_and_resends_are_not_stored(tmp_path: Path,
                                                                small_batches: list) -> None:
    store = BatchStore(tmp_path)
    assert store.last_seq("a") == -1
    for seq in range(3):
        store.append(BatchMeta("a", seq), small_batches[seq])
    store.append(BatchMeta("b", 10), small_batches[3])
    store.close()
    store = BatchStore(tmp_path)
    assert (store.last_seq("a"), store.last_seq("b"), store.last_seq("c")) == (2, 10, -1)
    assert store.append(BatchMeta("a", 2), small_batches[2]) is None  # a resend
    assert store.append(BatchMeta("a", 3), small_batches[4]).arrival == 4  # type: ignore[union-attr]
    store.close()
    replayed = [(s.meta.collector_id, s.meta.seq) for s in BatchStore(tmp_path).replay()]
    assert replayed == [("a", 0), ("a", 1), ("a", 2), ("b", 10), ("a", 3)]


def test_replay_follows_arrival_order_across_collectors(tmp_path: Path,
                                                       small_batches: list) -> None:
    store = BatchStore(tmp_path)
    order = ["x", "y", "y", "x", "z", "x", "y"]
    seqs: dict[str, int] = {}
    for k, cid in enumerate(order):
        seqs[cid] = seqs.get(cid, -1) + 1
        store.append(BatchMeta(cid, seqs[cid]), small_batches[k])
    store.close()
    again = list(BatchStore(tmp_path).replay())
    assert [s.meta.collector_id for s in again] == order
    for stored, original in zip(again, small_batches[: len(again)], strict=True):
        assert_same_batch(stored.batch, original)


def test_collector_ids_are_stored_safely(tmp_path: Path, small_batches: list) -> None:
    store = BatchStore(tmp_path)
    for k, cid in enumerate(["../escape", "a/b", "..", "ünïcode host"]):
        store.append(BatchMeta(cid, 0), small_batches[k])
    store.close()
    assert sorted(p.parent.name for p in tmp_path.rglob("*.fsb")) == sorted(
        ["c-..%2Fescape", "c-a%2Fb", "c-..", "c-%C3%BCn%C3%AFcode%20host"])
    assert all(p.is_relative_to(tmp_path / "collectors") for p in tmp_path.rglob("*.fsb"))
    assert sorted(BatchStore(tmp_path).logs) == sorted(["../escape", "a/b", "..",
                                                        "ünïcode host"])


def test_segments_rotate_and_a_restart_continues_the_log(tmp_path: Path,
                                                         small_batches: list) -> None:
    store = BatchStore(tmp_path, segment_bytes=20_000)
    for seq in range(8):
        store.append(BatchMeta("a", seq), small_batches[seq])
    store.close()
    store = BatchStore(tmp_path, segment_bytes=20_000)
    for seq in range(8, 12):
        store.append(BatchMeta("a", seq), small_batches[seq])
    store.close()
    segments = sorted((tmp_path / "collectors" / "c-a").glob("*.fsb"))
    assert len(segments) > 2
    again = list(BatchStore(tmp_path).replay())
    assert [s.meta.seq for s in again] == list(range(12))
    for stored, original in zip(again, small_batches[: len(again)], strict=True):
        assert_same_batch(stored.batch, original)


def _segment(tmp_path: Path) -> Path:
    (seg,) = (tmp_path / "collectors" / "c-a").glob("*.fsb")
    return seg


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_torn_tail_is_cut_off_and_the_log_goes_on(tmp_path_factory: pytest.TempPathFactory,
                                                    small_batches: list,
                                                    data: st.DataObject) -> None:
    root = tmp_path_factory.mktemp("torn")
    store = BatchStore(root)
    ends = []
    for seq in range(4):
        store.append(BatchMeta("a", seq), small_batches[seq])
        ends.append(os.path.getsize(_segment(root)))
    store.close()
    cut = data.draw(st.integers(0, ends[-1] - 1), label="cut")
    with open(_segment(root), "r+b") as f:
        f.truncate(cut)
    reopened = BatchStore(root)
    complete = sum(end <= cut for end in ends)
    assert reopened.last_seq("a") == complete - 1
    assert bool(reopened.torn) == (cut not in (0, 8, *ends))  # 8: the segment header
    # the collector resends what was never acknowledged; the log continues cleanly
    for seq in range(complete, 4):
        reopened.append(BatchMeta("a", seq), small_batches[seq])
    reopened.close()
    assert [s.meta.seq for s in BatchStore(root).replay()] == [0, 1, 2, 3]


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_last_record_is_discarded(tmp_path_factory: pytest.TempPathFactory,
                                            small_batches: list, data: st.DataObject) -> None:
    root = tmp_path_factory.mktemp("flip")
    store = BatchStore(root)
    for seq in range(3):
        store.append(BatchMeta("a", seq), small_batches[seq])
        if seq == 1:
            start = os.path.getsize(_segment(root))
    store.close()
    end = os.path.getsize(_segment(root))
    at = data.draw(st.integers(start, end - 1), label="byte")
    raw = bytearray(_segment(root).read_bytes())
    raw[at] ^= data.draw(st.integers(1, 255), label="xor")
    _segment(root).write_bytes(bytes(raw))
    reopened = BatchStore(root)
    assert reopened.last_seq("a") == 1
    assert reopened.torn and os.path.getsize(_segment(root)) == start


def test_damage_before_the_tail_is_an_error_not_a_silent_loss(tmp_path: Path,
                                                              small_batches: list) -> None:
    store = BatchStore(tmp_path, segment_bytes=20_000)
    for seq in range(8):
        store.append(BatchMeta("a", seq), small_batches[seq])
    store.close()
    first = sorted((tmp_path / "collectors" / "c-a").glob("*.fsb"))[0]
    with open(first, "r+b") as f:
        f.truncate(os.path.getsize(first) - 10)
    with pytest.raises(FlowscopeError, match="middle of the log"):
        BatchStore(tmp_path, segment_bytes=20_000)


WRITER = textwrap.dedent("""
    import sys
    from flowscope.serve.store import BatchStore
    from flowscope.sources import read_captures
    from flowscope.stream.meta import BatchMeta
    store = BatchStore(sys.argv[1])
    seq = 0
    while True:  # until killed
        for batch in read_captures([sys.argv[2]], batch_frames=50):
            store.append(BatchMeta("leaf", seq), batch)
            print(seq, flush=True)  # acknowledged: durable from here on
            seq += 1
""")


def test_kill_9_loses_no_acknowledged_batch(tmp_path: Path, incident: Path,
                                            small_batches: list) -> None:
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "store"),
                              str(incident)], stdout=subprocess.PIPE, text=True,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert child.stdout is not None
    acked = -1
    while acked < 40:
        acked = int(child.stdout.readline())
    child.send_signal(signal.SIGKILL)
    child.wait()
    store = BatchStore(tmp_path / "store")
    assert store.last_seq("leaf") >= acked
    replayed = list(store.replay())
    assert [s.meta.seq for s in replayed] == list(range(store.last_seq("leaf") + 1))
    n = len(small_batches)
    for s in replayed:
        assert_same_batch(s.batch, small_batches[s.meta.seq % n])
