"""RoCEv2: the InfiniBand transport headers over UDP destination port 4791.

InfiniBand Architecture Specification Vol. 1 Release 1.4: §9.2 Base Transport Header
(12 bytes), §9.3.5 ACK Extended Transport Header (AETH, 4 bytes); Annex A17 (RoCEv2):
UDP destination port 4791 identifies the BTH, the source port is flow entropy, and a
Congestion Notification Packet is opcode 0x81 with BECN set and 16 reserved bytes.
"""

from flowscope.decode.layout import Field

UDP_PORT = 4791

BTH_LEN = 12
BTH_FIELDS = {
    "opcode": Field(0, 1, 0, 0xFF),
    "se": Field(1, 1, 7, 0x1),
    "migreq": Field(1, 1, 6, 0x1),
    "pad": Field(1, 1, 4, 0x3),
    "tver": Field(1, 1, 0, 0xF),
    "pkey": Field(2, 2, 0, 0xFFFF),
    "fecn": Field(4, 1, 7, 0x1),
    "becn": Field(4, 1, 6, 0x1),
    "dest_qp": Field(5, 3, 0, 0xFFFFFF),
    "ackreq": Field(8, 1, 7, 0x1),
    "psn": Field(9, 3, 0, 0xFFFFFF),
}
OPCODE = BTH_FIELDS["opcode"]
FECN = BTH_FIELDS["fecn"]
BECN = BTH_FIELDS["becn"]
DEST_QP = BTH_FIELDS["dest_qp"]
ACKREQ = BTH_FIELDS["ackreq"]
PSN = BTH_FIELDS["psn"]
PKEY = BTH_FIELDS["pkey"]

# Bits of the decoded ``bth_flags`` column.
F_BECN, F_FECN, F_ACKREQ = 1, 2, 4

AETH_LEN = 4
AETH_FIELDS = {"syndrome": Field(0, 1, 0, 0xFF), "msn": Field(1, 3, 0, 0xFFFFFF)}
SYNDROME = AETH_FIELDS["syndrome"]

PSN_MOD = 1 << 24

# Opcodes (§9.2.1 table 38): the upper 3 bits name the transport (0 RC, 1 UC, 2 RD, 3 UD,
# 4 CNP, 5 XRC), the lower 5 the operation.
TRANSPORTS = {0: "RC", 1: "UC", 2: "RD", 3: "UD", 5: "XRC"}
OPERATIONS = {
    0x00: "SEND_FIRST", 0x01: "SEND_MIDDLE", 0x02: "SEND_LAST", 0x03: "SEND_LAST_IMM",
    0x04: "SEND_ONLY", 0x05: "SEND_ONLY_IMM", 0x06: "RDMA_WRITE_FIRST",
    0x07: "RDMA_WRITE_MIDDLE", 0x08: "RDMA_WRITE_LAST", 0x09: "RDMA_WRITE_LAST_IMM",
    0x0A: "RDMA_WRITE_ONLY", 0x0B: "RDMA_WRITE_ONLY_IMM", 0x0C: "RDMA_READ_REQUEST",
    0x0D: "RDMA_READ_RESPONSE_FIRST", 0x0E: "RDMA_READ_RESPONSE_MIDDLE",
    0x0F: "RDMA_READ_RESPONSE_LAST", 0x10: "RDMA_READ_RESPONSE_ONLY", 0x11: "ACKNOWLEDGE",
    0x12: "ATOMIC_ACKNOWLEDGE", 0x13: "COMPARE_SWAP", 0x14: "FETCH_ADD",
    0x16: "SEND_LAST_INV", 0x17: "SEND_ONLY_INV",
}
CNP = 0x81
# Operations that carry an AETH (§9.3.5): read responses first/last/only, ACK, atomic ACK.
AETH_OPERATIONS = (0x0D, 0x0F, 0x10, 0x11, 0x12)
# Responses (sent by the responder back to the requester): read responses and ACKs.
RESPONSE_OPERATIONS = (0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12)
# Operations that end a message: *_LAST, *_ONLY, read request and atomics.
MESSAGE_END_OPERATIONS = (0x02, 0x03, 0x04, 0x05, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x13, 0x14,
                          0x16, 0x17)

# AETH syndrome (§9.3.5.1 table 42): bits 7:5 = 000 ACK, 001 RNR NAK, 011 NAK with the
# code in the low 5 bits.
SYNDROME_ACK, SYNDROME_RNR, SYNDROME_NAK = 0, 1, 3
NAK_CODES = ("psn_seq_err", "invalid_req", "remote_access", "remote_op", "invalid_rd")


def opcode_name(opcode: int) -> str:
    if opcode == CNP:
        return "CNP"
    transport = TRANSPORTS.get(opcode >> 5)
    op = OPERATIONS.get(opcode & 0x1F)
    if transport is None or op is None:
        return f"0x{opcode:02x}"
    return f"{transport}_{op}"
