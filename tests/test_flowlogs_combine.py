"""The combiner (flowscope.flowlogs.combine): the records it reads from a text log's bytes sum
into exactly the directions rows the SQL gives, and everything it leaves (IPv6, NODATA,
doubled spaces, bad values, BPA reject reasons ...) still reaches the SQL path, so an analysis
with it equals one without it: connections, problems with their line numbers, coverage."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowscope.flowlogs import analyze as fa
from flowscope.flowlogs import combine
from flowscope.flowlogs.fields import DEFAULT_FORMAT

from . import flowlog_gen as gen

SHARED = Path(__file__).resolve().parents[2] / "shared" / "flowlogs" / "aws"
HEADER = ("version interface-id srcaddr dstaddr srcport dstport protocol packets bytes start "
          "end action log-status tcp-flags pkt-srcaddr pkt-dstaddr reject-reason")


def _same(path: str | list[str]) -> fa.Analysis:
    """The analysis with and without the combiner: equal in every part; the combined one."""
    paths = [path] if isinstance(path, str) else path
    fast, sql = fa.analyze(paths), fa.analyze(paths, combiner=False)
    assert fast.table.schema == sql.table.schema
    assert fast.table.to_pylist() == sql.table.to_pylist()
    assert fast.problems == sql.problems
    assert fast.gaps is not None and sql.gaps is not None
    def key(g: dict) -> tuple:
        return g["start"] or 0, g["end"] or 0, g["status"]

    # (the gaps are a set: the query does not order them)
    assert sorted(fast.gaps.to_pylist(), key=key) == sorted(sql.gaps.to_pylist(), key=key)
    assert (fast.records, fast.coverage_gaps, fast.capabilities) == \
        (sql.records, sql.coverage_gaps, sql.capabilities)
    return fast


def _sql_directions(path: Path, names: tuple[str, ...]) -> list[dict]:
    """The directions rows of the Ibis analysis, run by DuckDB on the whole file."""
    con = fa.Engine()
    scan = fa._scan_text(con, str(path), True, names)
    table = con.db.sql(f"SELECT * FROM {con.table('directions', [scan.input]).name}")
    return _sorted(table.to_arrow_table().to_pylist())


def _sorted(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["a"], r["ap"], r["b"], r["bp"], r["proto"],
                                       r["interface_id"] or ""))


def _directions(path: Path, blank: int = 0) -> list[dict]:
    names = tuple(path.read_text().split("\n", 1)[0].split())
    part = combine.combine(str(path), names, True, str(path.parent))
    assert part is not None and part.slow is None
    assert part.blank == blank
    return _sorted([r for t in part.tables for r in t.to_pylist()])


def test_directions_rows_exact(tmp_path: Path) -> None:
    """Addresses order as text ('10.0.0.10' before '10.0.0.9', as SQL compares VARCHAR), both
    directions of a tuple in one row, flags OR-ed, millisecond times in seconds, the first
    close of accepted traffic and the first rejected start."""
    log = tmp_path / "flows.log"
    log.write_text("\n".join([
        HEADER,
        "5 eni-1 10.0.0.9 10.0.0.10 40000 443 6 3 180 1763000040 1763000099 ACCEPT OK 2 - - -",
        "5 eni-1 10.0.0.10 10.0.0.9 443 40000 6 2 120 1763000040000 1763000099000 ACCEPT OK "
        "18 - - -",
        "5 eni-1 10.0.0.9 10.0.0.10 40000 443 6 1 60 1763000100 1763000159 ACCEPT OK 1 - - -",
        "5 - 10.0.0.9 10.0.0.11 40001 22 6 4 240 1763000160 1763000219 REJECT OK 2 - - -",
        "",  # a blank line: nothing
        "5 eni-1 10.0.0.9 10.0.0.9 5000 4000 17 1 50 1763000040 1763000099 ACCEPT OK 0 "
        "192.168.0.1 10.0.0.9 -",
    ]) + "\n")
    rows = _directions(log, blank=1)
    common = {"status": "OK", "reject_reason": None}
    assert rows == [
        {**common, "a": "10.0.0.10", "ap": 443, "b": "10.0.0.9", "bp": 40000, "proto": 6,
         "interface_id": "eni-1", "records": 3, "x_packets": 2, "x_bytes": 120, "x_flags": 18,
         "y_packets": 4, "y_bytes": 240, "y_flags": 3, "first": 1763000040,
         "last": 1763000159, "close_ts": 1763000159, "reject_first": None, "rejected": False,
         "accepted": True},
        # '10.0.0.11' sorts before '10.0.0.9': the record is from b
        {**common, "a": "10.0.0.11", "ap": 22, "b": "10.0.0.9", "bp": 40001, "proto": 6,
         "interface_id": None, "records": 1, "x_packets": None, "x_bytes": None,
         "x_flags": None, "y_packets": 4, "y_bytes": 240, "y_flags": 2, "first": 1763000160,
         "last": 1763000219, "close_ts": None, "reject_first": 1763000160, "rejected": True,
         "accepted": False},
        # pkt-srcaddr is the real source; '10.0.0.9' sorts after '192.168.0.1'
        {**common, "a": "10.0.0.9", "ap": 4000, "b": "192.168.0.1", "bp": 5000, "proto": 17,
         "interface_id": "eni-1", "records": 1, "x_packets": None, "x_bytes": None,
         "x_flags": None, "y_packets": 1, "y_bytes": 50, "y_flags": 0, "first": 1763000040,
         "last": 1763000099, "close_ts": None, "reject_first": None, "rejected": False,
         "accepted": True},
    ]


def test_fields_the_format_lacks_are_null(tmp_path: Path) -> None:
    """No action, tcp-flags or interface-id in the format: those columns null, as the SQL's
    records() makes them."""
    log = tmp_path / "flows.log"
    log.write_text("srcaddr dstaddr srcport dstport protocol packets bytes start end\n"
                   "10.0.0.1 10.0.0.2 40000 443 6 3 180 1763000040 1763000099\n")
    (row,) = _directions(log)
    assert {k: row[k] for k in ("interface_id", "x_flags", "y_flags", "close_ts",
                                "reject_first", "rejected", "accepted")} == dict.fromkeys(
        ("interface_id", "x_flags", "y_flags", "close_ts", "reject_first", "rejected",
         "accepted"))
    assert (row["x_packets"], row["x_bytes"], row["y_packets"]) == (3, 180, None)


def test_lines_left_to_sql_keep_their_numbers(tmp_path: Path) -> None:
    """IPv6, NODATA, a BPA reject reason, doubled spaces, a leading zero, a bad number and a
    short line go the SQL way; problems name the line in the original file."""
    lines = [
        HEADER,
        "5 eni-1 10.0.0.1 10.0.0.2 40000 443 6 3 180 1763000040 1763000099 ACCEPT OK 2 - - -",
        "5 eni-1 2001:db8::1 2001:db8::2 40000 443 6 3 180 1763000040 1763000099 ACCEPT OK 2 "
        "- - -",
        "5 eni-1 - - - - - - - 1763000040 1763000099 - NODATA - - - -",
        "5 eni-1 10.0.0.3 10.0.0.1 40001 443 6 1 60 1763000040 1763000099 REJECT OK 2 - - 1",
        "5 eni-1 10.0.0.2  10.0.0.1 443 40000 6 3 300 1763000040 1763000099 ACCEPT OK 18 - - -",
        "5 eni-1 010.0.0.4 10.0.0.1 40002 443 6 1 60 1763000040 1763000099 ACCEPT OK 2 - - -",
        "5 eni-1 10.0.0.5 10.0.0.1 40003 443 6 x 60 1763000040 1763000099 ACCEPT OK 2 - - -",
        "5 eni-1 10.0.0.6 10.0.0.1 40004",
        "5 eni-1 10.0.0.7 10.0.0.1 40005 443 6 1 60 1763000040 1763000099 ACCEPT OK 2 - - -",
        # a trailing space: the values fill the format (a record), or one is missing (the
        # CSV reader would count the empty field and read a record of the wrong fields)
        "5 eni-1 10.0.0.8 10.0.0.1 40006 443 6 1 60 1763000040 1763000099 ACCEPT OK 2 - - - ",
        "5 eni-1 10.0.0.9 10.0.0.1 40007 443 6 1 60 1763000040 1763000099 ACCEPT OK 2 - - ",
    ]
    log = tmp_path / "flows.log"
    log.write_text("\n".join(lines) + "\n")
    names = tuple(HEADER.split())
    part = combine.combine(str(log), names, True, str(tmp_path))
    assert part is not None and part.records == 2
    assert part.lines.tolist() == [3, 4, 5, 6, 7, 8, 9, 11]
    assert part.problems == [(12, "16 fields where the format has 17")]
    result = fa.analyze([str(log)])
    assert result.problems == [f"{log}:8: packets is not a number",
                               f"{log}:9: 5 fields where the format has 17",
                               f"{log}:12: 16 fields where the format has 17"]
    assert result.records == 8
    assert {r["orig_h"] for r in result.table.to_pylist()} >= {"10.0.0.8"}
    row = next(r for r in result.table.to_pylist() if r["orig_h"] == "10.0.0.1")
    assert (row["orig_pkts"], row["resp_pkts"], row["resp_bytes"]) == (3, 3, 300)


def test_shared_samples_and_demo_log_unchanged() -> None:
    for path in sorted(SHARED.glob("*.log")):
        try:
            _same(str(path))
        except fa.FlowscopeError as e:  # a file with no records: the same error both ways
            with pytest.raises(fa.FlowscopeError, match=re.escape(str(e))):
                fa.analyze([str(path)], combiner=False)


def test_mostly_ipv6_file_is_left_whole_to_sql(tmp_path: Path) -> None:
    """The shared IPv6 record (no header, the default format) many times over: the first
    block is mostly lines the kernel leaves, so the SQL path reads the whole file."""
    record = (SHARED / "ipv6.log").read_text().strip()
    log = tmp_path / "v6.log"
    log.write_text((record + "\n") * combine.MOSTLY_SLOW)
    assert combine.combine(str(log), DEFAULT_FORMAT, False, str(tmp_path)) is None
    assert _same(str(log)).records == combine.MOSTLY_SLOW
    small = tmp_path / "small.log"
    shutil.copy(SHARED / "ipv6.log", small)  # one line: left to SQL by itself
    part = combine.combine(str(small), DEFAULT_FORMAT, False, str(tmp_path))
    assert part is not None and part.lines.tolist() == [1]


def _scenario_log(tmp_path: Path, both_enis: bool = False, ms: bool = False) -> Path:
    path = tmp_path / "flows.log"
    path.write_text(gen.text(gen.records(gen.scenarios(), both_enis=both_enis, ms=ms),
                             extra=["2 bad line"]))
    return path


@pytest.mark.parametrize(("both_enis", "ms"), [(False, False), (True, False), (False, True)])
def test_generated_scenarios(tmp_path: Path, both_enis: bool, ms: bool) -> None:
    result = _same(str(_scenario_log(tmp_path, both_enis, ms)))
    assert result.problems  # the bad line, reported either way


def test_gzip_and_several_files(tmp_path: Path) -> None:
    plain = _scenario_log(tmp_path)
    packed = tmp_path / "flows.log.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    one = _same(str(packed))
    assert one.table.to_pylist() == fa.analyze([str(plain)]).table.to_pylist()
    _same([str(plain), str(packed)])


def test_small_table_and_slow_block_flush_and_merge(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A full hash table hands its rows on and starts again (bounded memory); a full block
    of slow lines is written out and the scan goes on: the answer is the same."""
    log = _scenario_log(tmp_path, both_enis=True)
    expected = fa.analyze([str(log)], combiner=False).table.to_pylist()
    monkeypatch.setattr(combine, "GROUPS", 4)
    monkeypatch.setattr(combine, "SLOW_BLOCK", 1)
    names = tuple(log.read_text().split("\n", 1)[0].split())
    part = combine.combine(str(log), names, True, str(tmp_path))
    assert part is not None and len(part.tables) > 2
    stored = []
    store = fa.Engine.store

    def spy(self: fa.Engine, table: object) -> None:  # the full tables go to DuckDB
        stored.append(table)
        store(self, table)

    monkeypatch.setattr(fa.Engine, "store", spy)
    assert fa.analyze([str(log)]).table.to_pylist() == expected
    assert len(stored) == len(part.tables) - 1  # all but the last, kept in Arrow


