"""The flow-log engine around the Ibis analysis: SQL compiled once and cached on disk (a
cached run gives exactly what a fresh compile gives; a broken cache only costs the compile),
tcp-flags named per value, DuckDB sized to the CPUs the process may use and able to spill."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowscope.flowlogs import analyze as fa
from flowscope.flowlogs import compiled, order

from . import flowlog_gen as gen


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return compiled.cache_dir()


def _log(tmp_path: Path, both_enis: bool = False) -> str:
    path = tmp_path / "flows.log"
    path.write_text(gen.text(gen.records(gen.scenarios(), both_enis=both_enis),
                             extra=["2 bad line"]))
    return str(path)


@pytest.mark.parametrize("both_enis", [False, True])
def test_cached_sql_gives_what_a_fresh_compile_gives(tmp_path: Path, cache: Path,
                                                     both_enis: bool) -> None:
    log = _log(tmp_path, both_enis)
    fresh = fa.analyze([log])
    entries = sorted(cache.glob("*.json"))
    # directions of the line the combiner left (the bad one), merge, summary, gaps, connections
    assert len(entries) == 5
    assert all("SELECT" in json.loads(e.read_text())["sql"] for e in entries)
    cached = fa.analyze([log])
    assert sorted(cache.glob("*.json")) == entries  # nothing compiled again
    assert cached.table.equals(fresh.table) and cached.table.schema == fresh.table.schema
    assert (cached.records, cached.problems) == (fresh.records, fresh.problems)
    assert fresh.problems == [f"{log}:{len(gen.records(gen.scenarios(), both_enis=both_enis)) + 2}"
                              f": 3 fields where the format has 18"]


def test_broken_or_unwritable_cache_only_costs_the_compile(tmp_path: Path, cache: Path) -> None:
    log = _log(tmp_path)
    want = fa.analyze([log]).table
    for entry in cache.glob("*.json"):
        entry.write_text("{not json")
    assert fa.analyze([log]).table.equals(want)
    assert all(json.loads(e.read_text())["sql"] for e in cache.glob("*.json"))  # rewritten
    for entry in cache.glob("*.json"):
        entry.unlink()
    cache.chmod(0o500)
    try:
        assert fa.analyze([log]).table.equals(want)
    finally:
        cache.chmod(0o700)


def test_cache_key_follows_the_inputs(cache: Path) -> None:
    text = compiled.Input("flows_1", pa.schema([("srcaddr", pa.string()),
                                                ("dstaddr", pa.string())]), "aws")
    wider = compiled.Input("flows_1", pa.schema([("srcaddr", pa.string()),
                                                 ("dstaddr", pa.string()),
                                                 ("tcp_flags", pa.int32())]), "aws")
    one, schema = compiled.sql("directions", [text])
    two, _ = compiled.sql("directions", [wider])
    assert one != two
    assert '"tcp_flags"' in two and '"tcp_flags"' not in one
    assert schema.field("x_packets").type == pa.int64()  # what the sums are cast to
    directions = compiled.Input("directions_1", schema, "directions")
    single, _ = compiled.sql("connections", [directions])
    per_interface, out = compiled.sql("connections", [directions], per_interface=True)
    assert single != per_interface
    assert out.field("orig_pkts").type == pa.int64()
    with pytest.raises(ValueError, match="unknown query"):
        compiled.build("nonsense", [text])


def _named(v: int) -> str:
    """tcp-flags named as the AWS user guide lists them (independent of the code)."""
    parts = []
    if v & 18 == 18:
        parts.append("SYN-ACK")
    elif v & 2:
        parts.append("SYN")
    parts += [name for bit, name in ((1, "FIN"), (4, "RST")) if v & bit]
    return "|".join(parts) if parts else "-" if v == 0 else hex(v)


def test_flag_names_examples() -> None:
    values = pa.chunked_array([[19, 2, None, 0], [18, 6, 16, 8, 3, 19]], pa.int32())
    assert fa.flag_names(values).to_pylist() == [
        "SYN-ACK|FIN", "SYN", None, "-", "SYN-ACK", "SYN|RST", "0x10", "0x8", "SYN|FIN",
        "SYN-ACK|FIN"]
    assert fa.flag_names(pa.chunked_array([], pa.int32())).to_pylist() == []


@given(st.lists(st.one_of(st.none(), st.integers(0, 2**31 - 1)), max_size=50))
def test_flag_names_any_value(values: list[int | None]) -> None:
    got = fa.flag_names(pa.array(values, pa.int32())).to_pylist()
    assert got == [None if v is None else _named(v) for v in values]


def test_duckdb_uses_the_cpus_it_may_run_on_and_spills() -> None:
    settings = fa.duckdb_settings()
    assert settings["threads"] == len(os.sched_getaffinity(0))
    con = fa.Engine()
    row = con.db.execute(
        "SELECT current_setting('threads'), current_setting('memory_limit'), "
        "current_setting('temp_directory')").fetchone()
    assert row is not None
    threads, limit, temp = row
    assert threads == settings["threads"]
    assert temp == settings["temp_directory"] and str(os.getpid()) in temp
    assert limit  # a set limit: beyond it DuckDB spills to temp


def test_larger_than_memory_limit_spills(tmp_path: Path) -> None:
    """A memory limit below what the analysis needs (480,000 records, 59 MB of text, 271,000
    connections: the records' table and ~80 MiB of aggregation state): DuckDB spills to its
    temporary directory and the answer is unchanged.  (The records are read into a table
    before the limit is set: the CSV reader alone takes ~50 MiB.)"""
    path = tmp_path / "flows.log"
    recs = gen.records(gen.scenarios())
    many = [dict(r, srcport=int(str(r["srcport"])) + k % 20000, srcaddr=f"10.9.{k // 20000}.1",
                 **{"pkt-srcaddr": f"10.9.{k // 20000}.1"})
            for k in range(20000) for r in recs if r["srcport"] != "-"]
    path.write_text(gen.text(many))
    want = fa.analyze([str(path)]).table
    con = fa.Engine()
    header, names = fa._sniff(str(path), None)
    text = fa._scan_text(con, str(path), header, names)
    con.db.execute(f"CREATE TEMP TABLE records AS SELECT * FROM {text.input.name}")
    con.db.execute("SET threads = 1")  # each thread pins its own blocks: the same on any machine
    con.db.execute("SET memory_limit = '48MiB'")
    directions = con.table("directions", [compiled.Input("records", text.input.schema, "aws")])
    got = fa._finish(con.run("connections", [directions], per_interface=False,
                             order_by=order.PROBLEMS_FIRST))
    spilled = con.db.execute("SELECT sum(temporary_storage_bytes) FROM duckdb_memory()")
    assert (spilled.fetchone() or [0])[0] > 4 << 20
    assert got.num_rows == want.num_rows > 100_000
    assert got.equals(want)


def test_doubled_space_lines_join_their_connection(tmp_path: Path) -> None:
    """A line DuckDB rejects for a doubled space is re-split after the one pass, and its
    sums are added to the rows of the same 5-tuple read in that pass (not kept apart, not
    merged with max); NODATA records stay coverage."""
    head = "version interface-id srcaddr dstaddr srcport dstport protocol packets bytes " \
           "start end action log-status tcp-flags\n"
    lines = ["5 eni-1 10.0.0.1 10.0.0.2 40000 443 6 3 180 1700000000 1700000059 ACCEPT OK 2",
             "5 eni-1  10.0.0.2 10.0.0.1 443 40000 6 2 120 1700000000 1700000059 ACCEPT OK 18",
             "5 eni-1 10.0.0.2 10.0.0.1 443 40000 6 4 400 1700000060 1700000119 ACCEPT OK 1",
             "5 eni-1 10.0.0.1 10.0.0.2 40000 443 6 1 40 1700000060 1700000119 ACCEPT OK 1",
             "5 eni-1 - - - - - - - 1700000120 1700000179 - NODATA -"]
    path = tmp_path / "flows.log"
    path.write_text(head + "\n".join(lines) + "\n")
    result = fa.analyze([str(path)])
    assert result.problems == [] and result.records == 5
    rows = result.table.to_pylist()
    assert [(r["orig_h"], r["orig_p"], r["orig_pkts"], r["resp_pkts"], r["orig_bytes"],
             r["resp_bytes"], r["tcp_flags_orig"], r["tcp_flags_resp"], r["conn_state"],
             r["first_ts"], r["last_ts"]) for r in rows] == [
        ("10.0.0.1", 40000, 4, 6, 220, 520, "SYN|FIN", "SYN-ACK|FIN", "SF", 1700000000,
         1700000119)]
    assert result.gaps is not None
    assert result.gaps.to_pylist() == [{"start": 1700000120, "end": 1700000179,
                                        "status": "NODATA"}]
