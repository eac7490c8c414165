"""Independently generated RoCEv2 mirror captures, with their per-queue-pair ground truth.

Scapy is the encoder (``scapy.contrib.roce``: BTH with its ICRC, AETH, CNPPadding, the opcode
table), in IPv4/UDP to port 4791, each mirrored frame wrapped in ERSPAN Type II (session
:data:`SESSION`, GRE sequence numbers 1, 2, 3... in capture order) with the helpers of
:mod:`tests.generated`.  Every builder writes one classic pcap into the directory it is given
and returns a :class:`RoceCapture`: the path, the truth of every frame, of the mirror stream,
of the RoCE headers handed to scapy, and of every session (one per request flow).

Wire formats (InfiniBand Architecture Specification Vol 1 Release 1.4):

* §9.2 Base Transport Header, 12 bytes: OpCode (8) | SE M PadCnt(2) TVer(4) | P_Key (16) |
  FECN BECN resv6 | DestQP (24) | AckReq resv7 | PSN (24).
* §9.3.3 RDMA Extended Transport Header (first/only packet of an RDMA WRITE), 16 bytes:
  VA (64) | R_Key (32) | DMA length (32).
* §9.3.5 ACK Extended Transport Header, 4 bytes: Syndrome (8) | MSN (24).  Syndrome bit 7 is
  reserved, bits 6-5 the type (00 ACK, 01 RNR NAK, 11 NAK), bits 4-0 the credit count
  (ACK), the RNR timer (RNR NAK) or the NAK code (0 PSN sequence error, 1 invalid request,
  2 remote access error, 3 remote operational error, 4 invalid RD request).
* Annex A17 (RoCEv2): IP/UDP destination port 4791 carry BTH onwards, the packet ends in
  the 4-byte invariant CRC; a congestion notification packet (CNP) is BTH opcode 0x81 with
  BECN set and DestQP naming the QP that sent the congested (CE-marked) flow, followed by
  16 reserved bytes.

Session truth (``RoceCapture.sessions``) follows the contract of ``flowscope sessions``:
a session is a request flow A -> B (``dest_qp`` = B's QP) paired with its ACK/NAK flow
B -> A (to A's QP).  Packet counts, opcode counts, ECN counts and NAK counts are tallied
from the values handed to scapy as each packet is written; the PSN accounting (gaps,
missing, duplicates, go-back-N bursts) and the verdict are literals worked out by hand
from each scenario (see each builder's docstring).  ``ce_marked`` and ``ect_pkts`` count
the session's request and ACK/NAK packets; CNPs are sent Not-ECT (ECN 0), so they count
towards neither, whether or not an implementation files them with the session.
UDP source ports change on every packet (RoCEv2 uses the source port as ECMP entropy only).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scapy.contrib.roce import AETH, BTH, CNP_OPCODE, CNPPadding, opcode
from scapy.fields import IntField, XIntField, XLongField
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from .generated import (
    COLLECTOR,
    MAC_A,
    MAC_B,
    MIRROR,
    OUTER_ERSPAN2,
    Capture,
    Record,
    Truth,
    erspan2,
    ts,
    write_pcap,
)

ROCEV2_PORT = 4791  # Annex A17: the IANA port of RoCEv2
SESSION = 40  # ERSPAN session id of every capture here

HOST_A, HOST_B = "10.1.0.1", "10.1.0.2"  # requester, responder
QP_A, QP_B = 0x000456, 0x000123  # A's QP (ACK/NAK and CNP target), B's QP (request target)
MACS = {HOST_A: MAC_A, HOST_B: MAC_B}

PMTU = 256  # path MTU: the payload of every FIRST/MIDDLE packet
PSN_MOD = 1 << 24  # PSNs are 24 bits (§9.2)
RKEY = 0x00C0FFEE
VA_BASE = 0x7F00_0000_0000

# IP traffic class: DSCP 26 (AF31) for RDMA, DSCP 48 (CS6) for CNPs; ECN codepoints (RFC 3168)
DSCP_DATA, DSCP_CNP = 26, 48
NOT_ECT, ECT1, ECT0, CE = 0, 1, 2, 3


def _rc(name: str) -> int:
    """A reliable-connection opcode, by scapy's name for it (§9.2 opcode table)."""
    return opcode("RC", name)[0]


