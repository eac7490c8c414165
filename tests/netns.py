"""Real kernel TCP between two network namespaces, captured with tcpdump, wrapped in ERSPAN.

The session tests need connections whose ending was decided by a real TCP stack, not by a
hand-written packet list: a graceful close (SF), a refused connection (REJ), an unanswered
attempt (S0) and an abort by either side (RSTR, RSTO).  This module builds them:

* :func:`netns_pair` makes two namespaces (client and server) joined by a veth pair;
* :func:`capture` runs tcpdump on the server's end of the veth around a scenario;
* the scenarios run small socket programs (:func:`_peer`) inside the namespaces through
  ``ip netns exec``; the expected Zeek ``conn_state`` of each is known by construction;
* :func:`wrap_erspan` turns every captured Ethernet frame into an ERSPAN Type II or III
  copy (tests/generated.py's scapy builders), keeping the capture timestamps to the ns;
* :func:`netns_scenarios_fixture` is the module-scoped pytest fixture
  (``netns_scenarios``) that runs all five once.

Per-direction packet counts come from the raw capture (scapy), never from flowscope.

Needs root, iproute2 (``ip``), ``nft`` and ``tcpdump``; :func:`missing_requirements` names
what is missing so tests can skip with a reason.  Checksum and segmentation offloads are
turned off on the veth (the ``ethtool -K`` ioctls, issued directly) so the capture holds
what a wire would: MTU-sized segments with correct checksums, not 64 KB GSO packets with
partial checksums that Zeek would discard.  IPv6 is disabled in both namespaces to keep
link-local chatter (MLD, router solicitations) out of the captures; ARP stays.
"""

from __future__ import annotations

import array
import fcntl
import inspect
import itertools
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import RawPcapReader

from .generated import LINKTYPE_ETHERNET, MASK32, Record, erspan2, erspan3, write_pcap

REQUIRED_TOOLS = ("ip", "nft", "tcpdump")
CLIENT_IP, SERVER_IP = "10.77.0.1", "10.77.0.2"
PREFIX_LEN = 24
ERSPAN2_SESSION, ERSPAN3_SESSION = 21, 31

TCPDUMP_READY_S = 10.0  # how long tcpdump may take to print "listening on"
SETTLE_S = 0.3  # after a scenario, before stopping tcpdump: let the last frames land
PEER_TIMEOUT_S = 15.0  # a peer process that runs longer than this is a failed scenario


class NetnsUnavailable(RuntimeError):
    """The namespaces or the veth could not be created (no privilege, no netns support)."""


def missing_requirements() -> str | None:
    """Why the namespace scenarios cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth, nftables and tcpdump)"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} (not found on PATH)"
    return None


needs_netns = pytest.mark.skipif(missing_requirements() is not None,
                                 reason=missing_requirements() or "")


def _run(argv: list[str], *, input_text: str | None = None) -> None:
    """Run a setup command; fail with its stderr in the message."""
    proc = subprocess.run(argv, input=input_text, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")


# -- namespaces -----------------------------------------------------------------------------

@dataclass(frozen=True)
class NetnsPair:
    """Two namespaces joined by one veth pair: client ``CLIENT_IP``, server ``SERVER_IP``."""

    client_ns: str
    server_ns: str
    client_if: str
    server_if: str
    client_ip: str = CLIENT_IP
    server_ip: str = SERVER_IP

    def exec(self, ns: str, *argv: str) -> list[str]:
        """The command line running ``argv`` inside namespace ``ns``."""
        return ["ip", "netns", "exec", ns, *argv]


# ethtool legacy "set" commands (linux/ethtool.h), each taking a struct ethtool_value.
_SIOCETHTOOL = 0x8946
_ETHTOOL_OFFLOADS_OFF = {
    0x17: "tx checksumming",  # ETHTOOL_STXCSUM
    0x19: "scatter-gather",  # ETHTOOL_SSG
    0x1F: "TCP segmentation offload",  # ETHTOOL_STSO
    0x24: "generic segmentation offload",  # ETHTOOL_SGSO
    0x2B: "generic receive offload",  # ETHTOOL_SGRO
}


def disable_offloads(ifname: str) -> None:
    """``ethtool -K ifname tx off sg off tso off gso off gro off`` without ethtool.

    Must run in the namespace that holds ``ifname`` (here: the caller's, before the veth
    ends are moved); the features stay off when the interface changes namespace.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for cmd, what in _ETHTOOL_OFFLOADS_OFF.items():
            value = array.array("I", [cmd, 0])  # struct ethtool_value {u32 cmd; u32 data;}
            ifreq = struct.pack("16sP", ifname.encode(), value.buffer_info()[0])
            try:
                fcntl.ioctl(sock, _SIOCETHTOOL, ifreq)
            except OSError as exc:
                raise RuntimeError(f"cannot turn off {what} on {ifname}: {exc}") from exc


