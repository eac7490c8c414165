"""Write the demo capture: twenty seconds of a small incident, seen through an ERSPAN mirror.

The story (times are seconds after 2026-11-21T10:00:00Z, when the capture starts)
--------------------------------------------------------------------------------------
A leaf switch mirrors the server-facing ports of an API (10.0.2.10:8443), a Postgres
database (10.0.2.20:5432) and a storage target (10.0.3.2) to a collector: ERSPAN Type II,
session 7, VLAN 100, from 192.0.2.1 to 192.0.2.100 (GRE with a sequence number on every
frame, nothing lost on the way to the collector).  The web tier (10.0.1.11-18, routed, so
their frames reach the mirror with TTL 63 and the gateway's MAC) calls the API and the
database; a storage client 10.0.3.1 writes to 10.0.3.2 over RoCEv2.

* Business as usual: 30 API calls complete normally (handshake, a 300-byte request, a 2-8 KB
  response in 1448-byte segments, FIN both ways), before 11.5 s and again after 17 s.
* 5.6-6.8 s, the database restarts: four connections to 10.0.2.20:5432 are refused (the SYN
  is answered by RST+ACK, nothing is listening).
* 3.3 s and 8.7 s, a flaky downlink to web host 10.0.1.17: one response segment is lost
  between the mirror and the client.  The mirror sees it, then the client's three duplicate
  ACKs (with SACK blocks) asking for the hole, then the server resending it 200 ms after the
  original (its minimum retransmission timeout); both connections then close normally.
* 7.6-8.8 s, congestion on the storage link: a burst of RDMA writes on queue pair 0x000a12
  (ACKs to 0x000b23) fills the switch queue.  20 of its 60 requests arrive CE-marked, the
  target answers with 8 congestion notification packets (CNPs, rate-limited to one per
  burst), and one request is tail-dropped before it reaches the mirror: the target NAKs the
  gap (PSN sequence error), silently drops the four requests that followed it, and the
  client goes back N and resends those five requests.  Another queue pair between the same
  hosts (0x000a11, ACKs to 0x000b22) carries 50 requests spread over the whole capture and
  stays healthy: ECT(0) everywhere, every request ACKed.
* 11.9-12.3 s, the API is overloaded: its load shedder aborts two responses mid-stream (RST
  from the server after two segments).  From 13.1 s its accept queue is full, so three new
  connections get no SYN-ACK; the clients resend the SYN at +1 s and +3 s (same ISN) and are
  still waiting when the capture ends (the next retry would come after 20 s).  The API
  recovers at 17 s.

``flowscope sessions`` on the capture puts the problems first: the refused, reset and
unanswered connections and the congested queue pair that lost a request; below them the
healthy queue pair and the connections that completed, the two that needed a
retransmission among them with that as evidence.

What makes the frames realistic
-------------------------------
TCP: random ISNs per side; SYN and FIN take one sequence number; every ACK acknowledges
exactly what the peer sent; MSS 1460 with timestamps (so 1448-byte segments), SACK
permitted and window scale 7 on the handshake; per-connection timestamp clocks (1 kHz,
random offset) echoed as each side would have received them; per-connection random IPv4 ids
from Linux-like counters; the client ACKs every second segment.  The mirror sits next to the
servers, so a server answers within tens of microseconds and a client's reaction is seen one
round trip (180-450 us) after what it reacts to.  Payloads are TLS 1.3 application-data
records (random bytes).

RoCEv2: IPv4/UDP to port 4791 (UDP checksum 0, a random source port per queue pair and
direction), DSCP 26 for RDMA and DSCP 48 for CNPs, BTH with its ICRC (scapy computes it),
RETH on RDMA WRITE, one packet per message (PMTU 1024), AckReq on every request, each
request ACKed by opcode RC ACKNOWLEDGE with AETH syndrome 0x1f and the request's PSN; CNPs are
opcode 0x81 with BECN set and 16 reserved bytes, Not-ECT.

Deterministic: a fixed random seed, so every run writes the same bytes.

    python demo/make_incident.py -o build/demo/incident.pcap
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from scapy.contrib.erspan import ERSPAN_II
from scapy.contrib.roce import AETH, BTH, CNP_OPCODE, CNPPadding, opcode
from scapy.fields import IntField, XIntField, XLongField
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import GRE, Ether
from scapy.packet import Packet, Raw
from scapy.utils import PcapWriter

SEED = 20261121
START_NS = int(datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC).timestamp()) * 10**9
DURATION_NS = 20 * 10**9
MS, US = 1_000_000, 1_000  # nanoseconds
MASK32 = 0xFFFF_FFFF

# -- the mirror -------------------------------------------------------------------------------
MIRROR, COLLECTOR = "192.0.2.1", "192.0.2.100"
MIRROR_MAC, COLLECTOR_MAC = "02:00:c0:00:02:01", "02:00:c0:00:02:64"
ERSPAN_SESSION = 7
ERSPAN_VLAN = 100
ERSPAN_EN_DOT1Q = 0b10  # the source port is an 802.1Q trunk: tag stripped, VLAN kept here
GRE_PROTO_ERSPAN_II = 0x88BE

# -- the hosts ----------------------------------------------------------------------------------
WEB = [f"10.0.1.{n}" for n in range(11, 19)]
FLAKY_WEB = "10.0.1.17"
API, API_PORT = "10.0.2.10", 8443
DB, DB_PORT = "10.0.2.20", 5432
STORAGE_CLIENT, STORAGE_TARGET = "10.0.3.1", "10.0.3.2"
GATEWAY_MAC = "00:00:5e:00:01:64"  # VRRP virtual router MAC of the servers' subnet
# the mirrored switch ports (ERSPAN II "index"): the servers' side of every conversation
PORT_INDEX = {API: 0x11, DB: 0x12, STORAGE_TARGET: 0x21}
MIRRORED = (API, DB, STORAGE_CLIENT, STORAGE_TARGET)  # hosts whose own MAC the mirror sees

# -- TCP ----------------------------------------------------------------------------------------
MSS = 1460
SEGMENT = 1448  # MSS minus the 12-byte timestamp option
CLIENT_WINDOW, SERVER_WINDOW = 502, 509  # scaled by 2**7
NORMAL_CONNECTIONS = 30
REQUEST_BYTES = 300
RESPONSE_BYTES = (2048, 8192)
RTO_NS = 200 * MS
SYN_RETRIES_NS = (1_000 * MS, 3_000 * MS)
TLS_APP_DATA = b"\x17\x03\x03"

# -- RoCEv2 -------------------------------------------------------------------------------------
ROCEV2_PORT = 4791
DSCP_RDMA, DSCP_CNP = 26, 48
NOT_ECT, ECT0, CE = 0, 2, 3
SEND_ONLY = opcode("RC", "SEND_ONLY")[0]
WRITE_ONLY = opcode("RC", "RDMA_WRITE_ONLY")[0]
ACKNOWLEDGE = opcode("RC", "ACKNOWLEDGE")[0]
ACK_SYNDROME = 0x1F  # ACK, credit count 31: no credit information
NAK_PSN_SEQ_ERR = 0x60
PSN_MOD = 1 << 24
RKEY = 0x0000_2F1C
HEALTHY_QP = (0x000A11, 0x000B22)  # (target's QP: requests go here, client's QP: ACKs go here)
CONGESTED_QP = (0x000A12, 0x000B23)
HEALTHY_REQUESTS = 50
BURSTS, BURST_LEN = 12, 5  # the congested queue pair: 60 requests
CE_PER_BURST = {3: 2, 4: 3, 5: 3, 6: 3, 7: 3, 8: 2, 9: 2, 10: 2}  # 20 CE marks, 8 CNPs
LOST_BURST = 7  # its first request is tail-dropped before the mirror

# -- the timeline (ns after START_NS) -----------------------------------------------------------
QUIET_API = (11_500 * MS, 17_000 * MS)  # no normal API call starts in here
REFUSED_AT = (5_600 * MS, 5_900 * MS, 6_300 * MS, 6_800 * MS)
RETRANS_AT = (3_300 * MS, 8_700 * MS)
RESET_AT = (11_900 * MS, 12_300 * MS)
UNANSWERED_AT = (13_100 * MS, 13_400 * MS, 13_800 * MS)
CONGESTION_AT, BURST_EVERY = 7_600 * MS, 100 * MS


class RETH(Packet):
    """RDMA Extended Transport Header (IBA 1.4 section 9.3.3); scapy.contrib.roce has none."""

    name = "RETH"
    fields_desc = [XLongField("va", 0), XIntField("rkey", 0), IntField("dmalen", 0)]


def host_mac(ip: str) -> str:
    """The MAC the mirror sees for ``ip``: its own, or the gateway's for a routed host."""
    if ip not in MIRRORED:
        return GATEWAY_MAC
    return "02:00:" + ":".join(f"{int(b):02x}" for b in ip.split("."))


