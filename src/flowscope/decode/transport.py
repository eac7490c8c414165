"""TCP (RFC 9293 §3.1), UDP (RFC 768), SCTP (RFC 9260 §3.1), ICMP (RFC 792/4443)."""

from flowscope.decode.layout import Field

SRC_PORT = Field(0, 2, 0, 0xFFFF)  # same place in TCP, UDP and SCTP
DST_PORT = Field(2, 2, 0, 0xFFFF)

TCP_MIN_LEN = 20
TCP_FIELDS = {
    "sport": SRC_PORT,
    "dport": DST_PORT,
    "seq": Field(4, 4, 0, 0xFFFFFFFF),
    "ack": Field(8, 4, 0, 0xFFFFFFFF),
    "data_offset": Field(12, 1, 4, 0xF),
    "flags": Field(12, 2, 0, 0x1FF),
    "window": Field(14, 2, 0, 0xFFFF),
}
TCP_FLAGS = TCP_FIELDS["flags"]
TCP_SEQ = TCP_FIELDS["seq"]
TCP_ACK = TCP_FIELDS["ack"]
TCP_DATA_OFFSET = TCP_FIELDS["data_offset"]
TCP_WINDOW = TCP_FIELDS["window"]
# Letters as tcpdump/Wireshark print them, lowest bit first: FIN SYN RST PSH ACK URG ECE CWR AE.
TCP_FLAG_LETTERS = "FSRPAUECN"
# Conventional print order: S before A etc. (Wireshark's abbreviated flag order).
TCP_FLAG_PRINT_ORDER = (1, 0, 2, 3, 4, 5, 6, 7, 8)

UDP_LEN = 8
UDP_FIELDS = {"sport": SRC_PORT, "dport": DST_PORT, "length": Field(4, 2, 0, 0xFFFF)}
UDP_LENGTH = UDP_FIELDS["length"]
SCTP_MIN_LEN = 12
ICMP_MIN_LEN = 4
ICMP_HEADER_LEN = 8  # type, code, checksum and the 4-byte rest of header (RFC 792)
ICMP_FIELDS = {"type": Field(0, 1, 0, 0xFF), "code": Field(1, 1, 0, 0xFF)}
ICMP_TYPE = ICMP_FIELDS["type"]
ICMP_CODE = ICMP_FIELDS["code"]
