"""The live path end to end, as a user runs it: real kernel TCP, `flowscope mirror`,
`flowscope listen --upstream`, `flowscope serve`, all real processes in network namespaces.

Topology (made here, torn down in finalizers)::

    A (client) 10.77.0.1 ──veth── 10.77.0.2 B (server)        TCP: SF, REJ, S0, RSTR, RSTO
    A          10.78.0.1 ──veth── 10.78.0.2 C (collector)     ERSPAN III copies, MTU 9000

* ``flowscope mirror --interface <A's veth to B> --to 10.78.0.2 --type 3`` mirrors the TCP
  between A and B to C, where ``flowscope listen --gre --upstream 127.0.0.1:50051
  --token-file F`` streams to ``flowscope serve`` (store in tmp_path, HTTP on C's
  127.0.0.1, queried with ``ip netns exec C``).
* The truth is independent of flowscope: tcpdump on B's veth (what the kernels exchanged,
  per connection and direction, tests/netns.py) and tcpdump on C's veth (the ERSPAN copies
  that reached the collector: what an uninterrupted server would have analysed).
* ``serve`` is killed with SIGKILL in the middle of a connection (the test holds the
  connection open until the first server shows it, kills the server, then lets the
  connection go on) and restarted on the same store while two more connections happen.
* A second collector with a wrong token is refused, says so, exits 1; serve logs it.
* A generated ERSPAN capture replayed with tcpreplay into C's veth, received by ``listen
  --interface`` writing pcapng and streaming to a fresh ``serve``: the same sessions as the
  offline ``flowscope sessions`` of the capture.

Every wait is bounded (a hang fails, it does not block CI); no assertion is about time.
Needs root, iproute2, nft, tcpdump and tcpreplay; skips and says why otherwise.
"""

from __future__ import annotations

import inspect
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from .netns import (
    PLANS,
    NetnsPair,
    Plan,
    _play,
    _run,
    capture,
    disable_offloads,
    missing_requirements,
    read_frames,
    tcp_exchange,
)
from .processes import Proc

ROOT = Path(__file__).resolve().parent.parent
FLOWSCOPE = [sys.executable, "-m", "flowscope"]
A_IP, B_IP = "10.77.0.1", "10.77.0.2"  # the client and server (tests/netns.py's addresses)
A_MIRROR_IP, C_IP = "10.78.0.1", "10.78.0.2"  # the mirror path, A to the collector
MIRROR_MTU = 9000  # ERSPAN III copies of 1514-byte frames (+ 50 bytes) stay whole
GRPC, HTTP = "127.0.0.1:50051", "127.0.0.1:8080"  # in C (a fresh namespace: ports are free)
SESSION = 21  # ERSPAN session id
TOKEN, WRONG_TOKEN = "e2e-collector-token", "not-the-token"
COLLECTOR, INTRUDER = "collector-c", "intruder"

READY_S = 60.0  # process start-up (imports, compiled kernels) until its ready line
WAIT_S = 60.0  # any other wait: a bound that turns a hang into a failure
TIME_KEYS = {"ts", "duration", "rtt_ms", "ack_rtt_ms", "uid"}  # the receive clock's
EVIDENCE_TIME = re.compile(r"\d+(?:\.\d+)? ms\b")  # "request to ACK: mean 0.006 ms, ..."

# The connections, in the order they are made.  LONG spans the server's SIGKILL; RSTR and
# RSTO happen while the server is down; AFTER once it is back.
LONG = Plan("SF", 40006, 8006, None)
AFTER = Plan("SF", 40007, 8007, None)
CONNECTIONS = {"SF": PLANS["SF"], "REJ": PLANS["REJ"], "S0": PLANS["S0"], "LONG": LONG,
               "RSTR": PLANS["RSTR"], "RSTO": PLANS["RSTO"], "AFTER": AFTER}
VERDICTS = {"SF": "ok", "REJ": "refused", "S0": "unanswered", "RSTR": "reset_by_resp",
            "RSTO": "reset_by_orig"}


def _missing() -> str | None:
    why = missing_requirements()
    if why is None and shutil.which("tcpreplay") is None:
        why = "needs tcpreplay (not found on PATH)"
    return why


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


