"""Cisco ERSPAN, draft-foschiano-erspan-03.

Type I  : GRE protocol 0x88BE without the S bit; no ERSPAN header, the mirrored frame follows.
Type II : GRE protocol 0x88BE with S; 8-byte header (§4.1).
Type III: GRE protocol 0x22EB; 12-byte header (§4.2) and, when O=1, an 8-byte platform
          specific sub-header (§4.3).
"""

from flowscope.decode.layout import Field

TYPE2_LEN = 8
TYPE2_FIELDS = {
    "ver": Field(0, 1, 4, 0xF),
    "vlan": Field(0, 2, 0, 0x0FFF),
    "cos": Field(2, 1, 5, 0x7),
    "en": Field(2, 1, 3, 0x3),
    "t": Field(2, 1, 2, 0x1),
    "session": Field(2, 2, 0, 0x03FF),
    "index": Field(4, 4, 0, 0xFFFFF),
}

TYPE3_LEN = 12
TYPE3_FIELDS = {
    "ver": Field(0, 1, 4, 0xF),
    "vlan": Field(0, 2, 0, 0x0FFF),
    "cos": Field(2, 1, 5, 0x7),
    "bso": Field(2, 1, 3, 0x3),
    "t": Field(2, 1, 2, 0x1),
    "session": Field(2, 2, 0, 0x03FF),
    "timestamp": Field(4, 4, 0, 0xFFFFFFFF),
    "sgt": Field(8, 2, 0, 0xFFFF),
    "p": Field(10, 1, 7, 0x1),
    "ft": Field(10, 1, 2, 0x1F),
    "hw_id": Field(10, 2, 4, 0x3F),
    "d": Field(11, 1, 3, 0x1),
    "gra": Field(11, 1, 1, 0x3),
    "o": Field(11, 1, 0, 0x1),
}

# The fields shared by II and III sit at the same place.
VER = TYPE2_FIELDS["ver"]
VLAN = TYPE2_FIELDS["vlan"]
COS = TYPE2_FIELDS["cos"]
EN = TYPE2_FIELDS["en"]  # Type II: 00 untagged, 01 ISL, 10 802.1Q, 11 VLAN kept in frame
BSO = TYPE3_FIELDS["bso"]  # Type III: bad/short/oversized frame
T = TYPE2_FIELDS["t"]  # the frame was truncated by the mirror (slicing)
SESSION = TYPE2_FIELDS["session"]
INDEX = TYPE2_FIELDS["index"]
TIMESTAMP = TYPE3_FIELDS["timestamp"]
SGT = TYPE3_FIELDS["sgt"]
P = TYPE3_FIELDS["p"]
FT = TYPE3_FIELDS["ft"]
HW_ID = TYPE3_FIELDS["hw_id"]
D = TYPE3_FIELDS["d"]  # 0 ingress, 1 egress
GRA = TYPE3_FIELDS["gra"]
O = TYPE3_FIELDS["o"]  # noqa: E741 - the draft's name

VERSION_II = 1
VERSION_III = 2
FT_ETHERNET = 0
FT_IP = 2
# Cisco devices observed sending Type III with O=0 and FT=7: 8 more bytes precede the frame.
FT_CISCO_QUIRK = 7
CISCO_QUIRK_LEN = 8

# Timestamp granularity (Gra), §4.2: units of the 32-bit timestamp in nanoseconds.  Gra=11 is
# "user configurable" in general but nanoseconds for platform ids 0x3 and 0x7 (§4.3).
GRA_100US = 0
GRA_100NS = 1
GRA_IEEE1588 = 2  # 32-bit field = nanoseconds; seconds in platform sub-header 0x5/0x6
GRA_CUSTOM = 3

# Platform specific sub-header (§4.3), 8 bytes; the first 6 bits are the platform id.
PLATFORM_LEN = 8
PLATFORM_ID = Field(0, 1, 2, 0x3F)
PLATFORM_FIELDS = {
    # 0x1: reserved (14), VSM domain id (12), port id/index (32); Gra 100 us
    1: {"vsm_domain_id": Field(2, 2, 0, 0x0FFF), "port_index": Field(4, 4, 0, 0xFFFFFFFF)},
    # 0x3: reserved (12), port id/index (14), upper 32 bits of a 64-bit timestamp
    3: {"port_index": Field(2, 2, 0, 0x3FFF), "timestamp_upper": Field(4, 4, 0, 0xFFFFFFFF)},
    # 0x4: reserved; Gra 100 us
    4: {},
    # 0x5/0x6: switch id (10), port id/index (16), IEEE 1588 seconds (32); Gra=10
    5: {"switch_id": Field(0, 2, 0, 0x03FF), "port_index": Field(2, 2, 0, 0xFFFF),
        "timestamp_sec": Field(4, 4, 0, 0xFFFFFFFF)},
    6: {"switch_id": Field(0, 2, 0, 0x03FF), "port_index": Field(2, 2, 0, 0xFFFF),
        "timestamp_sec": Field(4, 4, 0, 0xFFFFFFFF)},
    # 0x7 (0x0 is used as an alias): reserved (6), source index (20), upper 32 timestamp bits
    7: {"source_index": Field(1, 3, 0, 0xFFFFF), "timestamp_upper": Field(4, 4, 0, 0xFFFFFFFF)},
}
PLATFORM_FIELDS[0] = PLATFORM_FIELDS[7]
PLATFORM_INFO = Field(0, 8, 0, (1 << 58) - 1)  # the 58 bits after the id, kept whole
INFO_HIGH_WORD_SHIFT = 32  # platform_info >> 32 = the first word's 26 low bits
