"""Hand-built TCP connections, one per Wireshark sequence-analysis case, for differential tests.

Each :class:`Case` is one connection between ``CLIENT`` and ``SERVER``:80 from its own
client port.  It triggers one branch of Wireshark's ``tcp_analyze_sequence_number``
(epan/dissectors/packet-tcp.c, 4.0.17): plain retransmission, spurious retransmission, fast
retransmission after duplicate ACKs, out-of-order hole fill within the iRTT, a segment never
captured, zero window with a probe, keep-alive, a connection seen without its handshake,
and a clean exchange as the control.  :class:`Expected` records what tshark 4.0.17 flags in
that connection; the differential test checks tshark against it before comparing tshark
with flowscope, so a generator that stops exercising its case fails loudly.

Rules the builders respect, so that the two tools see the same connections:

* Timestamps start at ``T0_NS`` (2023-11-14), never at the epoch: Wireshark ignores a SYN
  stamped exactly 0 when it measures the iRTT, and the out-of-order threshold then falls
  back to 3 ms.  All times are integer nanoseconds (nanosecond pcap), so they are exact.
* Every packet gets its own IPv4 identification.  flowscope drops the second of two packets
  with identical seq/ack/flags/length/window/IP id within 100 us as a mirror copy; with
  distinct ids no generated packet can be mistaken for one.
* The connections follow each other in time, one second apart, without overlap.

:func:`wrap_erspan2` puts any records inside ERSPAN Type II (GRE sequence numbers 1, 2,
3...) with tests/generated.py's scapy builders, keeping every timestamp; :func:`write_cases`
writes the plain and the ERSPAN II capture.  ``python -m tests.tcp_cases DIR`` writes both
into DIR, for looking at them with tshark or flowscope by hand.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from .generated import MASK32, Record, erspan2, write_pcap

T0_NS = 1_700_000_000 * 10**9  # the first connection's first packet
GAP_NS = 10**9  # quiet time between two connections
MS = 1_000_000  # ns
IRTT_NS = 20 * MS  # SYN to the handshake's ACK, in every case with a handshake

CLIENT, SERVER = "10.0.0.1", "10.0.0.2"
CLIENT_MAC, SERVER_MAC = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
SERVER_PORT = 80
WINDOW = 65535
ERSPAN_SESSION = 5

PLAIN_NAME = "tcp_cases.pcap"
ERSPAN2_NAME = "tcp_cases_erspan2.pcap"


@dataclass(frozen=True)
class Expected:
    """What tshark 4.0.17 flags in one connection: packets carrying each analysis field.

    ``retrans`` counts ``tcp.analysis.retransmission``, which Wireshark also sets on fast and
    spurious retransmissions; ``fast`` and ``spurious`` count those two kinds separately.
    """

    retrans: int = 0
    fast: int = 0
    spurious: int = 0
    out_of_order: int = 0
    dup_acks: int = 0
    zero_window: int = 0
    zero_window_probe: int = 0
    lost_segment: int = 0
    keep_alive: int = 0


@dataclass
class Conn:
    """Builds the packets of one connection, tracking each side's next sequence number.

    Times are offsets in ns from the connection's start.  ``client``/``server`` are the
    next new sequence number of each side; a packet sent without an explicit ``seq``
    uses it and (if it carries data, SYN or FIN) advances it.  Unless told otherwise a
    packet acknowledges everything the peer has sent so far.
    """

    client_port: int
    ip_ids: Iterator[int]
    client: int = 1000
    server: int = 5000
    records: list[Record] = field(default_factory=list)

    def send(self, t_ns: int, from_client: bool, flags: str, *, payload: int = 0,
             seq: int | None = None, ack: int | None = None, window: int = WINDOW) -> int:
        """Append one segment; return its sequence number."""
        advance = seq is None
        if from_client:
            seq = self.client if seq is None else seq
            ack = self.server if ack is None else ack
            ends = (CLIENT, self.client_port, SERVER, SERVER_PORT, CLIENT_MAC, SERVER_MAC)
        else:
            seq = self.server if seq is None else seq
            ack = self.client if ack is None else ack
            ends = (SERVER, SERVER_PORT, CLIENT, self.client_port, SERVER_MAC, CLIENT_MAC)
        if "A" not in flags:
            ack = 0
        src, sport, dst, dport, smac, dmac = ends
        pkt: Packet = (Ether(src=smac, dst=dmac)
                       / IP(src=src, dst=dst, id=next(self.ip_ids))
                       / TCP(sport=sport, dport=dport, flags=flags, seq=seq & MASK32,
                             ack=ack & MASK32, window=window))
        if payload:
            pkt = pkt / Raw(b"x" * payload)
        self.records.append(Record(pkt, t_ns))
        if advance:
            used = payload + ("S" in flags) + ("F" in flags)
            if from_client:
                self.client += used
            else:
                self.server += used
        return seq

    # -- shorthands ---------------------------------------------------------------------

    def handshake(self, t_ns: int = 0, irtt_ns: int = IRTT_NS) -> None:
        """SYN at t, SYN/ACK half an iRTT later, ACK one iRTT later."""
        self.send(t_ns, True, "S")
        self.send(t_ns + irtt_ns // 2, False, "SA")
        self.send(t_ns + irtt_ns, True, "A")

    def data(self, t_ns: int, n: int, *, from_client: bool = True,
             seq: int | None = None) -> int:
        """``n`` bytes of PSH/ACK data; with ``seq``, a re-send that does not advance."""
        return self.send(t_ns, from_client, "PA", payload=n, seq=seq)

    def hole(self, n: int) -> int:
        """Skip ``n`` client bytes: a segment that was sent but is not (yet) in the capture."""
        seq = self.client
        self.client += n
        return seq

    def ack(self, t_ns: int, *, from_client: bool = False, ack: int | None = None,
            window: int = WINDOW, seq: int | None = None) -> None:
        """A pure ACK (by default the server's, acknowledging all client data)."""
        self.send(t_ns, from_client, "A", ack=ack, window=window, seq=seq)

    def close(self, t_ns: int) -> None:
        """Client FIN, server FIN 1 ms later, the client's last ACK 1 ms after that."""
        self.send(t_ns, True, "FA")
        self.send(t_ns + MS, False, "FA")
        self.ack(t_ns + 2 * MS, from_client=True)


@dataclass(frozen=True)
class Case:
    """One connection of the generated capture and what tshark flags in it."""

    name: str
    client_port: int
    doc: str
    build: Callable[[Conn], None]
    expected: Expected
    handshake: bool = True


# -- the cases ----------------------------------------------------------------------------
# Frame comments name Wireshark's flag; "n" is the connection's n-th packet.

def _clean(c: Conn) -> None:
    c.handshake()
    c.data(30 * MS, 100)  # 4 request
    c.data(50 * MS, 200, from_client=False)  # 5 response, ACKs the request
    c.ack(60 * MS, from_client=True)  # 6
    c.close(70 * MS)  # 7-9 FIN, FIN, ACK


def _retransmission(c: Conn) -> None:
    c.handshake()
    first = c.data(100 * MS, 100)  # 4
    c.data(400 * MS, 100, seq=first)  # 5 Retransmission: same seq 300 ms later, unACKed
    c.ack(410 * MS)  # 6
    c.close(500 * MS)


def _spurious(c: Conn) -> None:
    c.handshake()
    first = c.data(100 * MS, 100)  # 4
    c.ack(110 * MS)  # 5 ACKs all of it
    c.data(400 * MS, 100, seq=first)  # 6 Spurious Retransmission (ends at the peer's ACK)
    c.ack(410 * MS)  # 7 Dup ACK: same ack, window and seq as frame 5
    c.close(500 * MS)


def _fast_retransmission(c: Conn) -> None:
    c.handshake()
    segs = [c.data((100 + i) * MS, 100) for i in range(5)]  # 4-8
    c.ack(120 * MS, ack=segs[1])  # 9 ACKs segment 0 only
    for i in range(3):
        c.ack((121 + i) * MS, ack=segs[1])  # 10-12 Dup ACK #1-#3
    c.data(125 * MS, 100, seq=segs[1])  # 13 Fast Retransmission (2 ms after the last dup)
    c.ack(140 * MS)  # 14 ACKs all five
    # again with only two duplicate ACKs: Wireshark's threshold is dupacknum >= 2
    segs = [c.data((200 + i) * MS, 100) for i in range(3)]  # 15-17
    c.ack(220 * MS, ack=segs[1])  # 18
    c.ack(221 * MS, ack=segs[1])  # 19 Dup ACK #1
    c.ack(222 * MS, ack=segs[1])  # 20 Dup ACK #2
    c.data(224 * MS, 100, seq=segs[1])  # 21 Fast Retransmission
    c.ack(240 * MS)  # 22
    c.close(300 * MS)


def _out_of_order(c: Conn) -> None:
    c.handshake()  # iRTT 20 ms: the out-of-order threshold
    c.data(100 * MS, 100)  # 4
    gap = c.hole(100)
    c.data(101 * MS, 100)  # 5 Previous segment not captured
    c.data(106 * MS, 100, seq=gap)  # 6 Out-Of-Order: 5 ms (> 3 ms, < iRTT) after frame 5
    c.ack(110 * MS)  # 7
    c.close(200 * MS)


def _lost_segment(c: Conn) -> None:
    c.handshake()
    c.data(100 * MS, 100)  # 4
    c.hole(100)  # reached the server, never the capture
    c.data(101 * MS, 100)  # 5 Previous segment not captured
    c.ack(110 * MS)  # 6 ACKed unseen segment
    c.close(200 * MS)


def _zero_window(c: Conn) -> None:
    c.handshake()
    c.data(100 * MS, 100)  # 4
    c.ack(110 * MS, window=0)  # 5 ZeroWindow
    probe = c.client
    c.send(300 * MS, True, "A", payload=1, seq=probe)  # 6 ZeroWindowProbe (not ZeroWindow)
    c.ack(310 * MS, window=0)  # 7 ZeroWindowProbeAck + ZeroWindow
    c.ack(500 * MS, window=8192)  # 8 Window Update
    c.data(510 * MS, 100)  # 9 resends the probe byte: no flag (the probe did not advance)
    c.ack(520 * MS, window=8192)  # 10
    c.close(600 * MS)


def _keep_alive(c: Conn) -> None:
    c.handshake()
    c.data(100 * MS, 100)  # 4
    c.ack(110 * MS)  # 5
    c.ack(10_000 * MS, from_client=True, seq=c.client - 1)  # 6 Keep-Alive (seq = next - 1)
    c.ack(10_010 * MS)  # 7 Keep-Alive ACK
    c.ack(10_020 * MS)  # 8 Keep-Alive ACK again, not a Dup ACK: the last client packet was KA
    c.send(20_000 * MS, True, "A", payload=1, seq=c.client - 1)  # 9 Keep-Alive with 1 byte
    c.ack(20_010 * MS)  # 10 Keep-Alive ACK
    c.close(20_100 * MS)


def _midstream(c: Conn) -> None:
    """No handshake: no iRTT, so the out-of-order threshold is Wireshark's 3 ms."""
    c.data(0, 100)  # 1
    c.ack(5 * MS)  # 2
    c.data(10 * MS, 100)  # 3
    gap = c.hole(100)
    c.data(11 * MS, 100)  # 4 Previous segment not captured
    c.data(12 * MS, 100, seq=gap)  # 5 Out-Of-Order (1 ms < 3 ms)
    gap = c.hole(100)
    c.data(13 * MS, 100)  # 6 Previous segment not captured
    c.data(18 * MS, 100, seq=gap)  # 7 Retransmission (5 ms >= 3 ms)
    c.ack(30 * MS)  # 8
    c.data(40 * MS, 50, from_client=False)  # 9
    c.ack(50 * MS, from_client=True)  # 10


CASES: tuple[Case, ...] = (
    Case("clean", 40001, "handshake, request, response, FIN both ways", _clean, Expected()),
    Case("retransmission", 40002, "unACKed data sent again 300 ms later", _retransmission,
         Expected(retrans=1)),
    Case("spurious", 40003, "data sent again after it was ACKed", _spurious,
         Expected(retrans=1, spurious=1, dup_acks=1)),
    Case("fast_retransmission", 40004, "re-sent within 20 ms of 3, then 2 duplicate ACKs",
         _fast_retransmission, Expected(retrans=2, fast=2, dup_acks=5)),
    Case("out_of_order", 40005, "hole filled 5 ms later, within the 20 ms iRTT",
         _out_of_order, Expected(out_of_order=1, lost_segment=1)),
    Case("lost_segment", 40006, "a segment never captured, ACKed by the peer",
         _lost_segment, Expected(lost_segment=1)),
    Case("zero_window", 40007, "zero window, probe, probe ACK, window update",
         _zero_window, Expected(zero_window=2, zero_window_probe=1)),
    Case("keep_alive", 40008, "keep-alives (empty and 1 byte) and their ACKs", _keep_alive,
         Expected(keep_alive=2)),
    Case("midstream", 40009, "no handshake; out-of-order at 1 ms, retransmission at 5 ms",
         _midstream, Expected(retrans=1, out_of_order=1, lost_segment=2), handshake=False),
)


def case_records(cases: Sequence[Case] = CASES) -> list[Record]:
    """All the cases' packets, in time order: each connection starts ``GAP_NS`` after the
    previous one's last packet; the first at ``T0_NS``.  IP ids are unique across them."""
    ip_ids = itertools.count(1)
    out: list[Record] = []
    start = T0_NS
    for i, case in enumerate(cases):
        conn = Conn(case.client_port, ip_ids, client=1000 + 100_000 * i,
                    server=5000 + 100_000 * i)
        case.build(conn)
        times = [r.ts_ns for r in conn.records]
        assert times == sorted(times), f"{case.name}: packets out of time order"
        out += [Record(r.packet, start + r.ts_ns) for r in conn.records]
        start += times[-1] + GAP_NS
    return out


def wrap_erspan2(records: Sequence[Record], session: int = ERSPAN_SESSION,
                 first_seq: int = 1) -> list[Record]:
    """Each record's frame as the payload of an ERSPAN Type II packet (GRE sequence numbers
    ``first_seq``, +1, +2... modulo 2**32), at the record's own time."""
    return [Record(erspan2(rec.packet, seq=(first_seq + k) & MASK32, session=session),
                   rec.ts_ns)
            for k, rec in enumerate(records)]


def write_cases(directory: Path, cases: Sequence[Case] = CASES) -> tuple[Path, Path]:
    """Write the cases as plain Ethernet and as ERSPAN II; return (plain, erspan2) paths."""
    records = case_records(cases)
    plain = write_pcap(directory / PLAIN_NAME, records)
    wrapped = write_pcap(directory / ERSPAN2_NAME, wrap_erspan2(records))
    return plain, wrapped


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    target.mkdir(parents=True, exist_ok=True)
    for written in write_cases(target):
        print(written)
