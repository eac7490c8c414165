"""AWS VPC Flow Logs as text (S3 objects, downloaded files, gzip, stdin) -> Arrow record batches.

AWS writes one record per line, fields separated by one space, ``-`` for "no value".  S3 text
files start with a header line naming the fields in the flow log's format (any subset and order
of the fields of every version); other sources (CloudWatch, copies) have no header, and then
the format is given (``--log-format '${version} ${srcaddr} ...'``) or is the version-2 default.

Parsing is Arrow's CSV reader (streamed, in blocks: memory stays bounded) with every column read
as text, then typed with vectorised checks, so one bad value costs one row, not the file.
Problems are counted and located (``file:line: reason``), never raised:

- a line with the wrong number of fields: if it only had doubled spaces, it is re-split and
  kept; otherwise it is reported and skipped;
- a value that is not a number where the field is numeric: the row is reported and skipped;
- ``start``/``end`` in milliseconds (seen in some exports) are brought back to seconds.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from flowscope.flowlogs import fields as f

BLOCK = 8 << 20  # bytes per parsed block
MS_THRESHOLD = 100_000_000_000  # epoch seconds stay below this until the year 5138
INTEGER = r"^-?[0-9]+$"


@dataclass
class TextLog:
    """One text flow log: its fields, whether it had a header, and what went wrong."""

    name: str
    fields: tuple[str, ...]
    header: bool
    problems: list[str] = field(default_factory=list)  # "file:line: reason"
    records: int = 0
    milliseconds: int = 0  # records whose start/end were in ms

    def problem(self, line: int | None, reason: str) -> None:
        where = f"{self.name}:{line}" if line is not None else self.name
        self.problems.append(f"{where}: {reason}")


def _open(source: str | BinaryIO) -> tuple[str, BinaryIO]:
    raw: BinaryIO
    if isinstance(source, str):
        name = source
        raw = open(source, "rb")  # noqa: SIM115 - returned to the caller
    else:
        name = getattr(source, "name", "<stdin>")
        raw = source
    head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    if head == b"\x1f\x8b":
        return name, gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    return name, raw


def _looks_like_header(tokens: list[str]) -> bool:
    known = sum(t in f.TYPES for t in tokens)
    return known >= max(1, len(tokens) // 2)


def read(source: str | BinaryIO, log_format: tuple[str, ...] | None = None
         ) -> tuple[TextLog, Iterator[pa.RecordBatch]]:
    """Open a text flow log; returns its description and its typed record batches (columns
    named by :func:`fields.column`, plus ``_line``, the line number in the file)."""
    name, stream = _open(source)
    first = stream.readline()
    tokens = first.decode("utf-8", "replace").split()
    header = _looks_like_header(tokens)
    names = tuple(tokens) if header else (log_format or f.DEFAULT_FORMAT)
    log = TextLog(name, names, header)
    body = stream if header else _Prepend(first, stream)
    return log, _batches(log, body, 2 if header else 1)  # type: ignore[arg-type]


class _Prepend(io.RawIOBase):
    """A stream with bytes already read put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def, override]
        if self.head:
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read(len(b))
        b[: len(data)] = data
        return len(data)


def _batches(log: TextLog, body: BinaryIO, first_line: int) -> Iterator[pa.RecordBatch]:
    width = len(log.fields)
    skipped: list[int] = []  # line numbers the CSV reader did not return
    repaired: list[tuple[int, list[str]]] = []

    offset = first_line - 1  # the reader numbers rows from the start of the body

    def invalid(row: pcsv.InvalidRow) -> str:
        line = row.number + offset if row.number is not None else None
        if line is not None:
            skipped.append(line)
        text = row.text or ""
        parts = text.split()
        if not parts:
            return "skip"  # a blank line
        if len(parts) == width:
            repaired.append((line if line is not None else -1, parts))
        else:
            log.problem(line, f"{len(parts)} fields where the format has {width}")
        return "skip"

    try:
        reader = _open_csv(body, log, invalid)
    except pa.ArrowInvalid as e:
        if "Empty CSV" in str(e):
            return  # a header alone, or nothing at all
        raise
    next_line = first_line
    for batch in reader:
        # line numbers of the rows returned: consecutive, minus the rows the handler took
        n = batch.num_rows
        gone = np.array(sorted(x for x in skipped if x >= next_line), np.int64)
        candidates = np.arange(next_line, next_line + n + gone.size, dtype=np.int64)
        lines = candidates[~np.isin(candidates, gone)][:n]
        next_line = int(lines[-1]) + 1 if n else next_line + gone.size
        skipped[:] = [x for x in skipped if x >= next_line]
        batch, lines = _stray_spaces(log, batch, lines, repaired)
        typed = _typed(log, batch, lines)
        if typed.num_rows:
            yield typed
    if repaired:
        cols = list(zip(*(parts for _, parts in repaired), strict=True))
        batch = pa.record_batch([pa.array([None if v == "-" else v for v in col], pa.string())
                                 for col in cols], names=list(log.fields))
        typed = _typed(log, batch, np.array([line for line, _ in repaired], np.int64))
        if typed.num_rows:
            yield typed


