"""Flow-log connection verdicts on generated multi-interval logs (tests/flowlog_gen.py) with
exact expectations; CLI, SQL for other engines, the shared samples end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pytest

from flowscope.flowlogs.analyze import analyze

from . import flowlog_gen as gen

AWS = Path(__file__).resolve().parents[2] / "shared" / "flowlogs" / "aws"


def verdicts(path: Path) -> dict[tuple[str, int], dict]:
    rows = analyze([str(path)]).table.to_pylist()
    return {(r["orig_h"], r["orig_p"]): r for r in rows}


@pytest.mark.parametrize(("ms", "both_enis"), [(False, False), (True, False), (False, True)])
def test_generated_connections(tmp_path: Path, ms: bool, both_enis: bool) -> None:
    conns = gen.scenarios()
    path = tmp_path / "flows.log"
    path.write_text(gen.text(gen.records(conns, ms=ms, both_enis=both_enis)))
    got = verdicts(path)
    for c in conns:
        row = got[c.client]
        assert (c.name, row["verdict"]) == (c.name, c.expected)
        assert (row["resp_h"], row["resp_p"]) == c.server
        n_client = sum(1 for p in c.packets if p[1])
        assert (row["orig_pkts"], row["resp_pkts"]) == (n_client, len(c.packets) - n_client)
    assert len(got) == len(conns)
    ok = got[("10.0.1.10", 40001)]
    assert (ok["conn_state"], ok["tcp_flags_orig"], ok["tcp_flags_resp"]) == \
        ("SF", "SYN|FIN", "SYN-ACK|FIN")
    assert ok["first_ts"] == gen.T0 + 1 and ok["last_ts"] == gen.T0 + 71
    assert got[("10.0.1.10", 40004)]["conn_state"] == "REJ"
    assert got[("10.0.1.10", 40003)]["conn_state"] == "S0"
    assert got[("10.0.1.10", 40008)]["action"] == "ACCEPT+REJECT"
    assert got[("10.0.1.10", 53000)]["conn_state"] == "SF"  # UDP: Zeek's codes
    assert got[("10.0.1.10", 53001)]["conn_state"] == "S0"
    # their evidence is UDP's, not the TCP handshake's sentences for the same codes
    assert got[("10.0.1.10", 53000)]["evidence"] == ["records in both directions"]
    assert got[("10.0.1.10", 53001)]["evidence"] == ["records in one direction only"]


def test_failures_first_and_cli(tmp_path: Path) -> None:
    path = tmp_path / "flows.log"
    path.write_text(gen.text(gen.records(gen.scenarios()), extra=["2 bad line"]))
    out = subprocess.run([sys.executable, "-m", "flowscope", "flowlogs", "analyze", str(path),
                          "-f", "jsonl"], capture_output=True, text=True, check=True)
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    flags = [r["problem"] for r in rows]
    assert flags == sorted(flags, reverse=True)
    assert {r["verdict"] for r in rows if r["problem"]} == {
        "unanswered", "refused", "reset_by_orig", "reset_by_resp", "denied"}
    assert f"{path}:{len(gen.records(gen.scenarios())) + 2}: 3 fields where the format has 18" \
        in out.stderr
    # stderr is for the user: nothing from the bindings at exit (DuckDB's nanobind reports
    # objects kept alive by a frozen garbage collector as leaks)
    assert "leak" not in out.stderr
    assert out.stderr.splitlines()[-1].endswith("connections")


@pytest.mark.parametrize("dialect", ["duckdb", "athena", "trino", "spark", "bigquery"])
def test_sql_for_other_engines(dialect: str) -> None:
    out = subprocess.run([sys.executable, "-m", "flowscope", "flowlogs", "analyze", "--sql",
                          dialect], capture_output=True, text=True, check=True)
    assert "flow_logs" in out.stdout and "SELECT" in out.stdout.upper()


def test_shared_samples_end_to_end() -> None:
    if not AWS.exists():
        pytest.skip("../shared/flowlogs not present")
    result = analyze([str(AWS)])
    rows = {(r["orig_h"], r["orig_p"], r["resp_p"]): r for r in result.table.to_pylist()}
    assert rows[("216.160.83.57", 43638, 5001)]["verdict"] == "ok"
    assert rows[("216.160.83.57", 43416, 5001)]["verdict"] == "unanswered"
    assert rows[("78.24.182.42", 49761, 3389)]["verdict"] == "denied"
    assert rows[("78.24.182.42", 20641, 22)]["verdict"] == "unknown"  # no tcp-flags field
    assert result.coverage_gaps == 3


GCP = AWS.parent / "gcp"
AZURE = AWS.parent / "azure"


def test_gcp_and_azure_samples() -> None:
    if not GCP.exists() or not AZURE.exists():
        pytest.skip("../shared/flowlogs not present")
    gcp = analyze([str(GCP)])
    assert (gcp.files, gcp.records, gcp.problems) == (2, 18, [])
    rows = {(r["orig_h"], r["orig_p"]): r for r in gcp.table.to_pylist()}
    # both reporters (SRC and DEST) logged this direction: merged, not doubled
    kibana = rows[("192.0.2.117", 50646)]
    assert (kibana["resp_h"], kibana["resp_p"], kibana["verdict"]) == \
        ("10.87.40.76", 5601, "unknown")
    assert any("GCP" in c for c in gcp.capabilities)
    azure = analyze([str(AZURE)])
    assert azure.files == 4 and azure.problems == []
    verdicts = [r["verdict"] for r in azure.table.to_pylist()]
    # independent count: distinct 5-tuples of the tuples whose 8th field is D (v4 state D,
    # NSG v2 decision D), read from the raw files with a regular expression
    import re

    denied = set()
    for path in AZURE.iterdir():
        for m in re.finditer(r'"\d+,([^,"]+),([^,"]+),(\d+),(\d+),(\w+),[IO],D', path.read_text()):
            denied.add(frozenset([(m[1], m[3]), (m[2], m[4])]) | {m[5]})
    assert verdicts.count("denied") == len(denied) == 16
    ssh = next(r for r in azure.table.to_pylist() if r["resp_p"] == 22 and r["proto"] == "tcp"
               and r["orig_h"] == "101.33.218.153")
    assert (ssh["verdict"], ssh["action"]) == ("denied", "REJECT")


def test_interval_timeline_with_coverage_gaps(tmp_path: Path) -> None:
    """Failures counted per minute by connection start; a SKIPDATA window is a gap (null),
    never zero failures; NODATA is coverage 'nodata' (no traffic)."""
    conns = gen.scenarios()
    recs = gen.records(conns)
    skip = (f"5 123456789012 eni-0abc - - - - - - - {gen.T0 + 600} {gen.T0 + 659} - SKIPDATA "
            "- - - -")
    nodata = (f"5 123456789012 eni-0abc - - - - - - - {gen.T0 + 720} {gen.T0 + 779} - NODATA "
              "- - - -")
    path = tmp_path / "flows.log"
    path.write_text(gen.text(recs, extra=[skip, nodata]))
    out = subprocess.run([sys.executable, "-m", "flowscope", "flowlogs", "analyze", str(path),
                          "--interval", "1m", "-f", "jsonl"], capture_output=True, text=True,
                         check=True)
    series = {r["interval_start"] - gen.T0: r for r in map(json.loads, out.stdout.splitlines())}
    assert series[0]["failures"] == {"unanswered": 2, "refused": 1, "reset_by_orig": 1,
                                     "reset_by_resp": 1, "denied": 1}
    assert series[0]["connections"] == 11 and series[60]["connections"] == 1
    assert (series[600]["coverage"], series[600]["failures"]) == ("skipdata", None)
    assert (series[720]["coverage"], series[720]["failures"]) == ("nodata", {})
    assert series[300]["coverage"] == "ok" and series[300]["failures"] == {}


@pytest.mark.parametrize("shape", ["filter-log-events", "json-lines"])
def test_cloudwatch_exports(tmp_path: Path, shape: str) -> None:
    recs = gen.records(gen.scenarios())
    fields = gen.FIELDS
    events = [{"logStreamName": "eni-0abc-all", "timestamp": 0,
               "message": " ".join(str(r[f]) for f in fields)} for r in recs]
    path = tmp_path / "cw.json"
    if shape == "filter-log-events":
        path.write_text(json.dumps({"events": events, "searchedLogStreams": []}))
    else:
        path.write_text("\n".join(json.dumps(e) for e in events))
    log_format = " ".join("${" + f + "}" for f in fields)
    out = subprocess.run([sys.executable, "-m", "flowscope", "flowlogs", "analyze", str(path),
                          "--log-format", log_format, "-f", "jsonl"], capture_output=True,
                         text=True, check=True)
    got = {(r["orig_h"], r["orig_p"]): r["verdict"] for r in map(json.loads,
                                                                  out.stdout.splitlines())}
    assert got == {c.client: c.expected for c in gen.scenarios()}


def test_cloudwatch_export_with_null_events(tmp_path: Path) -> None:
    """A filter-log-events page whose "events" is null holds no records: a clear message,
    not a traceback."""
    path = tmp_path / "cw.json"
    path.write_text('{"events": null, "message": "x"}\n')
    out = subprocess.run([sys.executable, "-m", "flowscope", "flowlogs", "analyze", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "no flow-log records found" in out.stderr
    assert "Traceback" not in out.stderr


def test_aws_parquet(tmp_path: Path) -> None:
    """AWS's Parquet delivery: the same fields, '_' for '-', typed columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    recs = gen.records(gen.scenarios())
    table = pa.Table.from_pylist([{k.replace("-", "_"): v for k, v in r.items()} for r in recs])
    pq.write_table(table, tmp_path / "part-0.parquet")
    got = {(r["orig_h"], r["orig_p"]): r["verdict"]
           for r in analyze([str(tmp_path)]).table.to_pylist()}
    assert got == {c.client: c.expected for c in gen.scenarios()}


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowscope", "flowlogs", "analyze", *args],
                          capture_output=True, text=True, input=stdin)


