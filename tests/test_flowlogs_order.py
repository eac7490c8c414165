"""flowscope's sort of the connections (flowscope.flowlogs.order) against DuckDB's ORDER BY."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.flowlogs import order

SHARED = Path(__file__).resolve().parents[2] / "shared" / "flowlogs" / "aws"

INT64 = st.integers(-(1 << 63), (1 << 63) - 1)
# values that tie often (the keys after the first decide), and far apart (no packing)
SMALL = st.integers(-3, 3)
TEXT = st.text(st.sampled_from("aAbB0.é-\x00z"), max_size=4)


def _duckdb(table: pa.Table, keys: list[tuple[str, bool]]) -> pa.Table:
    by = ", ".join(f'"{c}" {"DESC" if d else "ASC"}' for c, d in keys)
    con = duckdb.connect()
    con.register("rows", table)
    return con.sql(f"SELECT * FROM rows ORDER BY {by}").to_arrow_table()


def _same_order(got: pa.Table, want: pa.Table, keys: list[tuple[str, bool]]) -> None:
    """The key columns row for row (rows that tie on every key may come in any order), and
    the same rows."""
    names = [c for c, _ in keys]
    assert got.select(names).to_pylist() == want.select(names).to_pylist()
    rows = sorted(map(repr, got.to_pylist()))
    assert rows == sorted(map(repr, want.to_pylist()))


@st.composite
def tables(draw: st.DrawFn) -> tuple[pa.Table, list[tuple[str, bool]]]:
    n = draw(st.integers(0, 40))
    wide = draw(st.booleans())

    def column(values: st.SearchStrategy, typ: pa.DataType) -> pa.Array:
        return pa.array(draw(st.lists(st.none() | values, min_size=n, max_size=n)), typ)

    table = pa.table({
        "flag": column(st.booleans(), pa.bool_()),
        "ts": column(INT64 if wide else SMALL, pa.int64()),
        "port": column(st.integers(0, 65535) if wide else SMALL, pa.int32()),
        "host": column(TEXT, pa.string()),
        "proto": column(st.sampled_from(["tcp", "udp", "47", "icmp"]), pa.string()),
        "payload": pa.array(range(n), pa.int64()),
    })
    names = draw(st.permutations(["flag", "ts", "port", "host", "proto"]))
    keys = [(c, draw(st.booleans())) for c in names[:draw(st.integers(1, 5))]]
    return table, keys


@given(tables())
@settings(max_examples=300, deadline=None)
def test_order_is_duckdbs(case: tuple[pa.Table, list[tuple[str, bool]]]) -> None:
    """Booleans, integers (packed, or ranked when too far apart), texts (bytewise, as SQL
    compares VARCHAR), either direction, nulls last either way."""
    table, keys = case
    _same_order(order.ordered(table, keys), _duckdb(table, keys), keys)


def test_every_key_of_the_connections() -> None:
    """The analysis' own keys: every combination of two or three values each (so each key
    decides between some rows), with nulls where the engine can give them (first_ts,
    interface_id), shuffled; evidence gathered through its dictionary."""
    rows = [{"problem": p, "first_ts": ts, "orig_h": oh, "orig_p": op, "resp_h": rh,
             "resp_p": rp, "proto": proto, "interface_id": eni}
            for p, ts, oh, op, rh, rp, proto, eni in itertools.product(
                [False, True], [None, 1700000001, 1700000000], ["10.0.0.9", "10.0.0.10"],
                [40000, 9], ["10.0.1.1", "10.0.0.100"], [443, 80], ["udp", "tcp"],
                [None, "eni-1", "eni-0"])]
    random.Random(1).shuffle(rows)
    for i, row in enumerate(rows):
        row["evidence"] = ["SYN sent", None, "FIN both ways"][i % 3]
    table = pa.Table.from_pylist(rows)
    keys = list(order.PROBLEMS_FIRST)
    got = order.ordered(table, keys)
    assert got.equals(_duckdb(table, keys))
    assert got.drop_columns(["evidence"]).slice(0, 1).to_pylist() == [{
        "problem": True, "first_ts": 1700000000, "orig_h": "10.0.0.10", "orig_p": 9,
        "resp_h": "10.0.0.100", "resp_p": 80, "proto": "tcp", "interface_id": "eni-0"}]


def test_string_views_are_cast_to_the_schema() -> None:
    """Text as Arrow string views (what DuckDB hands over with produce_arrow_string_view)
    comes out as the schema's strings, by dictionary or by take."""
    many = [f"host-{i}" for i in range(20)]  # too many distinct values for a dictionary
    few = ["a", "b"] * 10
    table = pa.table({"many": pa.array(many, pa.string_view()),
                      "few": pa.array(few, pa.string_view())})
    schema = pa.schema([("many", pa.string()), ("few", pa.string())])
    got = order.ordered(table, [("few", True), ("many", False)], schema)
    assert got.schema == schema
    want = sorted(zip(few, many, strict=True), key=lambda r: (r[0] == "a", r[1]))
    assert got.to_pylist() == [{"few": f, "many": m} for f, m in want]


@pytest.mark.parametrize("n", [0, 1, 3])
@pytest.mark.parametrize("typ", [pa.string(), pa.null(), pa.int64(), pa.bool_()])
def test_tiny_and_null_columns(n: int, typ: pa.DataType) -> None:
    table = pa.table({"k": pa.array([None] * n, typ), "n": pa.array(range(n), pa.int64())})
    assert order.ordered(table, [("k", False), ("n", True)]).to_pydict() == {
        "k": [None] * n, "n": list(range(n))[::-1]}


def test_the_flow_log_analysis_does_not_import_pandas() -> None:
    """pandas costs 0.3 s to import; Arrow imports it on a Python fill value, a to_numpy or
    a pa.array(), none of which the analysis of AWS text logs (sort included) may use: the
    shared AWS samples (nulls, SKIPDATA gaps, bad lines, several formats) in one go.  (The
    GCP and Azure JSON readers build their few rows with pa.array.)"""
    code = ("import sys\n"
            "from flowscope.flowlogs import analyze\n"
            f"result = analyze.analyze([{str(SHARED)!r}])\n"
            "print(result.table.num_rows > 10, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "True False"


@given(st.lists(st.none() | st.text(max_size=6), min_size=1, max_size=30), st.data())
@settings(max_examples=200, deadline=None)
def test_texts_gathered_through_the_dictionary_are_arrows_take(
        values: list[str | None], data: st.DataObject) -> None:
    """The dictionary route's decode (nulls, empty and multi-byte texts, a dictionary with
    no text at all) gives what Arrow's take gives."""
    column = pa.array(values, pa.string())
    encoded = pc.dictionary_encode(column)
    rows = data.draw(st.lists(st.integers(0, len(values) - 1), max_size=40))
    indices = pa.array(rows, pa.int64())
    got = order._texts(encoded.dictionary, encoded.indices.take(indices))
    assert got.equals(column.take(indices))


def test_keys_of_other_types_are_refused() -> None:
    table = pa.table({"x": pa.array([0.5, 0.25], pa.float64())})
    with pytest.raises(TypeError, match="cannot order by a column of double"):
        order.ordered(table, [("x", False)])
