"""VXLAN encapsulation, RFC 7348 §5: 8-byte header, I flag set, the VNI, reserved bits zero;
the mirrored Ethernet frame follows.  The kernel's UDP socket adds UDP (port 4789, §5
"well-known destination UDP port") and the outer IP header."""

from __future__ import annotations

import numpy as np

from flowscope.decode import vxlan
from flowscope.encap.fields import put, zero
from flowscope.jit import njit

HEADER_LEN = vxlan.HEADER_LEN
PORT = 4789  # IANA-assigned VXLAN port
MAX_VNI = (1 << 24) - 1


@njit(cache=True)
def encapsulate(src: np.ndarray, offset: np.ndarray, caplen: np.ndarray, out: np.ndarray,
                out_off: np.ndarray, vni: int) -> None:  # pragma: no cover - compiled
    for i in range(offset.shape[0]):
        p = out_off[i]
        zero(out, p, HEADER_LEN)
        put(out, p, vxlan.FLAGS, vxlan.FLAG_I)
        put(out, p, vxlan.VNI, vni)
        o = offset[i]
        n = caplen[i]
        out[p + HEADER_LEN : p + HEADER_LEN + n] = src[o : o + n]