def test_table_problems_stdin_and_no_input(tmp_path: Path) -> None:
    text = gen.text(gen.records(gen.scenarios()))
    path = tmp_path / "flows.log"
    path.write_text(text)
    failing = sum(1 for c in gen.scenarios() if c.expected in (
        "unanswered", "refused", "reset_by_orig", "reset_by_resp", "denied"))
    table = _cli(str(path)).stdout.splitlines()
    assert table[0].split()[:2] == ["verdict", "proto"]
    assert table[-1] == f"{len(gen.scenarios())} connections, {failing} failing"
    only = [json.loads(x) for x in _cli(str(path), "--problems", "-f", "jsonl").stdout.splitlines()]
    assert len(only) == failing and all(r["problem"] for r in only)
    piped = [json.loads(x) for x in _cli("-", "-f", "jsonl", stdin=text).stdout.splitlines()]
    filed = [json.loads(x) for x in _cli(str(path), "-f", "jsonl").stdout.splitlines()]
    assert piped == filed
    out = _cli()
    assert out.returncode == 1 and "give flow-log files" in out.stderr


def test_interval_timeline_by_port_and_strict(tmp_path: Path) -> None:
    """--by port: one series per responder port; intervals without connections keep one
    row (null key) carrying their coverage.  --strict stops at a bad line."""
    skip = (f"5 123456789012 eni-0abc - - - - - - - {gen.T0 + 600} {gen.T0 + 659} - SKIPDATA "
            "- - - -")
    path = tmp_path / "flows.log"
    path.write_text(gen.text(gen.records(gen.scenarios()), extra=[skip]))
    out = subprocess.run([sys.executable, "-m", "flowscope", "flowlogs", "analyze", str(path),
                          "--interval", "1m", "--by", "port", "-f", "jsonl"],
                         capture_output=True, text=True, check=True)
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    first = {r["port"]: (r["connections"], r["failures"]) for r in rows
             if r["interval_start"] == gen.T0}
    assert first == {443: (7, {"unanswered": 1, "reset_by_orig": 1, "reset_by_resp": 1}),
                     5432: (1, {"refused": 1}), 22: (1, {"denied": 1}),
                     53: (2, {"unanswered": 1})}
    second = [(r["port"], r["connections"]) for r in rows if r["interval_start"] == gen.T0 + 60]
    assert second == [(443, 1)]
    quiet = {r["interval_start"] - gen.T0: r for r in rows if r["port"] is None}
    assert sorted(quiet) == [120, 180, 240, 300, 360, 420, 480, 540, 600]
    assert (quiet[600]["coverage"], quiet[600]["failures"]) == ("skipdata", None)
    assert (quiet[300]["connections"], quiet[300]["failures"]) == (0, {})

    bad = tmp_path / "bad.log"
    bad.write_text(gen.text(gen.records(gen.scenarios()), extra=["2 bad line", "3 worse"]))
    args = [sys.executable, "-m", "flowscope", "flowlogs", "analyze", str(bad), "-f", "jsonl"]
    loose = subprocess.run(args, capture_output=True, text=True)
    assert loose.returncode == 0 and loose.stdout
    strict = subprocess.run([*args, "--strict"], capture_output=True, text=True)
    n = len(gen.records(gen.scenarios()))
    assert strict.returncode == 1 and not strict.stdout
    assert f"{bad}:{n + 2}: 3 fields where the format has 18 (and 1 more); --strict stops" \
        in strict.stderr
    assert "Traceback" not in strict.stderr
    no_interval = subprocess.run([*args, "--by", "eni"], capture_output=True, text=True)
    assert no_interval.returncode == 1 and "--by needs --interval" in no_interval.stderr


def test_parquet_output_keeps_statistics_for_numbers(tmp_path: Path) -> None:
    """-f parquet: the connections as they are (types, lists), with min/max statistics for
    the number and boolean columns (a reader skips row groups by time or port), none for
    text."""
    import pyarrow.parquet as pq

    path = tmp_path / "flows.log"
    path.write_text(gen.text(gen.records(gen.scenarios())))
    out = tmp_path / "c.parquet"
    _cli(str(path), "-f", "parquet", "-o", str(out))
    want = analyze([str(path)]).table
    assert pq.read_table(out).equals(want)
    group = pq.ParquetFile(out).metadata.row_group(0)
    stats = {group.column(i).path_in_schema: group.column(i).statistics
             for i in range(group.num_columns)}
    assert (stats["first_ts"].min, stats["first_ts"].max) == (
        pc.min(want["first_ts"]).as_py(), pc.max(want["first_ts"]).as_py())
    assert stats["problem"].has_min_max and stats["resp_p"].has_min_max
    assert stats["verdict"] is None and stats["evidence.list.element"] is None
