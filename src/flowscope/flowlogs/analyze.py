"""``flowscope flowlogs analyze``: files and folders of flow logs -> connections, problems first.

Reads every file (AWS text, with or without header, gzip), reports what the format allows
(the capability report), runs :func:`flowscope.flowlogs.connections.connections` on embedded
DuckDB (as SQL compiled from Ibis, :mod:`flowscope.flowlogs.compiled`), and returns an Arrow
table: failing connections first.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowscope.errors import FlowscopeError
from flowscope.flowlogs import aws_text, cloud_json, combine, compiled, order
from flowscope.flowlogs import fields as f

SUFFIXES = (".log", ".txt", ".json", ".jsonl", ".gz", ".parquet")
FLAG_NAMES = ((f.SYN_ACK, "SYN-ACK"), (f.SYN, "SYN"), (f.FIN, "FIN"), (f.RST, "RST"))


@dataclass
class Analysis:
    table: pa.Table  # connections, problems first
    capabilities: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    files: int = 0
    records: int = 0
    coverage_gaps: int = 0  # SKIPDATA records: intervals whose records were lost
    gaps: pa.Table | None = None  # start, end, status of the SKIPDATA/NODATA records


def expand(paths: Iterable[str]) -> list[str]:
    """Files as given; directories walked (the AWSLogs/... and Hive layouts alike);
    ``s3://bucket/prefix`` and a flow-log id ``fl-...`` fetched first (flowscope.aws.remote)."""
    out: list[str] = []
    for p in paths:
        if p.startswith("s3://") or p.startswith("fl-") and not os.path.exists(p):
            from flowscope.aws.remote import is_remote, materialize

            if is_remote(p):
                p = materialize(p)
        if p != "-" and os.path.isdir(p):
            for root, _, names in sorted(os.walk(p)):
                out += [os.path.join(root, n) for n in sorted(names) if n.endswith(SUFFIXES)]
        else:
            out.append(p)
    return out


def flag_names(values: pa.Array) -> pa.Array:
    """OR-ed tcp-flags as names: 19 -> 'SYN-ACK|FIN'.  Named once per distinct value, then
    looked up (a connection table holds a handful of distinct values)."""
    uniq = pc.drop_null(pc.unique(values))
    names = []
    for v in uniq.to_pylist():
        left, parts = int(v), []
        for bits, name in FLAG_NAMES:
            if left & bits == bits:
                parts.append(name)
                left &= ~bits
        names.append("|".join(parts) if parts else "-" if v == 0 else f"0x{v:x}")
    return pc.take(_strings(names), pc.index_in(values, value_set=uniq))


def _strings(values: list[str]) -> pa.Array:
    """A string array from its buffers (``pa.array`` imports pandas: 0.3 s)."""
    data = [v.encode() for v in values]
    offsets = np.zeros(len(data) + 1, np.int32)
    np.cumsum([len(d) for d in data], out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(data), [
        None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))])


def capabilities(fields_seen: set[str]) -> list[str]:
    notes = []
    if "tcp-flags" not in fields_seen:
        notes.append("no tcp-flags field: no handshake verdicts (TCP connections are 'unknown')")
    if "pkt-srcaddr" not in fields_seen:
        notes.append("no pkt-srcaddr/pkt-dstaddr: peers behind NAT collapse to the ENI's "
                     "primary address")
    if "action" not in fields_seen:
        notes.append("no action field: denials cannot be told")
    if "reject-reason" not in fields_seen:
        notes.append("no reject-reason field (version 8): BPA rejections not told apart")
    return notes


MAX_INTERVALS = 100_000
# rows per Arrow batch of a result: one batch per DuckDB thread up to a million rows (the
# sort gathers from one array; DuckDB's default, 131,072, made 6 to be joined first)
BATCH_ROWS = 1 << 20
DUCKDB_TYPES = {"int16": "SMALLINT", "int32": "INTEGER", "int64": "BIGINT", "string": "VARCHAR",
                "bool": "BOOLEAN"}


