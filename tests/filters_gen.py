"""Captures for the filter tests, encoded by scapy (independent of flowscope's decoder).

:func:`plain_frames` builds a seeded mix of mirrored frames — IPv4/IPv6 TCP, UDP, ICMP,
ICMPv6, SCTP over a small pool of hosts and ports, RoCEv2 (BTH, AETH) on UDP 4791, IPv4
non-first fragments, copies cut inside the payload — that tcpdump can judge directly.
:func:`tunnelled` wraps the same frames in ERSPAN II, ERSPAN III (with a direction bit) or
VXLAN, and returns the mirror fields handed to scapy for each frame.  Frame ``i`` has the
timestamp ``BASE_NS + i µs``, so a frame is found again from tcpdump's ``-tt`` output.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III
from scapy.contrib.roce import AETH, BTH, CNPPadding
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import GRE, Ether
from scapy.layers.sctp import SCTP
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from .generated import COLLECTOR, MAC_A, MAC_B, MIRROR, Record, write_pcap

BASE_NS = 1_700_000_000_000_000_000
STEP_NS = 1_000

HOSTS4 = ["10.0.0.1", "10.0.0.2", "10.0.1.5", "192.168.1.10", "172.16.5.4"]
HOSTS6 = ["2001:db8::1", "2001:db8::2", "2001:db8:1::5", "fe80::1"]
PORTS = [22, 53, 80, 443, 1024, 4791, 5000, 40000, 65535]
TCP_FLAGS = ["S", "SA", "A", "PA", "R", "RA", "F", "FA", "SE"]
SYNDROMES = [0x00, 0x1F, 0x20, 0x60, 0x61, 0x62, 0x63, 0x64]
VNIS = [5569041, 100, 7]
SESSIONS = [1, 42, 1023]

needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None,
                                   reason="tcpdump is not installed (make test installs it)")


def ts(i: int) -> int:
    return BASE_NS + i * STEP_NS


def _roce(rng: random.Random) -> Packet:
    kind = rng.choice(["cnp", "ack", "ack", "send", "write"])
    if kind == "cnp":
        return BTH(opcode=0x81, becn=1, dqpn=0x456, psn=0) / CNPPadding()
    if kind == "ack":
        return (BTH(opcode=0x11, dqpn=0x456, psn=rng.randrange(1 << 24))
                / AETH(syndrome=rng.choice(SYNDROMES), msn=rng.randrange(1 << 24)))
    op = 0x04 if kind == "send" else 0x0A
    return BTH(opcode=op, dqpn=0x123, psn=rng.randrange(1 << 24)) / Raw(b"d" * 32)


def _frame(rng: random.Random) -> tuple[Packet, int | None]:
    """One mirrored Ethernet frame and, for a sliced copy, how many bytes were kept."""
    v6 = rng.random() < 0.3
    src, dst = rng.sample(HOSTS6 if v6 else HOSTS4, 2)
    net: Packet = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst, id=rng.randrange(1 << 16))
    kind = rng.choice(["tcp", "tcp", "udp", "udp", "roce", "icmp", "sctp"])
    sport, dport = rng.choice(PORTS), rng.choice(PORTS)
    payload = Raw(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))))
    if kind == "tcp":
        l4: Packet = TCP(sport=sport, dport=dport, flags=rng.choice(TCP_FLAGS),
                         seq=rng.randrange(1 << 32),
                         options=[("NOP", None)] * rng.choice([0, 4, 12])) / payload
    elif kind == "udp":
        l4 = UDP(sport=sport, dport=dport) / payload
    elif kind == "roce":
        l4 = UDP(sport=rng.randrange(49152, 65536), dport=4791) / _roce(rng)
    elif kind == "icmp":
        l4 = (ICMPv6EchoRequest(id=7) if v6 else ICMP(type=rng.choice([0, 3, 8, 11]))) / payload
    else:
        l4 = SCTP(sport=sport, dport=dport) / payload
    pkt = Ether(src=MAC_A, dst=MAC_B) / net / l4
    full = len(bytes(pkt))
    snap = None
    if rng.random() < 0.1:
        # a sliced copy: cut inside the payload (RoCE: anywhere after the UDP header)
        rest = pkt[UDP].payload if kind == "roce" else pkt.lastlayer()
        least = full - len(bytes(rest))
        if full > least:
            snap = rng.randrange(least, full)
    if not v6 and rng.random() < 0.05:  # a later fragment: no transport header in it
        pkt[IP].frag = rng.randrange(1, 100)
        pkt = Ether(bytes(pkt))
    return pkt, snap


def plain_frames(n: int, seed: int = 5) -> list[Record]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        pkt, snap = _frame(rng)
        out.append(Record(pkt, ts(i), snap))
    return out


@dataclass
class Mirrored:
    path: Path
    erspan_session: list[int | None]
    vni: list[int | None]
    direction: list[str | None]
    vlan: list[int | None]


def tunnelled(directory: Path, records: list[Record], seed: int = 9) -> Mirrored:
    """Each frame wrapped in ERSPAN II, ERSPAN III or VXLAN; slicing is kept (the outer
    copy is cut by the same number of bytes)."""
    rng = random.Random(seed)
    out: list[Record] = []
    truth = Mirrored(directory / "mirrored.pcap", [], [], [], [])
    outer = Ether(src=MAC_A, dst=MAC_B) / IP(src=MIRROR, dst=COLLECTOR)
    for i, rec in enumerate(records):
        kind = rng.choice(["erspan2", "erspan3", "vxlan"])
        inner = rec.packet
        if kind == "vxlan":
            vni = rng.choice(VNIS)
            pkt = outer / UDP(sport=50000, dport=4789) / VXLAN(vni=vni) / inner
            truth.erspan_session.append(None)
            truth.vni.append(vni)
            truth.direction.append(None)
            truth.vlan.append(None)
        else:
            session, vlan = rng.choice(SESSIONS), rng.randrange(1, 4095)
            if kind == "erspan2":
                hdr: Packet = (GRE(seqnum_present=1, sequence_number=i + 1, proto=0x88BE)
                               / ERSPAN_II(vlan=vlan, en=2, session_id=session, index=1))
                direction = None
            else:
                d = rng.randrange(2)
                hdr = (GRE(seqnum_present=1, sequence_number=i + 1, proto=0x22EB)
                       / ERSPAN_III(vlan=vlan, session_id=session, d=d, ft=0))
                direction = "egress" if d else "ingress"
            pkt = outer / hdr / inner
            truth.erspan_session.append(session)
            truth.vni.append(None)
            truth.direction.append(direction)
            truth.vlan.append(vlan)
        snap = None if rec.snap is None else len(bytes(pkt)) - len(bytes(inner)) + rec.snap
        out.append(Record(pkt, rec.ts_ns, snap))
    write_pcap(truth.path, out)
    return truth


def tcpdump_frames(path: Path, expr: str) -> list[int]:
    """The 1-based frame numbers tcpdump selects (found from the timestamps it writes)."""
    done = subprocess.run(["tcpdump", "-O", "-r", str(path), "-w", "-",
                           "--time-stamp-precision=nano", expr], capture_output=True)
    if done.returncode != 0:
        raise AssertionError(f"tcpdump rejected {expr!r}: {done.stderr.decode().strip()}")
    data = done.stdout
    magic = struct.unpack("<I", data[:4])[0]
    assert magic == 0xA1B23C4D, f"expected a nanosecond pcap, got magic {magic:#x}"
    frames, pos = [], 24
    while pos < len(data):
        sec, nsec, caplen, _ = struct.unpack_from("<IIII", data, pos)
        frames.append((sec * 10**9 + nsec - BASE_NS) // STEP_NS + 1)
        pos += 16 + caplen
    return frames


__all__ = ["BASE_NS", "HOSTS4", "HOSTS6", "PORTS", "Mirrored", "needs_tcpdump", "plain_frames",
           "tcpdump_frames", "tunnelled", "write_pcap"]
