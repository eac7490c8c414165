"""Geneve, RFC 8926 §3.4: 8-byte base header, options (length in 4-byte words), then the
payload whose type is an EtherType (0x6558 Ethernet, 0x0800/0x86DD IP)."""

from flowscope.decode.layout import Field

HEADER_LEN = 8
FIELDS = {
    "ver": Field(0, 1, 6, 0x3),
    "opt_len": Field(0, 1, 0, 0x3F),
    "o": Field(1, 1, 7, 0x1),
    "c": Field(1, 1, 6, 0x1),
    "protocol": Field(2, 2, 0, 0xFFFF),
    "vni": Field(4, 4, 8, 0xFFFFFF),
}
VER = FIELDS["ver"]
OPT_LEN = FIELDS["opt_len"]
PROTOCOL = FIELDS["protocol"]
VNI = FIELDS["vni"]
DEFAULT_PORT = 6081

# Option TLV (§3.5): class (16), type (8), reserved (3), length in 4-byte words (5).
OPTION_HEADER_LEN = 4
OPT_CLASS = Field(0, 2, 0, 0xFFFF)
OPT_TYPE = Field(2, 1, 0, 0xFF)
OPT_DATA_LEN = Field(3, 1, 0, 0x1F)

# Google Cloud option class (IANA "Geneve Option Class" registry: 0x0132 Google).
CLASS_GOOGLE = 0x0132
# Google option type 1 ("GCP Virtual Network ID", Wireshark packet-geneve.c; Google's Network
# Security Integration docs call it the network id / network cookie): the first data word is
# network id (28 bits), reserved (3), direction (1: 0 ingress, 1 egress).
GOOGLE_TYPE_NETWORK_ID = 0x01
GOOGLE_NETWORK_ID = Field(0, 4, 4, 0x0FFFFFFF)
GOOGLE_DIRECTION = Field(0, 4, 0, 0x1)
# AWS Gateway Load Balancer (class 0x0108): 1 endpoint id (8 bytes), 2 attachment id (8),
# 3 flow cookie (4) (aws-samples/aws-gateway-load-balancer-tunnel-handler GeneveStructs.h).
CLASS_AWS = 0x0108