def _sniff(path: str, log_format: tuple[str, ...] | None) -> tuple[bool, tuple[str, ...]]:
    """Header or not, and the fields: from the first line, as the Arrow reader decides."""
    log, _ = aws_text.read(path, log_format)
    return log.header, log.fields


def duckdb_settings() -> dict[str, str | bool | int | float | list[str]]:
    """One DuckDB thread per CPU this process may run on (not per CPU of the machine: a
    pinned process would otherwise time-slice its threads); at most half the RAM, the rest
    spilled to a private temporary directory, so logs larger than RAM still run; no
    insertion order to keep (every result is ordered by the query)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"threads": cpus or 1, "memory_limit": f"{ram // 2 >> 20}MiB",
            "temp_directory": os.path.join(tempfile.gettempdir(),
                                           f"flowscope-duckdb-{os.getpid()}"),
            "preserve_insertion_order": False}


class Engine:
    """Embedded DuckDB, running the SQL compiled from the analysis' Ibis expressions
    (:mod:`flowscope.flowlogs.compiled`) on the tables and views it holds."""

    def __init__(self) -> None:
        import duckdb

        self.db = duckdb.connect(config=duckdb_settings())
        self._n = 0
        self._stored: str | None = None

    def name(self, kind: str) -> str:
        self._n += 1
        return f"{kind}_{self._n}"

    def describe(self, name: str, kind: str) -> compiled.Input:
        schema = self.db.sql(f"SELECT * FROM {name} LIMIT 0").to_arrow_table().schema
        return compiled.Input(name, schema, kind)

    def arrow(self, table: pa.Table, kind: str) -> compiled.Input:
        name = self.name("arrow")
        self.db.register(name, table)
        return self.describe(name, kind)

    def store(self, table: pa.Table) -> None:
        """Rows of directions into the engine's storage (spilled to disk when memory runs
        short): :meth:`stored` gives them back as one input."""
        self.db.register("_incoming", table)
        if self._stored is None:
            self._stored = self.name("stored")
            self.db.execute(f"CREATE TEMP TABLE {self._stored} AS SELECT * FROM _incoming")
        else:
            self.db.execute(f"INSERT INTO {self._stored} SELECT * FROM _incoming")
        self.db.unregister("_incoming")

    def stored(self) -> list[compiled.Input]:
        return [self.describe(self._stored, "directions")] if self._stored else []

    def parquet(self, path: str) -> compiled.Input:
        name = self.name("parquet")
        quoted = path.replace("'", "''")
        self.db.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM read_parquet('{quoted}')")
        return self.describe(name, "parquet")

    def run(self, query: str, inputs: list[compiled.Input], per_interface: bool = False,
            order_by: Sequence[tuple[str, bool]] | None = None) -> pa.Table:
        """The query's rows, typed as Ibis says (DuckDB sums BIGINT into HUGEINT);
        ``order_by``: sorted by these keys
        (:mod:`flowscope.flowlogs.order`, faster than an ORDER BY in the query)."""
        text, schema = compiled.sql(query, inputs, per_interface)
        rows = self.db.sql(text).to_arrow_table(BATCH_ROWS)
        return order.ordered(rows, order_by, schema) if order_by else rows.cast(schema)

    def table(self, query: str, inputs: list[compiled.Input]) -> compiled.Input:
        """The query's rows kept in a DuckDB table (typed as Ibis says), for the next
        queries to read."""
        text, schema = compiled.sql(query, inputs)
        name = self.name(query)
        typed = ", ".join(f'CAST("{c.name}" AS {DUCKDB_TYPES[str(c.type)]}) AS "{c.name}"'
                          for c in schema)
        self.db.execute(f"CREATE TEMP TABLE {name} AS SELECT {typed} FROM ({text})")
        return compiled.Input(name, schema, "directions")


@dataclass
class _TextScan:
    """A text log DuckDB reads in place (a view over ``read_csv``): scanned once, by the
    directions query; the lines it rejects are kept in ``rejects``."""

    path: str  # the file as the user named it
    names: tuple[str, ...]  # the fields of the file
    used: list[str]  # the fields the analysis reads
    rejects: str
    input: compiled.Input
    lines: np.ndarray | None = None  # line numbers in ``path`` of a file of some of its lines
    problems: list[tuple[int, str]] = field(default_factory=list)  # found before the scan


def _scan_text(con: Engine, path: str, header: bool, names: tuple[str, ...],
               part: combine.Combined | None = None) -> _TextScan:
    """A view of the fields the analysis reads, typed, named as columns; DuckDB parses the
    file when the directions query reads it (parallel, compressed input, spills to disk).
    ``part``: read only the lines the combiner left (a file of them, with a header)."""
    columns = {n: DUCKDB_TYPES[str(f.TYPES.get(n, pa.string()))] for n in names}
    spec = ", ".join(f"'{n}': '{t}'" for n, t in columns.items())
    view = con.name("flows")
    rejects, scan = f"rejects_{view}", f"scan_{view}"
    used = [n for n in names if f.column(n) in f.ANALYSED] or list(names[:1])
    select = ", ".join(f'"{n}" AS "{f.column(n)}"' for n in used)
    quoted = (part.slow if part and part.slow else path).replace("'", "''")
    header = header or part is not None
    con.db.execute(
        f"CREATE TEMP VIEW {view} AS SELECT {select} FROM read_csv('{quoted}', delim=' ', "
        f"quote='', escape='', header={'true' if header else 'false'}, nullstr='-', "
        f"columns={{{spec}}}, store_rejects=true, rejects_table='{rejects}', "
        f"rejects_scan='{scan}', strict_mode=false, auto_detect=false)")
    schema = pa.schema([(f.column(n), f.TYPES.get(n, pa.string())) for n in used])
    return _TextScan(path, names, used, rejects, compiled.Input(view, schema, "aws"),
                     part.lines if part else None, part.problems if part else [])


NUMERIC = {name for name, typ in f.TYPES.items() if pa.types.is_integer(typ)}


def _integer(text: str) -> bool:
    """An integer field's text: digits with an optional sign, or '-' (null)."""
    return text == "-" or re.match(aws_text.INTEGER, text) is not None


