"""The mirror's encapsulation, read back by three decoders that share no code with it.

Frames are built with scapy, wrapped by flowscope.encap, given an outer Ethernet/IPv4 (and
UDP for VXLAN) header by scapy as the kernel would, and written to a pcap.  Then tshark
(field values), scapy's ERSPAN/VXLAN layers (header fields and the frame bytes) and
flowscope's own decoder and mirror accounting (inner bytes, session, direction, GRE
sequence without gaps, the restored Type III timestamp) must all read back exactly what
went in.  Hypothesis varies the frames, their lengths and the slicing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6
from scapy.layers.l2 import GRE, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from flowscope.batch import PacketBatch
from flowscope.decode.codes import (
    L_ERSPAN2,
    L_ERSPAN3,
    L_ETH,
    L_GRE,
    L_IPV4,
    L_UDP,
    L_VXLAN,
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_RAW,
)
from flowscope.encap import ERSPAN2, ERSPAN3, Encapsulator, MirrorSession, TunnelBatch
from flowscope.encap import VXLAN as VXLAN_KIND
from flowscope.errors import FlowscopeError
from flowscope.live.mirror_source import directions, own_tunnel_frames
from flowscope.pipeline import PacketRun

from .generated import Record, write_pcap
from .tshark import fields, needs_tshark

MIRROR, COLLECTOR = "192.0.2.1", "192.0.2.100"
MAC_HOST, MAC_PEER = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
T0 = 1_700_000_000_123_456_789  # capture time of the first frame, ns
ARRIVAL_DELAY = 1_000_000  # the collector captures 1 ms later: restored times must differ


def batch_of(frames: list[bytes], wirelen: list[int] | None = None,
             ts_ns: list[int] | None = None, linktype: int = LINKTYPE_ETHERNET) -> PacketBatch:
    """A PacketBatch holding ``frames`` back to back (what a capture ring yields)."""
    n = len(frames)
    offset = np.zeros(n, np.int64)
    if n > 1:
        offset[1:] = np.cumsum([len(f) for f in frames[:-1]])
    caplen = np.array([len(f) for f in frames], np.int32)
    return PacketBatch(np.frombuffer(b"".join(frames), np.uint8).copy(), offset, caplen,
                       np.array(wirelen if wirelen is not None else caplen, np.int32),
                       np.array(ts_ns or [T0 + i * 1000 for i in range(n)], np.int64),
                       np.full(n, linktype, np.int32), np.arange(1, n + 1, dtype=np.int64))


def on_the_wire(tunnel: TunnelBatch, kind: str) -> list[bytes]:
    """Each tunnel payload with the outer headers the kernel would add (scapy builds them)."""
    eth = Ether(src=MAC_HOST, dst=MAC_PEER)
    out = []
    for i in range(len(tunnel)):
        payload = Raw(tunnel.payload(i))
        if kind == VXLAN_KIND:
            pkt = eth / IP(src=MIRROR, dst=COLLECTOR) / UDP(sport=50000, dport=4789) / payload
        else:
            pkt = eth / IP(src=MIRROR, dst=COLLECTOR, proto=47) / payload
        out.append(bytes(pkt))
    return out


def write(path: Path, packets: list[bytes], ts_ns: list[int]) -> Path:
    return write_pcap(path, [Record(Raw(p), t + ARRIVAL_DELAY)
                             for p, t in zip(packets, ts_ns, strict=True)])


def sample_frames() -> list[bytes]:
    """Mirrored traffic: TCP both ways, a tagged UDP datagram, IPv6, a runt ARP-sized frame."""
    a, b = "10.1.0.1", "10.1.0.2"
    return [
        bytes(Ether(src=MAC_HOST, dst=MAC_PEER) / IP(src=a, dst=b)
              / TCP(sport=40000, dport=80, flags="S", seq=7)),
        bytes(Ether(src=MAC_PEER, dst=MAC_HOST) / IP(src=b, dst=a)
              / TCP(sport=80, dport=40000, flags="SA", seq=99, ack=8)),
        bytes(Ether(src=MAC_HOST, dst=MAC_PEER) / Dot1Q(vlan=300, prio=5)
              / IP(src=a, dst=b) / UDP(sport=5000, dport=53) / Raw(b"q" * 100)),
        bytes(Ether(src=MAC_PEER, dst=MAC_HOST) / IPv6(src="2001:db8::2", dst="2001:db8::1")
              / UDP(sport=53, dport=5000) / Raw(b"r" * 1400)),
        bytes(Ether(src=MAC_HOST, dst="ff:ff:ff:ff:ff:ff", type=0x0806) / Raw(b"\0" * 28)),
    ]


def encapsulated(tmp_path: Path, kind: str, session: int, *, snaplen: int = 0,
                 first_seq: int = 0) -> tuple[list[bytes], PacketBatch, Path, np.ndarray]:
    frames = sample_frames()
    wire = [len(f) for f in frames]
    cut = [f[:snaplen] if snaplen else f for f in frames]
    batch = batch_of(cut, wire)
    d = directions(batch, bytes.fromhex(MAC_HOST.replace(":", "")))
    enc = Encapsulator(MirrorSession(kind, session, port_index=7), first_seq=first_seq)
    tunnel = enc.encapsulate(batch, d)
    path = write(tmp_path / f"{kind}.pcap", on_the_wire(tunnel, kind), batch.ts_ns.tolist())
    return frames, batch, path, d


# -- tshark ---------------------------------------------------------------------------------

@needs_tshark
def test_tshark_reads_erspan2(tmp_path: Path) -> None:
    frames, batch, path, _ = encapsulated(tmp_path, ERSPAN2, 42)
    rows = fields(str(path), ["erspan.version", "erspan.spanid", "gre.sequence_number",
                              "erspan.vlan", "erspan.cos", "erspan.encap", "erspan.truncated",
                              "erspan.index", "gre.proto"])
    assert [r["erspan.version"] for r in rows] == [["1"]] * 5
    assert [r["erspan.spanid"] for r in rows] == [["42"]] * 5
    assert [r["gre.sequence_number"] for r in rows] == [[str(i)] for i in range(5)]
    assert [r["gre.proto"] for r in rows] == [["0x88be"]] * 5
    # the tagged frame: VLAN 300, COS 5, En=3 (tag kept in the frame); the others untagged
    assert [r["erspan.vlan"] for r in rows] == [["0"], ["0"], ["300"], ["0"], ["0"]]
    assert [r["erspan.cos"] for r in rows] == [["0"], ["0"], ["5"], ["0"], ["0"]]
    assert [r["erspan.encap"] for r in rows] == [["0"], ["0"], ["3"], ["0"], ["0"]]
    assert [r["erspan.truncated"] for r in rows] == [["0"]] * 5
    assert [r["erspan.index"] for r in rows] == [["7"]] * 5


@needs_tshark
def test_tshark_reads_erspan3(tmp_path: Path) -> None:
    frames, batch, path, d = encapsulated(tmp_path, ERSPAN3, 1023, snaplen=64)
    rows = fields(str(path), ["erspan.version", "erspan.spanid", "gre.sequence_number",
                              "erspan.direction", "erspan.timestamp", "erspan.gra",
                              "erspan.o", "erspan.platid", "erspan.pid5.timestamp",
                              "erspan.pid5.port_index", "erspan.truncated", "erspan.ft",
                              "gre.proto"])
    ts = batch.ts_ns.tolist()
    assert [r["erspan.version"] for r in rows] == [["2"]] * 5
    assert [r["erspan.spanid"] for r in rows] == [["1023"]] * 5
    assert [r["gre.proto"] for r in rows] == [["0x22eb"]] * 5
    assert [r["gre.sequence_number"] for r in rows] == [[str(i)] for i in range(5)]
    # frames sent from MAC_HOST are egress (D=1): frames 0, 2 and 4
    assert [r["erspan.direction"] for r in rows] == [["1"], ["0"], ["1"], ["0"], ["1"]]
    assert d.tolist() == [2, 1, 2, 1, 2]
    assert [r["erspan.timestamp"] for r in rows] == [[str(t % 10**9)] for t in ts]
    assert [r["erspan.pid5.timestamp"] for r in rows] == [[str(t // 10**9)] for t in ts]
    assert [r["erspan.gra"] for r in rows] == [["2"]] * 5
    assert [r["erspan.o"] for r in rows] == [["1"]] * 5
    assert [r["erspan.platid"] for r in rows] == [["5"]] * 5
    assert [r["erspan.pid5.port_index"] for r in rows] == [["7"]] * 5
    assert [r["erspan.ft"] for r in rows] == [["0"]] * 5
    # sliced to 64 bytes: T set exactly where the frame was longer
    assert [r["erspan.truncated"] for r in rows] == [
        ["1" if len(f) > 64 else "0"] for f in frames]


@needs_tshark
def test_tshark_reads_vxlan(tmp_path: Path) -> None:
    _, _, path, _ = encapsulated(tmp_path, VXLAN_KIND, 5569041)
    rows = fields(str(path), ["vxlan.vni", "vxlan.flag_i", "udp.dstport", "eth.src"])
    assert [r["vxlan.vni"] for r in rows] == [["5569041"]] * 5
    assert [r["vxlan.flag_i"] for r in rows] == [["1"]] * 5
    # the inner frame follows: its Ethernet source is tshark's second eth.src
    assert [r["eth.src"][1] for r in rows] == [MAC_HOST, MAC_PEER, MAC_HOST, MAC_PEER,
                                               MAC_HOST]


# -- scapy ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", [ERSPAN2, ERSPAN3, VXLAN_KIND])
def test_scapy_reads_headers_and_frames(tmp_path: Path, kind: str) -> None:
    frames = sample_frames()
    batch = batch_of(frames)
    tunnel = Encapsulator(MirrorSession(kind, 99, port_index=7),
                          first_seq=1000).encapsulate(batch, directions(batch, None))
    for i, wire in enumerate(on_the_wire(tunnel, kind)):
        pkt = Ether(wire)
        if kind == VXLAN_KIND:
            assert pkt[VXLAN].vni == 99 and pkt[VXLAN].flags == 0x08
            inner = bytes(pkt[VXLAN].payload)
        elif kind == ERSPAN2:
            assert pkt[GRE].seqnum_present == 1 and pkt[GRE].sequence_number == 1000 + i
            h = pkt[ERSPAN_II]
            assert (h.ver, h.session_id, h.index, h.t) == (1, 99, 7, 0)
            inner = bytes(h.payload)
        else:
            assert pkt[GRE].sequence_number == 1000 + i
            h = pkt[ERSPAN_III]
            assert (h.ver, h.session_id, h.gra, h.o, h.d, h.ft) == (2, 99, 2, 1, 0, 0)
            assert h.timestamp == int(batch.ts_ns[i]) % 10**9
            sub = ERSPAN_PlatformSpecific(bytes(h.payload)[:8])
            assert sub.platf_id == 5
            assert sub.info2 == int(batch.ts_ns[i]) // 10**9
            inner = bytes(h.payload)[8:]
        assert inner == frames[i]


# -- flowscope's decoder --------------------------------------------------------------------

def decoded(path: Path) -> tuple[list[bytes], np.ndarray, PacketRun]:
    run = PacketRun([str(path)])
    inner, rows = [], []
    for batch, r in run.batches():
        for k in range(len(batch)):
            o, n = int(r["inner_off"][k]), int(r["inner_caplen"][k])
            inner.append(batch.buf[o : o + n].tobytes())
        rows.append(r.copy())
    return inner, np.concatenate(rows), run


@pytest.mark.parametrize("kind", [ERSPAN2, ERSPAN3])
def test_flowscope_recovers_erspan(tmp_path: Path, kind: str) -> None:
    frames, batch, path, d = encapsulated(tmp_path, kind, 77)
    inner, rows, run = decoded(path)
    assert inner == frames
    assert rows["error"].tolist() == [0] * 5
    assert rows["erspan_type"].tolist() == [2 if kind == ERSPAN2 else 3] * 5
    assert rows["erspan_session"].tolist() == [77] * 5
    assert rows["gre_seq"].tolist() == [0, 1, 2, 3, 4]
    assert rows["mirror_gaps"].tolist() == [0] * 5
    state = run.mirrors.state[0]
    assert (state["packets"], state["lost"], state["duplicates"]) == (5, 0, 0)
    if kind == ERSPAN3:
        assert rows["direction"].tolist() == d.tolist()
        # restored to the ns from the headers, not the (1 ms later) capture clock
        assert rows["orig_ts"].tolist() == batch.ts_ns.tolist()
        assert rows["erspan_platform"].tolist() == [5] * 5
    else:
        assert rows["erspan_index"].tolist() == [7] * 5
        assert rows["erspan_en"].tolist() == [0, 0, 3, 0, 0]
        assert rows["vlan"].tolist() == [0, 0, 300, 0, 0]
        assert rows["quirks"].tolist() == [0] * 5


def test_flowscope_recovers_vxlan(tmp_path: Path) -> None:
    frames, _, path, _ = encapsulated(tmp_path, VXLAN_KIND, 4096)
    inner, rows, _ = decoded(path)
    assert inner == frames
    assert rows["vni"].tolist() == [4096] * 5
    assert rows["error"].tolist() == [0] * 5


def test_sequence_wraps_without_a_gap(tmp_path: Path) -> None:
    frames, _, path, _ = encapsulated(tmp_path, ERSPAN2, 3, first_seq=2**32 - 2)
    _, rows, run = decoded(path)
    assert rows["gre_seq"].tolist() == [2**32 - 2, 2**32 - 1, 0, 1, 2]
    assert rows["mirror_gaps"].tolist() == [0] * 5
    assert run.mirrors.state[0]["lost"] == 0 and run.mirrors.state[0]["seq_resets"] == 0


def test_sequence_continues_across_batches() -> None:
    enc = Encapsulator(MirrorSession(ERSPAN2, 1))
    first = enc.encapsulate(batch_of(sample_frames()[:2])).seq.tolist()
    second = enc.encapsulate(batch_of(sample_frames()[:3])).seq.tolist()
    assert first + second == [0, 1, 2, 3, 4]
    assert enc.next_seq == 5 and enc.frames == 5


def test_raw_ip_frames_go_as_erspan3_ft2(tmp_path: Path) -> None:
    packets = [bytes(IP(src="10.9.0.1", dst="10.9.0.2") / UDP(sport=1, dport=2) / Raw(b"x"))]
    batch = batch_of(packets, linktype=LINKTYPE_RAW)
    tunnel = Encapsulator(MirrorSession(ERSPAN3, 5)).encapsulate(batch)
    path = write(tmp_path / "ft2.pcap", on_the_wire(tunnel, ERSPAN3), batch.ts_ns.tolist())
    inner, rows, _ = decoded(path)
    assert inner == packets
    assert rows["erspan_ft"].tolist() == [2]
    assert rows["inner_link"].tolist() == [LINKTYPE_RAW]
    assert rows["dport"].tolist() == [2]


@pytest.mark.parametrize("kind", [ERSPAN2, VXLAN_KIND])
def test_frames_without_ethernet_are_counted_not_sent(kind: str) -> None:
    enc = Encapsulator(MirrorSession(kind, 5))
    batch = batch_of([b"\x45" + b"\0" * 39, b"\0" * 44], linktype=LINKTYPE_RAW)
    batch = PacketBatch(batch.buf, batch.offset, batch.caplen, batch.wirelen, batch.ts_ns,
                        np.array([LINKTYPE_RAW, LINKTYPE_LINUX_SLL], np.int32), batch.frame)
    assert len(enc.encapsulate(batch)) == 0
    assert enc.unsupported == 2


def test_out_of_range_settings_are_refused() -> None:
    with pytest.raises(FlowscopeError, match="session id 1024 is out of range"):
        MirrorSession(ERSPAN2, 1024)
    with pytest.raises(FlowscopeError, match="VXLAN VNI 16777216"):
        MirrorSession(VXLAN_KIND, 1 << 24)
    with pytest.raises(FlowscopeError, match="unknown mirror encapsulation"):
        MirrorSession("erspan9", 1)


# -- properties -----------------------------------------------------------------------------

frame_st = st.tuples(st.binary(min_size=14, max_size=1600), st.integers(0, 200))


@settings(max_examples=60, deadline=None)
@given(items=st.lists(frame_st, min_size=1, max_size=12), kind=st.sampled_from(
    [ERSPAN2, ERSPAN3, VXLAN_KIND]), session=st.integers(0, 1023),
    snaplen=st.sampled_from([0, 14, 60, 128, 1514]), first_seq=st.integers(0, 2**32 - 1))
def test_any_frame_round_trips(tmp_path_factory: pytest.TempPathFactory,
                               items: list[tuple[bytes, int]], kind: str, session: int,
                               snaplen: int, first_seq: int) -> None:
    """Random bytes, random lengths and slicing: the copy carries exactly the captured
    bytes, T says whether they were cut, and the sequence numbers count up from first_seq."""
    frames = [f for f, _ in items]
    cut = [f[:snaplen] if snaplen else f for f in frames]
    wire = [len(f) + extra for f, extra in items]  # the wire had more than the ring kept
    ts = [T0 + k * 7919 for k in range(len(frames))]
    batch = batch_of(cut, wire, ts)
    tunnel = Encapsulator(MirrorSession(kind, session), first_seq=first_seq).encapsulate(batch)
    path = write(tmp_path_factory.mktemp("prop") / "p.pcap", on_the_wire(tunnel, kind), ts)
    inner, rows, _ = decoded(path)
    assert inner == cut
    # the tunnel layers decode cleanly; the random inner frame may be garbage after them
    tunnel_layers = {ERSPAN2: [L_ETH, L_IPV4, L_GRE, L_ERSPAN2],
                     ERSPAN3: [L_ETH, L_IPV4, L_GRE, L_ERSPAN3],
                     VXLAN_KIND: [L_ETH, L_IPV4, L_UDP, L_VXLAN]}[kind]
    assert all(r["encap"][:4].tolist() == tunnel_layers for r in rows)
    if kind == VXLAN_KIND:
        assert rows["vni"].tolist() == [session] * len(frames)
        return
    assert rows["erspan_session"].tolist() == [session] * len(frames)
    assert rows["gre_seq"].tolist() == [(first_seq + k) % 2**32 for k in range(len(frames))]
    assert rows["erspan_t"].tolist() == [int(len(c) < w) for c, w in zip(cut, wire,
                                                                          strict=True)]
    if kind == ERSPAN3:
        assert rows["orig_ts"].tolist() == ts


# -- our own tunnel traffic and direction ---------------------------------------------------

def test_own_tunnel_packets_are_recognised() -> None:
    to = COLLECTOR
    gre = GRE(proto=0x88BE, seqnum_present=1)
    frames = [
        bytes(Ether() / IP(src=MIRROR, dst=to) / gre / Raw(b"x" * 30)),  # ours
        bytes(Ether() / Dot1Q(vlan=5) / IP(src=MIRROR, dst=to) / gre / Raw(b"x")),  # ours
        bytes(Ether() / IP(src=MIRROR, dst="192.0.2.101") / gre / Raw(b"x")),  # elsewhere
        bytes(Ether() / IP(src=MIRROR, dst=to) / TCP(dport=179)),  # BGP to the collector
        bytes(Ether() / IP(src=MIRROR, dst=to) / UDP(dport=4789) / Raw(b"v" * 8)),  # VXLAN
        bytes(Ether() / IPv6(dst="2001:db8::64", nh=47) / Raw(b"x" * 8)),
        # the collector's kernel answering a copy: protocol unreachable, quoting it
        bytes(Ether() / IP(src=to, dst=MIRROR) / ICMP(type=3, code=2)
              / IP(src=MIRROR, dst=to, proto=47) / Raw(b"g" * 8)),
        # an ICMP error about something else, and an echo request to the collector
        bytes(Ether() / IP(src=to, dst=MIRROR) / ICMP(type=3, code=3)
              / IP(src=MIRROR, dst="192.0.2.7", proto=17) / Raw(b"u" * 8)),
        bytes(Ether() / IP(src=MIRROR, dst=to) / ICMP(type=8) / Raw(b"p" * 8)),
        bytes(Ether() / IPv6(src="2001:db8::64", dst="2001:db8::1") / ICMPv6DestUnreach()
              / IPv6(dst="2001:db8::64", nh=47) / Raw(b"x" * 8)),
    ]
    batch = batch_of(frames)

    def own(addr: str, ipver: int, proto: int) -> list[bool]:
        import socket

        fam = socket.AF_INET if ipver == 4 else socket.AF_INET6
        packed = np.frombuffer(socket.inet_pton(fam, addr).ljust(16, b"\0"), np.uint8)
        out = np.empty(len(batch), np.bool_)
        own_tunnel_frames(batch.buf, batch.offset, batch.caplen, batch.linktype, packed,
                          ipver, proto, 4789, out)
        return out.tolist()

    assert own(to, 4, 47) == [True, True, False, False, False, False, True, False, False,
                              False]
    assert own(to, 4, 17) == [False, False, False, False, True] + [False] * 5
    assert own("2001:db8::64", 6, 47) == [False] * 5 + [True] + [False] * 3 + [True]


def test_direction_comes_from_the_source_address() -> None:
    mac = bytes.fromhex("02000000000a")
    frames = [bytes(Ether(src=MAC_HOST) / IP()), bytes(Ether(src=MAC_PEER) / IP()), b"\0" * 10]
    assert directions(batch_of(frames), mac).tolist() == [2, 1, 1]
    assert directions(batch_of(frames), None).tolist() == [1, 1, 1]
