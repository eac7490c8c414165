"""The mirror's sending side on real sockets: captured batches in, datagrams out of a raw GRE
socket or a UDP socket (sendmmsg), received on loopback by plain sockets of the test's own
and decoded by flowscope's decoder.  Send errors are provoked for real (a VXLAN datagram
larger than UDP allows) and must be counted, not raised.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import GRE, Ether
from scapy.packet import Raw

from flowscope.encap import ERSPAN2, ERSPAN3, VXLAN
from flowscope.errors import FlowscopeError
from flowscope.live.mirror_source import Mirror, MirrorConfig
from flowscope.live.tunnel_sender import TunnelSender
from flowscope.sources import Problems, read_captures

from .generated import Record, write_pcap
from .test_mirror_encap import MAC_HOST, MAC_PEER, T0, batch_of, decoded, write

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="raw GRE sockets need root (CAP_NET_RAW)")


def collector_address() -> str:
    """A loopback address of this test alone (127.0.0.0/8 all reaches lo), so GRE other
    tests send on this host is told apart by destination."""
    return f"127.{random.randrange(64, 250)}.{random.randrange(1, 250)}.{random.randrange(2, 250)}"


def gre_receiver() -> socket.socket:
    rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)  # room for a whole test
    rx.settimeout(5)
    return rx


def receive_gre(sock: socket.socket, dst: str, n: int) -> list[bytes]:
    """The next ``n`` GRE payloads sent to ``dst`` (the raw socket gets IP header + GRE)."""
    out = []
    while len(out) < n:
        data = sock.recv(65535)
        ihl = (data[0] & 0x0F) * 4
        if socket.inet_ntoa(data[16:20]) == dst:
            out.append(data[ihl:])
    return out


def tcp_capture(path: Path, count: int) -> tuple[Path, list[bytes]]:
    frames = [Record(Ether(src=MAC_HOST if i % 2 == 0 else MAC_PEER, dst=MAC_PEER)
                     / IP(src="10.2.0.1", dst="10.2.0.2")
                     / TCP(sport=41000 + i, dport=443, flags="S"), T0 + i * 1000)
              for i in range(count)]
    return write_pcap(path, frames), [bytes(r.packet) for r in frames]


@needs_root
@pytest.mark.parametrize("kind", [ERSPAN2, ERSPAN3])
def test_erspan_from_a_capture_reaches_a_raw_socket(tmp_path: Path, kind: str) -> None:
    to = collector_address()
    source, originals = tcp_capture(tmp_path / "in.pcap", 300)
    rx = gre_receiver()
    with rx, TunnelSender(to, kind) as sender:
        mirror = Mirror(MirrorConfig("lo", to, kind, session=12), sender,
                        own_mac=bytes.fromhex(MAC_HOST.replace(":", "")))
        stats = mirror.run(read_captures([str(source)], Problems()), threading.Event())
        got = receive_gre(rx, to, 300)
    assert (stats.packets, stats.sent, stats.send_errors, stats.own) == (300, 300, 0, 0)
    assert stats.sent_bytes == sum(len(g) for g in got)
    # what arrived decodes to the frames of the capture, in order, without gaps
    wire = [bytes(Ether() / IP(src="127.0.0.1", dst=to, proto=47) / Raw(g)) for g in got]
    inner, rows, run = decoded(write(tmp_path / "got.pcap", wire, [T0] * 300))
    assert inner == originals
    assert rows["gre_seq"].tolist() == list(range(300))
    assert rows["erspan_session"].tolist() == [12] * 300
    assert run.mirrors.state[0]["lost"] == 0
    if kind == ERSPAN3:
        assert rows["direction"].tolist() == [2, 1] * 150
        assert rows["orig_ts"].tolist() == [T0 + i * 1000 for i in range(300)]


@needs_root
def test_own_tunnel_packets_are_not_mirrored(tmp_path: Path) -> None:
    to = collector_address()
    ours = Ether() / IP(src="127.0.0.1", dst=to) / GRE(proto=0x88BE, seqnum_present=1) / Raw(
        b"\0" * 8)
    other = Ether() / IP(src="10.2.0.1", dst="10.2.0.2") / TCP()
    batch = batch_of([bytes(ours), bytes(other), bytes(ours)])
    rx = gre_receiver()
    with rx, TunnelSender(to, ERSPAN2) as sender:
        mirror = Mirror(MirrorConfig("lo", to, ERSPAN2), sender)
        mirror.process(batch)
        got = receive_gre(rx, to, 1)
    assert (mirror.stats.own, mirror.stats.sent) == (2, 1)
    assert got[0][16:] == bytes(other)


def test_vxlan_send_errors_are_counted_and_sending_goes_on() -> None:
    to = collector_address()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((to, 0))
    rx.settimeout(5)
    port = rx.getsockname()[1]
    small = bytes(Ether() / IP() / UDP() / Raw(b"s" * 10))
    huge = small + b"h" * 70_000  # over the 65507 bytes a UDP datagram can carry
    with rx, TunnelSender(to, VXLAN, port=port) as sender:
        mirror = Mirror(MirrorConfig("lo", to, VXLAN, session=9, port=port), sender)
        mirror.process(batch_of([small, huge, small]))
        got = [rx.recv(65535) for _ in range(2)]
    assert mirror.stats.sent == 2
    assert mirror.stats.errors == {"EMSGSIZE": 1}
    assert mirror.stats.send_errors == 1
    assert got == [bytes.fromhex("0800000000000900") + small] * 2


def test_count_stops_after_n_copies() -> None:
    to = collector_address()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((to, 0))
    port = rx.getsockname()[1]
    frame = bytes(Ether() / IP() / UDP())
    stop = threading.Event()
    with rx, TunnelSender(to, VXLAN, port=port) as sender:
        mirror = Mirror(MirrorConfig("lo", to, VXLAN, port=port, count=5), sender)
        stats = mirror.run((batch_of([frame] * 3) for _ in range(10)), stop)
    assert stop.is_set()
    assert (stats.packets, stats.sent) == (6, 5)


def test_unresolvable_collector_is_a_clear_error() -> None:
    with pytest.raises(FlowscopeError, match="cannot resolve collector 'no-such-host.invalid'"):
        TunnelSender("no-such-host.invalid", VXLAN)


def test_sample_without_n_is_refused() -> None:
    with pytest.raises(FlowscopeError, match="--sample 0"):
        Mirror(MirrorConfig("lo", "127.0.0.1", VXLAN, sample=0), None)


def test_large_batches_go_out_in_sendmmsg_chunks() -> None:
    """More datagrams than one sendmmsg call takes (UIO_MAXIOV = 1024)."""
    to = collector_address()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((to, 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rx.settimeout(5)
    port = rx.getsockname()[1]
    frames = [bytes(Ether() / IP() / UDP(sport=i % 65536)) for i in range(2500)]
    with rx, TunnelSender(to, VXLAN, port=port) as sender:
        mirror = Mirror(MirrorConfig("lo", to, VXLAN, port=port), sender)
        mirror.process(batch_of(frames))
        got = [rx.recv(2048) for _ in range(2500)]
    assert mirror.stats.sent == 2500
    assert [g[8:] for g in got] == frames
    assert np.all(np.array([len(g) for g in got]) == len(frames[0]) + 8)


@needs_root
def test_filter_sample_and_snaplen_shape_the_copies(tmp_path: Path) -> None:
    """--filter tcp --sample 2 --snaplen 40: every other TCP frame, cut to 40 bytes, T set,
    its direction kept through the filter."""
    to = collector_address()
    tcp = [bytes(Ether(src=MAC_HOST, dst=MAC_PEER) / IP(src="10.2.0.1", dst="10.2.0.2")
                 / TCP(sport=42000 + i, dport=443) / Raw(b"t" * 100)) for i in range(8)]
    udp = [bytes(Ether(src=MAC_PEER, dst=MAC_HOST) / IP(src="10.2.0.2", dst="10.2.0.1")
                 / UDP(sport=53, dport=5353)) for _ in range(8)]
    frames = [f for pair in zip(tcp, udp, strict=True) for f in pair]
    rx = gre_receiver()
    with rx, TunnelSender(to, ERSPAN3) as sender:
        mirror = Mirror(MirrorConfig("lo", to, ERSPAN3, filter="tcp", sample=2, snaplen=40),
                        sender, own_mac=bytes.fromhex(MAC_HOST.replace(":", "")))
        mirror.process(batch_of(frames))
        got = receive_gre(rx, to, 4)
    assert (mirror.stats.packets, mirror.stats.filtered, mirror.stats.sent) == (16, 12, 4)
    wire = [bytes(Ether() / IP(src="127.0.0.1", dst=to, proto=47) / Raw(g)) for g in got]
    inner, rows, _ = decoded(write(tmp_path / "got.pcap", wire, [T0] * 4))
    assert len(inner) == 4 and all(f[:40] in tcp_prefixes(tcp) for f in inner)
    assert [len(f) for f in inner] == [40] * 4
    assert rows["erspan_t"].tolist() == [1] * 4
    assert rows["direction"].tolist() == [2] * 4
    assert rows["gre_seq"].tolist() == [0, 1, 2, 3]


def tcp_prefixes(frames: list[bytes]) -> set[bytes]:
    return {f[:40] for f in frames}


def flowscope(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowscope", *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_refuses_bad_settings_with_a_message() -> None:
    out = flowscope("mirror", "-i", "lo", "--to", "127.0.0.1", "--session", "5000")
    assert out.returncode == 1
    assert "ERSPAN session id 5000 is out of range (0-1023)" in out.stderr
    assert "Traceback" not in out.stderr
    out = flowscope("mirror", "-i", "lo", "--to", "127.0.0.1", "--filter", "tcp port")
    assert out.returncode == 1 and "filter:" in out.stderr and "Traceback" not in out.stderr
    out = flowscope("mirror", "-i", "no-such-if0", "--to", "127.0.0.1")
    assert out.returncode == 1 and "no interface 'no-such-if0'" in out.stderr


@needs_root
def test_cli_mirrors_loopback_for_a_duration() -> None:
    """`flowscope mirror -i lo --type vxlan --duration 2s`: stops by itself, and the UDP
    datagrams it captured on lo are its own copies' only source — it must skip them."""
    to = collector_address()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((to, 0))
    port = rx.getsockname()[1]
    with rx:
        out = flowscope("mirror", "-i", "lo", "--to", to, "--type", "vxlan", "--port",
                        str(port), "--session", "77", "--duration", "2s")
    assert out.returncode == 0, out.stderr
    assert f"mirroring lo to {to} as VXLAN VNI 77" in out.stderr
    assert "send errors" in out.stderr and "kernel drops" in out.stderr