def _rejected(con: Engine, scan: _TextScan) -> tuple[list[str], compiled.Input | None]:
    """After the scan: the lines DuckDB rejected, with their numbers.  Re-split if only
    spaces were doubled (returned as a table of records), else reported as file:line:
    reason."""
    bad = con.db.execute(
        f"SELECT line, any_value(csv_line), min(error_type), min(column_name) "
        f"FROM {scan.rejects} GROUP BY line ORDER BY line").fetchall()
    found, repaired = list(scan.problems), []
    names, used, path = scan.names, scan.used, scan.path
    for line, row_text, kind, column in bad:
        if scan.lines is not None:  # a line of the combiner's leftovers (after a header)
            line = int(scan.lines[line - 2])
        parts = (row_text or "").split()
        if not parts:
            continue
        if len(parts) == len(names):  # spaces doubled (DuckDB saw a field too many), or not
            row = dict(zip(names, parts, strict=True))
            wrong = [n for n in names if n in NUMERIC and not _integer(row[n])]
            if wrong:
                found.append((line, f"{wrong[0]} is not a number"))
            else:
                repaired.append({n: row[n] for n in used})
        elif kind == "CAST":
            found.append((line, f"{column} is not a number"))
        else:
            found.append((line, f"{len(parts)} fields where the format has {len(names)}"))
    problems = [f"{path}:{line}: {reason}" for line, reason in sorted(found)]
    if not repaired:
        return problems, None
    fixed = pa.table({f.column(n): pa.array([None if r[n] == "-" else r[n]
                                             for r in repaired], pa.string())
                      .cast(f.TYPES.get(n, pa.string())) for n in used})
    return problems, con.arrow(fixed.cast(scan.input.schema), "aws")


