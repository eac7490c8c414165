"""Idle connections leave the live table with Zeek's timeouts, so memory follows the live
connections, not the length of the capture."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from flowscope.analyse.sessions import SessionTracker
from flowscope.pipeline import decode_files

from .generated import Record, write_pcap

T0 = 1_700_000_000_000_000_000
SECOND = 1_000_000_000


def tcp(sport: int, flags: str, seq: int, ack: int, reply: bool = False) -> Ether:
    ip = IP(src="10.8.0.2", dst="10.8.0.1") if reply else IP(src="10.8.0.1", dst="10.8.0.2")
    ports = dict(sport=80, dport=sport) if reply else dict(sport=sport, dport=80)
    return Ether() / ip / TCP(flags=flags, seq=seq, ack=ack, **ports)


def udp(sport: int) -> Ether:
    return Ether() / IP(src="10.8.0.1", dst="10.8.0.3") / UDP(sport=sport, dport=53) / b"q"


def live_after(path: Path) -> tuple[int, list[int]]:
    """Feed the capture one frame per batch; live connections at the end, and the client
    ports of the connections flushed before the input ended."""
    rows = decode_files([str(path)])
    tracker = SessionTracker()
    for i in range(rows.shape[0]):
        tracker.update(rows[i: i + 1])
    flushed = [int(p) for c in tracker.drain_conns() for p in c["port"][:, 0]]
    return tracker.conns.n, flushed


def test_closed_connection_flushed_after_close_delay(tmp_path: Path) -> None:
    frames = [(0, tcp(1001, "S", 10, 0)), (1, tcp(1001, "SA", 50, 11, True)),
              (2, tcp(1001, "A", 11, 51)), (3, tcp(1001, "FA", 11, 51)),
              (4, tcp(1001, "FA", 51, 12, True)), (5, tcp(1001, "A", 12, 52)),
              (6 * SECOND, tcp(1002, "S", 90, 0)),  # 6 s later: past tcp_close_delay (5 s)
              (6 * SECOND + 1, udp(3000))]
    path = write_pcap(tmp_path / "close.pcap", [Record(f, T0 + t) for t, f in frames])
    live, flushed = live_after(path)
    assert flushed == [1001] and live == 2


def test_udp_flushed_after_inactivity_timeout_tcp_kept(tmp_path: Path) -> None:
    frames = [(0, udp(3001)), (0, tcp(1003, "S", 10, 0)), (1, tcp(1003, "SA", 50, 11, True)),
              (2, tcp(1003, "A", 11, 51)),
              (61 * SECOND, udp(3002))]  # udp_inactivity_timeout 1 min; TCP gets 5 min
    path = write_pcap(tmp_path / "udp.pcap", [Record(f, T0 + t) for t, f in frames])
    live, flushed = live_after(path)
    assert flushed == [3001] and live == 2


def test_unanswered_syn_gets_the_handshake_timeout(tmp_path: Path) -> None:
    frames = [(0, tcp(1004, "S", 10, 0)), (61 * SECOND, udp(3003))]
    path = write_pcap(tmp_path / "syn.pcap", [Record(f, T0 + t) for t, f in frames])
    live, flushed = live_after(path)
    assert flushed == [1004] and live == 1