@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30),
       st.integers(1, 64), st.booleans())
def test_blocks_are_whole_lines(lines: list[bytes], size: int, newline_at_end: bool) -> None:
    import io

    data = b"\n".join(lines) + (b"\n" if newline_at_end and lines else b"")
    blocks = [b.tobytes() for b in combine._blocks(io.BytesIO(data), size)]
    assert b"".join(blocks) == (data if data.endswith(b"\n") or not data else data + b"\n")
    assert all(b.endswith(b"\n") for b in blocks)  # (the kernel scans to a newline)


ADDRESSES = ["10.0.0.9", "10.0.0.10", "10.0.0.100", "9.1.1.1", "192.168.1.1", "255.255.255.255",
             "0.0.0.0"]
SLOW = ["2001:db8::1", "010.0.0.1", "10.0.0.256", "10.0.0", "1.2.3.4.5"]


@st.composite
def _records(draw: st.DrawFn) -> str:
    """A text log: a random order and subset of the optional fields, records with addresses
    whose text and numeric orders differ, equal ends, both directions, millisecond times,
    and lines the combiner must leave (IPv6, non-canonical addresses, NODATA, doubled
    spaces, a trailing space, BPA reasons, bad numbers, tabs, blank lines), the last one
    ended or not."""
    pool = draw(st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=3, unique=True))
    ports = draw(st.lists(st.sampled_from([0, 22, 443, 40000, 65535]), min_size=1,
                          max_size=3, unique=True))
    optional = draw(st.lists(st.sampled_from(["action", "log-status", "tcp-flags",
                                              "interface-id", "pkt-srcaddr", "pkt-dstaddr",
                                              "reject-reason", "version", "account-id"]),
                             unique=True))
    names = draw(st.permutations(list(combine.REQUIRED) + optional))
    lines = [" ".join(names)]
    mixed = draw(st.booleans())  # else every line one the kernel reads
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["ok"] * 6 + ["slow", "nodata", "blank", "double", "bad",
                                                  "tab", "trailing"] if mixed else ["ok"]))
        if kind == "blank":
            lines.append("")
            continue
        addr = st.sampled_from(pool + (SLOW if kind == "slow" else []))
        start = draw(st.integers(1_763_000_000, 1_763_000_300))
        value = {
            "srcaddr": draw(addr), "dstaddr": draw(addr),
            "pkt-srcaddr": draw(st.sampled_from(["-", "-", *pool])),
            "pkt-dstaddr": draw(st.sampled_from(["-", "-", *pool])),
            "srcport": str(draw(st.sampled_from(ports))),
            "dstport": str(draw(st.sampled_from(ports))),
            "protocol": str(draw(st.sampled_from([6, 17, 1]))),
            "packets": str(draw(st.integers(0, 10**6))),
            "bytes": str(draw(st.integers(0, 10**9))),
            "start": str(start * (1000 if draw(st.booleans()) else 1)),
            "end": str(start + draw(st.integers(0, 59))),
            "action": draw(st.sampled_from(["ACCEPT", "REJECT"])),
            "log-status": "OK",
            "tcp-flags": str(draw(st.sampled_from([0, 1, 2, 3, 4, 18, 19, 22]))),
            "interface-id": draw(st.sampled_from(["-", "eni-a", "eni-bb"])),
            "reject-reason": draw(st.sampled_from(["-"] * 4 + ["BPA"])),
            "version": "5", "account-id": "123456789012",
        }
        if kind == "nodata":
            value = {n: "-" for n in names} | {"start": value["start"], "end": value["end"],
                                                "log-status": "NODATA",
                                                "interface-id": "eni-a"}
        if kind == "bad":
            value[draw(st.sampled_from(["packets", "srcport", "start"]))] = "x1"
        if kind == "tab":  # a control byte ends the kernel's field: the line goes the SQL way
            name = draw(st.sampled_from(names))
            value[name] += "\t"
        fields = [value[n] for n in names]
        sep = "  " if kind == "double" else " "
        lines.append(sep.join(fields) + (" " if kind == "trailing" else ""))
    return "\n".join(lines) + draw(st.sampled_from(["\n", ""]))  # (a last line unended)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=_records())