def analyze(paths: Iterable[str], log_format: tuple[str, ...] | None = None,
            strict: bool = False, combiner: bool = True) -> Analysis:
    """Flow-log files -> connections.  AWS text files go through the combiner
    (:mod:`flowscope.flowlogs.combine`, ``combiner``), which sums the records it reads
    exactly into directions rows and leaves the other lines to DuckDB; other files are
    parsed by DuckDB where it can read them (paths), by the streaming Arrow reader otherwise
    (stdin).  Bad lines are reported and skipped; ``strict``: the first file with any stops
    the analysis."""
    with tempfile.TemporaryDirectory(prefix="flowscope-") as work:
        return _analyze(paths, log_format, strict, combiner, work)


def _analyze(paths: Iterable[str], log_format: tuple[str, ...] | None, strict: bool,
             combiner: bool, work: str) -> Analysis:
    result = Analysis(pa.table({}))
    combined: list[compiled.Input] = []  # directions rows from the combiner
    seen: set[str] = set()
    con = Engine()
    inputs: list[compiled.Input] = []
    scans: list[tuple[int, _TextScan]] = []  # where in the problems each file's go
    clouds: set[str] = set()
    for path in expand(paths):
        try:
            if path.endswith(".parquet"):
                # AWS Parquet flow logs: the fields with '_' for '-', typed by the schema
                source = con.parquet(path)
                result.files += 1
                seen |= {c.replace("_", "-") for c in source.schema.names}
                inputs.append(source)
                continue
            kind = _json_kind(path)
            if kind == "cloudwatch":
                import io

                text = cloud_json.cloudwatch_messages(_read_all(path))
                log, parts = aws_text.read(io.BufferedReader(io.BytesIO(text)), log_format)
                log.name = path
                batches = list(parts)
                result.files += 1
                result.problems += [p.replace("<stdin>", path) for p in log.problems]
                if batches:
                    seen |= set(log.fields)
                    inputs.append(con.arrow(pa.Table.from_batches(batches), "aws"))
                continue
            if kind:
                result.files += 1
                clouds.add(kind)
                data = _read_all(path)
                read = cloud_json.gcp_records if kind == "gcp" else cloud_json.azure_records
                table = read(data, path, result.problems)
                if table.num_rows:
                    inputs.append(con.arrow(table, "records"))
                continue
            stdin: list[compiled.Input] = []
            if path == "-":
                log, parts = aws_text.read(_stdin(), log_format)
                batches = list(parts)
                header, names = log.header, log.fields
                result.problems += log.problems
                if batches:
                    stdin.append(con.arrow(pa.Table.from_batches(batches), "aws"))
            else:
                header, names = _sniff(path, log_format)
        except OSError as e:
            result.problems.append(f"{path}: cannot read: {e.strerror or e}")
            continue
        result.files += 1
        missing = [name for name in f.REQUIRED if name not in names]
        if missing:
            result.problems.append(f"{path}: the format lacks {', '.join(missing)}: its "
                                   f"records cannot be paired into connections")
            continue
        if path == "-":
            if stdin:
                seen |= set(names)
                inputs += stdin
            continue
        seen |= set(names)
        part = combine.combine(path, names, header, work, con.store) if combiner else None
        if part is not None:  # the records the kernel read, as directions rows
            combined += [con.arrow(t, "directions") for t in part.tables]
            if part.slow is None:
                continue
        scan = _scan_text(con, path, header, names, part)  # (the lines it left)
        scans.append((len(result.problems), scan))
        inputs.append(scan.input)
    if not inputs and not combined:
        raise FlowscopeError("no flow-log records found" + (
            f" ({result.problems[0]})" if result.problems else ""))
    # the one pass over the records: per 5-tuple and interface
    pieces = con.stored() + combined + ([con.table("directions", inputs)] if inputs else [])
    directions = pieces[0] if len(pieces) == 1 else con.table("merge", pieces)
    repaired = []
    for at, scan in reversed(scans):  # each file's bad lines where it was read
        problems, fixed = _rejected(con, scan)
        result.problems[at:at] = problems
        if fixed is not None:
            repaired.append(fixed)
    if repaired:  # lines re-split: their rows added to the others
        directions = con.table("merge", [directions, con.table("directions", repaired)])
    if strict and result.problems:
        more = len(result.problems) - 1
        raise FlowscopeError(f"{result.problems[0]}" + (f" (and {more} more)" if more else "")
                             + "; --strict stops at bad input")
    result.capabilities = capabilities(seen) if seen else []
    if "gcp" in clouds:
        result.capabilities.append("GCP: no TCP flags (no handshake verdicts) and no records "
                                   "of denied traffic")
    if "azure" in clouds:
        result.capabilities.append("Azure: no TCP flags (no handshake verdicts); denials come "
                                   "from the D state/decision")
    counts = con.run("summary", [directions]).to_pylist()[0]
    result.records = int(counts["n"] or 0)
    result.gaps = con.run("gaps", [directions])
    result.coverage_gaps = int(counts["gaps"] or 0)
    out = con.run("connections", [directions], per_interface=counts["interfaces"] > 1,
                  order_by=order.PROBLEMS_FIRST)
    result.table = _finish(out)
    return result


