"""The flow-log analysis as DuckDB SQL: compiled from the Ibis expressions, kept on disk.

The analysis is written once, as Ibis expressions (:mod:`flowscope.flowlogs.connections`).
Importing Ibis and compiling those expressions costs ~0.6 s of CPU per run, a quarter of the
whole analysis of 1.6 million records; yet the SQL depends only on the query asked for, the
schemas of the input tables and the code that builds it.  So it is compiled on first use and
cached, as Numba caches compiled kernels: the key holds the query, the inputs' names and
schemas, the Ibis and sqlglot versions and the source of the modules that build the
expression; any change compiles afresh.  A cache that cannot be read or written only costs
the compile.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    import ibis.expr.types as ir

# "directions": raw inputs -> per 5-tuple and interface sums (the one pass over the records);
# the others read directions tables: "merge" (partial rows of one key added up), "summary",
# "gaps" (NODATA/SKIPDATA intervals) and "connections" (in no order: the engine sorts them,
# :mod:`flowscope.flowlogs.order`).
QUERIES = ("directions", "merge", "summary", "gaps", "connections")


@dataclass(eq=False)
class Input:
    """A DuckDB table or view the analysis reads.  ``kind``: ``aws`` (AWS field columns,
    ``-`` as ``_``: :func:`connections.records` normalises them), ``parquet`` (AWS Parquet
    columns, renamed first), ``records`` (already normalised: GCP, Azure) or
    ``directions`` (a table of :func:`connections.directions` rows)."""

    name: str
    schema: pa.Schema
    kind: str

    def key(self) -> list:
        return [self.name, self.kind, [(f.name, str(f.type)) for f in self.schema]]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "flowscope" / "sql"


@functools.cache
def _code_version() -> list[str]:
    here = Path(__file__).parent
    sources = b"".join((here / n).read_bytes() for n in ("compiled.py", "connections.py",
                                                          "fields.py", "order.py"))
    return [hashlib.sha256(sources).hexdigest(), metadata.version("ibis-framework"),
            metadata.version("sqlglot")]


def sql(query: str, inputs: list[Input], per_interface: bool = False) -> tuple[str, pa.Schema]:
    """DuckDB SQL for ``query`` (one of :data:`QUERIES`) over the union of ``inputs``, and
    the Arrow schema its result is cast to (DuckDB sums BIGINT into HUGEINT)."""
    key = json.dumps([_code_version(), query, [i.key() for i in inputs], per_interface])
    path = cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()}.json"
    try:
        entry = json.loads(path.read_text())
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(entry["schema"])))
        return entry["sql"], schema
    except (OSError, ValueError, KeyError, pa.ArrowException):
        pass
    import ibis

    expr = build(query, inputs, per_interface)
    text = str(ibis.to_sql(expr, dialect="duckdb"))
    schema = expr.schema().to_pyarrow()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"sql": text, "schema": base64.b64encode(
            schema.serialize().to_pybytes()).decode()}))
        os.replace(tmp, path)
    except OSError:
        pass
    return text, schema


def build(query: str, inputs: list[Input], per_interface: bool = False) -> ir.Table:
    """The Ibis expression of ``query`` over the union of ``inputs`` (raw records for
    ``directions``, directions tables for the others)."""
    import ibis

    from flowscope.flowlogs import connections
    from flowscope.flowlogs import fields as f

    tables = [ibis.table(ibis.Schema.from_pyarrow(i.schema), name=i.name) for i in inputs]
    if query == "directions":
        parts = []
        for i, t in zip(inputs, tables, strict=True):
            if i.kind == "parquet":  # AWS Parquet flow logs: the fields with '_' for '-'
                t = t.rename({f.column(c): c for c in t.columns if "-" in c})
            parts.append(t if i.kind == "records" else connections.records(t))
        return connections.directions(_union(parts))
    d = _union(tables)
    if query == "merge":
        return connections.merge(d)
    if query == "summary":
        return d.aggregate(n=d.records.sum(),
                           gaps=d.records.sum(where=d.status == f.STATUS_SKIPDATA),
                           interfaces=d.interface_id.nunique())
    if query == "gaps":
        return connections.gaps(d)
    if query == "connections":
        return connections.connections_from(d, per_interface=per_interface)
    raise ValueError(f"unknown query {query!r}")


def _union(tables: list[ir.Table]) -> ir.Table:
    return tables[0].union(*tables[1:]) if len(tables) > 1 else tables[0]
