"""The server's merged analysis against the offline command: same frames, same sessions.

Every expectation is the output of the real ``flowscope sessions``/``mirrors`` command line
on the same capture (see tests/serve_fixtures.py); the server side is fed through its
BatchSink (``StoreSink.accept``), as the gRPC transport feeds it.
"""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.analyse.sessions import SessionTracker
from flowscope.decode import decode
from flowscope.pipeline import PacketRun, track_sessions
from flowscope.serve.coverage import append_sentences, host_pair_keys
from flowscope.serve.sink import StoreSink
from flowscope.sinks.text import write_jsonl
from flowscope.stream.meta import BatchMeta

from . import tcp_cases
from .serve_fixtures import batches, feed, flowscope, make_bench, make_incident, rows


def jsonl(table: pa.Table) -> str:
    out = io.StringIO()
    write_jsonl(table, out)
    return out.getvalue()


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_incident(tmp_path_factory.mktemp("incident"))


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tcp_cases.write_cases(tmp_path_factory.mktemp("cases"))[1]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bench(tmp_path_factory.mktemp("bench"))


@pytest.mark.parametrize("capture", ["incident", "cases", "bench"])
@pytest.mark.parametrize("batch_frames", [7, 1 << 16])
def test_sessions_equal_the_offline_command(capture: str, batch_frames: int, tmp_path: Path,
                                            request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(capture)
    sink = StoreSink.open(tmp_path)
    feed(sink, path, batch_frames=batch_frames)
    assert jsonl(sink.analysis.sessions()) == flowscope("sessions", str(path), "-f", "jsonl")


def test_compacting_finished_tables_changes_nothing(incident: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from flowscope.serve import analysis

    monkeypatch.setattr(analysis, "COMPACT_AFTER", 2)
    sink = StoreSink.open(tmp_path)
    feed(sink, incident, batch_frames=7)
    assert sink.analysis._compacted > 1
    assert jsonl(sink.analysis.sessions()) == flowscope("sessions", str(incident), "-f", "jsonl")


@pytest.mark.parametrize("interval", ["1s", "5s", "1m"])
def test_timeline_equals_the_offline_command(interval: str, incident: Path,
                                             tmp_path: Path) -> None:
    sink = StoreSink.open(tmp_path)
    feed(sink, incident, batch_frames=100)
    got = sink.analysis.timeline({"1s": 1, "5s": 5, "1m": 60}[interval] * 1_000_000_000)
    assert jsonl(got) == flowscope("sessions", str(incident), "--interval", interval, "-f",
                                   "jsonl")


def test_mirrors_equal_the_offline_command_per_collector(bench: Path, tmp_path: Path) -> None:
    sink = StoreSink.open(tmp_path)
    feed(sink, bench, "leaf-7", batch_frames=3000)
    expected = [{"collector": "leaf-7", **r} for r in rows(flowscope("mirrors", str(bench), "-f",
                                                                      "jsonl"))]
    assert rows(jsonl(sink.analysis.mirrors())) == expected


def test_live_sessions_are_in_the_view(incident: Path, tmp_path: Path) -> None:
    """After part of the capture, the view is what the offline analysis of that part says:
    the connections still open are there, as they stand."""
    sink = StoreSink.open(tmp_path)
    prefix = list(itertools.islice(batches(incident, 60), 6))
    for seq, batch in enumerate(prefix):
        sink.accept(BatchMeta("c1", seq), batch)
    live = sink.analysis.snapshot().live_conns.shape[0]
    assert live > 0
    run = PacketRun([str(incident)])
    offline = track_sessions(run, ((b, decode(b)) for b in prefix)).table
    assert jsonl(sink.analysis.sessions()) == jsonl(offline)
    # and the tracker was not closed by looking: the rest still matches the whole capture
    for seq, batch in enumerate(itertools.islice(batches(incident, 60), 6, None), 6):
        sink.accept(BatchMeta("c1", seq), batch)
    assert jsonl(sink.analysis.sessions()) == flowscope("sessions", str(incident), "-f",
                                                        "jsonl")


def test_snapshot_leaves_the_tracker_as_it_was(incident: Path) -> None:
    tracker = SessionTracker()
    for batch in itertools.islice(batches(incident, 100), 3):
        tracker.update(decode(batch))
    list(tracker.drain_conns())  # finished ones out of the way
    conns, qps = tracker.snapshot()
    n_conns, n_qps = tracker.conns.n, tracker.qps.n
    assert (conns.shape[0], qps.shape[0]) == (n_conns, n_qps) and n_conns and n_qps
    conns["pkts"] = 0  # a copy: the tracker's own state is untouched
    tracker.close()
    closed = np.concatenate(list(tracker.drain_conns()))
    assert closed.shape[0] == n_conns and (closed["pkts"].sum(axis=1) > 0).all()


def test_restart_rebuilds_the_same_view_and_resends_count_once(incident: Path,
                                                               tmp_path: Path) -> None:
    all_batches = list(batches(incident, 40))
    sink = StoreSink.open(tmp_path)
    for seq, batch in enumerate(all_batches[:9]):
        sink.accept(BatchMeta("c1", seq), batch)
    before = jsonl(sink.analysis.sessions())
    timeline_before = jsonl(sink.analysis.timeline())
    sink.close()
    sink = StoreSink.open(tmp_path)  # replays the store
    assert jsonl(sink.analysis.sessions()) == before
    assert jsonl(sink.analysis.timeline()) == timeline_before
    assert sink.last_seq("c1") == 8
    # the collector did not get the last two acknowledgements: it sends them again
    for seq in range(7, len(all_batches)):
        sink.accept(BatchMeta("c1", seq), all_batches[seq])
    assert sink.duplicates == 2
    assert jsonl(sink.analysis.sessions()) == flowscope("sessions", str(incident), "-f",
                                                        "jsonl")


def _split_by_session(path: Path, batch_frames: int) -> dict[str, list]:
    """The bench capture's frames cut into two collectors' streams: ERSPAN session 100 to
    one, 200 and 300 to the other (as two mirror destinations would)."""
    out: dict[str, list] = {"a": [], "b": []}
    for batch in batches(path, batch_frames):
        session = decode(batch)["erspan_session"]
        out["a"].append(batch.take(np.flatnonzero(session == 100)))
        out["b"].append(batch.take(np.flatnonzero(session != 100)))
    return out


def test_two_collectors_merge_into_one_view(bench: Path, tmp_path: Path) -> None:
    streams = _split_by_session(bench, 2500)
    sink = StoreSink.open(tmp_path)
    seq = {"a": 0, "b": 0}
    # interleaved, and b runs ahead: the server takes batches as they come
    order = [("b", 0), ("a", 0), ("b", 1), ("b", 2), ("a", 1)] + [
        (c, k) for k in range(2, len(streams["a"])) for c in ("a", "b") if (c, k) != ("b", 2)]
    for cid, k in order:
        sink.accept(BatchMeta(cid, seq[cid]), streams[cid][k])
        seq[cid] += 1
    expected = rows(flowscope("sessions", str(bench), "-f", "jsonl"))
    got = rows(jsonl(sink.analysis.sessions()))
    assert sorted(got, key=lambda r: r["uid"]) == sorted(expected, key=lambda r: r["uid"])
    mirrors = {r["session"]: r for r in rows(flowscope("mirrors", str(bench), "-f", "jsonl"))}
    by_collector = {(r.pop("collector"), r["session"]): r
                    for r in rows(jsonl(sink.analysis.mirrors()))}
    assert by_collector == {("a", 100): mirrors[100], ("b", 200): mirrors[200],
                            ("b", 300): mirrors[300]}
    assert [c["collector_id"] for c in sink.collectors()] == ["a", "b"]
    assert sum(c["frames"] for c in sink.collectors()) == sum(m["packets"]
                                                             for m in mirrors.values())


SAMPLED = ("sampled 1-in-4 by the collector: packets are missing, so the verdict cannot "
           "rest on what was not seen")


def test_a_sampled_stream_makes_tcp_and_roce_verdicts_unknown(incident: Path,
                                                             tmp_path: Path) -> None:
    sink = StoreSink.open(tmp_path)
    feed(sink, incident, batch_frames=100, sample_rate=4)
    expected = rows(flowscope("sessions", str(incident), "-f", "jsonl"))
    got = {r["uid"]: r for r in rows(jsonl(sink.analysis.sessions()))}
    assert {r["proto"] for r in expected} == {"tcp", "roce"}
    for r in expected:
        g = got.pop(r["uid"])
        assert g["verdict"] == "unknown" and g["problem"] is True
        assert g["evidence"] == r["evidence"] + [SAMPLED]
        assert {k: v for k, v in g.items() if k not in ("verdict", "problem", "evidence")} == \
            {k: v for k, v in r.items() if k not in ("verdict", "problem", "evidence")}
    assert not got


def test_only_the_sampled_collectors_sessions_are_marked(bench: Path, tmp_path: Path) -> None:
    streams = _split_by_session(bench, 5000)
    sink = StoreSink.open(tmp_path)
    for k in range(len(streams["a"])):
        sink.accept(BatchMeta("a", k, sample_rate=4), streams["a"][k])
        sink.accept(BatchMeta("b", k), streams["b"][k])
    expected = {r["uid"]: r for r in rows(flowscope("sessions", str(bench), "-f", "jsonl"))}
    for g in rows(jsonl(sink.analysis.sessions())):
        r = expected[g["uid"]]
        if r["mirror_session"] == 100:
            assert (g["verdict"], g["evidence"]) == ("unknown", r["evidence"] + [SAMPLED])
        else:
            assert g == r


def test_a_sliced_stream_says_so_in_the_evidence(incident: Path, tmp_path: Path) -> None:
    sink = StoreSink.open(tmp_path)
    feed(sink, incident, snaplen=128)
    expected = rows(flowscope("sessions", str(incident), "-f", "jsonl"))
    note = "copies sliced to 128 bytes by the collector: payload beyond that not seen"
    assert rows(jsonl(sink.analysis.sessions())) == [
        {**r, "evidence": r["evidence"] + [note]} for r in expected]


def test_collector_counters_come_from_the_last_meta(incident: Path, tmp_path: Path) -> None:
    sink = StoreSink.open(tmp_path)
    for seq, batch in enumerate(batches(incident, 300)):
        sink.accept(BatchMeta("leaf", seq, filter="tcp", received=1000 * (seq + 1),
                              kernel_drops=seq, sent_ns=(seq + 1) * 1_000_000_000), batch)
    (c,) = sink.collectors()
    assert {k: c[k] for k in ("collector_id", "batches", "frames", "last_seq", "filter",
                              "received", "kernel_drops", "sent", "stored_batches",
                              "stored_frames")} == {
        "collector_id": "leaf", "batches": 3, "frames": 687, "last_seq": 2, "filter": "tcp",
        "received": 3000, "kernel_drops": 2, "sent": 3.0, "stored_batches": 3,
        "stored_frames": 687}
    assert json.dumps(c)  # JSON-ready


addresses = st.binary(min_size=16, max_size=16)


@settings(max_examples=200, deadline=None)
@given(a=addresses, b=addresses, ipver=st.sampled_from([4, 6]),
       session=st.integers(-1, 1023))
def test_host_pair_keys_ignore_direction(a: bytes, b: bytes, ipver: int, session: int) -> None:
    def key(x: bytes, y: bytes) -> int:
        return int(host_pair_keys(np.array([ipver], np.uint8), np.array([session]),
                                  np.frombuffer(x, np.uint8).reshape(1, 16),
                                  np.frombuffer(y, np.uint8).reshape(1, 16))[0])

    assert key(a, b) == key(b, a)
    if a != b:
        assert key(a, b) != key(a, a) or key(a, b) != key(b, b)


@settings(max_examples=200, deadline=None)
@given(lists=st.lists(st.lists(st.text(max_size=5), max_size=4), max_size=12),
       data=st.data())
def test_append_sentences_appends_where_the_mask_holds(lists: list[list[str]],
                                                       data: st.DataObject) -> None:
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=len(lists),
                                       max_size=len(lists))), bool)
    texts = [f"t{i}" for i in range(len(lists))]
    arr = pa.array(lists, pa.list_(pa.string()))
    start = data.draw(st.integers(0, len(lists)))
    sliced = arr.slice(start)  # offsets that do not start at 0
    got = append_sentences(sliced, mask[start:], pa.array(texts[start:]))
    assert got.to_pylist() == [lst + [t] if m else lst for lst, m, t in
                               zip(lists[start:], mask[start:], texts[start:], strict=True)]