@dataclass(order=True)
class Frame:
    ts_ns: int  # after START_NS
    order: int  # ties keep the order the frames were made in
    inner: Packet = field(compare=False)
    port_index: int = field(compare=False)
    cos: int = field(compare=False)


class Capture:
    """Every mirrored frame of the story, in any order until :meth:`write` sorts them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.frames: list[Frame] = []
        self._ports: set[tuple[str, int]] = set()

    def add(self, ts_ns: int, ip: Packet, cos: int = 0) -> None:
        assert 0 <= ts_ns < DURATION_NS, ts_ns
        mirrored = ip.dst if ip.dst in PORT_INDEX else ip.src
        inner = Ether(src=host_mac(ip.src), dst=host_mac(ip.dst)) / ip
        self.frames.append(Frame(ts_ns, len(self.frames), inner, PORT_INDEX[mirrored], cos))

    def ephemeral_port(self, host: str) -> int:
        while True:
            port = self.rng.randrange(32768, 61000)  # Linux ip_local_port_range
            if (host, port) not in self._ports:
                self._ports.add((host, port))
                return port

    def write(self, path: Path) -> int:
        """Sort by time, number the GRE sequence, write a nanosecond pcap; frames written."""
        self.frames.sort()
        with PcapWriter(str(path), linktype=1, nano=True, snaplen=65535) as out:
            out.write_header(None)
            for seq, f in enumerate(self.frames, start=1):
                pkt = (Ether(src=MIRROR_MAC, dst=COLLECTOR_MAC)
                       / IP(src=MIRROR, dst=COLLECTOR, id=seq & 0xFFFF, ttl=64)
                       / GRE(seqnum_present=1, sequence_number=seq, proto=GRE_PROTO_ERSPAN_II)
                       / ERSPAN_II(vlan=ERSPAN_VLAN, cos=f.cos, en=ERSPAN_EN_DOT1Q, t=0,
                                   session_id=ERSPAN_SESSION, index=f.port_index)
                       / f.inner)
                data = bytes(pkt)
                ts = START_NS + f.ts_ns
                out.write_packet(data, sec=ts // 10**9, usec=ts % 10**9, caplen=len(data),
                                 wirelen=len(data))
        return len(self.frames)


# -- TCP ----------------------------------------------------------------------------------------

def tls_record(rng: random.Random, size: int) -> bytes:
    """A TLS 1.3 application-data record of ``size`` bytes in all (random ciphertext)."""
    return TLS_APP_DATA + (size - 5).to_bytes(2, "big") + rng.randbytes(size - 5)


class TcpConnection:
    """One TCP connection from a web host, as the mirror next to the server sees it.

    ``seq`` is what each side sends next, ``rcv`` what each side has received in order (what
    it acknowledges).  Times are mirror times: the server's packets leave right there, a
    client's packet is seen one round trip after the server packet it reacts to."""

    def __init__(self, cap: Capture, client: str, server: str, dport: int) -> None:
        rng = self.rng = cap.rng
        self.cap, self.client, self.server, self.dport = cap, client, server, dport
        self.sport = cap.ephemeral_port(client)
        self.rtt = rng.randrange(180 * US, 450 * US)
        self.seq = {client: rng.getrandbits(32), server: rng.getrandbits(32)}
        self.rcv = {client: 0, server: 0}
        self.ip_id = {client: rng.getrandbits(16), server: rng.getrandbits(16)}
        self.ts_offset = {client: rng.getrandbits(32), server: rng.getrandbits(32)}
        self.sent: dict[str, list[tuple[int, int]]] = {client: [], server: []}  # (t, TSval)

    def peer(self, side: str) -> str:
        return self.server if side == self.client else self.client

    def tsval(self, side: str, t: int) -> int:
        """The 1 kHz timestamp clock of ``side``; a client sent half a round trip earlier."""
        sent_at = t - self.rtt // 2 if side == self.client else t
        return (self.ts_offset[side] + sent_at // MS) & MASK32

    def tsecr(self, side: str, t: int) -> int:
        """The peer's latest TSval that ``side`` had received when it sent at mirror time t."""
        lag = self.rtt - US if side == self.client else 0
        seen = [(when, v) for when, v in self.sent[self.peer(side)] if when <= t - lag]
        return max(seen)[1] if seen else 0

    def send(self, side: str, t: int, flags: str, payload: bytes = b"", *,
             seq: int | None = None, ack: int | None = None,
             sack: tuple[int, int] | None = None, options: bool = True) -> None:
        """One segment from ``side`` at mirror time ``t``; sequence state advances unless
        ``seq`` is given (a retransmission).  ``ack`` overrides what is acknowledged."""
        peer = self.peer(side)
        tsval = self.tsval(side, t)
        opts: list[tuple[str, object]] = []
        if "S" in flags:
            opts = [("MSS", MSS), ("SAckOK", b""), ("Timestamp", (tsval, self.tsecr(side, t))),
                    ("NOP", None), ("WScale", 7)]
            window = 64240 if side == self.client else 65160
        else:
            if options:
                opts = [("NOP", None), ("NOP", None),
                        ("Timestamp", (tsval, self.tsecr(side, t)))]
            if sack is not None:
                opts += [("NOP", None), ("NOP", None), ("SAck", sack)]
            window = CLIENT_WINDOW if side == self.client else SERVER_WINDOW
        if "R" in flags:
            window = 0
        if "A" not in flags:
            ack_no = 0
        else:
            ack_no = self.rcv[side] if ack is None else ack
        own_seq = self.seq[side] if seq is None else seq
        sport, dport = ((self.sport, self.dport) if side == self.client
                        else (self.dport, self.sport))
        self.ip_id[side] = (self.ip_id[side] + 1) & 0xFFFF
        ip = (IP(src=side, dst=peer, id=self.ip_id[side], flags="DF",
                 ttl=63 if side == self.client else 64)
              / TCP(sport=sport, dport=dport, seq=own_seq, ack=ack_no, flags=flags,
                    window=window, options=opts))
        if payload:
            ip = ip / Raw(payload)
        self.cap.add(t, ip)
        if opts:
            self.sent[side].append((t, tsval))
        if seq is None:
            used = len(payload) + ("S" in flags) + ("F" in flags)
            self.seq[side] = (own_seq + used) & MASK32
        # the peer takes it in order (losses are handled by the callers)
        if "R" not in flags and (seq is None or seq == self.rcv[peer]):
            self.rcv[peer] = (own_seq + len(payload) + ("S" in flags) + ("F" in flags)) & MASK32

    # -- phases --------------------------------------------------------------------------------

    def handshake(self, t: int) -> int:
        """SYN, SYN-ACK, ACK; returns when the client's ACK is seen."""
        self.send(self.client, t, "S")
        t += self.rng.randrange(15 * US, 40 * US)
        self.send(self.server, t, "SA")
        t += self.rtt
        self.send(self.client, t, "A")
        return t

    def request(self, t: int) -> int:
        t += self.rng.randrange(10 * US, 30 * US)
        self.send(self.client, t, "PA", tls_record(self.rng, REQUEST_BYTES))
        return t

    def response_segments(self, size: int) -> list[bytes]:
        record = tls_record(self.rng, size)
        return [record[i:i + SEGMENT] for i in range(0, size, SEGMENT)]

    def respond(self, t: int, segments: list[bytes]) -> list[tuple[int, int, int]]:
        """The server sends ``segments`` back to back after some work; returns (time, seq,
        end seq) of each."""
        t += self.rng.randrange(1 * MS, 25 * MS)
        sent = []
        for k, data in enumerate(segments):
            flags = "PA" if k == len(segments) - 1 else "A"
            start = self.seq[self.server]
            self.send(self.server, t, flags, data)
            sent.append((t, start, self.seq[self.server]))
            t += self.rng.randrange(8 * US, 16 * US)
        return sent

    def ack_every_second(self, sent: list[tuple[int, int, int]]) -> int:
        """The client's delayed ACKs: every second segment and the last one."""
        t = sent[-1][0]
        for k, (when, _, end) in enumerate(sent):
            if k % 2 == 1 or k == len(sent) - 1:
                t = when + self.rtt
                self.send(self.client, t, "A", ack=end)
        return t

    def close(self, t: int) -> int:
        """The client closes once it has the response; the server follows at once."""
        t += self.rng.randrange(100 * US, 800 * US)
        self.send(self.client, t, "FA")
        t += self.rng.randrange(20 * US, 60 * US)
        self.send(self.server, t, "FA")
        t += self.rtt
        self.send(self.client, t, "A")
        return t


def normal_call(cap: Capture, t: int) -> None:
    conn = TcpConnection(cap, cap.rng.choice(WEB), API, API_PORT)
    t = conn.request(conn.handshake(t))
    size = cap.rng.randrange(*RESPONSE_BYTES)
    t = conn.ack_every_second(conn.respond(t, conn.response_segments(size)))
    conn.close(t)


def refused(cap: Capture, t: int) -> None:
    """SYN to the database port, answered by the kernel's RST+ACK (ack = ISN + 1)."""
    conn = TcpConnection(cap, cap.rng.choice(WEB), DB, DB_PORT)
    conn.send(conn.client, t, "S")
    conn.send(conn.server, t + cap.rng.randrange(15 * US, 40 * US), "RA", seq=0, options=False)


def unanswered(cap: Capture, t: int) -> None:
    """SYN to the API and its retransmissions at +1 s and +3 s, same ISN, no reply."""
    conn = TcpConnection(cap, cap.rng.choice(WEB), API, API_PORT)
    isn = conn.seq[conn.client]
    conn.send(conn.client, t, "S")
    for retry in SYN_RETRIES_NS:
        conn.send(conn.client, t + retry, "S", seq=isn)


def reset_mid_response(cap: Capture, t: int) -> None:
    """The server sends two segments of its response, then aborts with RST+ACK."""
    conn = TcpConnection(cap, cap.rng.choice(WEB), API, API_PORT)
    t = conn.request(conn.handshake(t))
    segments = conn.response_segments(cap.rng.randrange(6000, RESPONSE_BYTES[1]))
    sent = conn.respond(t, segments[:2])
    t = conn.ack_every_second(sent)
    conn.send(conn.server, t + cap.rng.randrange(1 * MS, 3 * MS), "RA")


def retransmission(cap: Capture, t: int) -> None:
    """Six response segments; the third is lost past the mirror.  The client ACKs the first
    two, sends three duplicate ACKs (ack = the hole's start, SACKing what came after), the
    server resends the third segment 200 ms after the original, the client ACKs it all,
    and the connection closes normally."""
    conn = TcpConnection(cap, FLAKY_WEB, API, API_PORT)
    t = conn.request(conn.handshake(t))
    segments = conn.response_segments(cap.rng.randrange(7400, RESPONSE_BYTES[1]))
    assert len(segments) == 6
    lost = 2
    hole_start = conn.seq[conn.server] + sum(len(s) for s in segments[:lost])
    sent = conn.respond(t, segments)
    conn.rcv[conn.client] = hole_start & MASK32  # what the client really holds
    conn.send(conn.client, sent[lost - 1][0] + conn.rtt, "A", ack=hole_start & MASK32)
    sack_left = sent[lost + 1][1]
    for when, _, end in sent[lost + 1:]:
        conn.send(conn.client, when + conn.rtt, "A", ack=hole_start & MASK32,
                  sack=(sack_left, end))
    when, start, end = sent[lost]
    resent = when + RTO_NS
    conn.send(conn.server, resent, "A", segments[lost], seq=start)
    full = sent[-1][2]
    conn.rcv[conn.client] = full
    conn.send(conn.client, resent + conn.rtt, "A", ack=full)
    conn.close(resent + conn.rtt)


def api_call_times(rng: random.Random) -> list[int]:
    """Start times of the normal API calls, none while the API is overloaded."""
    times: list[int] = []
    while len(times) < NORMAL_CONNECTIONS:
        t = rng.randrange(200 * MS, DURATION_NS - 500 * MS)
        if not QUIET_API[0] - 100 * MS <= t < QUIET_API[1]:
            times.append(t)
    return sorted(times)


# -- RoCEv2 -------------------------------------------------------------------------------------

class QueuePair:
    """One RC connection 10.0.3.1 -> 10.0.3.2: requests to ``dest_qp`` on the target, ACKs,
    NAKs and CNPs back to ``src_qp`` on the client.  One packet per message."""

    def __init__(self, cap: Capture, qps: tuple[int, int]) -> None:
        rng = self.rng = cap.rng
        self.cap = cap
        self.dest_qp, self.src_qp = qps
        self.psn = rng.randrange(PSN_MOD)  # the next new request's PSN
        self.msn = 0  # messages the target has completed
        # RoCEv2 NICs pick one UDP source port per queue pair (ECMP entropy)
        self.port = {STORAGE_CLIENT: rng.randrange(49152, 65536),
                     STORAGE_TARGET: rng.randrange(49152, 65536)}
        self.ip_id = {STORAGE_CLIENT: rng.getrandbits(16), STORAGE_TARGET: rng.getrandbits(16)}
        self.va = 0x7F3A_0000_0000 + (rng.getrandbits(20) << 12)
        self.sizes: dict[int, int] = {}  # PSN -> payload bytes, for resends
        self.last_answer = 0  # when the target last sent on this queue pair

    def emit(self, t: int, src: str, transport: Packet, ecn: int,
             dscp: int = DSCP_RDMA, cos: int = 3) -> None:
        dst = STORAGE_TARGET if src == STORAGE_CLIENT else STORAGE_CLIENT
        if src == STORAGE_TARGET:  # the target answers in order
            t = self.last_answer = max(t, self.last_answer + 400)
        self.ip_id[src] = (self.ip_id[src] + 1) & 0xFFFF
        ip = (IP(src=src, dst=dst, tos=dscp << 2 | ecn, ttl=64, flags="DF", id=self.ip_id[src])
              / UDP(sport=self.port[src], dport=ROCEV2_PORT, chksum=0)
              / transport)
        self.cap.add(t, ip, cos)

    def new_request(self) -> int:
        psn = self.psn
        self.psn = (psn + 1) % PSN_MOD
        self.sizes[psn] = 64 * self.rng.randrange(4, 17)  # 256..1024 bytes
        return psn

    def request(self, t: int, psn: int, ecn: int = ECT0) -> None:
        """An RDMA WRITE (mostly) or a SEND carrying the whole message, AckReq set."""
        size = self.sizes[psn]
        payload = Raw(bytes((psn + k) & 0xFF for k in range(size)))
        if psn % 4 == 3:
            bth = BTH(opcode=SEND_ONLY, solicited=1, dqpn=self.dest_qp, psn=psn, ackreq=1)
            pkt = bth / payload
        else:
            bth = BTH(opcode=WRITE_ONLY, dqpn=self.dest_qp, psn=psn, ackreq=1)
            pkt = bth / RETH(va=self.va + (psn % 4096) * 1024, rkey=RKEY, dmalen=size) / payload
        self.emit(t, STORAGE_CLIENT, pkt, ecn)

    def acknowledge(self, t: int, psn: int, syndrome: int = ACK_SYNDROME) -> None:
        """ACK of ``psn`` (the message completes), or a NAK naming the PSN expected."""
        if syndrome == ACK_SYNDROME:
            self.msn += 1
        pkt = BTH(opcode=ACKNOWLEDGE, dqpn=self.src_qp, psn=psn) / AETH(syndrome=syndrome,
                                                                       msn=self.msn)
        self.emit(t, STORAGE_TARGET, pkt, ECT0)

    def cnp(self, t: int) -> None:
        pkt = BTH(opcode=CNP_OPCODE, becn=1, dqpn=self.src_qp, psn=0) / CNPPadding()
        self.emit(t, STORAGE_TARGET, pkt, NOT_ECT, dscp=DSCP_CNP, cos=6)

    def turnaround(self) -> int:
        return self.rng.randrange(4 * US, 7 * US)


def healthy_qp(cap: Capture) -> None:
    """50 requests spread over the capture, each ACKed a few microseconds later."""
    qp = QueuePair(cap, HEALTHY_QP)
    spacing = (DURATION_NS - 1_000 * MS) // HEALTHY_REQUESTS
    for i in range(HEALTHY_REQUESTS):
        t = 250 * MS + i * spacing + cap.rng.randrange(0, 50 * MS)
        psn = qp.new_request()
        qp.request(t, psn)
        qp.acknowledge(t + qp.turnaround(), psn)


def congested_qp(cap: Capture) -> None:
    """12 bursts of 5 requests; CE marks and one CNP per burst in the middle of the episode;
    the first request of burst LOST_BURST is dropped upstream of the mirror (NAK, go-back-N)."""
    qp = QueuePair(cap, CONGESTED_QP)
    rng = cap.rng
    for b in range(BURSTS):
        t0 = CONGESTION_AT + b * BURST_EVERY + rng.randrange(0, 20 * MS)
        psns = [qp.new_request() for _ in range(BURST_LEN)]
        times = [t0 + k * 2 * US for k in range(BURST_LEN)]
        seen = list(range(1, BURST_LEN)) if b == LOST_BURST else list(range(BURST_LEN))
        marked = set(rng.sample(seen, CE_PER_BURST.get(b, 0)))
        for k in seen:
            qp.request(times[k], psns[k], CE if k in marked else ECT0)
        if marked:
            qp.cnp(times[min(marked)] + 3 * US)
        if b != LOST_BURST:
            for k in seen:
                qp.acknowledge(times[k] + qp.turnaround(), psns[k])
            continue
        # the target expected psns[0] and got psns[1]: one NAK, then it drops the rest
        nak_at = times[1] + qp.turnaround()
        qp.acknowledge(nak_at, psns[0], syndrome=NAK_PSN_SEQ_ERR)
        resend_at = nak_at + rng.randrange(8 * US, 12 * US)
        for k, psn in enumerate(psns):
            t = resend_at + k * 2 * US
            qp.request(t, psn)
            qp.acknowledge(t + qp.turnaround(), psn)


# -- the whole story ------------------------------------------------------------------------

def build(seed: int = SEED) -> Capture:
    cap = Capture(seed)
    for t in api_call_times(cap.rng):
        normal_call(cap, t)
    for t in REFUSED_AT:
        refused(cap, t)
    for t in RETRANS_AT:
        retransmission(cap, t)
    for t in RESET_AT:
        reset_mid_response(cap, t)
    for t in UNANSWERED_AT:
        unanswered(cap, t)
    healthy_qp(cap)
    congested_qp(cap)
    return cap


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("build/demo/incident.pcap"),
                        metavar="PATH", help="pcap to write (default: %(default)s)")
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    frames = build().write(args.output)
    print(f"{frames} frames written to {args.output}")


if __name__ == "__main__":
    main()