def _json_kind(path: str) -> str | None:
    if path == "-":
        return None
    with open(path, "rb") as fh:
        head = fh.read(2)
        fh.seek(0)
        if head == b"\x1f\x8b":
            import gzip

            head = gzip.GzipFile(fileobj=fh).read(8192)
        else:
            head = fh.read(8192)
    return cloud_json.sniff(head)


def _read_all(path: str) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:2] == b"\x1f\x8b":
        import gzip

        data = gzip.decompress(data)
    return data


def _stdin():  # type: ignore[no-untyped-def]
    import sys

    return sys.stdin.buffer


def _finish(t: pa.Table) -> pa.Table:
    """Flag names, evidence as a list (the query already put failures first)."""
    cols = {name: t[name] for name in t.column_names}
    for side in ("tcp_flags_orig", "tcp_flags_resp"):
        cols[side] = flag_names(t[side])
    # a list of one text where there is evidence, else empty: offsets = 0, then the running
    # count of texts
    evidence = t["evidence"].combine_chunks()
    count = pc.cumulative_sum(pc.cast(pc.is_valid(evidence), pa.int32()))
    offsets = np.zeros(len(evidence) + 1, np.int32)
    if len(count):
        offsets[1:] = order.numpy(count)
    cols["evidence"] = pa.ListArray.from_arrays(
        pa.Array.from_buffers(pa.int32(), len(offsets), [None, pa.py_buffer(offsets)]),
        evidence.drop_null())
    return pa.Table.from_arrays(list(cols.values()), names=list(cols))


def to_sql(dialect: str) -> str:
    """The analysis as SQL for where the logs live (table ``flow_logs``)."""
    import ibis

    from flowscope.flowlogs import connections

    schema = {f.column(name): str(typ) for name, _, typ in f.FIELDS}
    fixed = {k: ("int64" if v == "int64" else "int32" if v == "int32" else
                 "int16" if v == "int16" else "string") for k, v in schema.items()}
    table = ibis.table(fixed, name="flow_logs")
    dialect = {"spark": "pyspark"}.get(dialect, dialect)
    connections.PORTABLE["enabled"] = dialect == "pyspark"
    try:
        return str(ibis.to_sql(connections.connections(table), dialect=dialect))
    except (ValueError, ImportError, NotImplementedError, ibis.common.exceptions.IbisError) as e:
        raise FlowscopeError(f"cannot write SQL for {dialect!r}: {e}") from None
    finally:
        connections.PORTABLE["enabled"] = False


BY = {"peer": "resp_h", "port": "resp_p", "eni": "interface_id"}


