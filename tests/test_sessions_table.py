"""The session table's vectorised parts, against their plain definitions: evidence sentences
as ``str.format`` writes them, Zeek's RSTOS0 history regex, Arrow columns from NumPy buffers;
and the session path never imports pandas (pyarrow would, on a first pa.array())."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.analyse import conn
from flowscope.analyse.evidence import Evidence
from flowscope.analyse.verdicts import syn_then_rst
from flowscope.sinks.arrow import from_numpy, names, strings

RSTOS0_HISTORY = re.compile(r"\^?S[^HAFGIQ]*R.*")  # scripts/base/protocols/conn/main.zeek

TEMPLATES = ("SYN sent, no reply seen", "{} SYNs sent", "{} retransmissions (orig {}, resp {})",
             "{}", "≥ {} µs", "{} and {}")
numbers = st.integers(-(10**18), 10**18)


@st.composite
def sentence_kinds(draw: st.DrawFn) -> tuple[int, list[tuple[np.ndarray, str, list[np.ndarray]]]]:
    n = draw(st.integers(0, 12))
    kinds = []
    for template in draw(st.lists(st.sampled_from(TEMPLATES), max_size=6)):
        mask = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool)
        cols = [np.array(draw(st.lists(numbers, min_size=n, max_size=n)), np.int64)
                for _ in range(template.count("{}"))]
        kinds.append((mask, template, cols))
    return n, kinds


@given(sentence_kinds())
@settings(max_examples=200, deadline=None)
def test_evidence_is_what_str_format_writes(case: tuple[int, list]) -> None:
    n, kinds = case
    ev = Evidence(n)
    expected: list[list[str]] = [[] for _ in range(n)]
    for mask, template, cols in kinds:
        ev.add(mask, template, *cols)
        for i in np.flatnonzero(mask):
            expected[i].append(template.format(*(int(c[i]) for c in cols)))
    lists = ev.lists()
    assert lists.type == pa.list_(pa.string())
    assert lists.to_pylist() == expected


def test_evidence_without_sentences() -> None:
    assert Evidence(3).lists().to_pylist() == [[], [], []]


@given(st.lists(st.text("^SHADFRQIGTWhadfrqigtws", max_size=conn.HISTORY_LEN), max_size=30),
       st.integers(0, 255))
@settings(max_examples=300, deadline=None)
def test_syn_then_rst_is_zeeks_regex(histories: list[str], junk: int) -> None:
    matrix = np.full((len(histories), conn.HISTORY_LEN), junk, np.uint8)  # bytes past the end
    for i, h in enumerate(histories):
        matrix[i, : len(h)] = np.frombuffer(h.encode(), np.uint8)
    length = np.array([len(h) for h in histories], np.int64)
    assert syn_then_rst(matrix, length).tolist() == [
        RSTOS0_HISTORY.fullmatch(h) is not None for h in histories]


@given(st.lists(st.tuples(st.integers(-(2**31), 2**31 - 1), st.booleans()), max_size=40),
       st.sampled_from([pa.int32(), pa.int64(), pa.float64(), pa.bool_()]))
@settings(deadline=None)
def test_from_numpy_is_pa_array(values: list[tuple[int, bool]], typ: pa.DataType) -> None:
    data = np.array([v for v, _ in values], np.int64)
    mask = np.array([m for _, m in values], bool)
    assert from_numpy(data, typ, mask).equals(pa.array(data, typ, mask=mask))
    assert from_numpy(data, typ).equals(pa.array(data, typ))


def test_names_and_strings() -> None:
    vocabulary = strings(["orig", "resp", None, "ü"])
    assert vocabulary.to_pylist() == ["orig", "resp", None, "ü"]
    codes = np.array([1, 0, 3, 2, 0])
    assert names(codes, vocabulary, codes == 0).to_pylist() == [
        "resp", None, "ü", None, None]


def test_the_session_path_does_not_import_pandas(tmp_path: Path) -> None:
    capture = tmp_path / "c.pcap"
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, str(root / "bench" / "make_capture.py"), "--frames", "3000",
                    "--loss", "0.01", "-o", str(capture)], check=True, capture_output=True)
    out = tmp_path / "s.parquet"
    code = ("import sys; from flowscope.cli import app; "
            f"sys.argv = ['flowscope', 'sessions', {str(capture)!r}, '-f', 'parquet', "
            f"'-o', {str(out)!r}]\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "print('pandas' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"
    assert pq.read_table(out).num_rows > 100


def test_connections_converted_in_slices_make_the_same_table(tmp_path: Path,
                                                               monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """conn_table converts TABLE_ROWS connections at a time (bounded temporaries); the rows,
    their order and every value are those of one conversion of all of them."""
    from flowscope.analyse.sessions import SessionTracker
    from flowscope.pipeline import PacketRun
    from flowscope.sinks import sessions

    capture = tmp_path / "c.pcap"
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, str(root / "bench" / "make_capture.py"), "--frames", "3000",
                    "--loss", "0.01", "-o", str(capture)], check=True, capture_output=True)
    tracker = SessionTracker()
    for _, rows in PacketRun([str(capture)]).batches():
        tracker.update(rows)
    tracker.close()
    state = np.concatenate(list(tracker.drain_conns()))
    assert state.shape[0] > 100
    whole = sessions.conn_table(state)
    monkeypatch.setattr(sessions, "TABLE_ROWS", 7)
    sliced = sessions.conn_table(state)
    assert sliced.column("uid").num_chunks == -(-state.shape[0] // 7)
    assert sliced.schema == whole.schema
    assert sliced.to_pylist() == whole.to_pylist()
