"""Encapsulate: PacketBatch in, mirror tunnel payloads out — the sending side of decode.

A software mirror source wraps each captured frame the way a switch's mirror session
would: ERSPAN Type II or III in GRE (draft-foschiano-erspan-03, RFC 2784, RFC 2890) or
VXLAN (RFC 7348).  The headers are written by compiled kernels from the same layout
tables the decoder reads (flowscope.decode.erspan, .gre, .vxlan), so what one writes the
other reads back by construction, and tshark checks both from outside.

The output is a :class:`TunnelBatch`: one buffer holding every tunnel payload (GRE header
onwards, or the VXLAN header onwards) back to back, with offsets and lengths; the kernel
adds the outer IP (and UDP) header when it is sent.
"""

from flowscope.encap.tunnel import (
    ERSPAN2,
    ERSPAN3,
    KINDS,
    VXLAN,
    Encapsulator,
    MirrorSession,
    TunnelBatch,
)

__all__ = ["ERSPAN2", "ERSPAN3", "KINDS", "VXLAN", "Encapsulator", "MirrorSession",
           "TunnelBatch"]
