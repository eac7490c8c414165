"""Writing header fields: the inverse of :func:`flowscope.decode.layout.read`.

The encapsulation kernels write every field through the decoder's own :class:`Field`
declarations, so a header's layout exists once, as data, for both directions.
"""

from __future__ import annotations

import numpy as np

from flowscope.decode.layout import Field
from flowscope.jit import njit


@njit(inline="always", cache=True)
def put(buf: np.ndarray, pos: int, f: Field, value: int) -> None:  # pragma: no cover - compiled
    """Store ``value`` into field ``f`` of the header at ``pos``; other bits are kept."""
    v = np.uint64(0)
    for k in range(f.width):
        v = (v << np.uint64(8)) | np.uint64(buf[pos + f.offset + k])
    m = np.uint64(f.mask) << np.uint64(f.shift)
    v = (v & ~m) | ((np.uint64(value) & np.uint64(f.mask)) << np.uint64(f.shift))
    for k in range(f.width - 1, -1, -1):
        buf[pos + f.offset + k] = np.uint8(v & np.uint64(0xFF))
        v = v >> np.uint64(8)


@njit(inline="always", cache=True)
def zero(buf: np.ndarray, pos: int, n: int) -> None:  # pragma: no cover - compiled
    for k in range(n):
        buf[pos + k] = 0