# -- the topology ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Topology:
    """Three namespaces: ``wire`` is the A-B link (client, server), ``mirror`` the A-C link
    (A's mirror side as "client", the collector C as "server")."""

    wire: NetnsPair
    mirror: NetnsPair

    @property
    def a(self) -> str:
        return self.wire.client_ns

    @property
    def b(self) -> str:
        return self.wire.server_ns

    @property
    def c(self) -> str:
        return self.mirror.server_ns

    def exec(self, ns: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]


_instances = itertools.count()


def _mac(ns: str, ifname: str) -> str:
    out = subprocess.run(["ip", "-n", ns, "-j", "link", "show", "dev", ifname],
                         capture_output=True, text=True, check=True, timeout=30)
    return json.loads(out.stdout)[0]["address"]


@contextmanager
def three_namespaces() -> Iterator[Topology]:
    """Create A, B, C and the two veth pairs (offloads off, IPv6 off, permanent neighbour
    entries so no ARP delays the first copies); always delete them."""
    n, pid = next(_instances), os.getpid()
    a, b, c = (f"fs-e2e-{x}-{pid}-{n}" for x in "abc")
    topo = Topology(NetnsPair(a, b, f"fsab{pid}x{n}", f"fsba{pid}x{n}", A_IP, B_IP),
                    NetnsPair(a, c, f"fsac{pid}x{n}", f"fsca{pid}x{n}", A_MIRROR_IP, C_IP))
    links = (topo.wire, topo.mirror)
    created: list[str] = []
    try:
        for ns in (a, b, c):
            _run(["ip", "netns", "add", ns])
            created.append(ns)
            subprocess.run(topo.exec(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                                     "net.ipv6.conf.default.disable_ipv6=1"),
                           capture_output=True, check=False, timeout=30)
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        for link in links:
            _run(["ip", "link", "add", link.client_if, "type", "veth", "peer", "name",
                  link.server_if])
            for ns, ifname, ip in ((link.client_ns, link.client_if, link.client_ip),
                                   (link.server_ns, link.server_if, link.server_ip)):
                disable_offloads(ifname)
                _run(["ip", "link", "set", ifname, "netns", ns])
                _run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifname])
                if link is topo.mirror:
                    _run(["ip", "-n", ns, "link", "set", ifname, "mtu", str(MIRROR_MTU)])
                _run(["ip", "-n", ns, "link", "set", ifname, "up"])
        for link in links:
            for ns, ifname, peer_ip, peer_ns, peer_if in (
                    (link.client_ns, link.client_if, link.server_ip, link.server_ns,
                     link.server_if),
                    (link.server_ns, link.server_if, link.client_ip, link.client_ns,
                     link.client_if)):
                _run(["ip", "-n", ns, "neigh", "replace", peer_ip, "lladdr",
                      _mac(peer_ns, peer_if), "dev", ifname, "nud", "permanent"])
        yield topo
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        for link in links:
            for ifname in (link.client_if, link.server_if):
                if Path("/sys/class/net", ifname).exists():
                    subprocess.run(["ip", "link", "del", ifname], capture_output=True,
                                   check=False)


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    try:
        with three_namespaces() as t:
            yield t
    except RuntimeError as exc:
        if "ip netns add" in str(exc) or "type veth" in str(exc):
            pytest.skip(f"cannot create network namespaces here: {exc}")
        raise


# -- processes ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def procs() -> Iterator[Callable[..., Proc]]:
    """Start processes that are killed, whatever happens, when the module ends."""
    started: list[Proc] = []

    def start(argv: list[str], name: str) -> Proc:
        p = Proc(argv, name)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


def http_get(topo: Topology, path: str) -> str:
    """GET http://127.0.0.1:8080{path} from inside C (where serve's HTTP API listens)."""
    program = ("import sys, urllib.request; "
               "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=30).read()"
               ".decode())")
    out = subprocess.run(topo.exec(topo.c, sys.executable, "-I", "-c", program,
                                   f"http://{HTTP}{path}"),
                         capture_output=True, text=True, timeout=WAIT_S)
    if out.returncode != 0:
        raise RuntimeError(f"GET {path}: {out.stderr.strip()}")
    return out.stdout


def http_json(topo: Topology, path: str) -> dict:
    return json.loads(http_get(topo, path))


