"""The flow-log analysis is written once (Ibis): on local PySpark it must give exactly what
DuckDB gives, connection for connection (the issue's engine promise).  Spark lacks a
bitwise-OR aggregate, so this also proves the portable OR (connections.PORTABLE)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from flowscope.flowlogs import aws_text, connections

from . import flowlog_gen as gen

pyspark = pytest.importorskip("pyspark", reason="pyspark not installed (pip install "
                                                "'ibis-framework[pyspark]')")
pytestmark = pytest.mark.filterwarnings("ignore")  # pandas/pyspark deprecation chatter
if shutil.which("java") is None:
    pytest.skip("no Java runtime: PySpark needs one", allow_module_level=True)


@pytest.fixture(scope="module")
def spark(tmp_path_factory):  # type: ignore[no-untyped-def]
    from pyspark.sql import SparkSession

    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    session = (SparkSession.builder.master("local[1]").appName("flowscope-test")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.warehouse.dir", str(warehouse))
               .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse}")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _rows(table: pa.Table) -> list[tuple]:
    names = sorted(table.column_names)
    return sorted(tuple(r[n] for n in names) for r in table.to_pylist())


def test_pyspark_gives_what_duckdb_gives(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import ibis

    path = tmp_path / "flows.log"
    path.write_text(gen.text(gen.records(gen.scenarios(), both_enis=True)))
    log, parts = aws_text.read(str(path))
    raw = pa.Table.from_batches(list(parts))

    duck = ibis.duckdb.connect().to_pyarrow(connections.connections(ibis.memtable(raw)))

    con = ibis.pyspark.connect(spark)
    table = con.create_table("flow_logs", raw.to_pandas(), overwrite=True)
    connections.PORTABLE["enabled"] = True
    try:
        sparked = connections.connections(table).to_pyarrow()
    finally:
        connections.PORTABLE["enabled"] = False

    assert duck.num_rows == len(gen.scenarios())
    assert sorted(sparked.column_names) == sorted(duck.column_names)
    cast = sparked.select(duck.column_names).cast(duck.schema)
    assert _rows(cast) == _rows(duck)
    verdicts = {r["orig_p"]: r["verdict"] for r in duck.to_pylist()}
    assert verdicts[40004] == "refused" and verdicts[40007] == "denied"
