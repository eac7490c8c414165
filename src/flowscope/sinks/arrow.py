"""Decoded columns and mirror state as Arrow tables (schema.PACKETS, schema.MIRRORS).

Conversions are vectorised: addresses, flag strings and quirk lists are formatted once per
distinct value and gathered with ``take``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from flowscope import schema
from flowscope.analyse.mirrors import MirrorTracker, finish
from flowscope.decode import codes
from flowscope.decode.columns import NO_TS
from flowscope.decode.transport import TCP_FLAG_LETTERS
from flowscope.sinks.addresses import ip_text

# NumPy columns become Arrow arrays through their buffers, not pa.array(): the first
# pa.array() call (or pa.scalar(), Array.to_numpy()) imports pandas to check for pandas
# objects, about half a second of start-up for nothing.
_NUMPY_TYPES = {pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32,
                pa.int64(): np.int64, pa.uint8(): np.uint8, pa.float64(): np.float64}


def from_numpy(values: np.ndarray, typ: pa.DataType, mask: np.ndarray | None = None
               ) -> pa.Array:
    """A NumPy column as an Arrow array of a fixed-width type (values converted to it);
    ``mask``: True where the value is null."""
    n = values.shape[0]
    if pa.types.is_boolean(typ):
        data = np.packbits(values.astype(bool, copy=False), bitorder="little")
    else:
        data = np.ascontiguousarray(values, dtype=_NUMPY_TYPES[typ])
    return pa.Array.from_buffers(typ, n, [_validity(mask), pa.py_buffer(data)],
                                 null_count=int(np.count_nonzero(mask)) if mask is not None
                                 else 0)


def _validity(mask: np.ndarray | None) -> pa.Buffer | None:
    """Arrow's validity bitmap (LSB first, 1 = valid) for a null mask; None if no nulls."""
    if mask is None or not mask.any():
        return None
    return pa.py_buffer(np.packbits(~mask, bitorder="little"))


