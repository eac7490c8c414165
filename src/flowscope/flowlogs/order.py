"""The connections in the analysis' order (failures first), sorted by flowscope, not DuckDB.

The order is part of the analysis (:data:`PROBLEMS_FIRST`, the ORDER BY of the SQL that
``--sql`` prints, :func:`flowscope.flowlogs.connections.ordered`); on embedded DuckDB the
engine runs the query unordered and sorts its result here.

DuckDB's ORDER BY on 740,000 connections costs ~0.6 s of a ~3 s run: its sort carries every
column of every row, and the evidence text with them, and compares the address strings of
every tie on the start second.  Here the sort reads the key columns only:

- each key becomes an unsigned integer code in its order: a boolean 0/1, an integer its
  offset from the smallest value, a text the rank of its value among the distinct values
  (Arrow dictionary-encodes the column, then sorts the few distinct texts bytewise, as
  SQL compares VARCHAR); descending keys count down; a null is one past the largest code
  (DuckDB's default, NULLS LAST, either way);
- the codes are packed into as few 64-bit words as they fit (on the benchmark's log, one),
  then argsorted (stable, least significant word first);
- the rows are gathered once: text columns through their dictionary (the small dictionary
  stays in cache; a plain gather of text is a random read per row), other columns by take.

``tests/test_flowlogs_order.py`` holds the result equal to DuckDB's ORDER BY.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowscope.jit import njit

# Failures first, then by start; the tuple, protocol and interface break ties, so every engine
# gives one order.  (column, descending)
PROBLEMS_FIRST = (("problem", True), ("first_ts", False), ("orig_h", False), ("orig_p", False),
                  ("resp_h", False), ("resp_p", False), ("proto", False),
                  ("interface_id", False))
DICTIONARY_SHARE = 4  # text columns gathered through their dictionary: at most n/4 values


def _text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or t == pa.string_view()


def _codes(column: pa.Array, descending: bool,
           encoded: pa.DictionaryArray | None) -> tuple[np.ndarray, int]:
    """The column as uint64 codes in the key's order, and the bits they take.  (Nulls' slots
    hold anything until the end; no fill_null: a Python fill value imports pandas, 0.3 s.)"""
    if pa.types.is_null(column.type):  # (nothing but nulls: all equal)
        return np.zeros(len(column), np.uint64), 0
    valid = numpy(column.is_valid()).astype(bool) if column.null_count else None
    if encoded is not None:  # a text: the rank of its value among the distinct values
        values = encoded.dictionary
        if values.type == pa.string_view():  # (Arrow sorts no string views)
            values = values.cast(pa.string())
        rank = np.zeros(max(len(values), 1), np.uint64)
        rank[numpy(pc.sort_indices(values))] = np.arange(len(values), dtype=np.uint64)
        index = numpy(encoded.indices)
        v = rank[index if valid is None else np.where(valid, index, 0)]
        span = max(len(values) - 1, 0)
    elif pa.types.is_boolean(column.type):
        v = numpy(column).astype(np.uint64)
        span = 1
    elif not pa.types.is_integer(column.type):
        raise TypeError(f"cannot order by a column of {column.type}")
    else:
        raw = numpy(column).astype(np.int64)
        known = raw if valid is None else raw[valid]
        lo, hi = (int(known.min()), int(known.max())) if known.size else (0, 0)
        span = hi - lo
        if span >= 1 << 62:  # too wide to pack: ranks instead
            uniq, inverse = np.unique(raw, return_inverse=True)
            v, span = inverse.astype(np.uint64), max(len(uniq) - 1, 0)
        else:
            v = (raw - lo).astype(np.uint64)
    if descending:
        v = np.uint64(span) - v
    if valid is not None:
        span += 1
        v[~valid] = span
    return v, span.bit_length()


def numpy(a: pa.Array) -> np.ndarray:
    """An Arrow array of integers or booleans, without nulls, as NumPy, from its buffers
    (Arrow's to_numpy imports pandas for some: 0.3 s)."""
    data = a.buffers()[1]
    if pa.types.is_boolean(a.type):
        bits = np.frombuffer(data, np.uint8)
        return np.unpackbits(bits, bitorder="little")[a.offset:a.offset + len(a)]
    return np.frombuffer(data, a.type.to_pandas_dtype(), len(a), a.offset * a.type.byte_width)


def permutation(table: pa.Table, keys: Sequence[tuple[str, bool]],
                encoded: dict[str, pa.DictionaryArray] | None = None) -> np.ndarray:
    """The row order of ``table`` by ``keys`` ((column, descending) pairs, most significant
    first; nulls last), as SQL's ORDER BY gives it.  ``encoded``: text columns already
    dictionary-encoded (filled in for the key columns)."""
    encoded = {} if encoded is None else encoded
    n = table.num_rows
    words: list[np.ndarray] = []
    word, used = np.zeros(n, np.uint64), 0
    for name, descending in keys:
        column = table[name].combine_chunks()
        if _text(column.type) and name not in encoded:
            encoded[name] = pc.dictionary_encode(column)
        codes, bits = _codes(column, descending, encoded.get(name))
        if used + bits > 64:
            words.append(word)
            word, used = np.zeros(n, np.uint64), 0
        if bits:
            word = (word << np.uint64(bits)) | codes
            used += bits
    words.append(word)
    order = np.argsort(words[-1], kind="stable")
    for w in reversed(words[:-1]):
        order = order[np.argsort(w[order], kind="stable")]
    return order


@njit(cache=True)
def decode(offsets, data, indices, valid):  # type: ignore[no-untyped-def]
    """Dictionary indices -> their texts, as an Arrow string array's offsets (int64) and
    bytes: sized first, then copied (Arrow's take grows its buffer as it goes, and the
    pages of every copy it leaves behind are faults)."""
    n = indices.size
    ends = np.empty(n + 1, np.int64)
    ends[0] = 0
    total = 0
    for i in range(n):
        if valid[i]:
            j = indices[i]
            total += offsets[j + 1] - offsets[j]
        ends[i + 1] = total
    out = np.empty(total, np.uint8)
    for i in range(n):
        at = ends[i]
        if ends[i + 1] > at:
            start = offsets[indices[i]]
            for k in range(ends[i + 1] - at):
                out[at + k] = data[start + k]
    return ends, out


def _texts(values: pa.Array, indices: pa.Array) -> pa.Array:
    """``values.take(indices)`` for a string array ``values`` (see :func:`decode`)."""
    buffers = values.buffers()
    offsets = np.frombuffer(buffers[1], np.int32, len(values) + 1, values.offset * 4)
    # (no text at all, as in a column of nulls: a writeable byte, as Arrow's buffers are,
    # so one compiled signature serves)
    data = np.frombuffer(buffers[2], np.uint8) if buffers[2] else np.zeros(1, np.uint8)
    index = numpy(indices).astype(np.int32, copy=False)
    valid = numpy(indices.is_valid()) if indices.null_count else np.ones(len(indices), np.uint8)
    ends, text = decode(offsets, data, index, valid)
    mask = pa.py_buffer(np.packbits(valid, bitorder="little")) if indices.null_count else None
    if ends[-1] >= 1 << 31:  # more text than a string array holds: as Arrow does it
        return values.take(indices)
    return pa.Array.from_buffers(pa.string(), len(indices), [
        mask, pa.py_buffer(ends.astype(np.int32)), pa.py_buffer(text)])


def ordered(table: pa.Table, keys: Sequence[tuple[str, bool]],
            schema: pa.Schema | None = None) -> pa.Table:
    """``table`` sorted by ``keys`` (see :func:`permutation`), gathered once; cast to
    ``schema`` on the way (a text's few distinct values, not its every row)."""
    schema = table.schema if schema is None else schema
    encoded: dict[str, pa.DictionaryArray] = {}
    order = permutation(table, keys, encoded)
    indices = pa.Array.from_buffers(pa.int64(), len(order), [None, pa.py_buffer(order)])
    columns = []
    for name, typ in zip(table.column_names, schema.types, strict=True):
        column = table[name].combine_chunks()
        if _text(column.type):
            enc = encoded.get(name) or pc.dictionary_encode(column)
            if len(enc.dictionary) * DICTIONARY_SHARE <= len(column) and typ == pa.string():
                columns.append(_texts(enc.dictionary.cast(typ), enc.indices.take(indices)))
                continue
        columns.append(column.cast(typ).take(indices))  # (Arrow takes no string views)
    return pa.Table.from_arrays(columns, schema=schema)
