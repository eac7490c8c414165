"""``flowscope listen`` on real receive paths: a veth pair between two network namespaces,
mirror traffic replayed into it with tcpreplay, the collector in the other namespace.

* Every receive path (AF_PACKET ring on the interface; raw GRE socket; VXLAN and Geneve UDP
  sockets) writes pcapng that equals, frame for frame and byte for byte (data, original
  length, flags and the mirror-metadata comment), what the offline ``flowscope decap``
  writes for the same capture file.
* ``flowscope sessions`` on what listen wrote equals ``flowscope sessions`` on the offline
  decapsulation (everything but the times, which are the replay's).
* Kernel drops are counted: with a ring or a socket buffer too small to hold the replay and
  nobody reading, received + kernel drops = frames sent, and drops > 0.

The captures are encoded by scapy (tests/generated.py layers), addressed from the client
namespace to the collector's address and MAC so that the kernel's IP stack delivers them to
the sockets.  Needs root, iproute2, tcpreplay (tests skip and say why otherwise).
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import GRE, Ether
from scapy.layers.vxlan import VXLAN

from .generated import (
    GCP_CLASS,
    PROTO_ERSPAN_I_II,
    PROTO_ERSPAN_III,
    Record,
    platform_fields,
    tcp_frame,
    tcp_ip,
    ts,
    write_pcap,
)
from .netns import NetnsPair, _read_until, missing_requirements, netns_pair
from .tcp_cases import CASES, write_cases
from .test_live_listen_units import pcapng_packets

FLOWSCOPE = [sys.executable, "-m", "flowscope"]
PER_KIND = 40  # frames of each mirror kind in the mixed capture
READY_S = 60.0  # start-up (imports, compiled kernels) until "listening on"


def _missing() -> str | None:
    why = missing_requirements()
    if why is None and shutil.which("tcpreplay") is None:
        why = "needs tcpreplay (not found on PATH)"
    return why


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture(scope="module")
def pair():
    """The namespaces, with permanent neighbour entries: the collector's kernel answers some
    replayed packets (ICMP unreachable when no socket listens) and must not send ARP
    requests whose replies would arrive as extra frames on the captured interface."""
    with netns_pair() as p:
        for ns, ifname, peer_ip, peer_ns, peer_if in (
                (p.server_ns, p.server_if, p.client_ip, p.client_ns, p.client_if),
                (p.client_ns, p.client_if, p.server_ip, p.server_ns, p.server_if)):
            subprocess.run(["ip", "-n", ns, "neigh", "replace", peer_ip, "lladdr",
                            mac(peer_ns, peer_if), "dev", ifname, "nud", "permanent"],
                           check=True, capture_output=True)
        yield p


def mac(ns: str, ifname: str) -> str:
    out = subprocess.run(["ip", "-n", ns, "-j", "link", "show", "dev", ifname],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]["address"]


def server_mac(pair: NetnsPair) -> str:
    return mac(pair.server_ns, pair.server_if)


def mixed_capture(directory: Path, pair: NetnsPair) -> Path:
    """ERSPAN II (session 21), ERSPAN III (session 31, absolute hardware timestamps, both
    directions), VXLAN (VNI 5000) and Geneve (VNI 4242, Google Cloud option, an IP payload),
    interleaved, from the client's address to the collector's."""
    eth = Ether(dst=server_mac(pair), src="02:00:00:00:00:01")
    outer = eth / IP(src=pair.client_ip, dst=pair.server_ip)
    records = []
    for i in range(PER_KIND):
        inner = tcp_frame(i, payload=i)
        # Platform 0x3 carries the upper 32 bits: an absolute hardware time, the same
        # whatever the receive clock (a bare counter would be anchored to that clock).
        stamp, info1, info2 = platform_fields(3, ts(0) + 10**6 * i)
        records += [
            Record(outer / GRE(seqnum_present=1, sequence_number=i + 1, proto=PROTO_ERSPAN_I_II)
                   / ERSPAN_II(vlan=10, en=2, session_id=21, index=7) / inner, ts(4 * i)),
            Record(outer / GRE(seqnum_present=1, sequence_number=100 + i, proto=PROTO_ERSPAN_III)
                   / ERSPAN_III(vlan=20, session_id=31, timestamp=stamp, d=i % 2, gra=1, hw=5,
                                o=1)
                   / ERSPAN_PlatformSpecific(platf_id=3, info1=info1, info2=info2)
                   / inner, ts(4 * i + 1)),
            Record(outer / UDP(sport=50000 + i % 3, dport=4789) / VXLAN(vni=5000) / inner,
                   ts(4 * i + 2)),
            Record(outer / UDP(sport=33000, dport=6081)
                   / GENEVE(vni=4242, proto=0x0800, options=[GeneveOptions(
                       classid=GCP_CLASS, type=1, data=struct.pack("!I", 0xABC << 4 | i % 2))])
                   / tcp_ip(i, payload=3 * i, flags="PA"), ts(4 * i + 3)),
        ]
    return write_pcap(directory / "mixed.pcap", records)


def decap(capture: Path, out: Path) -> Path:
    subprocess.run(FLOWSCOPE + ["decap", str(capture), "-o", str(out)], check=True,
                   capture_output=True)
    return out


def listen(pair: NetnsPair, capture: Path, sent: int, out_dir: Path, *args: str,
           pace: tuple[str, ...] = ("--pps", "2000")) -> str:
    """Run ``flowscope listen ... -w out_dir --count sent`` in the collector namespace,
    replay ``capture`` from the client namespace (at ``pace``; () keeps the capture's own
    timing), wait for listen to stop by itself."""
    proc = subprocess.Popen(
        pair.exec(pair.server_ns, *FLOWSCOPE, "listen", *args, "-w", str(out_dir),
                  "--count", str(sent), "--duration", "60s"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        head = _read_until(proc, proc.stderr.fileno(), b"listening on", READY_S)
        subprocess.run(pair.exec(pair.client_ns, "tcpreplay", "-q", "-i", pair.client_if,
                                 *pace, str(capture)),
                       check=True, capture_output=True, timeout=120)
        _, rest = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    report = (head + rest).decode()
    assert proc.returncode == 0, report
    return report


def by_interface(packets: list[tuple[str, bytes, int, bytes]]) -> dict[str, list]:
    streams: dict[str, list] = defaultdict(list)
    for name, data, orig, options in packets:
        streams[name].append((data, orig, options))
    return dict(streams)


def test_interface_ring_writes_what_offline_decap_writes(pair, tmp_path):
    capture = mixed_capture(tmp_path, pair)
    report = listen(pair, capture, 4 * PER_KIND, tmp_path / "live", "--interface",
                    pair.server_if)
    files = sorted((tmp_path / "live").glob("*.pcapng"))
    assert len(files) == 1
    assert pcapng_packets(files[0]) == pcapng_packets(decap(capture, tmp_path / "off.pcapng"))
    assert f"received {4 * PER_KIND} frames" in report
    assert f"kernel drops 0; received + kernel drops = {4 * PER_KIND}" in report
    assert "erspan2 10.77.0.1>10.77.0.2 session 21: 40 pkts, lost 0" in report


def test_sockets_write_what_offline_decap_writes(pair, tmp_path):
    """Raw GRE and UDP sockets: the same frames per mirror stream, in the same order (the
    order across sockets is the order they were read in); VXLAN/Geneve outer headers are
    synthesised from the datagram's addresses, which name the streams as offline."""
    capture = mixed_capture(tmp_path, pair)
    report = listen(pair, capture, 4 * PER_KIND, tmp_path / "live", "--gre", "--vxlan", "4789",
                    "--geneve", "6081")
    files = sorted((tmp_path / "live").glob("*.pcapng"))
    live = by_interface([p for f in files for p in pcapng_packets(f)])
    offline = by_interface(pcapng_packets(decap(capture, tmp_path / "off.pcapng")))
    assert sorted(live) == sorted(offline) == [
        "erspan2 10.77.0.1>10.77.0.2 session 21", "erspan3 10.77.0.1>10.77.0.2 session 31",
        "geneve 10.77.0.1>10.77.0.2 vni 4242", "vxlan 10.77.0.1>10.77.0.2 vni 5000"]
    for name in offline:
        assert live[name] == offline[name], name
    assert f"kernel drops 0; received + kernel drops = {4 * PER_KIND}" in report


