"""AWS VPC Flow Logs text: every shared sample parses (records and located problems exact),
formats with and without header, gzip, doubled spaces, milliseconds, bad values; fuzzed."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.flowlogs import aws_text
from flowscope.flowlogs.fields import DEFAULT_FORMAT, parse_format

AWS = Path(__file__).resolve().parents[2] / "shared" / "flowlogs" / "aws"
# file -> (header?, fields, records, problems as "line: reason")
EXPECTED = {
    "accept-reject-traffic.log": (True, 14, 4, []),
    "bad.log": (False, 14, 0, ["1: 4 fields where the format has 14"]),
    "custom-nat-gateway.log": (True, 6, 2, []),
    "ipv6.log": (False, 14, 1, []),
    "no-data-skip-data.log": (False, 14, 2, []),
    "tcp-flag-sequence-skip-data.log": (True, 21, 2, []),  # two files concatenated
    "tcp-flag-sequence.log": (True, 21, 3, []),
    "v2_default_records.log": (False, 14, 5, []),
    "v3_custom_with_header.log": (True, 18, 2, []),
    "v4_custom_with_header.log": (True, 22, 2, []),
    "v5_custom_with_header.log": (True, 29, 2, ["4: 2 fields where the format has 29"]),
    "v6_tgw_fields_with_header.log": (True, 18, 1, []),
    "valid_tgw_flow_log.log": (True, 31, 1, []),
    "valid_vpc_flow_log.log": (True, 14, 1, []),
    "valid_vpc_flow_log_ecs.log": (True, 24, 1, []),
}
TGW_FORMAT = ("${version} ${interface-id} ${account-id} ${vpc-id} ${subnet-id} ${instance-id} "
              "${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${tcp-flags} ${type} "
              "${pkt-srcaddr} ${pkt-dstaddr} ${action} ${log-status}")


def table(source, log_format=None) -> tuple[aws_text.TextLog, pa.Table]:  # type: ignore[no-untyped-def]
    log, batches = aws_text.read(source, log_format)
    parts = list(batches)
    return log, pa.Table.from_batches(parts) if parts else pa.table({})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_samples(name: str) -> None:
    path = AWS / name
    if not path.exists():
        pytest.skip(f"{path} not present (../shared beside the checkout)")
    header, width, records, problems = EXPECTED[name]
    log, t = table(str(path))
    assert (log.header, len(log.fields), t.num_rows) == (header, width, records)
    assert log.problems == [f"{path}:{p}" for p in problems]


def test_every_shared_aws_file_is_listed() -> None:
    present = {p.name for p in AWS.glob("*.log")} - {"custom-transit-gateway.log"}
    assert present <= set(EXPECTED)


def test_values_typed_and_nulls() -> None:
    _, t = table(str(AWS / "v5_custom_with_header.log"))
    row = t.to_pylist()[0]
    assert (row["srcaddr"], row["srcport"], row["tcp_flags"], row["flow_direction"]) == \
        ("198.51.100.7", 443, 19, "ingress")
    assert row["pkt_dst_aws_service"] is None and row["pkt_src_aws_service"] == "S3"
    assert row["account_id"] == "999999999999" and row["_line"] == 2
    _, t = table(str(AWS / "no-data-skip-data.log"))
    assert t.column("log_status").to_pylist() == ["NODATA", "SKIPDATA"]
    assert t.column("srcaddr").null_count == 2


def test_custom_format_without_header() -> None:
    log, t = table(str(AWS / "custom-transit-gateway.log"), parse_format(TGW_FORMAT))
    assert log.problems == [] and t.num_rows == 1
    assert t.to_pylist()[0]["tcp_flags"] == 3 and t.to_pylist()[0]["type"] == "IPv4"


def test_gzip_stdin_double_spaces_and_milliseconds(tmp_path: Path) -> None:
    text = ("2 123456789010 eni-1 10.0.0.1 10.0.0.2 40000 443 6 3 180 1700000000 1700000060 "
            "ACCEPT OK\n"
            "2 123456789010 eni-1  10.0.0.2 10.0.0.1 443 40000 6 2 120 1700000000000 "
            "1700000060000 ACCEPT OK\n"   # doubled space; start/end in milliseconds
            "2 123456789010 eni-1 10.0.0.2 10.0.0.1 443 4x000 6 2 120 1700000000 1700000060 "
            "ACCEPT OK\n")
    path = tmp_path / "log.gz"
    path.write_bytes(gzip.compress(text.encode()))
    for source in (str(path), io.BufferedReader(io.BytesIO(text.encode()))):  # type: ignore[arg-type]
        log, t = table(source)
        assert t.num_rows == 2 and log.milliseconds == 1
        assert sorted(t.column("start").to_pylist()) == [1700000000, 1700000000]
        assert sorted(t.column("_line").to_pylist()) == [1, 2]
        assert [p.split(":", 2)[1:] for p in log.problems] == [["3", " dstport is not a number"]]


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(st.lists(st.sampled_from(
    ["2", "-", "10.0.0.1", "443", "ACCEPT", "OK", "x", "", "1700000000", "NODATA"]),
    min_size=0, max_size=16), max_size=12))
def test_random_lines_are_records_or_located_problems(lines: list[list[str]]) -> None:
    text = "\n".join(" ".join(words) for words in lines).encode()
    log, t = table(io.BufferedReader(io.BytesIO(text)))  # type: ignore[arg-type]
    tokens = [" ".join(words).split() for words in lines]
    # a line with no value at all (blank, or only '-') is not a record and not a problem
    empty = sum(1 for tok in tokens
                if not tok or (len(tok) == len(DEFAULT_FORMAT) and set(tok) == {"-"}))
    assert t.num_rows + len(log.problems) + empty == len(lines)
    assert t.num_rows <= sum(1 for tok in tokens if len(tok) == len(DEFAULT_FORMAT))
