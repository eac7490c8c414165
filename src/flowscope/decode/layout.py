"""Header layouts as data.

Every protocol module declares its header once, as :class:`Field` values (byte offset
from the start of the header, width in bytes, right shift, mask), in the spirit of dpkt's
``__hdr__``.  The compiled fast path reads fields with :func:`read`, which Numba inlines
and unrolls because the field is a compile-time constant; the slow, friendly path
(:mod:`flowscope.decode.describe`) reads the same tables with :func:`read_py`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from flowscope.jit import njit


class Field(NamedTuple):
    offset: int  # bytes from the start of the header
    width: int  # bytes read big-endian (network order), 1..8
    shift: int  # right shift applied to the big-endian integer
    mask: int  # mask applied after the shift

    @property
    def end(self) -> int:
        """Bytes of header needed to read this field."""
        return self.offset + self.width


@njit(inline="always", cache=True)
def read(buf: np.ndarray, pos: int, f: Field) -> int:  # pragma: no cover - compiled
    v = np.uint64(0)
    for k in range(f.width):
        v = (v << np.uint64(8)) | np.uint64(buf[pos + f.offset + k])
    return np.int64((v >> np.uint64(f.shift)) & np.uint64(f.mask))  # type: ignore[return-value]


def read_py(data: bytes, pos: int, f: Field) -> int:
    """The same read, for humans and tests."""
    v = int.from_bytes(data[pos + f.offset : pos + f.offset + f.width], "big")
    return (v >> f.shift) & f.mask


def describe_fields(data: bytes, pos: int, fields: dict[str, Field]) -> dict[str, int]:
    """Every declared field of one header, by name."""
    return {name: read_py(data, pos, f) for name, f in fields.items() if pos + f.end <= len(data)}
