"""The GRE header a mirror sends: RFC 2784 with the Sequence Number extension of RFC 2890.

Base header (flags 0x1000 = S, version 0, protocol type) then the 32-bit sequence number;
no checksum, no key, no routing, as ERSPAN Type II/III senders do
(draft-foschiano-erspan-03 §4.1-4.2: "the GRE header ... with the S bit set").
"""

from __future__ import annotations

import numpy as np

from flowscope.decode import gre
from flowscope.encap.fields import put
from flowscope.jit import njit

HEADER_LEN = gre.BASE_LEN + 4  # base + sequence number
SEQ_MOD = 1 << 32  # RFC 2890 §2.2: the sequence number wraps at 2^32


@njit(inline="always", cache=True)
def write_header(buf: np.ndarray, pos: int, protocol: int,
                 seq: int) -> None:  # pragma: no cover - compiled
    put(buf, pos, gre.FLAGS, gre.FLAG_S)  # C=R=K=0, S=1, recursion 0, version 0
    put(buf, pos, gre.PROTOCOL, protocol)
    put(buf, pos + gre.BASE_LEN, gre.WORD, seq)
