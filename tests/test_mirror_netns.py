"""`flowscope mirror` on a real interface while the kernel runs real TCP.

Two namespaces joined by a veth (tests/netns.py): the client's end is mirrored by
``flowscope mirror --interface <client veth> --to <collector>`` running in the client
namespace; the collector is a second address of the server's end, so the ERSPAN copies
leave through the very interface being mirrored, and the mirror must leave its own packets
out.  tcpdump in the server namespace writes the ERSPAN it receives to one file and the
plain traffic to another.  Then:

* ``flowscope sessions`` of the ERSPAN capture shows the connection with the conn_state
  the kernel's exchange earned (SF: a graceful close both ways);
* the mirrored frames are byte for byte the frames tcpdump saw on the wire, none missing,
  none duplicated, no copy of a copy; GRE sequence numbers run 0, 1, 2... without a gap;
* Type III says which frames the client sent (egress) and received (ingress), and carries
  the client's capture time to the ns.

The links get MTU 9000 while the routes between client and server keep 1500, so TCP sends
1500-byte frames and their ERSPAN copies (+ 36 bytes) fit unfragmented, as a mirror
network with jumbo frames would carry them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from flowscope.pipeline import PacketRun

from .netns import (
    NetnsPair,
    NetnsUnavailable,
    _client_server,
    _read_until,
    _run,
    _stop,
    missing_requirements,
    netns_pair,
    read_frames,
)

COLLECTOR_IP = "10.77.0.3"
CLIENT_PORT, SERVER_PORT = 40001, 8001
READY_S = 30.0  # first start compiles the numba kernels when the cache is cold

pytestmark = pytest.mark.skipif(missing_requirements() is not None,
                                reason=missing_requirements() or "")


@contextmanager
def tcpdump(pair: NetnsPair, path: Path, expr: str) -> Iterator[None]:
    proc = subprocess.Popen(
        pair.exec(pair.server_ns, "tcpdump", "-i", pair.server_if, "-w", str(path), "-U",
                  "-n", "--immediate-mode", "--time-stamp-precision", "nano", "-Z", "root",
                  expr),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        _read_until(proc, proc.stderr.fileno(), b"listening on", 10)
        yield
        time.sleep(0.3)  # the last copies are in flight
    finally:
        _, err = _stop(proc, signal.SIGINT)
    assert b"\n0 packets dropped by kernel" in err, err


@contextmanager
def mirror(pair: NetnsPair, mirror_type: str) -> Iterator[list[str]]:
    """``flowscope mirror`` in the client namespace; yields, on exit, its stderr lines."""
    lines: list[str] = []
    proc = subprocess.Popen(
        pair.exec(pair.client_ns, sys.executable, "-m", "flowscope", "mirror", "--interface",
                  pair.client_if, "--to", COLLECTOR_IP, "--type", mirror_type,
                  "--session", "21"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        _read_until(proc, proc.stderr.fileno(), b"Ctrl-C stops", READY_S)
        yield lines
        time.sleep(0.3)
    finally:
        # a cold Numba cache compiles the ring and encapsulation kernels at the first frame
        _, err = _stop(proc, signal.SIGINT, READY_S)
    lines.extend(err.decode().splitlines())
    assert proc.returncode == 0, err.decode()


@contextmanager
def gre_sink(pair: NetnsPair) -> Iterator[None]:
    """What a collector does first: a raw GRE socket, so the collector's kernel takes the
    copies instead of answering each with ICMP protocol-unreachable."""
    code = ("import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47); "
            "print('ready', flush=True); time.sleep(120)")
    proc = subprocess.Popen(pair.exec(pair.server_ns, sys.executable, "-I", "-c", code),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        _read_until(proc, proc.stdout.fileno(), b"ready", 10)
        yield
    finally:
        _stop(proc)


def jumbo_links(pair: NetnsPair) -> None:
    for ns, ifname, peer in ((pair.client_ns, pair.client_if, pair.server_ip),
                             (pair.server_ns, pair.server_if, pair.client_ip)):
        _run(["ip", "-n", ns, "link", "set", ifname, "mtu", "9000"])
        _run(["ip", "-n", ns, "route", "replace", f"{peer}/32", "dev", ifname, "mtu", "1500"])
    _run(["ip", "-n", pair.server_ns, "addr", "add", f"{COLLECTOR_IP}/24", "dev",
          pair.server_if])


@contextmanager
def jumbo_pair() -> Iterator[NetnsPair]:
    """The client/server namespaces with jumbo links and the collector address (or a skip)."""
    try:
        ctx = netns_pair()
        pair = ctx.__enter__()
    except NetnsUnavailable as exc:
        pytest.skip(f"cannot create network namespaces here: {exc}")
    try:
        jumbo_links(pair)
        yield pair
    finally:
        ctx.__exit__(None, None, None)


def connection_frames(frames: list[bytes]) -> list[bytes]:
    """The frames of the test connection (either direction)."""
    ports = {CLIENT_PORT, SERVER_PORT}
    out = []
    for data in frames:
        pkt = Ether(data)
        if TCP in pkt and {pkt[TCP].sport, pkt[TCP].dport} == ports:
            out.append(data)
    return out


@pytest.mark.parametrize("mirror_type", ["2", "3"])
def test_mirror_of_real_tcp(tmp_path: Path, mirror_type: str) -> None:
    erspan_path, wire_path = tmp_path / "erspan.pcap", tmp_path / "wire.pcap"
    with jumbo_pair() as pair, gre_sink(pair), \
            tcpdump(pair, erspan_path, f"ip proto 47 and dst host {COLLECTOR_IP}"), \
            tcpdump(pair, wire_path, "not ip proto 47"), \
            mirror(pair, mirror_type) as report:
        _client_server(pair, "sf", CLIENT_PORT, SERVER_PORT)

    # the connection as the collector's flowscope sees it
    out = subprocess.run([sys.executable, "-m", "flowscope", "sessions", str(erspan_path),
                          "--format", "jsonl"], capture_output=True, text=True, check=True)
    sessions = [json.loads(line) for line in out.stdout.splitlines()]
    conn = [s for s in sessions if s.get("sport") == CLIENT_PORT
            or s.get("orig_port") == CLIENT_PORT or s.get("orig_p") == CLIENT_PORT]
    assert len(conn) == 1, sessions
    assert conn[0]["conn_state"] == "SF"

    # the copies are exactly the frames on the wire: nothing lost, doubled or re-mirrored
    run = PacketRun([str(erspan_path)])
    inner, directions, orig_ts, seqs, tunnels, captured = [], [], [], [], [], []
    for batch, rows in run.batches():
        for k in range(len(batch)):
            o, n = int(rows["inner_off"][k]), int(rows["inner_caplen"][k])
            inner.append(batch.buf[o : o + n].tobytes())
        directions += rows["direction"].tolist()
        orig_ts += rows["orig_ts"].tolist()
        seqs += rows["gre_seq"].tolist()
        tunnels += rows["tunnels"].tolist()
        captured += rows["ts_ns"].tolist()
    assert set(tunnels) == {1}  # no ERSPAN inside ERSPAN: our own packets were left out
    assert seqs == list(range(len(seqs)))
    assert run.mirrors.state[0]["lost"] == 0
    wire = connection_frames([data for data, _ in read_frames(wire_path)])
    mirrored = connection_frames(inner)
    assert len(wire) >= 10  # handshake, 4000 + 3000 bytes of data, FINs
    assert Counter(mirrored) == Counter(wire)
    assert any("0 send errors" in line for line in report), report

    if mirror_type == "3":
        for data, d, t, c in zip(inner, directions, orig_ts, captured, strict=True):
            if data in mirrored:
                sent_by_client = Ether(data)[IP].src == pair.client_ip
                assert d == (2 if sent_by_client else 1)
                assert 0 < c - t < 10**9  # the client's tap time, before the collector's


def inject(pair: NetnsPair, ns: str, ifname: str, frame: bytes) -> None:
    """Send one raw Ethernet frame out of ``ifname`` in namespace ``ns`` (AF_PACKET)."""
    code = ("import socket, sys; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); "
            f"s.bind(({ifname!r}, 0)); s.send(bytes.fromhex(sys.argv[1]))")
    _run(pair.exec(ns, sys.executable, "-I", "-c", code, frame.hex()))


def test_type3_direction_is_what_the_kernel_says(tmp_path: Path) -> None:
    """The D bit comes from the capture ring's sll_pkttype, not from MAC addresses: a frame
    the client sends with someone else's source address (as a bridge forwards) is egress, a
    frame it receives carrying the client's own address (spoofed) is ingress."""
    erspan_path = tmp_path / "erspan.pcap"
    with jumbo_pair() as pair:
        client_mac = Path(f"/sys/class/net/{pair.client_if}/address")
        mac = subprocess.run(pair.exec(pair.client_ns, "cat", str(client_mac)),
                             capture_output=True, text=True, check=True).stdout.strip()

        def udp(src_mac: str, src: str, dst: str, marker: bytes) -> bytes:
            return bytes(Ether(src=src_mac, dst="ff:ff:ff:ff:ff:ff") / IP(src=src, dst=dst)
                         / UDP(sport=5555, dport=5555) / marker)

        forwarded_out = udp("02:00:00:00:00:99", "10.9.9.9", pair.server_ip, b"sent-foreign")
        spoofed_in = udp(mac, pair.server_ip, pair.client_ip, b"received-own-mac")
        with gre_sink(pair), \
                tcpdump(pair, erspan_path, f"ip proto 47 and dst host {COLLECTOR_IP}"), \
                mirror(pair, "3"):
            inject(pair, pair.client_ns, pair.client_if, forwarded_out)
            inject(pair, pair.server_ns, pair.server_if, spoofed_in)
            # both copies captured (tcpdump -U writes each packet as it comes): on a loaded
            # machine with a cold Numba cache the mirror compiles its kernels first
            deadline = time.monotonic() + READY_S
            while time.monotonic() < deadline and not all(
                    m in erspan_path.read_bytes() for m in (b"sent-foreign", b"received-own-mac")):
                time.sleep(0.1)

    seen = {}
    for batch, rows in PacketRun([str(erspan_path)]).batches():
        for k in range(len(batch)):
            o, n = int(rows["inner_off"][k]), int(rows["inner_caplen"][k])
            seen[batch.buf[o : o + n].tobytes()] = int(rows["direction"][k])
    assert seen.get(forwarded_out) == 2  # egress
    assert seen.get(spoofed_in) == 1  # ingress