def timeline(result: Analysis, interval_s: int, by: str | None = None) -> pa.Table:
    """Per interval: connections started, failures by verdict, and coverage.  An interval that
    a SKIPDATA record overlaps had records lost: its failures are null (unknown), never 0.
    NODATA means the ENI saw no traffic (coverage 'nodata', failures stay countable).

    ``by`` ('peer' = the responder's address, 'port' = the responder's port, 'eni'): one row
    per interval and key that had connections; an interval with none keeps one row with a
    null key, so coverage gaps still show."""
    known = pc.is_valid(result.table["first_ts"])
    t = result.table.filter(known)
    gaps = result.gaps.to_pylist() if result.gaps is not None else []  # few records
    lows = [g["start"] for g in gaps if g["start"] is not None]
    highs = [g["end"] for g in gaps if g["end"] is not None]
    if t.num_rows:
        lows.append(pc.min(t["first_ts"]).as_py())
        highs.append(pc.max(pc.coalesce(t["last_ts"], t["first_ts"])).as_py())
    if not lows:
        return pa.table({"interval_start": pa.array([], pa.int64())})
    origin = min(lows) // interval_s * interval_s
    last = max(highs + lows)
    n = (last - origin) // interval_s + 1
    if n > MAX_INTERVALS:
        raise FlowscopeError(f"the logs span {last - origin:,} s: {n:,} intervals of "
                             f"{interval_s} s; choose a longer --interval")
    coverage = _coverage(gaps, origin, interval_s, n)
    bins = (t["first_ts"].to_numpy().astype(np.int64) - origin) // interval_s
    keys = t[BY[by]].combine_chunks() if by else pa.nulls(t.num_rows, pa.string())
    # connections and failures per (interval, key, verdict): Arrow group-bys, no Python loop
    # over connections; the loops below run once per group
    groups = pa.table({"bin": pa.array(bins), "key": keys, "problem": t["problem"],
                       "verdict": t["verdict"]})
    started = groups.group_by(["bin", "key"]).aggregate([("bin", "count")])
    failed = groups.filter(groups["problem"]).group_by(["bin", "key", "verdict"]) \
        .aggregate([("bin", "count")])
    cells: dict[tuple[int, object], list] = {}
    if by is None:  # every interval, densely (a plot's x axis)
        cells = {(b, None): [0, {}] for b in range(n)}
    else:  # intervals with no connection keep one row for their coverage
        have = set(started["bin"].to_pylist())
        cells = {(b, None): [0, {}] for b in range(n) if b not in have}
    for b, key, count in zip(*(started[c].to_pylist() for c in ("bin", "key", "bin_count")),
                             strict=True):
        cells[(b, key)] = [count, {}]
    for b, key, verdict, count in zip(*(failed[c].to_pylist() for c in
                                        ("bin", "key", "verdict", "bin_count")), strict=True):
        cells[(b, key)][1][verdict] = count
    order = sorted(cells, key=lambda k: (k[0], k[1] is not None, str(k[1])))
    columns: dict[str, pa.Array] = {
        "interval_start": pa.array([origin + b * interval_s for b, _ in order], pa.int64()),
        "interval": pa.array(np.full(len(order), interval_s), pa.int64())}
    if by:
        columns[by] = pa.array([k for _, k in order], keys.type)
    columns |= {
        "connections": pa.array([cells[k][0] for k in order], pa.int64()),
        "failures": pa.array([None if coverage[k[0]] == "skipdata" else
                              list(cells[k][1].items()) for k in order],
                             pa.map_(pa.string(), pa.int64())),
        "coverage": pa.array([coverage[b] for b, _ in order], pa.string())}
    return pa.table(columns)


def _coverage(gaps: list[dict], origin: int, interval_s: int, n: int) -> list[str]:
    """'ok', 'skipdata' (records lost) or 'nodata' (no traffic) per interval."""
    coverage = ["ok"] * n
    for g in gaps:
        if g["start"] is None:
            continue
        lo = (g["start"] - origin) // interval_s
        hi = ((g["end"] if g["end"] is not None else g["start"]) - origin) // interval_s
        for b in range(max(lo, 0), min(hi, n - 1) + 1):
            if g["status"] == f.STATUS_SKIPDATA:
                coverage[b] = "skipdata"
            elif coverage[b] == "ok":
                coverage[b] = "nodata"
    return coverage