SEND_FIRST = _rc("SEND_FIRST")
SEND_MIDDLE = _rc("SEND_MIDDLE")
SEND_LAST = _rc("SEND_LAST")
SEND_ONLY = _rc("SEND_ONLY")
WRITE_FIRST = _rc("RDMA_WRITE_FIRST")
WRITE_MIDDLE = _rc("RDMA_WRITE_MIDDLE")
WRITE_LAST = _rc("RDMA_WRITE_LAST")
WRITE_ONLY = _rc("RDMA_WRITE_ONLY")
ACKNOWLEDGE = _rc("ACKNOWLEDGE")
assert (SEND_FIRST, SEND_MIDDLE, SEND_LAST, SEND_ONLY) == (0x00, 0x01, 0x02, 0x04)
assert (WRITE_FIRST, WRITE_MIDDLE, WRITE_LAST, WRITE_ONLY) == (0x06, 0x07, 0x08, 0x0A)
assert (ACKNOWLEDGE, CNP_OPCODE) == (0x11, 0x81)

# (FIRST, MIDDLE, LAST, ONLY) of each verb
VERBS = {"SEND": (SEND_FIRST, SEND_MIDDLE, SEND_LAST, SEND_ONLY),
         "WRITE": (WRITE_FIRST, WRITE_MIDDLE, WRITE_LAST, WRITE_ONLY)}
MESSAGE_ENDS = {SEND_LAST, SEND_ONLY, WRITE_LAST, WRITE_ONLY}  # what "messages" counts

# AETH syndromes (§9.3.5)
ACK_CREDITS_INVALID = 0x1F  # ACK, credit count field 31: "no credit information"
RNR = 0x20  # RNR NAK with timer code 0
NAK_PSN_SEQ_ERR, NAK_INVALID_REQ, NAK_REMOTE_ACCESS, NAK_REMOTE_OP, NAK_INVALID_RD = (
    0x60, 0x61, 0x62, 0x63, 0x64)
NAK_KEYS = {NAK_PSN_SEQ_ERR: "psn_seq_err", NAK_INVALID_REQ: "invalid_req",
            NAK_REMOTE_ACCESS: "remote_access", NAK_REMOTE_OP: "remote_op",
            NAK_INVALID_RD: "invalid_rd"}

# a mirrored copy cut 6 bytes into the BTH (opcode .. first byte of DestQP survive)
SLICE_INNER = 14 + 20 + 8 + 6


class RETH(Packet):
    """RDMA Extended Transport Header (§9.3.3); scapy.contrib.roce has none."""

    name = "RETH"
    fields_desc = [XLongField("va", 0), XIntField("rkey", 0), IntField("dmalen", 0)]


@dataclass
class RoceCapture(Capture):
    """:class:`tests.generated.Capture` (path, frame truth, mirror stream truth, records) plus
    ``sessions``, one truth dict per request flow in order of first appearance, and
    ``headers``, one dict per record of the RoCE header values handed to scapy."""

    sessions: list[Truth] = field(default_factory=list)
    headers: list[Truth] = field(default_factory=list)

    @property
    def truth(self) -> Truth:
        """The session truth of a capture that holds exactly one session."""
        assert len(self.sessions) == 1, f"{self.path.name} has {len(self.sessions)} sessions"
        return self.sessions[0]


# -- request plans -------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """One request packet as A sends it the first time."""

    op: int
    psn: int
    payload: int  # bytes after the BTH/RETH, a multiple of 4 (pad count 0)
    message_len: int  # the whole message (RETH DMA length)
    va: int  # where the message goes (RETH virtual address)
    msn: int  # messages complete once this packet is in (B's MSN after it)


