"""Property tests: random and mutated bytes never raise, and every frame is accounted for
(decoded, or an error with a reason code), with every offset inside its frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowscope.batch import PacketBatch
from flowscope.decode import DecodeConfig, decode
from flowscope.decode.codes import ERRORS, LAYERS, MAX_LAYERS, QUIRKS
from flowscope.errors import CaptureFormatError
from flowscope.sources import Problems, read_captures

SHARED = Path(__file__).resolve().parents[2] / "shared" / "captures"
LINKTYPES = [1, 101, 12, 228, 229, 113, 276, 0, 999]


def _real_frames() -> list[bytes]:
    frames: list[bytes] = []
    for p in sorted(SHARED.glob("*.pcap")):
        try:
            for b in read_captures([str(p)]):
                frames += [b.frame_bytes(i) for i in range(min(len(b), 5))]
        except CaptureFormatError:
            pass
    return frames or [bytes(64)]


REAL = _real_frames()


def _batch(frames: list[bytes], links: list[int], wire_extra: list[int]) -> PacketBatch:
    buf = np.frombuffer(b"".join(frames) or b"\0", np.uint8)
    lens = np.array([len(f) for f in frames], np.int32)
    offsets = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    n = len(frames)
    return PacketBatch(buf, offsets, lens, lens + np.array(wire_extra, np.int32),
                       np.arange(n, dtype=np.int64), np.array(links, np.int32),
                       np.arange(1, n + 1, dtype=np.int64))


def _check(batch: PacketBatch) -> None:
    rows = decode(batch, DecodeConfig(max_tunnels=4))
    _check_sessions(rows)
    assert rows.shape[0] == len(batch)
    assert (rows["frame"] == batch.frame).all()
    assert (rows["error"] < len(ERRORS)).all()
    assert (rows["n_layers"] <= MAX_LAYERS).all()
    assert (rows["encap"] < len(LAYERS)).all()
    assert (rows["quirks"] < (1 << len(QUIRKS))).all()
    inner = rows["inner_off"] >= 0
    start, end = batch.offset, batch.offset + batch.caplen
    assert (rows["inner_off"][inner] >= start[inner]).all()
    assert (rows["inner_off"][inner] + rows["inner_caplen"][inner] <= end[inner]).all()
    assert (rows["len"] >= 0).all()


def _check_sessions(rows: np.ndarray) -> None:
    """The session trackers take any decoded rows: every IP packet lands in exactly one
    session (or is a counted mirror copy), and the tables build."""
    from flowscope.analyse.qp import EV_COPY
    from flowscope.analyse.qp_rows import merge
    from flowscope.analyse.sessions import SessionTracker
    from flowscope.sinks.sessions import conn_table, qp_table

    tracker = SessionTracker()
    events = tracker.update(rows)
    tracker.close()
    conns = list(tracker.drain_conns())
    counted = sum(int(c["pkts"].sum()) for c in conns)
    qps = tracker.queue_pairs()
    counted += int(qps["pkts"].sum())
    ip = (rows["ipver"] > 0) & ((events & EV_COPY) == 0)
    roce_bad = (rows["proto"] == 17) & (rows["dport"] == 4791) & (rows["error"] != 0)
    assert counted == int((ip & ~roce_bad).sum())
    for c in conns:
        conn_table(c).validate(full=True)
    if qps.shape[0]:
        qp_table(merge(qps)).validate(full=True)


frame_lists = st.lists(st.binary(max_size=200), min_size=1, max_size=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=frame_lists, data=st.data())
def test_random_bytes_never_raise(frames: list[bytes], data: st.DataObject) -> None:
    links = data.draw(st.lists(st.sampled_from(LINKTYPES), min_size=len(frames),
                               max_size=len(frames)))
    extra = data.draw(st.lists(st.integers(0, 100), min_size=len(frames), max_size=len(frames)))
    _check(_batch(frames, links, extra))


@settings(max_examples=400, deadline=None)
@given(index=st.integers(0, len(REAL) - 1), flips=st.lists(
    st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6), cut=st.integers(0, 400),
    link=st.sampled_from([1, 1, 1, 101]))
def test_mutated_real_frames_never_raise(index: int, flips: list[tuple[int, int]], cut: int,
                                         link: int) -> None:
    frame = bytearray(REAL[index])
    for pos, value in flips:
        if pos < len(frame):
            frame[pos] = value
    frame = frame[: max(cut, 1)] if cut < len(frame) else frame
    _check(_batch([bytes(frame)], [link], [len(REAL[index]) - len(frame)]))


FILES = sorted(SHARED.glob("*.pcap"))[:6] or [SHARED / "missing.pcap"]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600), which=st.sampled_from(FILES),
       flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=8))
def test_mutated_capture_files_never_raise(tmp_path_factory, data: bytes, which: Path,
                                           flips: list[tuple[int, int]]) -> None:
    raw = bytearray(which.read_bytes() if which.exists() else data)
    for pos, value in flips:
        if pos < len(raw):
            raw[pos] = value
    path = tmp_path_factory.mktemp("fuzz") / "f.pcap"
    path.write_bytes(bytes(raw[: len(raw) - len(data) % 50]) + data[:0])
    problems = Problems()
    try:
        for batch in read_captures([str(path)], problems):
            _check(batch)
    except CaptureFormatError:
        pass