_instances = itertools.count()


@contextmanager
def netns_pair() -> Iterator[NetnsPair]:
    """Create the client and server namespaces and their veth; always tear them down.

    Names carry the pid and a per-process counter, so concurrent runs do not collide.  The
    veth is created in the caller's namespace (offloads turned off there), then each end is
    moved into its namespace, addressed and brought up.  Deleting a namespace deletes the
    veth end inside it (and with it the peer); a veth never moved is deleted explicitly.
    """
    n = next(_instances)
    pid = os.getpid()
    pair = NetnsPair(client_ns=f"fs-cli-{pid}-{n}", server_ns=f"fs-srv-{pid}-{n}",
                     client_if=f"fsc{pid}x{n}", server_if=f"fss{pid}x{n}")
    created: list[str] = []
    try:
        try:
            for ns in (pair.client_ns, pair.server_ns):
                _run(["ip", "netns", "add", ns])
                created.append(ns)
            _run(["ip", "link", "add", pair.client_if, "type", "veth",
                  "peer", "name", pair.server_if])
        except RuntimeError as exc:
            raise NetnsUnavailable(str(exc)) from exc
        disable_offloads(pair.client_if)
        disable_offloads(pair.server_if)
        for ns, ifname, ip in ((pair.client_ns, pair.client_if, pair.client_ip),
                               (pair.server_ns, pair.server_if, pair.server_ip)):
            _disable_ipv6(pair, ns)
            _run(["ip", "link", "set", ifname, "netns", ns])
            _run(["ip", "-n", ns, "addr", "add", f"{ip}/{PREFIX_LEN}", "dev", ifname])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", ns, "link", "set", ifname, "up"])
        yield pair
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        for ifname in (pair.client_if, pair.server_if):  # left behind if setup failed early
            if Path("/sys/class/net", ifname).exists():
                subprocess.run(["ip", "link", "del", ifname], capture_output=True,
                               check=False)


def _disable_ipv6(pair: NetnsPair, ns: str) -> None:
    """Best effort: no IPv6 on interfaces that later join ``ns`` (fewer stray frames)."""
    if shutil.which("sysctl") is None:
        return
    subprocess.run(pair.exec(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                             "net.ipv6.conf.default.disable_ipv6=1"),
                   capture_output=True, check=False)


# -- processes ------------------------------------------------------------------------------

