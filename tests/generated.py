"""Independently generated mirror captures, with their ground truth.

Scapy is the encoder (``scapy.contrib.erspan``, ``scapy.contrib.geneve``,
``scapy.layers.vxlan``, GRE, IPv6): nothing here shares code with flowscope's decoder, so a
test that compares the two catches a misread field on either side.  Every builder writes one
classic pcap (nanosecond magic, scapy's ``PcapWriter``) into the directory it is given and
returns a :class:`Capture`: the path plus what every frame and every mirror stream should
decode to, computed from the values handed to scapy (never read back from flowscope).

Frame truth uses the user-visible keys of the packets table (``flowscope packets``);
a few extra keys name raw decoded columns (``orig_ts_ns``, ``inner_caplen``,
``erspan_platform``, ``gcp_network_id``, ``gcp_direction``, ``inner_link``).
Stream truth uses the keys of the mirrors table (``flowscope mirrors``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, PadN
from scapy.layers.l2 import GRE, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw
from scapy.utils import PcapWriter

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101

BASE_NS = 1_700_000_000_000_000_000  # capture clock of the first frame (2023-11-14)
STEP_NS = 1_000_000  # 1 ms between frames
MASK32 = 0xFFFFFFFF

MIRROR = "192.0.2.1"  # the mirroring switch (outer source)
COLLECTOR = "192.0.2.100"  # the analyser (outer destination)
MIRROR6 = "2001:db8::1"
COLLECTOR6 = "2001:db8::2"
MAC_A = "02:00:00:00:00:01"
MAC_B = "02:00:00:00:00:02"
CLIENT, SERVER = "10.0.0.1", "10.0.0.2"

PROTO_ERSPAN_I_II = 0x88BE
PROTO_ERSPAN_III = 0x22EB
VXLAN_PORT = 4789
GENEVE_PORT = 6081
GCP_CLASS = 0x0132
AWS_CLASS = 0x0108

Truth = dict[str, Any]


@dataclass
class Record:
    packet: Packet
    ts_ns: int
    snap: int | None = None  # keep only this many bytes (caplen < wirelen)


@dataclass
class Capture:
    path: Path
    frames: list[Truth]  # one per record, in file order
    streams: list[Truth] = field(default_factory=list)  # mirror streams, by first appearance
    records: list[Record] = field(default_factory=list)


def write_pcap(path: Path, records: list[Record], linktype: int = LINKTYPE_ETHERNET) -> Path:
    """Classic pcap, nanosecond timestamps, caplen < wirelen where a record says so."""
    with PcapWriter(str(path), linktype=linktype, nano=True, snaplen=65535) as w:
        w.write_header(None)
        for rec in records:
            raw = bytes(rec.packet)
            data = raw if rec.snap is None else raw[: rec.snap]
            w.write_packet(data, sec=rec.ts_ns // 10**9, usec=rec.ts_ns % 10**9,
                           caplen=len(data), wirelen=len(raw))
    return path


def ts(i: int) -> int:
    return BASE_NS + i * STEP_NS


# -- inner (mirrored) packets ---------------------------------------------------------------

def tcp_ip(i: int = 0, payload: int = 0, flags: str = "S") -> Packet:
    """An IPv4/TCP packet, no link layer (what ERSPAN III FT=2 and Geneve/IP carry)."""
    return (IP(src=CLIENT, dst=SERVER, id=i + 1)
            / TCP(sport=40000 + i, dport=443, seq=1000 + i, flags=flags)
            / Raw(b"x" * payload))


def tcp_frame(i: int = 0, payload: int = 0, flags: str = "S") -> Packet:
    return Ether(src=MAC_A, dst=MAC_B) / tcp_ip(i, payload, flags)


def tcp_truth(inner: Packet, i: int = 0, flags: str = "S") -> Truth:
    return {"src": CLIENT, "dst": SERVER, "proto": 6, "sport": 40000 + i, "dport": 443,
            "tcp_flags": flags, "len": len(bytes(inner))}


# -- outer encapsulations -------------------------------------------------------------------

def ipv4_outer(src: str = MIRROR, dst: str = COLLECTOR) -> Packet:
    return Ether(src=MAC_A, dst=MAC_B) / IP(src=src, dst=dst)


def gre(seq: int | None, proto: int) -> Packet:
    if seq is None:
        return GRE(seqnum_present=0, proto=proto)
    return GRE(seqnum_present=1, sequence_number=seq, proto=proto)


def erspan2(inner: Packet, seq: int, session: int, vlan: int = 10, t: int = 0,
            outer: Packet | None = None) -> Packet:
    # En=10 (802.1Q): a non-zero VLAN with En=00 would be the vlan/en mismatch quirk.
    return ((outer if outer is not None else ipv4_outer()) / gre(seq, PROTO_ERSPAN_I_II)
            / ERSPAN_II(vlan=vlan, cos=3, en=2, t=t, session_id=session, index=0x12345)
            / inner)


def erspan3(inner: Packet, seq: int | None, session: int, *, timestamp: int = 0, gra: int = 0,
            d: int = 0, ft: int = 0, platform: Packet | None = None, vlan: int = 20) -> Packet:
    hdr = ERSPAN_III(vlan=vlan, cos=5, session_id=session, timestamp=timestamp, sgt_other=0x1234,
                     ft=ft, hw=5, d=d, gra=gra, o=1 if platform is not None else 0)
    pkt = ipv4_outer() / gre(seq, PROTO_ERSPAN_III) / hdr
    if platform is not None:
        pkt = pkt / platform
    return pkt / inner


def vxlan(inner: Packet, vni: int, level: int = 0) -> Packet:
    return (Ether(src=MAC_A, dst=MAC_B)
            / IP(src=f"198.51.100.{level + 1}", dst=f"198.51.100.{level + 101}")
            / UDP(sport=50000 + level, dport=VXLAN_PORT) / VXLAN(vni=vni) / inner)


# -- builders -------------------------------------------------------------------------------

def erspan2_over_ipv6(directory: Path) -> Capture:
    """ERSPAN II in GRE in IPv6 with a 16-byte destination-options header; inner IPv6/UDP."""
    records, frames = [], []
    for i in range(3):
        inner = (Ether(src=MAC_A, dst=MAC_B)
                 / IPv6(src="2001:db8:1::10", dst="2001:db8:1::20")
                 / UDP(sport=5353 + i, dport=53) / Raw(b"q" * (10 + i)))
        outer = (Ether(src=MAC_A, dst=MAC_B) / IPv6(src=MIRROR6, dst=COLLECTOR6)
                 / IPv6ExtHdrDestOpt(nh=47, options=[PadN(optdata=b"\0" * 12)]))
        records.append(Record(erspan2(inner, seq=i + 1, session=42, outer=outer), ts(i)))
        frames.append({
            "encap": ["eth", "ipv6", "gre", "erspan2", "eth", "ipv6", "udp"],
            "erspan_type": 2, "erspan_session": 42, "gre_seq": i + 1, "vni": None,
            "direction": None, "vlan": 10, "src": "2001:db8:1::10", "dst": "2001:db8:1::20",
            "proto": 17, "sport": 5353 + i, "dport": 53, "tcp_flags": None,
            "len": len(bytes(inner)), "orig_ts": None, "error": None, "quirks": [],
        })
    path = write_pcap(directory / "erspan2_ipv6.pcap", records)
    streams = [{"outer_src": MIRROR6, "outer_dst": COLLECTOR6, "encap": "erspan2",
                "erspan_type": 2, "session": 42, "vni": None, "packets": 3,
                "bytes": sum(len(bytes(r.packet)) for r in records), "loss_measurable": True,
                "lost": 0, "duplicates": 0, "reordered": 0, "seq_resets": 0}]
    return Capture(path, frames, streams, records)


# ERSPAN III platform sub-headers (draft-foschiano-erspan-03 §4.3) with the hardware clock
# that produced each timestamp, deliberately far from the capture clock where the sub-header
# carries the high-order part, so only a correct reading gives the exact nanoseconds back.
PLATFORMS = {
    # id: (Gra, hardware time of frame 0 in ns)
    1: (0, BASE_NS - 250_000_000),  # 100 us units, 32 bits only: anchored to the capture clock
    3: (1, BASE_NS - 3600 * 10**9 + 123_456_700),  # 100 ns units, upper 32 bits in sub-header
    5: (2, BASE_NS - 86_400 * 10**9 + 987_654_321),  # IEEE 1588: seconds + ns
    6: (2, BASE_NS - 7 * 86_400 * 10**9 + 5),  # IEEE 1588: seconds + ns
    7: (3, BASE_NS + 5 * 10**9 + 123),  # ns, upper 32 bits in sub-header
}


def platform_fields(platform: int, hw_ns: int) -> tuple[int, int, int]:
    """(ERSPAN timestamp, sub-header info1 (26 bits), info2 (32 bits)) for a hardware time."""
    gra = PLATFORMS[platform][0]
    if platform == 1:  # reserved (14) | VSM domain id (12); port index (32)
        return (hw_ns // 100_000) & MASK32, 0x123, 0x00010203
    if platform == 3:  # reserved (12) | port index (14); timestamp upper 32 bits
        units = hw_ns // 100
        return units & MASK32, 0x1555, units >> 32
    if platform in (5, 6):  # switch id (10) | port index (16); 1588 seconds
        assert gra == 2
        return hw_ns % 10**9, (0x2AB << 16) | 0x0102, hw_ns // 10**9
    if platform == 7:  # reserved (6) | source index (20); timestamp upper 32 bits
        return hw_ns & MASK32, 0xABCDE, hw_ns >> 32
    raise ValueError(platform)


# A 100 us hardware time whose 32-bit count is 5 units short of rolling over: one
# millisecond later the ERSPAN timestamp field reads 5.
_units = (BASE_NS // 100_000) // 2**32 * 2**32 - 5
ROLLOVER_100US_HW0 = _units * 100_000
assert (ROLLOVER_100US_HW0 // 100_000) & MASK32 == 2**32 - 5


def erspan3_platform(directory: Path, platform: int, hw0: int | None = None,
                     capture0: int = BASE_NS) -> Capture:
    """Two ERSPAN III frames of one session with platform sub-header ``platform``, hardware
    times ``hw0`` and ``hw0`` + 1 ms, captured at ``capture0`` and ``capture0`` + 1 ms."""
    gra, default_hw0 = PLATFORMS[platform]
    hw0 = default_hw0 if hw0 is None else hw0
    session = 300 + platform
    records, frames = [], []
    for i in range(2):
        hw = hw0 + i * STEP_NS
        stamp, info1, info2 = platform_fields(platform, hw)
        inner = tcp_frame(i)
        sub = ERSPAN_PlatformSpecific(platf_id=platform, info1=info1, info2=info2)
        records.append(Record(erspan3(inner, seq=i + 1, session=session, timestamp=stamp,
                                      gra=gra, platform=sub), capture0 + i * STEP_NS))
        frames.append({
            "encap": ["eth", "ipv4", "gre", "erspan3", "eth", "ipv4", "tcp"],
            "erspan_type": 3, "erspan_session": session, "gre_seq": i + 1, "vlan": 20,
            "direction": "ingress", "erspan_platform": platform, "orig_ts_ns": hw,
            "error": None, "quirks": [], **tcp_truth(inner, i),
        })
    path = write_pcap(directory / f"erspan3_platform{platform}_{hw0}.pcap", records)
    return Capture(path, frames, [], records)


def erspan3_ip_payload(directory: Path) -> Capture:
    """ERSPAN III FT=2: the mirrored packet is an IP packet without an Ethernet header."""
    inner = tcp_ip(0, payload=20, flags="SA")
    records = [Record(erspan3(inner, seq=1, session=77, ft=2), ts(0))]
    frames = [{"encap": ["eth", "ipv4", "gre", "erspan3", "ipv4", "tcp"], "erspan_type": 3,
               "erspan_session": 77, "inner_link": LINKTYPE_RAW,
               "inner_caplen": len(bytes(inner)), "error": None, "quirks": [],
               **tcp_truth(inner, 0, "SA")}]
    return Capture(write_pcap(directory / "erspan3_ft2.pcap", records), frames, [], records)


def erspan3_directions(directory: Path) -> Capture:
    """One session: frame 1 ingress (D=0), frame 2 egress (D=1)."""
    records, frames = [], []
    for i, d in enumerate((0, 1)):
        inner = tcp_frame(i)
        records.append(Record(erspan3(inner, seq=i + 1, session=88, d=d), ts(i)))
        frames.append({"erspan_type": 3, "erspan_session": 88,
                       "direction": ("ingress", "egress")[d], **tcp_truth(inner, i)})
    streams = [{"encap": "erspan3", "erspan_type": 3, "session": 88, "direction": "both",
                "packets": 2, "loss_measurable": True, "lost": 0}]
    return Capture(write_pcap(directory / "erspan3_dir.pcap", records), frames, streams,
                   records)


# GRE sequence scenarios (RFC 2890 sequence numbers on an ERSPAN II session):
# name: (sequence numbers in capture order, expected mirror accounting).
SEQUENCES: dict[str, tuple[list[int], Truth]] = {
    "gaps": ([1, 2, 3, 6, 7, 10],
             {"loss_measurable": True, "lost": 4, "duplicates": 0, "reordered": 0,
              "seq_resets": 0}),
    "duplicates": ([1, 2, 2, 3, 4, 3],
                   {"loss_measurable": True, "lost": 0, "duplicates": 2, "reordered": 0,
                    "seq_resets": 0}),
    "reordered": ([1, 2, 4, 3, 5],
                  {"loss_measurable": True, "lost": 0, "duplicates": 0, "reordered": 1,
                   "seq_resets": 0}),
    "reset": ([1000, 1001, 1002, 1003, 1, 2, 3],
              {"loss_measurable": True, "lost": 0, "duplicates": 0, "reordered": 0,
               "seq_resets": 1}),
    # 0xFFFFFFFF is missing: one loss across the 32-bit wrap, not a reset
    "wraparound": ([0xFFFF_FFFE, 0, 1, 2],
                   {"loss_measurable": True, "lost": 1, "duplicates": 0, "reordered": 0,
                    "seq_resets": 0}),
    # the capture starts between two reordered packets (4 was sent before 5); 7 is lost
    "reordered_at_start": ([5, 4, 6, 8],
                           {"loss_measurable": True, "lost": 1, "duplicates": 0,
                            "reordered": 1, "seq_resets": 0}),
    # seq 10 overtaken by 90 packets (e.g. ECMP paths to the collector): nothing lost
    "late_beyond_window": ([s for s in range(1, 101) if s != 10] + [10, 101, 102],
                           {"loss_measurable": True, "lost": 0, "duplicates": 0,
                            "reordered": 1, "seq_resets": 0}),
    "stuck_at_zero": ([0, 0, 0, 0, 0],
                      {"loss_measurable": False, "lost": None, "duplicates": None,
                       "reordered": None, "seq_resets": None}),
}


def gre_sequence(directory: Path, scenario: str) -> Capture:
    seqs, expected = SEQUENCES[scenario]
    records, frames = [], []
    for i, seq in enumerate(seqs):
        inner = tcp_frame(i)
        records.append(Record(erspan2(inner, seq=seq, session=9), ts(i)))
        frames.append({"gre_seq": seq, "erspan_session": 9, **tcp_truth(inner, i)})
    streams = [{"outer_src": MIRROR, "outer_dst": COLLECTOR, "encap": "erspan2",
                "erspan_type": 2, "session": 9, "packets": len(seqs), **expected}]
    return Capture(write_pcap(directory / f"seq_{scenario}.pcap", records), frames, streams,
                   records)


def erspan1(directory: Path) -> Capture:
    """Type I: GRE 0x88BE without the S bit and no ERSPAN header, the frame right after GRE."""
    records, frames = [], []
    for i in range(3):
        inner = tcp_frame(i)
        records.append(Record(ipv4_outer() / gre(None, PROTO_ERSPAN_I_II) / inner, ts(i)))
        frames.append({"encap": ["eth", "ipv4", "gre", "erspan1", "eth", "ipv4", "tcp"],
                       "erspan_type": 1, "erspan_session": None, "gre_seq": None,
                       "vlan": None, "error": None, "quirks": [], **tcp_truth(inner, i)})
    streams = [{"outer_src": MIRROR, "outer_dst": COLLECTOR, "encap": "erspan1",
                "erspan_type": 1, "session": None, "packets": 3, "loss_measurable": False,
                "lost": None}]
    return Capture(write_pcap(directory / "erspan1.pcap", records), frames, streams, records)


def erspan2_carrying_vxlan(directory: Path) -> Capture:
    """A mirrored VXLAN packet: ERSPAN II whose frame is Ethernet/IPv4/UDP/VXLAN/Ethernet."""
    inner = tcp_frame(0)
    mirrored = vxlan(inner, vni=5000)
    records = [Record(erspan2(mirrored, seq=1, session=11), ts(0))]
    frames = [{"encap": ["eth", "ipv4", "gre", "erspan2", "eth", "ipv4", "udp", "vxlan",
                         "eth", "ipv4", "tcp"],
               "erspan_type": 2, "erspan_session": 11, "gre_seq": 1, "error": None,
               "quirks": [], **tcp_truth(inner)}]
    streams = [{"encap": "erspan2", "session": 11, "packets": 1}]
    return Capture(write_pcap(directory / "erspan2_vxlan.pcap", records), frames, streams,
                   records)


def vxlan_in_vxlan(directory: Path) -> Capture:
    inner = tcp_frame(0, flags="A")
    records = [Record(vxlan(vxlan(inner, vni=200, level=1), vni=100, level=0), ts(0))]
    frames = [{"encap": ["eth", "ipv4", "udp", "vxlan", "eth", "ipv4", "udp", "vxlan",
                         "eth", "ipv4", "tcp"],
               "erspan_type": None, "vni": 100, "gre_seq": None, "error": None, "quirks": [],
               **tcp_truth(inner, 0, "A")}]
    streams = [{"outer_src": "198.51.100.1", "outer_dst": "198.51.100.101", "encap": "vxlan",
                "vni": 100, "session": None, "packets": 1, "loss_measurable": False,
                "lost": None}]
    return Capture(write_pcap(directory / "vxlan_vxlan.pcap", records), frames, streams,
                   records)


def nested_vxlan(directory: Path, depth: int) -> Capture:
    """``depth`` VXLAN headers nested in each other (outermost VNI 1000)."""
    inner = tcp_frame(0)
    pkt = inner
    for level in reversed(range(depth)):
        pkt = vxlan(pkt, vni=1000 + level, level=level)
    records = [Record(pkt, ts(0))]
    frames = [{"vni": 1000}]
    return Capture(write_pcap(directory / f"vxlan_x{depth}.pcap", records), frames, [],
                   records)


def geneve_gwlb_vxlan(directory: Path) -> Capture:
    """AWS Gateway Load Balancer style: Geneve (class 0x0108 endpoint id, attachment id,
    flow cookie) carrying an IPv4 packet that is itself VXLAN (a traffic-mirror session)."""
    inner = tcp_frame(0)
    mirrored = (IP(src="172.31.0.10", dst="172.31.0.20")
                / UDP(sport=61000, dport=VXLAN_PORT) / VXLAN(vni=7777) / inner)
    options = [GeneveOptions(classid=AWS_CLASS, type=1, data=struct.pack("!Q", 0x1122334455)),
               GeneveOptions(classid=AWS_CLASS, type=2, data=struct.pack("!Q", 0x66778899AA)),
               GeneveOptions(classid=AWS_CLASS, type=3, data=struct.pack("!I", 0xC00C1E))]
    pkt = (Ether(src=MAC_A, dst=MAC_B) / IP(src="10.100.0.5", dst="10.100.0.9")
           / UDP(sport=55555, dport=GENEVE_PORT) / GENEVE(vni=0, proto=0x0800, options=options)
           / mirrored)
    records = [Record(pkt, ts(0))]
    frames = [{"encap": ["eth", "ipv4", "udp", "geneve", "ipv4", "udp", "vxlan", "eth", "ipv4",
                         "tcp"],
               "vni": 0, "direction": None, "gcp_network_id": -1, "error": None, "quirks": [],
               **tcp_truth(inner)}]
    streams = [{"outer_src": "10.100.0.5", "outer_dst": "10.100.0.9", "encap": "geneve",
                "vni": 0, "packets": 1, "loss_measurable": False}]
    return Capture(write_pcap(directory / "geneve_gwlb.pcap", records), frames, streams,
                   records)


GCP_NETWORK_ID = 0x0ABCDEF  # 28-bit network id


def geneve_gcp(directory: Path) -> Capture:
    """Google Cloud style: Geneve option class 0x0132 type 1, first data word
    network id << 4 | direction (0 ingress, 1 egress), payload a bare IPv4 packet."""
    records, frames = [], []
    for i, direction in enumerate((0, 1)):
        inner = tcp_ip(i, payload=8, flags="PA")
        opt = GeneveOptions(classid=GCP_CLASS, type=1,
                            data=struct.pack("!I", GCP_NETWORK_ID << 4 | direction))
        pkt = (Ether(src=MAC_A, dst=MAC_B) / IP(src="35.199.0.1", dst="10.128.0.50")
               / UDP(sport=33000 + i, dport=GENEVE_PORT)
               / GENEVE(vni=4242, proto=0x0800, options=[opt]) / inner)
        records.append(Record(pkt, ts(i)))
        frames.append({"encap": ["eth", "ipv4", "udp", "geneve", "ipv4", "tcp"], "vni": 4242,
                       "gcp_network_id": GCP_NETWORK_ID, "gcp_direction": direction,
                       "direction": ("ingress", "egress")[direction],
                       "inner_link": LINKTYPE_RAW, "error": None, "quirks": [],
                       **tcp_truth(inner, i, "PA")})
    streams = [{"outer_src": "35.199.0.1", "outer_dst": "10.128.0.50", "encap": "geneve",
                "vni": 4242, "direction": "both", "packets": 2, "loss_measurable": False}]
    return Capture(write_pcap(directory / "geneve_gcp.pcap", records), frames, streams,
                   records)


OUTER_ERSPAN2 = 14 + 20 + 8 + 8  # Ethernet, IPv4, GRE with sequence, ERSPAN II


def truncated_copies(directory: Path) -> Capture:
    """Capture snaplen shorter than the frames: the pcap records keep caplen < wirelen.

    1. ERSPAN II, cut 74 bytes into the mirrored frame (all its headers present);
    2. ERSPAN II, cut inside the mirrored IPv4 header;
    3. a plain (not mirrored) Ethernet/IPv4/TCP frame cut at 96 bytes.
    """
    records, frames = [], []
    inner = tcp_frame(0, payload=1000)
    records.append(Record(erspan2(inner, seq=1, session=12), ts(0), snap=OUTER_ERSPAN2 + 74))
    frames.append({"encap": ["eth", "ipv4", "gre", "erspan2", "eth", "ipv4", "tcp"],
                   "inner_caplen": 74, "error": None, **tcp_truth(inner)})
    inner = tcp_frame(1, payload=1000)
    records.append(Record(erspan2(inner, seq=2, session=12), ts(1), snap=OUTER_ERSPAN2 + 20))
    frames.append({"encap": ["eth", "ipv4", "gre", "erspan2", "eth"], "inner_caplen": 20,
                   "src": None, "error": "truncated", "len": len(bytes(inner))})
    plain = tcp_frame(2, payload=1000)
    records.append(Record(plain, ts(2), snap=96))
    frames.append({"encap": ["eth", "ipv4", "tcp"], "erspan_type": None, "error": None,
                   **tcp_truth(plain, 2)})
    streams = [{"encap": "erspan2", "session": 12, "packets": 2,
                "bytes": sum(len(bytes(r.packet)) for r in records[:2])}]
    return Capture(write_pcap(directory / "truncated.pcap", records), frames, streams, records)


def erspan2_t_bit(directory: Path) -> Capture:
    """ERSPAN II with the T bit (the switch sliced the frame): frame 1 carries the whole
    mirrored frame, frame 2 a frame really sliced to 64 bytes (inner IPv4 total length says
    1040 bytes but only the headers travelled; the outer lengths are consistent)."""
    records, frames = [], []
    inner = tcp_frame(0)
    records.append(Record(erspan2(inner, seq=1, session=13, t=1), ts(0)))
    frames.append({"erspan_type": 2, "erspan_session": 13, "error": None,
                   "quirks": ["mirror_truncated"], **tcp_truth(inner)})
    full = tcp_frame(1, payload=1000)
    sliced = Raw(bytes(full)[:64])  # headers only, the IPv4 length still says 1040
    records.append(Record(erspan2(sliced, seq=2, session=13, t=1), ts(1)))
    frames.append({"erspan_type": 2, "erspan_session": 13, "error": None,
                   "quirks": ["mirror_truncated"],
                   **{k: v for k, v in tcp_truth(full, 1).items() if k != "len"}})
    return Capture(write_pcap(directory / "erspan2_t.pcap", records), frames, [], records)


def erspan3_without_seq(directory: Path) -> Capture:
    """Type III (GRE 0x22EB) sent without the GRE S bit."""
    records, frames = [], []
    for i in range(2):
        inner = tcp_frame(i)
        records.append(Record(erspan3(inner, seq=None, session=14), ts(i)))
        frames.append({"encap": ["eth", "ipv4", "gre", "erspan3", "eth", "ipv4", "tcp"],
                       "erspan_type": 3, "erspan_session": 14, "gre_seq": None,
                       "error": None, "quirks": ["erspan3_without_seq"],
                       **tcp_truth(inner, i)})
    streams = [{"encap": "erspan3", "session": 14, "packets": 2, "loss_measurable": False,
                "lost": None, "quirks": ["erspan3_without_seq"]}]
    return Capture(write_pcap(directory / "erspan3_noseq.pcap", records), frames, streams,
                   records)


def decap_mix(directory: Path) -> Capture:
    """For decapsulation: session 5 Ethernet frames (FT=0), a session 5 IP packet (FT=2)
    and a session 6 frame whose capture was cut short (caplen < wirelen)."""
    records, frames = [], []
    for i in range(2):
        inner = tcp_frame(i, payload=10 * i)
        records.append(Record(erspan3(inner, seq=i + 1, session=5), ts(i)))
        frames.append({"session": 5, "link": LINKTYPE_ETHERNET, "len": len(bytes(inner)),
                       "caplen": len(bytes(inner))})
    inner = tcp_ip(2, payload=30)
    records.append(Record(erspan3(inner, seq=3, session=5, ft=2), ts(2)))
    frames.append({"session": 5, "link": LINKTYPE_RAW, "len": len(bytes(inner)),
                   "caplen": len(bytes(inner))})
    inner = tcp_frame(3, payload=500)
    outer_len = 14 + 20 + 8 + 12
    records.append(Record(erspan3(inner, seq=1, session=6), ts(3), snap=outer_len + 60))
    frames.append({"session": 6, "link": LINKTYPE_ETHERNET, "len": len(bytes(inner)),
                   "caplen": 60})
    return Capture(write_pcap(directory / "decap_mix.pcap", records), frames, [], records)