def plan(first_psn: int, messages: list[tuple[str, int]], msn0: int = 0) -> list[Request]:
    """The request packets of ``messages`` ((verb, length) pairs) from ``first_psn`` on:
    FIRST, MIDDLE..., LAST of PMTU-sized segments, or ONLY when one segment holds it."""
    out: list[Request] = []
    psn, msn, va = first_psn, msn0, VA_BASE
    for verb, length in messages:
        assert length % 4 == 0 and length > 0
        first, middle, last, only = VERBS[verb]
        n = -(-length // PMTU)
        msn += 1
        for k in range(n):
            op = only if n == 1 else first if k == 0 else last if k == n - 1 else middle
            size = min(PMTU, length - k * PMTU)
            out.append(Request(op, psn, size, length, va, msn if k == n - 1 else msn - 1))
            psn = (psn + 1) % PSN_MOD
        va += length
    return out


# -- one capture: records, frame truth, header truth ---------------------------------------

class Trace:
    """The RoCEv2 packets of one capture in order, each mirrored in ERSPAN II."""

    def __init__(self, seed: int, snap_inner: int | None = None) -> None:
        self.records: list[Record] = []
        self.frames: list[Truth] = []
        self.headers: list[Truth] = []
        self._rng = random.Random(seed)  # UDP source ports: ECMP entropy only
        self._snap = None if snap_inner is None else OUTER_ERSPAN2 + snap_inner
        self._ip_id = {HOST_A: 0x1000, HOST_B: 0x2000}

    def emit(self, src: str, dst: str, transport: Packet, ecn: int, dscp: int = DSCP_DATA
             ) -> None:
        """Ethernet/IPv4/UDP(4791)/``transport`` from ``src`` to ``dst``, mirrored."""
        sport = self._rng.randrange(49152, 65536)
        self._ip_id[src] += 1
        # UDP checksum 0, as RoCEv2 NICs commonly send it over IPv4 (the ICRC covers the rest)
        inner = (Ether(src=MACS[src], dst=MACS[dst])
                 / IP(src=src, dst=dst, tos=dscp << 2 | ecn, ttl=64, flags="DF",
                      id=self._ip_id[src])
                 / UDP(sport=sport, dport=ROCEV2_PORT, chksum=0)
                 / transport)
        i = len(self.records)
        self.records.append(Record(erspan2(inner, seq=i + 1, session=SESSION), ts(i),
                                   snap=self._snap))
        self.frames.append({"erspan_type": 2, "erspan_session": SESSION, "gre_seq": i + 1,
                            "vlan": 10, "src": src, "dst": dst, "proto": 17, "sport": sport,
                            "dport": ROCEV2_PORT, "len": len(bytes(inner))})
        bth = transport[BTH]
        self.headers.append({
            "src": src, "dst": dst, "ecn": ecn, "dscp": dscp, "opcode": bth.opcode,
            "dest_qp": bth.dqpn, "psn": bth.psn, "ackreq": bth.ackreq, "becn": bth.becn,
            "syndrome": transport[AETH].syndrome if AETH in transport else None,
            "msn": transport[AETH].msn if AETH in transport else None,
            "dmalen": transport[RETH].dmalen if RETH in transport else None,
        })

    def write(self, path: Path, sessions: list[Truth]) -> RoceCapture:
        streams = [{"outer_src": MIRROR, "outer_dst": COLLECTOR, "encap": "erspan2",
                    "erspan_type": 2, "session": SESSION, "packets": len(self.records),
                    "loss_measurable": True, "lost": 0, "duplicates": 0, "reordered": 0,
                    "seq_resets": 0}]
        return RoceCapture(write_pcap(path, self.records), self.frames, streams,
                           self.records, sessions, self.headers)


class Connection:
    """One RC queue-pair connection A -> B as the mirror sees it, tallying its session."""

    def __init__(self, trace: Trace, qp_a: int = QP_A, qp_b: int = QP_B) -> None:
        self.trace, self.qp_a, self.qp_b = trace, qp_a, qp_b
        self.orig_pkts = self.resp_pkts = self.messages = self.cnp_count = 0
        self.ce_marked = self.ect_pkts = 0
        self.nak = dict.fromkeys(("psn_seq_err", "invalid_req", "remote_access", "remote_op",
                                  "invalid_rd", "rnr"), 0)

    def _ecn(self, ecn: int) -> None:
        self.ce_marked += ecn == CE
        self.ect_pkts += ecn != NOT_ECT

    def request(self, req: Request, ecn: int = ECT0) -> None:
        """A -> B request packet (§9.2 BTH, RETH on an RDMA WRITE's first/only packet);
        AckReq on the packet that ends a message."""
        ends = req.op in MESSAGE_ENDS
        pkt: Packet = BTH(opcode=req.op, dqpn=self.qp_b, psn=req.psn, ackreq=int(ends),
                          solicited=int(ends and req.op in VERBS["SEND"]))
        if req.op in (WRITE_FIRST, WRITE_ONLY):
            pkt = pkt / RETH(va=req.va, rkey=RKEY, dmalen=req.message_len)
        pattern = bytes((req.psn + k) & 0xFF for k in range(req.payload))
        self.trace.emit(HOST_A, HOST_B, pkt / Raw(pattern), ecn)
        self.orig_pkts += 1
        self.messages += ends
        self._ecn(ecn)

    def acknowledge(self, psn: int, msn: int, syndrome: int = ACK_CREDITS_INVALID,
                    ecn: int = ECT0) -> None:
        """B -> A RC ACKNOWLEDGE (§9.3.5 AETH): an ACK of everything up to ``psn``, or a NAK
        (``psn`` = the PSN B expects), or an RNR NAK."""
        pkt = BTH(opcode=ACKNOWLEDGE, dqpn=self.qp_a, psn=psn) / AETH(syndrome=syndrome,
                                                                      msn=msn)
        self.trace.emit(HOST_B, HOST_A, pkt, ecn)
        self.resp_pkts += 1
        kind = syndrome & 0x60
        if kind == 0x20:
            self.nak["rnr"] += 1
        elif kind == 0x60:
            self.nak[NAK_KEYS[syndrome]] += 1
        self._ecn(ecn)

    def cnp(self) -> None:
        """B -> A congestion notification (Annex A17): BECN, DestQP = A's QP, 16 reserved
        bytes; Not-ECT, DSCP 48 (the usual CNP priority)."""
        pkt = BTH(opcode=CNP_OPCODE, becn=1, dqpn=self.qp_a, psn=0) / CNPPadding()
        self.trace.emit(HOST_B, HOST_A, pkt, NOT_ECT, dscp=DSCP_CNP)
        self.cnp_count += 1

    def truth(self, *, psn_gaps: int = 0, missing_psns: int = 0, duplicates: int = 0,
              gbn_bursts: int = 0, verdict: str) -> Truth:
        return {"orig_h": HOST_A, "resp_h": HOST_B, "dest_qp": self.qp_b,
                "orig_pkts": self.orig_pkts, "resp_pkts": self.resp_pkts,
                "messages": self.messages, "psn_gaps": psn_gaps, "missing_psns": missing_psns,
                "duplicates": duplicates, "gbn_bursts": gbn_bursts, "cnp": self.cnp_count,
                "nak": dict(self.nak), "ce_marked": self.ce_marked, "ect_pkts": self.ect_pkts,
                "verdict": verdict}


# -- the healthy exchange (healthy, congestion, sliced) ------------------------------------

HEALTHY_FIRST_PSN = 0x0A1B20
# 11 messages in 20 packets: (verb, bytes); PMTU 256
HEALTHY_MESSAGES = [("SEND", 64), ("WRITE", 200), ("WRITE", 3 * PMTU + 100), ("SEND", 32),
                    ("SEND", 2 * PMTU + 48), ("WRITE", 128), ("WRITE", PMTU + 12),
                    ("SEND", PMTU), ("SEND", PMTU + 200), ("WRITE", 8),
                    ("WRITE", 2 * PMTU + 140)]
# B's ACKs: (index of the message whose last packet is acknowledged, request packets that
# go out before the ACK is seen).  Messages 3+4 and 6+7+8 are acknowledged by one
# (coalesced) ACK each: 8 ACKs for 11 messages.
HEALTHY_ACKS = [(0, 0), (1, 0), (2, 1), (4, 0), (5, 1), (8, 0), (9, 1), (10, 0)]


def _healthy_exchange(conn: Connection, ce_at: frozenset[int] = frozenset(),
                      cnp_after: frozenset[int] = frozenset()) -> None:
    """The 20 request packets of HEALTHY_MESSAGES, all ECT(0) except those at the indices
    ``ce_at`` (CE), every message acknowledged, a CNP after each request index in
    ``cnp_after``."""
    reqs = plan(HEALTHY_FIRST_PSN, HEALTHY_MESSAGES)
    assert len(reqs) == 20
    last_of = [i for i, r in enumerate(reqs) if r.op in MESSAGE_ENDS]
    due: dict[int, list[Request]] = {}
    for message, lag in HEALTHY_ACKS:
        at = min(last_of[message] + lag, len(reqs) - 1)
        due.setdefault(at, []).append(reqs[last_of[message]])
    for i, req in enumerate(reqs):
        conn.request(req, CE if i in ce_at else ECT0)
        if i in cnp_after:
            conn.cnp()
        for acked in due.get(i, []):
            credits = 16 + i % 16  # ACK type 00, credit count 16..31
            conn.acknowledge(acked.psn, acked.msn, syndrome=credits)


def healthy(directory: Path) -> RoceCapture:
    """20 request packets (11 SEND/RDMA WRITE messages of 1 to 4 packets, PSN 0x0A1B20 on),
    8 ACKs (two of them coalesced over several messages, some seen after the next request),
    everything ECT(0).  Truth: 20 orig, 8 resp, 11 messages, no gaps, verdict healthy."""
    trace = Trace(seed=1)
    conn = Connection(trace)
    _healthy_exchange(conn)
    truth = conn.truth(verdict="healthy")
    assert (truth["orig_pkts"], truth["resp_pkts"], truth["messages"], truth["ect_pkts"]) == (
        20, 8, 11, 28)
    return trace.write(directory / "roce_healthy.pcap", [truth])


CONGESTION_CE = frozenset({4, 5, 6, 11, 12})  # request packets marked CE upstream
CONGESTION_CNP = frozenset({4, 6, 12})  # B answers with a CNP after these (rate-limited)


def congestion(directory: Path) -> RoceCapture:
    """The healthy exchange with 5 request packets CE-marked and 3 CNPs from B to QP_A.
    Truth: ce_marked 5, ect_pkts 28 (CE is ECN-capable too), cnp 3, verdict congested."""
    trace = Trace(seed=2)
    conn = Connection(trace)
    _healthy_exchange(conn, ce_at=CONGESTION_CE, cnp_after=CONGESTION_CNP)
    truth = conn.truth(verdict="congested")
    assert (truth["ce_marked"], truth["ect_pkts"], truth["cnp"]) == (5, 28, 3)
    return trace.write(directory / "roce_congestion.pcap", [truth])


def sliced(directory: Path) -> RoceCapture:
    """The healthy exchange, every mirrored copy cut 14+20+8+6 bytes into the inner frame
    (caplen < wirelen): the BTH ends inside DestQP, PSN and AETH are gone.

    The session truth is partial on purpose: only what no reading can dispute.  The A -> B
    session's queue pair and PSN accounting cannot be known (None) and its verdict is
    unknown; how the B -> A copies are grouped is left to the implementation."""
    trace = Trace(seed=1, snap_inner=SLICE_INNER)
    conn = Connection(trace)
    _healthy_exchange(conn)
    truth = {"orig_h": HOST_A, "resp_h": HOST_B, "dest_qp": None, "psn_gaps": None,
             "missing_psns": None, "duplicates": None, "gbn_bursts": None,
             "verdict": "unknown"}
    return trace.write(directory / "roce_sliced.pcap", [truth])


# -- loss and go-back-N --------------------------------------------------------------------

GAP_MESSAGES = [("SEND", 40), ("WRITE", 96), ("WRITE", 2 * PMTU + 20),  # PSN 100..104
                ("SEND", PMTU + 16),  # 105, 106: lost upstream of the mirror the first time
                ("SEND", 28), ("WRITE", 3 * PMTU + 60), ("WRITE", 52),  # 107..112
                ("SEND", 2 * PMTU + 8), ("SEND", 24), ("WRITE", PMTU + 4), ("WRITE", 16),
                ("SEND", 36)]  # 113..120


def gap_gbn(directory: Path) -> RoceCapture:
    """PSN 100..120 (12 messages); 105 and 106 (one SEND) are lost before the mirror.

    Capture order: 100 101 ACK(101) 102 103 104 ACK(104) 107 NAK(105, PSN sequence error)
    108..120 (sent before A saw the NAK; B drops them), then A goes back to 105 and resends
    105..120 with ACK(111) ACK(116) ACK(120) among them.

    Truth: orig_pkts 5 + 14 + 16 = 35; resp_pkts 6; psn_gaps 1 (105 expected, 107 seen),
    missing_psns 2; duplicates 14 (107..120 seen twice; 105 and 106 arrive for the first
    time); gbn_bursts 1 (120 -> 105); nak psn_seq_err 1; verdict lossy.  messages counts
    every *_ONLY/*_LAST packet on the wire, resent copies included: 3 + 8 + 9 = 20 (12
    distinct messages)."""
    trace = Trace(seed=3)
    conn = Connection(trace)
    reqs = {r.psn: r for r in plan(100, GAP_MESSAGES)}
    assert sorted(reqs) == list(range(100, 121))
    acks_first = {101, 104}
    for psn in range(100, 105):
        conn.request(reqs[psn])
        if psn in acks_first:
            conn.acknowledge(psn, reqs[psn].msn)
    for psn in range(107, 121):
        conn.request(reqs[psn])
        if psn == 107:  # one NAK per sequence error; B then drops 108..120 silently
            conn.acknowledge(105, reqs[104].msn, syndrome=NAK_PSN_SEQ_ERR)
    for psn in range(105, 121):  # go-back-N
        conn.request(reqs[psn])
        if psn in (111, 116, 120):
            conn.acknowledge(psn, reqs[psn].msn)
    truth = conn.truth(psn_gaps=1, missing_psns=2, duplicates=14, gbn_bursts=1,
                       verdict="lossy")
    assert (truth["orig_pkts"], truth["resp_pkts"], truth["messages"]) == (35, 6, 20)
    return trace.write(directory / "roce_gap_gbn.pcap", [truth])


# -- NAKs ----------------------------------------------------------------------------------

NAK_FIRST_PSN = 0x003000
# syndrome: (file name, verb of the refused request, verdict)
NAK_SCENARIOS: dict[int, tuple[str, str, str]] = {
    NAK_INVALID_REQ: ("invalid_req", "SEND", "error"),  # e.g. longer than the receive WQE
    NAK_REMOTE_ACCESS: ("remote_access", "WRITE", "error"),  # e.g. a bad R_Key
    NAK_REMOTE_OP: ("remote_op", "SEND", "error"),
    NAK_INVALID_RD: ("invalid_rd", "SEND", "nak"),
    RNR: ("rnr", "SEND", "nak"),  # no receive WQE posted
}


def nak(directory: Path, syndrome: int) -> RoceCapture:
    """Three messages in PSN 0x3000..0x3003 ACKed (ACK 0x3001 covers two), then a fourth,
    single-packet request (0x3004) refused with an ACKNOWLEDGE carrying AETH ``syndrome``
    and PSN 0x3004 (the PSN B expects); the capture ends there (a fatal NAK errors the QP;
    the RNR retry would come after the capture).  Truth: 5 orig, 3 resp, 4 messages, one
    NAK of the syndrome's kind, verdict error (0x61-0x63) or nak (0x64, RNR 0x20-0x3F)."""
    kind = syndrome & 0x60
    key = "rnr" if kind == 0x20 else NAK_KEYS[syndrome]
    _, verb, verdict = NAK_SCENARIOS[RNR if kind == 0x20 else syndrome]
    trace = Trace(seed=syndrome)
    conn = Connection(trace)
    reqs = plan(NAK_FIRST_PSN, [("SEND", 128), ("WRITE", 64), ("WRITE", PMTU + 32),
                                (verb, 80)])
    assert [r.psn for r in reqs] == list(range(NAK_FIRST_PSN, NAK_FIRST_PSN + 5))
    for i, req in enumerate(reqs):
        conn.request(req)
        if i in (1, 3):
            conn.acknowledge(req.psn, req.msn)
    refused = reqs[-1]
    conn.acknowledge(refused.psn, reqs[-2].msn, syndrome=syndrome)
    truth = conn.truth(verdict=verdict)
    assert truth["nak"][key] == 1 and sum(truth["nak"].values()) == 1
    assert (truth["orig_pkts"], truth["resp_pkts"], truth["messages"]) == (5, 3, 4)
    return trace.write(directory / f"roce_nak_{syndrome:02x}.pcap", [truth])


def nak_invalid_request(directory: Path) -> RoceCapture:
    return nak(directory, NAK_INVALID_REQ)


def nak_remote_access(directory: Path) -> RoceCapture:
    return nak(directory, NAK_REMOTE_ACCESS)


def nak_remote_op(directory: Path) -> RoceCapture:
    return nak(directory, NAK_REMOTE_OP)


def nak_invalid_rd(directory: Path) -> RoceCapture:
    return nak(directory, NAK_INVALID_RD)


def rnr_nak(directory: Path) -> RoceCapture:
    return nak(directory, RNR)


# -- PSN wrap ------------------------------------------------------------------------------

def psn_wrap(directory: Path) -> RoceCapture:
    """PSN 0xFFFFFD SEND_ONLY, 0xFFFFFE..0x000000 one RDMA WRITE (FIRST, MIDDLE, LAST across
    the wrap), 0x000001 SEND_ONLY, 0x000002 WRITE_ONLY; ACKs of 0xFFFFFD, 0, 1, 2.
    Truth: 6 orig, 4 resp, 4 messages, no gaps, no duplicates, verdict healthy."""
    trace = Trace(seed=5)
    conn = Connection(trace)
    reqs = plan(0xFFFFFD, [("SEND", 60), ("WRITE", 2 * PMTU + 80), ("SEND", 20),
                           ("WRITE", 44)])
    assert [r.psn for r in reqs] == [0xFFFFFD, 0xFFFFFE, 0xFFFFFF, 0, 1, 2]
    for i, req in enumerate(reqs):
        conn.request(req)
        if i in (0, 4, 5):
            if i == 4:  # the ACK of the wrapping WRITE is seen after the next request
                conn.acknowledge(reqs[3].psn, reqs[3].msn)
            conn.acknowledge(req.psn, req.msn)
    truth = conn.truth(verdict="healthy")
    assert (truth["orig_pkts"], truth["resp_pkts"], truth["messages"]) == (6, 4, 4)
    return trace.write(directory / "roce_psn_wrap.pcap", [truth])


# -- two queue pairs between the same hosts ------------------------------------------------

QP_A1, QP_B1 = QP_A, QP_B
QP_A2, QP_B2 = 0x000ABC, 0x000789


def two_qps(directory: Path) -> RoceCapture:
    """Two RC connections A -> B, interleaved packet by packet: requests to QP_B1 (PSN
    0x001000 on) acknowledged to QP_A1, requests to QP_B2 (PSN 0x800000 on, half the PSN
    space away) acknowledged to QP_A2; one CNP to QP_A2 (the CE mark happened downstream of
    the mirror, so no CE is seen).  The CNP belongs to the QP_B2 session.
    Truth: each 6 orig, 4 resp, 4 messages; QP_B1 cnp 0 healthy, QP_B2 cnp 1 congested."""
    trace = Trace(seed=7)
    one, two = Connection(trace, QP_A1, QP_B1), Connection(trace, QP_A2, QP_B2)
    messages = [("SEND", 100), ("WRITE", PMTU + 40), ("SEND", PMTU + 4), ("WRITE", 20)]
    plans = (plan(0x001000, messages), plan(0x800000, messages[::-1]))
    for reqs in plans:
        assert len(reqs) == 6 and sum(r.op in MESSAGE_ENDS for r in reqs) == 4
    for i in range(6):
        for conn, reqs in zip((one, two), plans, strict=True):
            req = reqs[i]
            conn.request(req)
            if req.op in MESSAGE_ENDS:
                conn.acknowledge(req.psn, req.msn)
        if i == 3:
            two.cnp()
    sessions = [one.truth(verdict="healthy"), two.truth(verdict="congested")]
    assert [s["cnp"] for s in sessions] == [0, 1]
    return trace.write(directory / "roce_two_qps.pcap", sessions)


# -- everything ----------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[Path], RoceCapture]] = {
    "healthy": healthy,
    "congestion": congestion,
    "gap_gbn": gap_gbn,
    "nak_invalid_request": nak_invalid_request,
    "nak_remote_access": nak_remote_access,
    "nak_remote_op": nak_remote_op,
    "nak_invalid_rd": nak_invalid_rd,
    "rnr_nak": rnr_nak,
    "psn_wrap": psn_wrap,
    "sliced": sliced,
    "two_qps": two_qps,
}


def roce_all(directory: Path) -> dict[str, RoceCapture]:
    """Every RoCEv2 capture above, written into ``directory``, by builder name."""
    return {name: build(directory) for name, build in BUILDERS.items()}