def test_any_log_same_with_and_without_the_combiner(tmp_path: Path, text: str) -> None:
    path = tmp_path / "random.log"
    path.write_text(text)
    names = tuple(text.split("\n", 1)[0].split())
    part = combine.combine(str(path), names, True, str(tmp_path))
    assert part is not None
    if part.slow is None:  # every record read by the kernel: its rows are the SQL's
        assert _sorted([r for t in part.tables for r in t.to_pylist()]) == \
            _sql_directions(path, names)
    try:
        _same(str(path))
    except fa.FlowscopeError as e:
        with pytest.raises(fa.FlowscopeError, match=re.escape(str(e))):
            fa.analyze([str(path)], combiner=False)


def test_addresses_are_written_as_dotted_text() -> None:
    """Every octet width (1, 2 and 3 digits, 0 and 255) in both addresses of a group row."""
    values = [0, 0x0A00000A, 0xC0A80164, 0xFFFFFFFF, 0x01020304]
    groups = combine._Groups(8)
    groups.rows[:5] = 0
    groups.rows[:5, combine.K1] = [(v << 32 | values[-1 - i]) - (1 << 64 if v >> 31 else 0)
                                   for i, v in enumerate(values)]
    groups.n = 5
    table = combine._table(groups, np.zeros((1, 1), np.uint8), np.zeros(1, np.int64), 1, set())
    dotted = ["0.0.0.0", "10.0.0.10", "192.168.1.100", "255.255.255.255", "1.2.3.4"]
    assert table["a"].to_pylist() == dotted
    assert table["b"].to_pylist() == dotted[::-1]


def test_tuples_differing_only_in_protocol_keep_one_order(tmp_path: Path) -> None:
    """Both unanswered, same start, ends and ports: the protocol decides (without it in the
    ORDER BY the order was left to the engine)."""
    log = tmp_path / "flows.log"
    lines = ["srcaddr dstaddr srcport dstport protocol packets bytes start end tcp-flags"]
    for proto in ("17", "6", "17", "6"):
        lines.append(f"10.0.0.1 10.0.0.2 40000 443 {proto} 1 60 1763000040 1763000099 2")
    log.write_text("\n".join(lines) + "\n")
    got = [(r["proto"], r["verdict"]) for r in _same(str(log)).table.to_pylist()]
    assert got == [("tcp", "unanswered"), ("udp", "unanswered")]
