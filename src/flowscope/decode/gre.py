"""Generic Routing Encapsulation: RFC 2784 with the Key and Sequence extensions of RFC 2890,
and the Routing field of RFC 1701 (still sent by some devices).

After the 4-byte base header the optional words follow in this order: checksum+offset
(present if C or R), key (K), sequence number (S), then routing entries (R).
"""

from flowscope.decode.layout import Field

BASE_LEN = 4
FIELDS = {
    "c": Field(0, 1, 7, 0x1),
    "r": Field(0, 1, 6, 0x1),
    "k": Field(0, 1, 5, 0x1),
    "s": Field(0, 1, 4, 0x1),
    "recur": Field(0, 1, 0, 0x7),
    "version": Field(1, 1, 0, 0x7),
    "protocol": Field(2, 2, 0, 0xFFFF),
}
FLAGS = Field(0, 2, 0, 0xFFFF)
FLAG_C = 0x8000
FLAG_R = 0x4000
FLAG_K = 0x2000
FLAG_S = 0x1000
VERSION = FIELDS["version"]
PROTOCOL = FIELDS["protocol"]
WORD = Field(0, 4, 0, 0xFFFFFFFF)

# RFC 1701 §2.1 source route entry: address family (2), SRE offset (1), SRE length (1).
SRE_HEADER_LEN = 4
SRE_FAMILY = Field(0, 2, 0, 0xFFFF)
SRE_LENGTH = Field(3, 1, 0, 0xFF)

PROTO_ERSPAN_I_II = 0x88BE
PROTO_ERSPAN_III = 0x22EB