def test_sessions_of_what_listen_wrote_equal_the_offline_sessions(pair, tmp_path):
    """tests/tcp_cases.py (every Wireshark sequence-analysis case) replayed with its own
    timing — out-of-order versus retransmission depends on the gaps between packets — but
    for the keep-alive case, which would take 20 s."""
    _, erspan = write_cases(tmp_path, [c for c in CASES if c.name != "keep_alive"])
    sent = sum(1 for _ in _pcap_records(erspan))
    listen(pair, erspan, sent, tmp_path / "live", "--interface", pair.server_if, pace=())
    live_file = sorted((tmp_path / "live").glob("*.pcapng"))[0]
    offline_file = decap(erspan, tmp_path / "off.pcapng")

    def sessions(path: Path) -> list[dict]:
        out = subprocess.run(FLOWSCOPE + ["sessions", str(path), "--format", "jsonl"],
                             capture_output=True, text=True, check=True)
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        timeless = [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in rows]
        return sorted(timeless, key=lambda r: (r["orig_p"], r["history"]))

    live, offline = sessions(live_file), sessions(offline_file)
    assert len(offline) > 5
    assert live == offline


# Session keys that carry the capture clock (the replay's, not the original's) or measure
# gaps between packets to the replay's precision; everything else must match.
TIME_KEYS = {"ts", "duration", "rtt_ms", "ack_rtt_ms", "uid"}