def strings(texts: list[str | None] | list[str] | tuple[str, ...]) -> pa.Array:
    """A short list of Python strings (a vocabulary; None = null) as an Arrow string array."""
    encoded = [t.encode() if t is not None else b"" for t in texts]
    offsets = np.zeros(len(encoded) + 1, np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    mask = np.array([t is None for t in texts], bool)
    return pa.StringArray.from_buffers(len(encoded), pa.py_buffer(offsets),
                                       pa.py_buffer(b"".join(encoded)), _validity(mask),
                                       int(mask.sum()))


def names(codes: np.ndarray, vocabulary: pa.Array, mask: np.ndarray | None = None) -> pa.Array:
    """Codes into a vocabulary (from :func:`strings`) as a string column; null where masked."""
    return vocabulary.take(from_numpy(codes, pa.int32(), mask))


_FLAG_ORDER = (1, 0, 2, 3, 4, 5, 6, 7, 8)  # SYN first, as tcpdump prints "S." and Zeek "ShA"


def tcp_flag_string(flags: int) -> str:
    return "".join(TCP_FLAG_LETTERS[b] for b in _FLAG_ORDER if flags & (1 << b))


_FLAG_STRINGS = np.array([tcp_flag_string(f) for f in range(512)], dtype=object)


def ip_strings(ipver: np.ndarray, addr: np.ndarray) -> pa.Array:
    """Text form of 16-byte address columns, formatted once per distinct address (Arrow's
    hash-based dictionary encoding finds the distinct ones)."""
    n = ipver.shape[0]
    if n == 0:
        return strings([])
    key = np.empty((n, 17), np.uint8)
    key[:, 0] = ipver
    key[:, 1:] = addr
    raw = pa.FixedSizeBinaryArray.from_buffers(pa.binary(17), n,
                                               [None, pa.py_buffer(key.tobytes())])
    encoded = raw.dictionary_encode()
    text = [ip_text(k[0], k[1:]) for k in encoded.dictionary.to_pylist()]
    return strings(text).take(encoded.indices)


def _nullable(values: np.ndarray, missing: int, typ: pa.DataType) -> pa.Array:
    return pa.array(values, typ, mask=values == missing)


def _names(codes_col: np.ndarray, names: tuple | np.ndarray) -> pa.Array:
    return pa.array(np.asarray(names, dtype=object)[codes_col], pa.string())


def _quirk_lists(mask: np.ndarray) -> pa.Array:
    uniq, inverse = np.unique(mask, return_inverse=True)
    lists = pa.array([codes.quirk_names(int(m)) for m in uniq], pa.list_(pa.string()))
    return lists.take(pa.array(inverse.ravel()))


def _encap_lists(rows: np.ndarray) -> pa.Array:
    n_layers = rows["n_layers"].astype(np.int32)
    present = np.arange(codes.MAX_LAYERS)[None, :] < n_layers[:, None]
    flat = rows["encap"][present]
    offsets = np.concatenate([[0], np.cumsum(n_layers)]).astype(np.int32)
    values = pa.array(np.asarray(codes.LAYERS, dtype=object)[flat], pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def packets_table(rows: np.ndarray) -> pa.Table:
    flags = rows["tcp_flags"]
    flag_text = _FLAG_STRINGS[np.where(flags >= 0, flags, 0)]
    orig = rows["orig_ts"]
    return pa.Table.from_arrays([
        pa.array(rows["frame"]),
        pa.array(rows["ts_ns"] / 1e9),
        _encap_lists(rows),
        _nullable(rows["erspan_type"], 0, pa.int8()),
        _nullable(rows["erspan_session"], -1, pa.int16()),
        _nullable(rows["gre_seq"], -1, pa.int64()),
        _nullable(rows["vni"], -1, pa.int32()),
        _names(rows["direction"], codes.DIRECTIONS),
        _nullable(rows["vlan"], -1, pa.int16()),
        ip_strings(rows["ipver"], rows["src"]),
        ip_strings(rows["ipver"], rows["dst"]),
        _nullable(rows["proto"], -1, pa.int16()),
        _nullable(rows["sport"], -1, pa.int32()),
        _nullable(rows["dport"], -1, pa.int32()),
        pa.array(flag_text, pa.string(), mask=flags < 0),
        pa.array(rows["len"]),
        pa.array(orig / 1e9, pa.float64(), mask=orig == NO_TS),
        _names(rows["error"], codes.ERRORS),
        _quirk_lists(rows["quirks"]),
    ], schema=schema.PACKETS)


_STREAM_DIRECTIONS = np.array([None, "ingress", "egress", "both"], dtype=object)
_TUNNEL_NAMES = np.array([codes.TUNNELS.get(i, "") for i in range(len(codes.LAYERS))],
                         dtype=object)


def mirrors_table(tracker: MirrorTracker) -> pa.Table:
    n = len(tracker)
    finish(tracker.state[:n])
    k = tracker.keys[:n]
    st = tracker.state[:n]
    measurable = st["advances"] > 0
    unmeasured = ~measurable

    def loss_col(name: str) -> pa.Array:
        values = np.maximum(st[name], 0)
        return pa.array(values, pa.int64(), mask=unmeasured)

    return pa.Table.from_arrays([
        ip_strings(k["outer_ipver"], k["outer_src"]),
        ip_strings(k["outer_ipver"], k["outer_dst"]),
        pa.array(_TUNNEL_NAMES[k["tunnel"]], pa.string()),
        _nullable(k["erspan_type"], 0, pa.int8()),
        _nullable(k["erspan_session"], -1, pa.int16()),
        _nullable(k["vni"], -1, pa.int32()),
        _nullable(k["gre_key"], -1, pa.int64()),
        pa.array(_STREAM_DIRECTIONS[st["directions"]], pa.string()),
        pa.array(st["packets"]),
        pa.array(st["bytes"]),
        pa.array(st["first_ts"] / 1e9),
        pa.array(st["last_ts"] / 1e9),
        pa.array(measurable),
        loss_col("lost"),
        loss_col("duplicates"),
        loss_col("reordered"),
        loss_col("seq_resets"),
        _quirk_lists(st["quirks"]),
    ], schema=schema.MIRRORS)
