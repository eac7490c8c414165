"""VXLAN, RFC 7348 §5: 8-byte header, I flag (0x08) set when the VNI is valid; every
reserved bit is ignored on receipt.  The payload is an Ethernet frame."""

from flowscope.decode.layout import Field

HEADER_LEN = 8
FIELDS = {
    "flags": Field(0, 1, 0, 0xFF),
    "vni": Field(4, 4, 8, 0xFFFFFF),
}
FLAGS = FIELDS["flags"]
FLAG_I = 0x08
VNI = FIELDS["vni"]
DEFAULT_PORTS = (4789, 8472)  # IANA, and the legacy Linux default