def _stray_spaces(log: TextLog, batch: pa.RecordBatch, lines: np.ndarray,
                  repaired: list[tuple[int, list[str]]]) -> tuple[pa.RecordBatch, np.ndarray]:
    """Rows with an empty field: a leading, trailing or doubled space that left the count of
    fields right (``a  b c`` for three fields).  Re-split on whitespace like the rows the
    parser rejects: a record if the values fill the format, else a problem (the values are
    not read into the wrong fields)."""
    empty = np.zeros(batch.num_rows, bool)
    for column in batch.columns:
        empty |= np.asarray(pc.fill_null(pc.equal(column, ""), False)
                            .to_numpy(zero_copy_only=False), bool)
    if not empty.any():
        return batch, lines
    width = len(log.fields)
    keep = pa.array(~empty)
    for line, row in zip(lines[empty].tolist(), batch.filter(pa.array(empty)).to_pylist(),
                         strict=True):
        parts = " ".join("-" if row[n] is None else row[n] for n in log.fields).split()
        if len(parts) == width:
            repaired.append((line, parts))
        elif parts:  # (only spaces: a blank line)
            log.problem(line, f"{len(parts)} fields where the format has {width}")
    return batch.filter(keep), lines[~empty]


def _open_csv(body: BinaryIO, log: TextLog, invalid) -> pcsv.CSVStreamingReader:  # type: ignore[no-untyped-def]
    """Arrow's streaming CSV reader: space-separated, no quoting, every column as text."""
    return pcsv.open_csv(
        body,
        read_options=pcsv.ReadOptions(column_names=list(log.fields), use_threads=False,
                                      block_size=BLOCK),
        parse_options=pcsv.ParseOptions(delimiter=" ", quote_char=False, escape_char=False,
                                        ignore_empty_lines=False, invalid_row_handler=invalid),
        convert_options=pcsv.ConvertOptions(
            column_types={name: pa.string() for name in log.fields},
            null_values=["-"], strings_can_be_null=True, quoted_strings_can_be_null=True))


def _typed(log: TextLog, batch: pa.RecordBatch, lines: np.ndarray) -> pa.RecordBatch:
    """Text columns to their field types; rows with a non-numeric numeric value are dropped
    and reported."""
    n = batch.num_rows
    bad = np.zeros(n, bool)
    reasons: list[tuple[np.ndarray, str]] = []
    # blank lines, and the header again where files were concatenated: not records
    first = batch.column(log.fields[0])
    blank = np.ones(n, bool)
    for name in log.fields:
        blank &= np.asarray(pc.is_null(batch.column(name)).to_numpy(zero_copy_only=False), bool)
    header = np.asarray(pc.fill_null(pc.equal(first, log.fields[0]), False)
                        .to_numpy(zero_copy_only=False), bool)
    bad |= blank | header
    for name in log.fields:
        typ = f.TYPES.get(name, pa.string())
        if pa.types.is_integer(typ):
            col = batch.column(name)
            ok = pc.or_kleene(pc.is_null(col), pc.match_substring_regex(col, INTEGER))
            wrong = ~np.asarray(ok.to_numpy(zero_copy_only=False), bool)
            wrong &= ~bad
            if wrong.any():
                reasons.append((wrong, f"{name} is not a number"))
                bad |= wrong
    for wrong, reason in reasons:
        for line in lines[wrong].tolist():
            log.problem(int(line), reason)
    keep = pa.array(~bad)
    arrays, names = [], []
    for name in log.fields:
        typ = f.TYPES.get(name, pa.string())
        col = batch.column(name).filter(keep)
        arrays.append(col.cast(typ) if typ != pa.string() else col)
        names.append(f.column(name))
    arrays.append(pa.array(lines[~bad]))
    names.append("_line")
    out = pa.RecordBatch.from_arrays(arrays, names=names)
    for t in ("start", "end"):
        if t in log.fields:
            out, ms = _seconds(out, f.column(t))
            log.milliseconds = max(log.milliseconds, ms)
    log.records += out.num_rows
    return out


def _seconds(batch: pa.RecordBatch, name: str) -> tuple[pa.RecordBatch, int]:
    """Milliseconds since the epoch (some exports) back to AWS's seconds."""
    col = batch.column(name)
    ms = pc.fill_null(pc.greater(col, MS_THRESHOLD), False)
    count = int(pc.sum(ms).as_py() or 0)
    if not count:
        return batch, 0
    fixed = pc.if_else(ms, pc.divide(col, 1000), col)
    i = batch.schema.get_field_index(name)
    return batch.set_column(i, name, fixed), count
