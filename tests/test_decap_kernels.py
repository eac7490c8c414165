"""The compiled fast paths behind `flowscope decap`: the Enhanced Packet Block kernel (decimal
text, resuming after a full buffer or a new interface) and the mirror-stream tracker (streams
matched by key or by hash, batches cut anywhere)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.analyse.mirrors import RECENT, MirrorTracker
from flowscope.decode import decode
from flowscope.jit import njit  # a kernel calling flowscope kernels: through the same JIT
from flowscope.sinks import pcapng
from flowscope.sinks.pcapng import DONE, NEW_INTERFACE, OUT_FULL, PcapngWriter, build_blocks
from flowscope.sources import read_captures

from .generated import Record, erspan2, tcp_frame, ts, vxlan, write_pcap


@njit
def _decimal(v):  # pragma: no cover - compiled
    out = np.zeros(24, np.uint8)
    end = pcapng._put_decimal(out, 2, v)
    return out, end


@settings(deadline=None)  # the first example compiles
@given(st.integers(0, 2**63 - 1))
def test_decimal_text_is_pythons(v: int) -> None:
    out, end = _decimal(v)
    assert bytes(out[2:end]) == str(v).encode()
    assert not out[:2].any() and not out[end:].any()


def test_decimal_text_at_powers_of_ten() -> None:
    for k in range(19):
        for v in (10**k - 1, 10**k, 10**k + 1):
            out, end = _decimal(v)
            assert bytes(out[2:end]) == str(v).encode()


def _mix(tmp_path: Path, sessions: int, frames: int) -> Path:
    """ERSPAN II frames of `sessions` interleaved sessions, then VXLAN frames (other streams,
    no GRE sequence), so interfaces and streams keep appearing mid-capture."""
    records = [Record(erspan2(tcp_frame(i, payload=i % 7), seq=i // sessions + 1,
                              session=1 + i % sessions, vlan=i % 3), ts(i))
               for i in range(frames)]
    records += [Record(vxlan(tcp_frame(i), vni=500 + i % 3), ts(frames + i)) for i in range(6)]
    return write_pcap(tmp_path / "mix.pcap", records)


def _rows(path: Path, batch_frames: int) -> tuple[list[tuple[object, np.ndarray]], MirrorTracker]:
    tracker = MirrorTracker()
    out = []
    for batch in read_captures([str(path)], batch_frames=batch_frames):
        rows = decode(batch)
        tracker.update(rows)
        out.append((batch, rows))
    return out, tracker


def test_tracker_is_the_same_for_any_batch_cut(tmp_path: Path) -> None:
    path = _mix(tmp_path, sessions=RECENT + 4, frames=60)  # more streams than it recalls
    whole, one = _rows(path, 1 << 16)
    rows = whole[0][1]
    assert sorted(one.ids.values()) == list(range(RECENT + 4 + 3))
    assert sorted(one.keys["erspan_session"][: len(one)].tolist()) == [-1] * 3 + list(
        range(1, RECENT + 5))
    assert sorted(one.state["packets"][: len(one)].tolist()) == [2] * 3 + [5] * (RECENT + 4)
    def by_stream(rows: np.ndarray, tracker: MirrorTracker) -> tuple[dict[int, bytes], list[int]]:
        """Stream state and each row's stream, by stream key hash (ids are numbered in hash
        order within the batch that first meets them, so they depend on the cut)."""
        key = {sid: h for h, sid in tracker.ids.items()}
        rows = rows.copy()
        streams = [key.get(s, 0) for s in rows["stream"].tolist()]
        rows["stream"] = 0
        return {h: tracker.state[s].tobytes() for h, s in tracker.ids.items()} | {
            0: rows.tobytes()}, streams

    expected = by_stream(rows, one)
    for cut in (1, 5, 13):
        parts, tracker = _rows(path, cut)
        assert by_stream(np.concatenate([r for _, r in parts]), tracker) == expected


def test_tracker_copy_with_replaced_ids_keeps_counting(tmp_path: Path) -> None:
    """serve copies a tracker by replacing ids, keys and state: the lookup follows ids."""
    path = _mix(tmp_path, sessions=3, frames=9)
    parts, tracker = _rows(path, 4)
    copy = MirrorTracker()
    copy.ids, copy.keys, copy.state = dict(tracker.ids), tracker.keys.copy(), tracker.state.copy()
    for batch in read_captures([str(path)]):
        copy.update(decode(batch))
    assert copy.ids == tracker.ids
    assert (copy.state["packets"] == 2 * tracker.state["packets"]).all()


def _written(batches: list[tuple[object, np.ndarray]], tracker: MirrorTracker,
             split: str = "session") -> bytes:
    buf = io.BytesIO()
    writer = PcapngWriter(buf, split)  # type: ignore[arg-type]
    for batch, rows in batches:
        writer.write(batch, rows, tracker)  # type: ignore[arg-type]
    assert writer.written == sum(r.shape[0] for _, r in batches)
    return buf.getvalue()


def test_new_interfaces_mid_batch_are_described_before_the_batch(tmp_path: Path) -> None:
    path = _mix(tmp_path, sessions=3, frames=9)
    batches, tracker = _rows(path, 1 << 16)
    data = _written(batches, tracker)
    # Section header, then the 6 interfaces (3 ERSPAN sessions, 3 VNIs), then 15 packets.
    p = int.from_bytes(data[4:8], "little")
    kinds = []
    while p < len(data):
        kinds.append(int.from_bytes(data[p : p + 4], "little"))
        p += int.from_bytes(data[p + 4 : p + 8], "little")
    assert kinds == [1] * 6 + [6] * 15
    assert _written(batches, tracker, "none").count(b"decapsulated by flowscope") == 1


def test_blocks_resume_after_a_full_buffer_and_a_new_interface(tmp_path: Path) -> None:
    path = _mix(tmp_path, sessions=2, frames=6)
    [(batch, rows)], _ = _rows(path, 1 << 16)
    keys = np.array([(1 << 16) | 1, (2 << 16) | 1], np.int64)  # streams 0 and 1, Ethernet
    ids = np.array([0, 1], np.int64)
    whole = np.zeros(1 << 16, np.uint8)
    status, i, used, written = build_blocks(batch.buf, rows, 0, 0, 0, False, keys, ids, whole)
    assert (status, i, written) == (NEW_INTERFACE, 6, 6)  # the first VXLAN stream
    small = np.zeros(600, np.uint8)  # room for a few blocks
    status, j, p, w1 = build_blocks(batch.buf, rows, 0, 0, 0, False, keys, ids, small)
    assert status == OUT_FULL and 0 < j == w1 < 6
    grown = np.zeros(1 << 16, np.uint8)
    grown[:p] = small[:p]
    status, j, p, w2 = build_blocks(batch.buf, rows, j, p, 0, False, keys, ids, grown)
    assert (status, j, p, w1 + w2) == (NEW_INTERFACE, 6, used, 6)
    assert grown[:used].tobytes() == whole[:used].tobytes()
    status, j, p, w = build_blocks(batch.buf, rows[:6], 0, 0, 0, False, keys, ids, whole)
    assert (status, j, p, w) == (DONE, 6, used, 6)