def _pcap_records(path: Path):
    from scapy.utils import RawPcapReader

    with RawPcapReader(str(path)) as reader:
        yield from reader


# -- kernel drops ---------------------------------------------------------------------------

RING_DRAIN = textwrap.dedent("""
    import sys, threading
    from flowscope.live.afpacket import PacketRing
    ring = PacketRing(sys.argv[1], block_size=4096, block_count=2, timeout_ms=10)
    print("ready", flush=True)
    sys.stdin.readline()  # the sender is done; nobody read meanwhile: the ring overflowed
    stop = threading.Event()
    stop.set()  # read what the ring holds, then end
    received = sum(len(b) for b in ring.batches(stop))
    print(received, *ring.stats(), flush=True)
""")

SOCKET_DRAIN = textwrap.dedent("""
    import sys, threading
    from flowscope.live.sockets import Endpoint, SocketSource
    source = SocketSource([Endpoint("vxlan", 4789)], rcvbuf=4096)
    print("ready", flush=True)
    sys.stdin.readline()
    stop = threading.Event()
    stop.set()
    received = sum(len(b) for b in source.batches(stop))
    print(received, *source.stats(), flush=True)
""")


def _drain(pair: NetnsPair, program: str, capture: Path) -> tuple[int, int, int]:
    proc = subprocess.Popen(pair.exec(pair.server_ns, sys.executable, "-c", program,
                                      pair.server_if),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        subprocess.run(pair.exec(pair.client_ns, "tcpreplay", "-q", "-i", pair.client_if,
                                 "--pps", "5000", str(capture)),
                       check=True, capture_output=True, timeout=120)
        out, _ = proc.communicate("go\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    received, _, drops = (int(x) for x in out.split())
    return received, drops, proc.returncode


def vxlan_burst(directory: Path, pair: NetnsPair, n: int) -> Path:
    outer = Ether(dst=server_mac(pair)) / IP(src=pair.client_ip, dst=pair.server_ip)
    records = [Record(outer / UDP(sport=40000, dport=4789) / VXLAN(vni=9) / tcp_frame(i, 100),
                      ts(i)) for i in range(n)]
    return write_pcap(directory / "burst.pcap", records)


def test_ring_overflow_is_counted_as_kernel_drops(pair, tmp_path):
    sent = 600
    received, drops, rc = _drain(pair, RING_DRAIN, vxlan_burst(tmp_path, pair, sent))
    assert rc == 0
    assert drops > 0
    assert received + drops == sent


def test_socket_buffer_overflow_is_counted_as_kernel_drops(pair, tmp_path):
    sent = 600
    received, drops, rc = _drain(pair, SOCKET_DRAIN, vxlan_burst(tmp_path, pair, sent))
    assert rc == 0
    assert drops > 0
    assert received + drops == sent


# -- filter, sampling, slicing; upstream --------------------------------------------------------

def test_filter_sample_and_slice_keep_what_a_switch_would(pair, tmp_path):
    """``--filter 'erspan.session 21' --sample 2 --snaplen 64``: of session 21's frames the
    2nd, 4th ... (sampling counts what the filter passed), each cut to 64 bytes of the
    mirrored frame with its original length kept; what was hidden is written down."""
    capture = mixed_capture(tmp_path, pair)
    report = listen(pair, capture, 4 * PER_KIND, tmp_path / "live", "--interface",
                    pair.server_if, "--filter", "erspan.session 21", "--sample", "2",
                    "--snaplen", "64")
    files = sorted((tmp_path / "live").glob("*.pcapng"))
    offline = by_interface(pcapng_packets(decap(capture, tmp_path / "off.pcapng")))
    session21 = "erspan2 10.77.0.1>10.77.0.2 session 21"
    want = [(data[:64], orig, options) for data, orig, options in offline[session21][1::2]]
    assert by_interface(pcapng_packets(files[0])) == {session21: want}
    assert f"filtered out {3 * PER_KIND}, sampled out {PER_KIND // 2}, kept {PER_KIND // 2}" \
        in report
    assert b"collector kept filter: erspan.session 21; sample: 1-in-2; snaplen: 64" \
        in files[0].read_bytes()


def _http_json(pair: NetnsPair, url: str) -> dict:
    program = f"import urllib.request; print(urllib.request.urlopen({url!r}).read().decode())"
    out = subprocess.run(pair.exec(pair.server_ns, sys.executable, "-c", program),
                         capture_output=True, text=True, check=True, timeout=30)
    return json.loads(out.stdout)


def test_upstream_stream_reaches_the_analysis_server(pair, tmp_path):
    """listen --upstream to ``flowscope serve`` on the collector's loopback: the server holds
    every frame, the collector's counters and the four mirror streams."""
    serve = subprocess.Popen(
        pair.exec(pair.server_ns, *FLOWSCOPE, "serve", "--grpc", "127.0.0.1:50551", "--http",
                  "127.0.0.1:58080", "--store", str(tmp_path / "store")),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert serve.stderr is not None
    try:
        _read_until(serve, serve.stderr.fileno(), b"gRPC receiver on", READY_S)
        capture = mixed_capture(tmp_path, pair)
        report = listen(pair, capture, 4 * PER_KIND, tmp_path / "live", "--interface",
                        pair.server_if, "--upstream", "127.0.0.1:50551", "--collector-id",
                        "collector-c", "--spool", str(tmp_path / "spool"))
        assert "backlog 0 batches" in report
        collectors = _http_json(pair, "http://127.0.0.1:58080/api/collectors")["collectors"]
        mirrors = _http_json(pair, "http://127.0.0.1:58080/api/mirrors")["mirrors"]
    finally:
        serve.terminate()
        serve.communicate(timeout=30)
    (ours,) = [c for c in collectors if c["collector_id"] == "collector-c"]
    assert (ours["frames"], ours["received"], ours["kernel_drops"]) == (160, 160, 0)
    assert sorted((m["encap"], m["packets"]) for m in mirrors) == [
        ("erspan2", PER_KIND), ("erspan3", PER_KIND), ("geneve", PER_KIND),
        ("vxlan", PER_KIND)]


def test_sigterm_stops_cleanly_after_reading_what_the_kernel_holds(pair, tmp_path):
    """No --count: SIGTERM ends listen; what the sockets still hold is read first, the
    pcapng file is complete and the summary accounts for every frame."""
    capture = mixed_capture(tmp_path, pair)
    proc = subprocess.Popen(
        pair.exec(pair.server_ns, *FLOWSCOPE, "listen", "-w", str(tmp_path / "live")),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        head = _read_until(proc, proc.stderr.fileno(), b"listening on", READY_S)
        subprocess.run(pair.exec(pair.client_ns, "tcpreplay", "-q", "-i", pair.client_if,
                                 "--topspeed", str(capture)),
                       check=True, capture_output=True, timeout=120)
        proc.terminate()
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    report = (head + rest).decode()
    assert proc.returncode == 0, report
    assert "listening on gre (IP protocol 47), vxlan udp/4789, geneve udp/6081" in report
    assert f"received + kernel drops = {4 * PER_KIND}" in report
    files = sorted((tmp_path / "live").glob("*.pcapng"))
    assert sum(len(pcapng_packets(f)) for f in files) == 4 * PER_KIND


RING_SNAPLEN = textwrap.dedent("""
    import sys, threading
    from flowscope.live.afpacket import PacketRing
    ring = PacketRing(sys.argv[1], snaplen=64, block_size=1 << 16, block_count=4,
                      timeout_ms=10)
    print("ready", flush=True)
    sys.stdin.readline()
    stop = threading.Event()
    stop.set()
    batches = list(ring.batches(stop))
    print(sum(len(b) for b in batches), *ring.stats(), flush=True)
    for b in batches:
        for i in range(len(b)):
            print(b.caplen[i], b.wirelen[i], b.frame_bytes(i).hex(), file=sys.stderr)
""")


def test_ring_snaplen_keeps_the_first_bytes_and_the_wire_length(pair, tmp_path):
    """``PacketRing(snaplen=64)`` (a one-instruction BPF program, as tcpdump -s): every
    frame's first 64 bytes, its wire length kept."""
    capture = vxlan_burst(tmp_path, pair, 20)
    sent = _packets(capture)
    proc = subprocess.Popen(pair.exec(pair.server_ns, sys.executable, "-c", RING_SNAPLEN,
                                      pair.server_if),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        subprocess.run(pair.exec(pair.client_ns, "tcpreplay", "-q", "-i", pair.client_if,
                                 str(capture)), check=True, capture_output=True, timeout=120)
        out, err = proc.communicate("go\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.split() == ["20", "20", "0"]
    got = [line.split() for line in err.splitlines()]
    assert got == [["64", str(len(frame)), frame[:64].hex()] for frame in sent]


def _packets(path: Path) -> list[bytes]:
    return [data for data, _ in _pcap_records(path)]