def until(condition: Callable[[], bool], what: str, limit: float = WAIT_S) -> None:
    """Wait for a condition of the running system; the limit only turns a hang into a
    failure (not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


@contextmanager
def tcpdump(topo: Topology, ns: str, ifname: str, path: Path, expr: str) -> Iterator[None]:
    """tcpdump on ``ifname`` in ``ns`` to ``path`` while the block runs; none dropped."""
    p = Proc(topo.exec(ns, "tcpdump", "-i", ifname, "-w", str(path), "-U", "-n",
                       "--immediate-mode", "--time-stamp-precision", "nano", "-Z", "root",
                       expr), "tcpdump")
    try:
        p.wait_for("listening on", 10)
        yield
        time.sleep(0.3)  # the last copies are in flight
    finally:
        p.stop(signal.SIGINT, 10)
    assert re.search(r"^0 packets dropped by kernel", p.text, re.M), p.text


def serve(procs: Callable[..., Proc], topo: Topology, store: Path, tokens: Path) -> Proc:
    s = procs(topo.exec(topo.c, *FLOWSCOPE, "serve", "--grpc", GRPC, "--http", HTTP,
                        "--store", str(store), "--token-file", str(tokens)), "serve")
    s.wait_for(r"HTTP API on ")
    s.wait_for(r"gRPC receiver on ")
    return s


def listen(procs: Callable[..., Proc], topo: Topology, collector: str, token: Path,
           spool: Path, *args: str) -> Proc:
    p = procs(topo.exec(topo.c, *FLOWSCOPE, "listen", *args, "--upstream", GRPC,
                        "--token-file", str(token), "--collector-id", collector,
                        "--spool", str(spool), "--status-interval", "1"), f"listen {collector}")
    p.wait_for("listening on ")
    return p


# -- the long connection: held open across the server's SIGKILL -----------------------------

def _long_peer(argv: list[str]) -> None:
    """``server HOST PORT``: echo until EOF, then close.  ``client SRC PORT DST PORT``: for
    every line on stdin, send 1000 bytes and read their echo (then print "done"); at EOF on
    stdin close gracefully (FIN, wait for the server's FIN).  Runs as ``python -c``."""
    import socket
    import sys

    def recv_exactly(sock: socket.socket, n: int) -> None:
        while n > 0:
            chunk = sock.recv(min(n, 65536))
            if not chunk:
                raise RuntimeError("peer closed early")
            n -= len(chunk)

    if argv[0] == "server":
        with socket.socket() as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((argv[1], int(argv[2])))
            listener.listen(1)
            print("ready", flush=True)
            conn, _ = listener.accept()
        conn.settimeout(60)
        while data := conn.recv(65536):
            conn.sendall(data)
        conn.close()
        return
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((argv[1], int(argv[2])))
    sock.settimeout(60)
    sock.connect((argv[3], int(argv[4])))
    print("connected", flush=True)
    for _ in sys.stdin:
        sock.sendall(b"x" * 1000)
        recv_exactly(sock, 1000)
        print("done", flush=True)
    sock.shutdown(socket.SHUT_WR)
    if sock.recv(1) != b"":
        raise RuntimeError("expected the server's FIN")
    sock.close()


_LONG_SOURCE = (textwrap.dedent(inspect.getsource(_long_peer))
                + "\n\nimport sys\n\n_long_peer(sys.argv[1:])\n")


class LongConnection:
    """A connection A -> B whose client sends a round (1000 bytes, echoed) per ``round()``."""

    def __init__(self, topo: Topology, plan: Plan) -> None:
        self.server = subprocess.Popen(
            topo.exec(topo.b, sys.executable, "-I", "-c", _LONG_SOURCE, "server", B_IP,
                      str(plan.server_port)), stdout=subprocess.PIPE, text=True)
        self._expect(self.server, "ready")
        self.client = subprocess.Popen(
            topo.exec(topo.a, sys.executable, "-I", "-c", _LONG_SOURCE, "client", A_IP,
                      str(plan.client_port), B_IP, str(plan.server_port)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._expect(self.client, "connected")

    @staticmethod
    def _expect(proc: subprocess.Popen[str], word: str) -> None:
        assert proc.stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(WAIT_S)
        if not line or line[0].strip() != word:
            proc.kill()
            pytest.fail(f"long connection: expected {word!r}, got {line}")

    def round(self) -> None:
        assert self.client.stdin is not None
        self.client.stdin.write("go\n")
        self.client.stdin.flush()
        self._expect(self.client, "done")

    def close(self) -> None:
        assert self.client.stdin is not None
        self.client.stdin.close()
        for proc in (self.client, self.server):
            try:
                assert proc.wait(WAIT_S) == 0
            finally:
                proc.kill()


# -- the live run ---------------------------------------------------------------------------

def sessions_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def timeless(rows: list[dict], drop: set[str] | frozenset[str] = frozenset()) -> list[dict]:
    """Rows without what depends on the receive clock (and without ``drop``), in a
    canonical order; times quoted in the evidence become "<t> ms"."""
    out = []
    for r in rows:
        row = {k: v for k, v in r.items() if k not in TIME_KEYS and k not in drop}
        row["evidence"] = [EVIDENCE_TIME.sub("<t> ms", e) for e in row["evidence"]]
        out.append(row)
    return sorted(out, key=lambda r: json.dumps(r, sort_keys=True))


def by_client_port(rows: list[dict], port: int) -> list[dict]:
    return [r for r in rows if r.get("orig_h") == A_IP and r.get("orig_p") == port]


@dataclass
class LiveRun:
    wire: Path  # tcpdump on B's veth: what the kernels exchanged
    received: Path  # tcpdump on C's veth: the ERSPAN copies that reached the collector
    sessions: list[dict]  # /api/sessions of the restarted server, at the end
    collectors: list[dict]  # /api/collectors, at the end
    listen_report: str
    listen_rc: int
    seen_before_kill: dict  # the long connection's row on the first server, just before
    replayed: int  # batches the restarted server found in its store
    intruder_rc: int
    intruder_report: str
    serve_logs: str  # both servers' stderr
    mirror_report: str


@pytest.fixture(scope="module")
def live(topo: Topology, procs: Callable[..., Proc],
         tmp_path_factory: pytest.TempPathFactory) -> LiveRun:
    tmp = tmp_path_factory.mktemp("live")
    store = tmp / "store"
    (tmp / "tokens").write_text(f"# collectors\n{TOKEN}\n")
    (tmp / "token").write_text(TOKEN + "\n")
    (tmp / "wrong").write_text(WRONG_TOKEN + "\n")
    wire, received = tmp / "wire.pcap", tmp / "received.pcap"
    servers = [serve(procs, topo, store, tmp / "tokens")]
    collector = listen(procs, topo, COLLECTOR, tmp / "token", tmp / "spool", "--gre")
    state: dict = {}

    def connections() -> None:
        for name in ("SF", "S0"):
            _play(topo.wire, CONNECTIONS[name])
        # A second collector with a wrong token: refused at its first batch (the REJ copies).
        intruder = listen(procs, topo, INTRUDER, tmp / "wrong", tmp / "spool-intruder",
                          "--gre", "--duration", "60s")
        intruder.wait_for(r"refused the stream")  # at once; it exits at its first batch
        _play(topo.wire, CONNECTIONS["REJ"])
        state["intruder_rc"] = intruder.wait()
        state["intruder_report"] = intruder.text
        # The long connection: one round, seen by the server; SIGKILL; more rounds.
        long = LongConnection(topo, LONG)
        long.round()
        path = f"/api/sessions?port={LONG.server_port}&format=jsonl"
        until(lambda: any(r["resp_pkts"] > 0 for r in sessions_of(http_get(topo, path))),
              "the first server to show the long connection")
        (state["seen_before_kill"],) = sessions_of(http_get(topo, path))
        servers[0].stop(signal.SIGKILL)
        for _ in range(3):
            long.round()
        long.close()
        for name in ("RSTR", "RSTO"):  # the server is still down: the collector spools
            _play(topo.wire, CONNECTIONS[name])
        servers.append(serve(procs, topo, store, tmp / "tokens"))
        state["replayed"] = int(servers[1].wait_for(r"replayed (\d+) batches")[1])
        _play(topo.wire, CONNECTIONS["AFTER"])

    with tcpdump(topo, topo.c, topo.mirror.server_if, received,
                 f"ip proto 47 and dst host {C_IP}"):
        mirror = procs(topo.exec(topo.a, *FLOWSCOPE, "mirror", "--interface",
                                 topo.wire.client_if, "--to", C_IP, "--type", "3",
                                 "--session", str(SESSION)), "mirror")
        mirror.wait_for("Ctrl-C stops")
        capture(topo.wire, wire, connections)
        assert mirror.stop(signal.SIGINT) == 0, mirror.text
    listen_rc = collector.stop(signal.SIGINT)
    sent = int(re.search(r"sent ([\d,]+) batches upstream", collector.text)[1]  # type: ignore[index]
               .replace(",", ""))
    until(lambda: [c["stored_batches"] for c in http_json(topo, "/api/collectors")
                   ["collectors"]] == [sent], f"the server to hold the {sent} batches sent")
    run = LiveRun(wire=wire, received=received,
                  sessions=sessions_of(http_get(topo, "/api/sessions?format=jsonl&limit=100000")),
                  collectors=http_json(topo, "/api/collectors")["collectors"],
                  listen_report=collector.text, listen_rc=listen_rc,
                  seen_before_kill=state["seen_before_kill"], replayed=state["replayed"],
                  intruder_rc=state["intruder_rc"], intruder_report=state["intruder_report"],
                  serve_logs="", mirror_report=mirror.text)
    assert servers[1].stop(signal.SIGTERM) == 0, servers[1].text
    run.serve_logs = "\n".join(s.text for s in servers)
    return run


# -- 1, 2: the sessions at the server are what the kernel did -------------------------------

@pytest.mark.parametrize("name", list(CONNECTIONS))
def test_each_connection_at_the_server_is_what_the_kernel_did(live: LiveRun, name: str) -> None:
    plan = CONNECTIONS[name]
    exchange = tcp_exchange(live.wire, (A_IP, plan.client_port), (B_IP, plan.server_port))
    assert exchange and exchange[0] == ("orig", "S")
    (row,) = by_client_port(live.sessions, plan.client_port)  # one row: nothing doubled
    assert (row["proto"], row["resp_h"], row["resp_p"]) == ("tcp", B_IP, plan.server_port)
    assert row["conn_state"] == plan.conn_state
    assert row["verdict"] == VERDICTS[plan.conn_state]
    assert row["orig_pkts"] == sum(1 for side, _ in exchange if side == "orig")
    assert row["resp_pkts"] == sum(1 for side, _ in exchange if side == "resp")
    assert row["reset_by"] == plan.reset_by
    assert row["mirror_session"] == SESSION


# -- 3: SIGKILL and restart mid-stream ------------------------------------------------------

def test_kill_9_mid_stream_loses_nothing_and_duplicates_nothing(live: LiveRun) -> None:
    # The kill really was mid-stream: the first server saw the long connection's start only.
    before = live.seen_before_kill
    (after,) = by_client_port(live.sessions, LONG.client_port)
    assert before["conn_state"] != "SF"
    assert before["orig_pkts"] + before["resp_pkts"] < after["orig_pkts"] + after["resp_pkts"]
    assert live.replayed > 0  # the restarted server rebuilt the first one's batches
    # What an uninterrupted server would show: the offline analysis of every copy that
    # reached the collector (tcpdump on C's veth), row for row (the receive clocks differ).
    offline = subprocess.run([*FLOWSCOPE, "sessions", str(live.received), "--format", "jsonl"],
                             capture_output=True, text=True, timeout=WAIT_S, check=True)
    assert timeless(live.sessions) == timeless(sessions_of(offline.stdout))
    # Every frame the collector received is stored once: the server's counts equal listen's.
    copies = len(read_frames(live.received))
    assert live.listen_rc == 0, live.listen_report
    sent = int(re.search(r"sent ([\d,]+) batches upstream; backlog 0 batches",  # type: ignore[index]
                         live.listen_report)[1].replace(",", ""))
    assert f"received {copies:,} frames" in live.listen_report
    assert "kernel drops 0;" in live.listen_report
    assert "mirror loss 0 (GRE sequence gaps)" in live.listen_report
    (c,) = live.collectors
    assert c["collector_id"] == COLLECTOR
    assert (c["stored_batches"], c["last_seq"], c["frames"], c["received"]) == \
        (sent, sent - 1, copies, copies)
    assert "0 send errors" in live.mirror_report, live.mirror_report


# -- 4: a wrong token -----------------------------------------------------------------------

def test_a_collector_with_a_wrong_token_is_refused_and_logged(live: LiveRun) -> None:
    assert live.intruder_rc == 1, live.intruder_report
    assert "error: flowscope serve refused the stream: wrong bearer token (--token-file)" \
        in live.intruder_report
    assert "Traceback" not in live.intruder_report
    assert re.search(r"warning: refused a collector stream from ipv4:127\.0\.0\.1:\d+: "
                     r"flowscope serve refused the stream: wrong bearer token",
                     live.serve_logs), live.serve_logs
    assert [c["collector_id"] for c in live.collectors] == [COLLECTOR]


# -- 5: a generated capture replayed into the collector -------------------------------------

REPLAY_MULTIPLIER = "4"  # the incident's 18.6 s in 4.6 s: its gaps stay far from any threshold
# A decapsulated pcapng (listen -w, like flowscope decap) keeps the ERSPAN session only in
# its interface names and packet comments, which `flowscope sessions` does not read back.
DECAPSULATED_KEYS = {"mirror_session"}


@pytest.fixture(scope="module")
def replay(topo: Topology, live: LiveRun, procs: Callable[..., Proc],
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """demo/make_incident.py's ERSPAN II capture (TCP and RoCE incidents) replayed with
    tcpreplay, with its own timing sped up 4x, into C's veth; ``listen --interface`` writes
    pcapng and streams to a fresh serve.  Runs after the live run (the mirror is stopped:
    C's veth carries only the replay).  The sessions: offline, written, streamed."""
    del live
    tmp = tmp_path_factory.mktemp("replay")
    capture_path = tmp / "incident.pcap"
    subprocess.run([sys.executable, str(ROOT / "demo" / "make_incident.py"), "-o",
                    str(capture_path)], check=True, capture_output=True, timeout=WAIT_S)
    frames = len(read_frames(capture_path))
    (tmp / "tokens").write_text(TOKEN + "\n")
    server = serve(procs, topo, tmp / "store", tmp / "tokens")
    collector = listen(procs, topo, "replay", tmp / "tokens", tmp / "spool", "--interface",
                       topo.mirror.server_if, "-w", str(tmp / "live"), "--count", str(frames),
                       "--duration", "60s")
    subprocess.run(topo.exec(topo.a, "tcpreplay", "-q", "-i", topo.mirror.client_if,
                             "--multiplier", REPLAY_MULTIPLIER, str(capture_path)),
                   check=True, capture_output=True, timeout=WAIT_S)
    try:
        assert collector.wait() == 0, collector.text
        assert f"received + kernel drops = {frames:,}" in collector.text
        assert "kernel drops 0;" in collector.text and "backlog 0 batches" in collector.text
        streamed = sessions_of(http_get(topo, "/api/sessions?format=jsonl&limit=100000"))
    finally:
        assert server.stop(signal.SIGTERM) == 0, server.text

    def sessions(*paths: Path) -> list[dict]:
        out = subprocess.run([*FLOWSCOPE, "sessions", *map(str, paths), "--format", "jsonl"],
                             capture_output=True, text=True, timeout=WAIT_S, check=True)
        return sessions_of(out.stdout)

    return {"offline": sessions(capture_path), "streamed": streamed,
            "written": sessions(*sorted((tmp / "live").glob("*.pcapng")))}


def test_replayed_capture_streamed_to_serve_gives_the_offline_sessions(
        replay: dict[str, list[dict]]) -> None:
    assert len(replay["offline"]) > 30
    assert timeless(replay["streamed"]) == timeless(replay["offline"])


IP_BYTES = {"orig_ip_bytes", "resp_ip_bytes"}


def test_replayed_capture_written_by_listen_gives_the_offline_sessions(
        replay: dict[str, list[dict]]) -> None:
    assert timeless(replay["written"], DECAPSULATED_KEYS | IP_BYTES) == \
        timeless(replay["offline"], DECAPSULATED_KEYS | IP_BYTES)


def test_replayed_capture_written_by_listen_keeps_the_ip_bytes(
        replay: dict[str, list[dict]]) -> None:
    def ip_bytes(rows: list[dict]) -> list[tuple]:
        return sorted((r["proto"], r["orig_h"], r["orig_p"], r["resp_h"], r["resp_p"],
                       r["dest_qp"], r["orig_ip_bytes"], r["resp_ip_bytes"]) for r in rows)

    assert ip_bytes(replay["written"]) == ip_bytes(replay["offline"])