def _read_until(proc: subprocess.Popen[bytes], fd: int, token: bytes, timeout: float) -> bytes:
    """Read ``fd`` (a pipe from ``proc``) until ``token`` appears; fail on timeout or exit."""
    seen = b""
    deadline = time.monotonic() + timeout
    while token not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"timed out waiting for {token!r}; got {seen!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                proc.wait(timeout=5)
                raise RuntimeError(f"exited ({proc.returncode}) before {token!r}: {seen!r}")
            seen += chunk
    return seen


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
          timeout: float = 5) -> tuple[bytes, bytes]:
    """Signal ``proc`` (if still running) and collect its output; kill it if it lingers."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def capture(pair: NetnsPair, path: Path, scenario: Callable[[], None]) -> Path:
    """Capture the server's veth end to ``path`` (pcap, ns timestamps) while ``scenario`` runs.

    tcpdump runs in the server namespace (``ip netns exec`` execs it, so the pid we signal
    is tcpdump's).  We wait for "listening on" (the capture socket is bound from then on),
    run the scenario, give the last frames ``SETTLE_S`` to arrive and stop tcpdump with
    SIGINT, which flushes the file.  ``--immediate-mode`` matters: without it libpcap's
    TPACKET_V3 ring hands frames over only when a block fills or its 1 s timeout expires,
    and frames still in the ring at SIGINT are lost (tcpdump's "captured" count, which we
    check against "received by filter", shows it).  ``-Z root`` keeps tcpdump from dropping
    to a user that could not write into pytest's private temporary directory.  AF_PACKET taps the
    frame before netfilter's input hook, so SYNs that nftables drops are still captured.
    """
    proc = subprocess.Popen(
        pair.exec(pair.server_ns, "tcpdump", "-i", pair.server_if, "-w", str(path), "-U", "-n",
                  "--immediate-mode", "--time-stamp-precision", "nano", "-Z", "root"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        _read_until(proc, proc.stderr.fileno(), b"listening on", TCPDUMP_READY_S)
        scenario()
        time.sleep(SETTLE_S)
    finally:
        _, err = _stop(proc, signal.SIGINT)
    report = err.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"tcpdump exited with {proc.returncode}: {report}")
    counts = {what: int(n) for n, what in
              re.findall(r"(\d+) packets? (captured|received by filter|dropped by kernel)",
                         report)}
    if (len(counts) != 3 or counts["dropped by kernel"] != 0
            or counts["captured"] != counts["received by filter"]):
        raise RuntimeError(f"tcpdump may have lost frames: {report}")
    return path


# -- the peers: run inside the namespaces ---------------------------------------------------

def _peer(argv: list[str]) -> None:
    """One end of a scenario.  Runs inside a namespace as ``python -c <this source> ...``,
    so it must use only the standard library and import what it needs itself.

    ``server MODE HOST PORT``: listen, print "ready", accept one connection and play MODE.
    ``client MODE SRC_HOST SRC_PORT DST_HOST DST_PORT``: connect from a fixed port and
    play MODE.  Each side checks that the kernel did what the scenario expects (refused,
    timed out, reset...) and exits non-zero otherwise.  Sleeps order the two sides so the
    packet sequence is the same on every run.
    """
    import socket
    import struct
    import time

    request, response = 4000, 3000  # bytes: a few segments each way
    pause = 0.5  # s: more than the longest delayed ACK (200 ms): the peer has ACKed all
    connect_timeout = 1.5  # s: the S0 client sees its SYN retransmitted once (RTO 1 s)

    def recv_exactly(sock: socket.socket, n: int) -> None:
        while n > 0:
            chunk = sock.recv(min(n, 65536))
            if not chunk:
                raise RuntimeError(f"peer closed with {n} bytes still expected")
            n -= len(chunk)

    def expect_eof(sock: socket.socket) -> None:
        if sock.recv(1) != b"":
            raise RuntimeError("expected the peer's FIN, got data")

    def expect_reset(sock: socket.socket) -> None:
        try:
            data = sock.recv(1)
        except ConnectionResetError:
            return
        raise RuntimeError(f"expected a RST, got {data!r}")

    def abort(sock: socket.socket) -> None:
        """close() with SO_LINGER on and a zero timeout: the kernel sends RST, not FIN."""
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    role, mode = argv[0], argv[1]
    if role == "server":
        host, port = argv[2], int(argv[3])
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(1)
            print("ready", flush=True)
            conn, _ = listener.accept()
        conn.settimeout(10)
        if mode == "sf":  # answer, then close only after the client's FIN
            recv_exactly(conn, request)
            conn.sendall(b"s" * response)
            expect_eof(conn)
            conn.close()
        elif mode == "rstr":  # read the request, let it be ACKed, then abort
            recv_exactly(conn, request)
            time.sleep(pause)
            abort(conn)
        elif mode == "rsto":  # read until the client's RST; send nothing of our own
            recv_exactly(conn, request)
            expect_reset(conn)
            conn.close()
        else:
            raise ValueError(mode)
        return

    if role != "client":
        raise ValueError(role)
    src, dst = (argv[2], int(argv[3])), (argv[4], int(argv[5]))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(src)
    sock.settimeout(connect_timeout if mode == "s0" else 10)
    if mode == "rej":  # nothing listens: the kernel answers the SYN with RST/ACK
        try:
            sock.connect(dst)
        except ConnectionRefusedError:
            sock.close()
            return
        raise RuntimeError("connection was not refused")
    if mode == "s0":  # SYNs are dropped: give up after connect_timeout, sending nothing
        try:
            sock.connect(dst)
        except TimeoutError:
            sock.close()  # in SYN-SENT: no FIN, no RST
            return
        raise RuntimeError("connection attempt was not left unanswered")
    sock.connect(dst)
    sock.sendall(b"c" * request)
    if mode == "sf":  # read the answer, FIN, wait for the server's FIN, close
        recv_exactly(sock, response)
        sock.shutdown(socket.SHUT_WR)
        expect_eof(sock)
        sock.close()
    elif mode == "rstr":  # wait in recv (sending nothing) until the server's RST
        expect_reset(sock)
        sock.close()
    elif mode == "rsto":  # let the request be ACKed, then abort
        time.sleep(pause)
        abort(sock)
    else:
        raise ValueError(mode)


_PEER_SOURCE = (textwrap.dedent(inspect.getsource(_peer))
                + "\n\nimport sys\n\n_peer(sys.argv[1:])\n")


def _peer_argv(pair: NetnsPair, ns: str, *args: str) -> list[str]:
    # The venv's interpreter, isolated (-I): only the stdlib is needed and startup is quick.
    return pair.exec(ns, sys.executable, "-I", "-c", _PEER_SOURCE, *args)


def _run_client(pair: NetnsPair, mode: str, sport: int, dport: int) -> None:
    proc = subprocess.run(_peer_argv(pair, pair.client_ns, "client", mode, pair.client_ip,
                                     str(sport), pair.server_ip, str(dport)),
                          capture_output=True, text=True, timeout=PEER_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"client ({mode}) failed: {proc.stderr.strip()}")


def _client_server(pair: NetnsPair, mode: str, sport: int, dport: int) -> None:
    """Start the server, wait until it listens, run the client, wait for the server."""
    server = subprocess.Popen(_peer_argv(pair, pair.server_ns, "server", mode, pair.server_ip,
                                         str(dport)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert server.stdout is not None
    try:
        _read_until(server, server.stdout.fileno(), b"ready", PEER_TIMEOUT_S)
        _run_client(pair, mode, sport, dport)
        server.wait(timeout=PEER_TIMEOUT_S)
    finally:
        _, err = _stop(server)
    if server.returncode != 0:
        raise RuntimeError(f"server ({mode}) failed: {err.decode(errors='replace').strip()}")


@contextmanager
def _drop_syns(pair: NetnsPair, port: int) -> Iterator[None]:
    """nftables in the server namespace: drop incoming TCP to ``port`` (input hook)."""
    table = f"fs_drop_{port}"
    _run(pair.exec(pair.server_ns, "nft", "-f", "-"), input_text=textwrap.dedent(f"""\
        table inet {table} {{
            chain input {{
                type filter hook input priority filter; policy accept;
                tcp dport {port} drop
            }}
        }}
        """))
    try:
        yield
    finally:
        subprocess.run(pair.exec(pair.server_ns, "nft", "delete", "table", "inet", table),
                       capture_output=True, check=False)


# -- scenarios ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """How to produce one Zeek conn_state, and what the session row must then say."""

    conn_state: str
    client_port: int
    server_port: int
    reset_by: str | None  # "orig", "resp" or None


PLANS = {
    plan.conn_state: plan for plan in (
        Plan("SF", 40001, 8001, None),  # graceful FIN both ways
        Plan("REJ", 40002, 8002, "resp"),  # closed port: RST/ACK to the SYN
        Plan("S0", 40003, 8003, None),  # SYNs dropped by nftables, never answered
        Plan("RSTR", 40004, 8004, "resp"),  # established, the server aborts
        Plan("RSTO", 40005, 8005, "orig"),  # established, the client aborts
    )
}


def _play(pair: NetnsPair, plan: Plan) -> None:
    mode = plan.conn_state.lower()
    if mode == "rej":
        _run_client(pair, mode, plan.client_port, plan.server_port)
    elif mode == "s0":
        with _drop_syns(pair, plan.server_port):
            _run_client(pair, mode, plan.client_port, plan.server_port)
    else:
        _client_server(pair, mode, plan.client_port, plan.server_port)


@dataclass(frozen=True)
class Scenario:
    """One captured connection and the session row flowscope must report for it."""

    conn_state: str
    reset_by: str | None
    orig: tuple[str, int]  # (address, port) of the client
    resp: tuple[str, int]  # (address, port) of the server
    raw: Path  # tcpdump's capture (plain Ethernet)
    erspan2: Path  # the same frames, each in ERSPAN Type II
    erspan3: Path  # the same frames, each in ERSPAN Type III
    exchange: list[tuple[str, str]]  # ("orig" | "resp", TCP flags) per segment, in order

    @property
    def orig_pkts(self) -> int:
        return sum(1 for side, _ in self.exchange if side == "orig")

    @property
    def resp_pkts(self) -> int:
        return sum(1 for side, _ in self.exchange if side == "resp")


def read_frames(path: Path) -> list[tuple[bytes, int]]:
    """Every frame of an Ethernet pcap with its capture time in ns (exact, no float)."""
    frames = []
    with RawPcapReader(str(path)) as reader:
        if reader.linktype != LINKTYPE_ETHERNET:
            raise ValueError(f"{path}: link type {reader.linktype}, expected Ethernet")
        scale = 1 if reader.nano else 1000  # the "usec" field holds ns in a nano pcap
        for data, meta in reader:
            frames.append((data, meta.sec * 10**9 + meta.usec * scale))
    return frames


def tcp_exchange(path: Path, orig: tuple[str, int],
                 resp: tuple[str, int]) -> list[tuple[str, str]]:
    """The segments of connection orig<->resp in a capture: (direction, scapy TCP flags)."""
    exchange = []
    for data, _ in read_frames(path):
        pkt = Ether(data)
        if IP not in pkt or TCP not in pkt:
            continue
        ends = ((pkt[IP].src, pkt[TCP].sport), (pkt[IP].dst, pkt[TCP].dport))
        if ends == (orig, resp):
            exchange.append(("orig", str(pkt[TCP].flags)))
        elif ends == (resp, orig):
            exchange.append(("resp", str(pkt[TCP].flags)))
    return exchange


def wrap_erspan(raw: Path, out: Path, erspan_type: int, session: int) -> Path:
    """Every frame of ``raw`` as an ERSPAN ``erspan_type`` (2 or 3) copy, to ``out``.

    Outer Ethernet/IPv4 from the mirror (192.0.2.1) to the collector (192.0.2.100), GRE with
    sequence numbers 1, 2, 3... (one per frame, so no loss), the frame bytes unchanged and
    the capture time kept to the ns.  Type III carries the capture time in its timestamp
    field too, at the default granularity (100 us units, low 32 bits).
    """
    records = []
    for seq, (data, ts_ns) in enumerate(read_frames(raw), start=1):
        inner = Raw(data)
        if erspan_type == 2:
            pkt = erspan2(inner, seq=seq, session=session)
        elif erspan_type == 3:
            pkt = erspan3(inner, seq=seq, session=session,
                          timestamp=(ts_ns // 100_000) & MASK32)
        else:
            raise ValueError(f"ERSPAN type {erspan_type}")
        records.append(Record(pkt, ts_ns))
    return write_pcap(out, records)


def run_scenario(pair: NetnsPair, plan: Plan, directory: Path) -> Scenario:
    """Play ``plan`` between the namespaces, capture it, check it, wrap it in ERSPAN."""
    name = plan.conn_state
    raw = capture(pair, directory / f"{name}.raw.pcap", lambda: _play(pair, plan))
    orig, resp = (pair.client_ip, plan.client_port), (pair.server_ip, plan.server_port)
    exchange = tcp_exchange(raw, orig, resp)
    if not exchange or exchange[0] != ("orig", "S"):
        raise RuntimeError(f"{name}: the capture does not start with the client's SYN: "
                           f"{exchange}")
    return Scenario(conn_state=name, reset_by=plan.reset_by, orig=orig, resp=resp, raw=raw,
                    erspan2=wrap_erspan(raw, directory / f"{name}.erspan2.pcap", 2,
                                        ERSPAN2_SESSION),
                    erspan3=wrap_erspan(raw, directory / f"{name}.erspan3.pcap", 3,
                                        ERSPAN3_SESSION),
                    exchange=exchange)


def run_scenarios(directory: Path) -> dict[str, Scenario]:
    """All five scenarios in one namespace pair (a few seconds), keyed by conn_state."""
    with netns_pair() as pair:
        return {name: run_scenario(pair, plan, directory) for name, plan in PLANS.items()}


@pytest.fixture(scope="module", name="netns_scenarios")
def netns_scenarios_fixture(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scenario]:
    """Fixture ``netns_scenarios``: the five scenarios, captured once per test module that
    imports this function; skips where they cannot run.  (Registered under a name other than
    the function's so a test's ``netns_scenarios`` argument does not shadow the import.)"""
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(reason)
    try:
        return run_scenarios(tmp_path_factory.mktemp("netns"))
    except NetnsUnavailable as exc:
        pytest.skip(f"cannot create network namespaces here: {exc}")
