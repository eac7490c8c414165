"""The collector stream on a real gRPC server on loopback: Uplink -> start_server -> a sink.

Batches come from an ERSPAN capture made by bench/make_capture.py (scapy-built frames); the
sink keeps what it accepts, so each test asserts exactly which sequence numbers arrived, once,
with which bytes.  The restart test runs the server in a subprocess with a file-backed sink and
kills it with SIGKILL mid-stream.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from flowscope.batch import PacketBatch
from flowscope.sources import read_captures
from flowscope.stream.codec import decode, encode
from flowscope.stream.meta import BatchMeta
from flowscope.stream.mirror_pb2 import FrameBatch, Hello, Upload
from flowscope.stream.mirror_pb2_grpc import MirrorStub
from flowscope.stream.server import REFUSED_TOKEN, StreamServer, start_server
from flowscope.stream.spool import Spool
from flowscope.stream.uplink import Uplink, UplinkError

ROOT = Path(__file__).resolve().parents[1]


class MemorySink:
    """Keeps every accepted batch, in order; a duplicate would show as a repeated seq."""

    def __init__(self) -> None:
        self.accepted: list[tuple[BatchMeta, PacketBatch]] = []
        self.lock = threading.Lock()

    def last_seq(self, collector_id: str) -> int:
        with self.lock:
            return max((m.seq for m, _ in self.accepted if m.collector_id == collector_id),
                       default=-1)

    def accept(self, meta: BatchMeta, batch: PacketBatch) -> None:
        with self.lock:
            self.accepted.append((meta, batch))

    def seqs(self, collector_id: str = "rack1") -> list[int]:
        return [m.seq for m, _ in self.accepted if m.collector_id == collector_id]


def frames(batch: PacketBatch) -> list[bytes]:
    return [batch.frame_bytes(i) for i in range(len(batch))]


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("capture") / "erspan.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_capture.py"), "--frames", "6000",
                    "--traffic", "flood", "-o", str(path)], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def batches(capture: Path) -> list[PacketBatch]:
    out = list(read_captures([str(capture)], batch_frames=500))
    assert len(out) == 12
    return out


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def server(sink: MemorySink) -> Iterator[StreamServer]:
    srv = start_server("127.0.0.1:0", sink)
    yield srv
    srv.stop()


def meta(n: int) -> BatchMeta:
    return BatchMeta("ignored", 999, received=n, snaplen=128, filter="tcp")


def assert_delivered(sink: MemorySink, sent: list[PacketBatch], seqs: list[int]) -> None:
    assert sink.seqs() == seqs
    for (m, got), want in zip(sink.accepted, sent, strict=True):
        assert m.collector_id == "rack1"
        assert frames(got) == frames(want)
        assert np.array_equal(got.ts_ns, want.ts_ns)
        assert np.array_equal(got.frame, want.frame)


def test_batches_arrive_once_in_order_and_acknowledged(
        server: StreamServer, sink: MemorySink, batches: list[PacketBatch],
        tmp_path: Path) -> None:
    up = Uplink(f"127.0.0.1:{server.port}", "rack1", tmp_path / "spool")
    for i, b in enumerate(batches):
        up.send(b, meta(i))
    assert up.close(timeout=60)
    assert up.acked_seq == 11
    assert up.backlog() == (0, 0)
    assert_delivered(sink, batches, list(range(12)))
    assert [m.received for m, _ in sink.accepted] == list(range(12))
    assert {(m.snaplen, m.filter) for m, _ in sink.accepted} == {(128, "tcp")}
    (row,) = server.collectors()
    assert row["collector_id"] == "rack1" and row["batches"] == 12 and row["frames"] == 6000
    assert row["meta"]["received"] == 11 and row["last_seq"] == 11
    assert row["peer"].startswith("ipv4:127.0.0.1:") and row["software"] == "flowscope 0.1.0"


def test_without_compression_and_in_parts(server: StreamServer, sink: MemorySink,
                                          batches: list[PacketBatch], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import flowscope.stream.uplink as uplink

    monkeypatch.setattr(uplink, "PART_BYTES", 40_000)  # a 500-frame batch is ~90 kB: 3 parts
    up = Uplink(f"127.0.0.1:{server.port}", "rack1", tmp_path / "spool", compression=False)
    up.send(batches[0], meta(0))
    assert up.close(timeout=60)
    assert len(sink.accepted) == 3
    assert [f for _, b in sink.accepted for f in frames(b)] == frames(batches[0])


def test_duplicates_are_acknowledged_but_never_reach_the_sink(
        server: StreamServer, sink: MemorySink, batches: list[PacketBatch]) -> None:
    def upload(seq: int) -> Upload:
        return Upload(batch=encode(batches[seq], BatchMeta("rack1", seq)))

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        acks = MirrorStub(channel).Stream(iter([
            Upload(hello=Hello(collector_id="rack1")), upload(0), upload(1), upload(0),
            upload(1), upload(3), upload(2)]))
        assert [a.seq for a in acks] == [-1, 0, 1, 1, 1, 3, 3]
    assert sink.seqs() == [0, 1, 3]  # 2 came after 3: the sink holds 3, so 2 is not wanted
    assert server.collectors()[0]["duplicates"] == 3


def test_a_stream_must_start_with_hello(server: StreamServer, batches: list[PacketBatch]) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        acks = MirrorStub(channel).Stream(iter([
            Upload(batch=encode(batches[0], BatchMeta("rack1", 0)))]))
        with pytest.raises(grpc.RpcError) as e:
            list(acks)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must start with a Hello" in e.value.details()


def test_collector_restart_resumes_from_the_spool(
        server: StreamServer, sink: MemorySink, batches: list[PacketBatch],
        tmp_path: Path) -> None:
    closed = _unused_port()
    down = Uplink(f"127.0.0.1:{closed}", "rack1", tmp_path / "spool")
    for i, b in enumerate(batches[:7]):
        down.send(b, meta(i))
    assert not down.close(timeout=0.5)  # nobody listening: all of it stays in the spool
    assert down.backlog()[0] == 7
    up = Uplink(f"127.0.0.1:{server.port}", "rack1", tmp_path / "spool")
    assert up.backlog()[0] == 7
    for i, b in enumerate(batches[7:], 7):
        up.send(b, meta(i))
    assert up.close(timeout=60)
    assert_delivered(sink, batches, list(range(12)))


def test_a_new_spool_numbers_on_from_what_the_server_holds(
        server: StreamServer, sink: MemorySink, batches: list[PacketBatch],
        tmp_path: Path) -> None:
    first = Uplink(f"127.0.0.1:{server.port}", "rack1", tmp_path / "old")
    for i, b in enumerate(batches[:3]):
        first.send(b, meta(i))
    assert first.close(timeout=60)
    again = Uplink(f"127.0.0.1:{server.port}", "rack1", tmp_path / "wiped")
    for i, b in enumerate(batches[3:6], 3):
        again.send(b, meta(i))
    assert again.close(timeout=60)
    assert_delivered(sink, batches[:6], list(range(6)))  # 3-5, not dropped as duplicates of 0-2


def test_full_spool_drops_the_oldest_and_says_so(
        sink: MemorySink, batches: list[PacketBatch], tmp_path: Path) -> None:
    same = [batches[0]] * 12
    largest = BatchMeta("rack1", 0, received=11, snaplen=128, filter="tcp", spool_dropped=6)
    record = len(encode(batches[0], largest, compress=True).SerializeToString()) + 16
    port = _unused_port()
    down = Uplink(f"127.0.0.1:{port}", "rack1", tmp_path / "spool",
                  spool_limit_bytes=5 * record)  # holds 5 (one per segment, so batch by batch)
    for i, b in enumerate(same):
        down.send(b, meta(i))
    assert not down.close(timeout=0.2)
    assert down.spool_dropped == 7
    assert down.backlog()[0] == 5
    srv = start_server(f"127.0.0.1:{port}", sink)
    try:
        up = Uplink(f"127.0.0.1:{port}", "rack1", tmp_path / "spool")
        assert up.close(timeout=60)
    finally:
        srv.stop()
    assert sink.seqs() == [7, 8, 9, 10, 11]
    assert [m.received for m, _ in sink.accepted] == [7, 8, 9, 10, 11]
    # each batch carries the count as it was when it was cut: batch k made room by dropping
    # batch k - 5, after it was encoded
    assert [m.spool_dropped for m, _ in sink.accepted] == [2, 3, 4, 5, 6]


class FlakySink(MemorySink):
    """A store that fails once, on batch 2 (a full disk, say)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def accept(self, meta: BatchMeta, batch: PacketBatch) -> None:
        if meta.seq == 2 and not self.failed:
            self.failed = True
            raise OSError(28, "No space left on device")
        super().accept(meta, batch)


