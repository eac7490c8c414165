"""IPv4 (RFC 791) and IPv6 (RFC 8200) with extension headers."""

from flowscope.decode.layout import Field

IPV4_MIN_LEN = 20
IPV4_FIELDS = {
    "version": Field(0, 1, 4, 0xF),
    "ihl": Field(0, 1, 0, 0xF),
    "tos": Field(1, 1, 0, 0xFF),
    "ecn": Field(1, 1, 0, 0x3),
    "total_length": Field(2, 2, 0, 0xFFFF),
    "id": Field(4, 2, 0, 0xFFFF),
    "mf": Field(6, 1, 5, 0x1),
    "frag_offset": Field(6, 2, 0, 0x1FFF),
    "ttl": Field(8, 1, 0, 0xFF),
    "protocol": Field(9, 1, 0, 0xFF),
    "src": Field(12, 4, 0, 0xFFFFFFFF),
    "dst": Field(16, 4, 0, 0xFFFFFFFF),
}
V4_VERSION = IPV4_FIELDS["version"]
V4_IHL = IPV4_FIELDS["ihl"]
V4_TOTAL_LENGTH = IPV4_FIELDS["total_length"]
V4_FRAG_OFFSET = IPV4_FIELDS["frag_offset"]
V4_MORE_FRAGMENTS = IPV4_FIELDS["mf"]
V4_PROTOCOL = IPV4_FIELDS["protocol"]
V4_ID = IPV4_FIELDS["id"]
V4_SRC_OFFSET = 12
V4_DST_OFFSET = 16

IPV6_LEN = 40
IPV6_FIELDS = {
    "version": Field(0, 1, 4, 0xF),
    "traffic_class": Field(0, 2, 4, 0xFF),
    "flow_label": Field(1, 3, 0, 0xFFFFF),
    "payload_length": Field(4, 2, 0, 0xFFFF),
    "next_header": Field(6, 1, 0, 0xFF),
    "hop_limit": Field(7, 1, 0, 0xFF),
}
V6_PAYLOAD_LENGTH = IPV6_FIELDS["payload_length"]
V6_NEXT_HEADER = IPV6_FIELDS["next_header"]
V6_SRC_OFFSET = 8
V6_DST_OFFSET = 24

# Extension headers (RFC 8200 §4): next header at 0, length in 8-octet units (not counting
# the first 8) at 1; the Fragment header is always 8 bytes; AH (RFC 4302) counts 4-octet
# units minus 2.
EXT_NEXT = Field(0, 1, 0, 0xFF)
EXT_LEN = Field(1, 1, 0, 0xFF)
EXT_HOP_BY_HOP = 0
EXT_ROUTING = 43
EXT_FRAGMENT = 44
EXT_AH = 51
EXT_DEST_OPTS = 60
EXT_MOBILITY = 135
FRAG_OFFSET = Field(2, 2, 3, 0x1FFF)
FRAG_MORE = Field(3, 1, 0, 0x1)

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_GRE = 47
PROTO_ICMPV6 = 58
PROTO_SCTP = 132