def test_a_store_failure_is_retried_not_lost(batches: list[PacketBatch], tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    sink = FlakySink()
    srv = start_server("127.0.0.1:0", sink)
    try:
        up = Uplink(f"127.0.0.1:{srv.port}", "rack1", tmp_path / "spool")
        for i, b in enumerate(batches[:5]):
            up.send(b, meta(i))
        assert up.close(timeout=60)
    finally:
        srv.stop()
    assert sink.failed
    assert_delivered(sink, batches[:5], [0, 1, 2, 3, 4])
    assert "could not store batch seq 2" in caplog.text


# -- authentication -----------------------------------------------------------------------


def test_right_token_accepted_wrong_or_missing_refused_and_logged(
        sink: MemorySink, batches: list[PacketBatch], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    srv = start_server("127.0.0.1:0", sink, tokens=["s3cret", "other"])
    target = f"127.0.0.1:{srv.port}"
    try:
        ok = Uplink(target, "rack1", tmp_path / "ok", token="s3cret")
        ok.send(batches[0], meta(0))
        assert ok.close(timeout=60)
        assert sink.seqs() == [0]
        caplog.set_level(logging.WARNING, "flowscope.stream")
        for cid, token, refusal in (
                ("rack2", "guess", REFUSED_TOKEN),
                ("rack3", None, "flowscope serve refused the stream: no bearer token "
                                "(--token-file)")):
            refused = Uplink(target, cid, tmp_path / cid, token=token)
            with refused._cond:  # the Hello goes out at once, batches or not
                refused._cond.wait_for(lambda up=refused: up.error is not None, timeout=60)
            assert refused.error == refusal
            with pytest.raises(UplinkError, match=f"^{re.escape(refusal)}$"):
                refused.send(batches[0], meta(0))
            assert not refused.close(timeout=60)
            assert refused.backlog()[0] == 1  # kept for a restart with the right token
    finally:
        srv.stop()
    assert sink.seqs("rack2") == [] and sink.seqs("rack3") == []
    refusals = [r.getMessage() for r in caplog.records if r.name == "flowscope.stream"
                and r.message.startswith("refused a collector stream from ipv4:127.0.0.1:")]
    assert len(refusals) == 2
    assert refusals[0].endswith(REFUSED_TOKEN)


# -- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1, a client certificate, and a stranger CA."""
    x509 = pytest.importorskip("cryptography.x509", reason="cryptography makes the test PKI")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    files: dict[str, str] = {}

    def save(name: str, data: bytes) -> None:
        (out / name).write_bytes(data)
        files[name] = str(out / name)

    def issue(name: str, issuer: tuple | None, ca: bool, usage=None, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (x509.CertificateBuilder().subject_name(subject)
                   .issuer_name(issuer[0].subject if issuer else subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
        save(f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
        save(f"{name}.key", key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        return cert, key

    ca = issue("ca", None, True)
    issue("server", ca, False, ExtendedKeyUsageOID.SERVER_AUTH,
          [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    issue("client", ca, False, ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger = issue("stranger-ca", None, True)
    issue("stranger", stranger, False, ExtendedKeyUsageOID.CLIENT_AUTH)
    return files


def test_tls(sink: MemorySink, batches: list[PacketBatch], pki: dict[str, str],
             tmp_path: Path) -> None:
    srv = start_server("127.0.0.1:0", sink, tls_cert=pki["server.crt"],
                       tls_key=pki["server.key"], tokens=["t"])
    try:
        up = Uplink(f"127.0.0.1:{srv.port}", "rack1", tmp_path / "tls", tls_ca=pki["ca.crt"],
                    token="t")
        for i, b in enumerate(batches[:3]):
            up.send(b, meta(i))
        assert up.close(timeout=60)
        # a collector that does not trust the server's CA never connects
        doubt = Uplink(f"127.0.0.1:{srv.port}", "rack2", tmp_path / "doubt",
                       tls_ca=pki["stranger-ca.crt"], token="t")
        doubt.send(batches[0], meta(0))
        with doubt._cond:
            doubt._cond.wait_for(lambda: doubt.last_error is not None, timeout=60)
        assert not doubt.close(timeout=0)
        assert doubt.last_error is not None and doubt.last_error.startswith("UNAVAILABLE")
        assert doubt.error is None  # a transient failure for all the Uplink knows: it retries
    finally:
        srv.stop()
    assert_delivered(sink, batches[:3], [0, 1, 2])
    assert sink.seqs("rack2") == []


def test_mutual_tls(sink: MemorySink, batches: list[PacketBatch], pki: dict[str, str],
                    tmp_path: Path) -> None:
    srv = start_server("127.0.0.1:0", sink, tls_cert=pki["server.crt"],
                       tls_key=pki["server.key"], tls_client_ca=pki["ca.crt"])
    target = f"127.0.0.1:{srv.port}"
    try:
        up = Uplink(target, "rack1", tmp_path / "ok", tls_ca=pki["ca.crt"],
                    tls_cert=pki["client.crt"], tls_key=pki["client.key"])
        up.send(batches[0], meta(0))
        assert up.close(timeout=60)
        for name, cert in (("anonymous", None), ("stranger", "stranger")):
            other = Uplink(target, name, tmp_path / name, tls_ca=pki["ca.crt"],
                           tls_cert=pki[f"{cert}.crt"] if cert else None,
                           tls_key=pki[f"{cert}.key"] if cert else None)
            other.send(batches[0], meta(0))
            assert not other.close(timeout=1)
    finally:
        srv.stop()
    assert [m.collector_id for m, _ in sink.accepted] == ["rack1"]


# -- the server killed mid-stream ---------------------------------------------------------

SERVER = """
import sys, time
from flowscope.stream.codec import encode
from flowscope.stream.mirror_pb2 import FrameBatch
from flowscope.stream.server import start_server
from flowscope.stream.spool import Spool

class FileSink:
    # every accepted batch appended to a spool, fsynced before accept returns
    def __init__(self, directory):
        self.log = Spool(directory, 1 << 40, fsync_interval=0)
    def last_seq(self, collector_id):
        last = self.log.read_after(self.log.next_seq - 2)
        return -1 if last is None else FrameBatch.FromString(last[1]).seq
    def accept(self, meta, batch):
        self.log.append(encode(batch, meta).SerializeToString())

srv = start_server(sys.argv[1], FileSink(sys.argv[2]))
print(srv.port, flush=True)
time.sleep(3600)
"""


def test_server_killed_mid_stream_loses_nothing_and_duplicates_nothing(
        batches: list[PacketBatch], tmp_path: Path) -> None:
    def serve(address: str) -> tuple[subprocess.Popen, int]:
        proc = subprocess.Popen([sys.executable, "-c", SERVER, address, str(tmp_path / "store")],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        return proc, int(proc.stdout.readline())

    proc, port = serve("127.0.0.1:0")
    sent = batches * 5  # 60 batches
    up = Uplink(f"127.0.0.1:{port}", "rack1", tmp_path / "spool", window=4)
    try:
        for i, b in enumerate(sent[:40]):
            up.send(b, meta(i))
        with up._cond:  # wait until the server stored some, with more in flight
            up._cond.wait_for(lambda: up.acked_seq >= 10, timeout=60)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = up.acked_seq
        for i, b in enumerate(sent[40:], 40):
            up.send(b, meta(i))
        proc, _ = serve(f"127.0.0.1:{port}")
        assert up.close(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert 10 <= killed_at < 59
    store = Spool(tmp_path / "store")
    got, after = [], -1
    while (record := store.read_after(after)) is not None:
        after = record[0]
        got.append(decode(FrameBatch.FromString(record[1])))
    assert [m.seq for m, _ in got] == list(range(60))
    assert [m.received for m, _ in got] == list(range(60))
    for (_, batch), want in zip(got, sent, strict=True):
        assert frames(batch) == frames(want)


# -- the collector killed mid-stream ------------------------------------------------------

COLLECTOR = """
import sys, time
from flowscope.sources import read_captures
from flowscope.stream import BatchMeta, Uplink

target, spool, capture, first, end, then = sys.argv[1:]
batches = list(read_captures([capture], batch_frames=500))
up = Uplink(target, "rack1", spool, window=4)
for i in range(int(first), int(end)):
    up.send(batches[i % len(batches)], BatchMeta("", 0, received=i))
while up._queued[0]:  # until every batch is in the spool
    time.sleep(0.01)
print("spooled", flush=True)
print(up.close(timeout=120) if then == "close" else time.sleep(3600), flush=True)
"""


class GateSink(MemorySink):
    """Holds the batch with seq ``gate`` inside accept until released."""

    def __init__(self, gate: int) -> None:
        super().__init__()
        self.gate = gate
        self.reached = threading.Event()
        self.release = threading.Event()

    def accept(self, meta: BatchMeta, batch: PacketBatch) -> None:
        if meta.seq == self.gate:
            self.reached.set()
            self.release.wait(120)
        super().accept(meta, batch)


def test_collector_killed_mid_stream_resumes_from_its_spool(
        capture: Path, batches: list[PacketBatch], tmp_path: Path) -> None:
    sink = GateSink(gate=10)
    srv = start_server("127.0.0.1:0", sink)

    def collector(first: int, end: int, then: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", COLLECTOR, f"127.0.0.1:{srv.port}",
                                 str(tmp_path / "spool"), str(capture), str(first), str(end),
                                 then], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "spooled\n"
        return proc

    try:
        first = collector(0, 30, "wait")
        assert sink.reached.wait(120)  # batch 10 is being stored, more are in flight
        first.send_signal(signal.SIGKILL)
        first.wait()
        sink.release.set()
        second = collector(30, 35, "close")  # the restarted collector, with 5 new batches
        out, _ = second.communicate(timeout=180)
        assert out == "True\n"
    finally:
        srv.stop()
    assert sink.seqs() == list(range(35))
    assert [m.received for m, _ in sink.accepted] == list(range(35))
    for i, (_, got) in enumerate(sink.accepted):
        assert frames(got) == frames(batches[i % 12])


def _unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if os.environ.get("FLOWSCOPE_STREAM_DEBUG"):
    logging.basicConfig(level=logging.DEBUG)
