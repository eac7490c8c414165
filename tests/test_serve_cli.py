"""`flowscope serve` as a user runs it: a real process, real gRPC from the collector's Uplink,
real HTTP; kill -9 and restart mid-stream lose nothing and count nothing twice; a wrong token
is refused and logged; SIGTERM stops cleanly and leaves the Parquet snapshot."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flowscope.stream.meta import BatchMeta
from flowscope.stream.uplink import Uplink

from .processes import Proc
from .serve_fixtures import ROOT, batches, flowscope, make_incident, rows

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_incident(tmp_path_factory.mktemp("incident"))


class Serve(Proc):
    """A `flowscope serve` process; its stderr lines collected as they come."""

    def __init__(self, *args: str) -> None:
        super().__init__([sys.executable, "-m", "flowscope", "serve", *args], "serve",
                         env={"PYTHONPATH": str(ROOT / "src")})

    @property
    def http(self) -> str:
        return self.wait_for(r"HTTP API on (\S+)")[1]

    @property
    def grpc(self) -> str:
        return self.wait_for(r"gRPC receiver on (\S+)")[1]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        return super().stop(sig, timeout)


@pytest.fixture
def serve_factory() -> Iterator:
    started: list[Serve] = []

    def start(*args: str) -> Serve:
        s = Serve(*args)
        started.append(s)
        return s

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read().decode()


def until(condition, what: str, limit: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    """Wait for a condition of the running system (not a timing assertion: the limit only
    turns a hang into a failure)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_collector_to_server_sessions_equal_the_offline_command(
        incident: Path, tmp_path: Path, serve_factory) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "tokens").write_text(f"# collectors\n{TOKEN}\n\nanother-token\n")
    serve = serve_factory("--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--store",
                          str(tmp_path / "store"), "--token-file", str(tmp_path / "tokens"))
    http, grpc_target = serve.http, serve.grpc
    serve.wait_for(r"gRPC receiver on \S+ \(plaintext, 2 bearer tokens\)")
    parts = list(batches(incident, 50))
    up = Uplink(grpc_target, "leaf-1", tmp_path / "spool", token=TOKEN)
    for batch in parts:
        up.send(batch, BatchMeta("leaf-1", 0, received=len(batch)))
    assert up.close(timeout=120)
    assert get_text(f"{http}/api/sessions?format=jsonl") == flowscope(
        "sessions", str(incident), "-f", "jsonl")
    (c,) = get_json(f"{http}/api/collectors")["collectors"]
    assert (c["collector_id"], c["last_seq"], c["frames"]) == ("leaf-1", len(parts) - 1, 687)
    assert c["transport"]["batches"] == len(parts) and c["transport"]["peer"]
    assert serve.stop() == 0
    serve.wait_for(r"sessions, timeline and mirrors written to")
    table = pq.read_table(tmp_path / "store" / "analysis" / "sessions.parquet")
    assert table.to_pylist() == rows(flowscope("sessions", str(incident), "-f", "jsonl"))


def test_kill_9_and_restart_mid_stream_lose_nothing_and_duplicate_nothing(
        incident: Path, tmp_path: Path, serve_factory) -> None:  # type: ignore[no-untyped-def]
    store = str(tmp_path / "store")
    first = serve_factory("--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--store", store)
    target = first.grpc
    parts = list(batches(incident, 20))
    half = len(parts) // 2
    up = Uplink(target, "leaf-1", tmp_path / "spool")
    closing = False
    try:
        for batch in parts[:half]:
            up.send(batch, BatchMeta("leaf-1", 0))
        until(lambda: up.acked_seq == half - 1, "the first half acknowledged")
        first.stop(signal.SIGKILL)
        for batch in parts[half:]:  # the server is down: the collector spools
            up.send(batch, BatchMeta("leaf-1", 0))
        second = serve_factory("--grpc", target, "--http", "127.0.0.1:0", "--store", store)
        second.wait_for(rf"replayed {half} batches from 1 collectors")
        closing = True
        assert up.close(timeout=120)
    finally:
        if not closing:
            up.close(timeout=0)
    http = second.http
    assert get_text(f"{http}/api/sessions?format=jsonl") == flowscope(
        "sessions", str(incident), "-f", "jsonl")
    (c,) = get_json(f"{http}/api/collectors")["collectors"]
    assert (c["stored_batches"], c["last_seq"], c["frames"]) == (len(parts), len(parts) - 1, 687)
    assert second.stop() == 0


def test_a_wrong_token_is_refused_and_logged(incident: Path, tmp_path: Path,
                                             serve_factory) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "tokens").write_text(TOKEN + "\n")
    serve = serve_factory("--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--store",
                          str(tmp_path / "store"), "--token-file", str(tmp_path / "tokens"))
    up = Uplink(serve.grpc, "intruder", tmp_path / "spool", token="guess")
    up.send(next(iter(batches(incident, 50))), BatchMeta("intruder", 0))
    assert not up.close(timeout=60)
    assert "wrong bearer token" in (up.error or "")
    serve.wait_for(r"warning: refused a collector stream from .*wrong bearer token")
    assert get_json(f"{serve.http}/api/collectors") == {"collectors": []}
    assert serve.stop() == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--http", "nowhere"], "--http 'nowhere': expected HOST:PORT"),
    (["--grpc", "1.2.3.4:99999"], "--grpc '1.2.3.4:99999': expected HOST:PORT"),
    (["--tls-cert", "c.pem"], "--tls-cert and --tls-key go together"),
    (["--tls-client-ca", "ca.pem"], "needs --tls-cert and --tls-key"),
    (["--token-file", "/nonexistent/tokens"], "cannot read the token file"),
])
def test_bad_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    r = subprocess.run([sys.executable, "-m", "flowscope", "serve", "--store",
                        str(tmp_path / "store"), "--http", "127.0.0.1:0", "--grpc", "none",
                        *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert message in r.stderr and "Traceback" not in r.stderr


def test_an_http_port_in_use_is_an_error(tmp_path: Path, serve_factory) -> None:  # type: ignore[no-untyped-def]
    first = serve_factory("--grpc", "none", "--http", "127.0.0.1:0", "--store",
                          str(tmp_path / "a"))
    port = first.http.rsplit(":", 1)[1]
    r = subprocess.run([sys.executable, "-m", "flowscope", "serve", "--grpc", "none", "--http",
                        f"127.0.0.1:{port}", "--store", str(tmp_path / "b")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "cannot listen" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (cryptography)."""
    x509 = pytest.importorskip("cryptography.x509", reason="cryptography makes the test PKI")
    import datetime
    import ipaddress

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    files: dict[str, str] = {}

    def issue(name: str, issuer: tuple | None, usage=None, san=None):  # type: ignore[no-untyped-def]
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (x509.CertificateBuilder().subject_name(subject)
                   .issuer_name(issuer[0].subject if issuer else subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None),
                                  critical=True))
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
        for suffix, data in (("crt", cert.public_bytes(serialization.Encoding.PEM)),
                             ("key", key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))):
            (out / f"{name}.{suffix}").write_bytes(data)
            files[f"{name}.{suffix}"] = str(out / f"{name}.{suffix}")
        return cert, key

    ca = issue("ca", None)
    issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH,
          [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    issue("client", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    return files


def test_mutual_tls_and_token_options_reach_the_transport(
        incident: Path, tmp_path: Path, pki: dict[str, str],
        serve_factory) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "tokens").write_text(TOKEN + "\n")
    serve = serve_factory("--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--store",
                          str(tmp_path / "store"), "--tls-cert", pki["server.crt"],
                          "--tls-key", pki["server.key"], "--tls-client-ca", pki["ca.crt"],
                          "--token-file", str(tmp_path / "tokens"))
    serve.wait_for(r"gRPC receiver on \S+ \(mutual TLS, 1 bearer token\)")
    parts = list(batches(incident, 100))
    up = Uplink(serve.grpc, "leaf-tls", tmp_path / "spool", tls_ca=pki["ca.crt"],
                tls_cert=pki["client.crt"], tls_key=pki["client.key"], token=TOKEN)
    for batch in parts:
        up.send(batch, BatchMeta("leaf-tls", 0))
    assert up.close(timeout=120)
    anonymous = Uplink(serve.grpc, "anonymous", tmp_path / "anon", tls_ca=pki["ca.crt"],
                       token=TOKEN)
    anonymous.send(parts[0], BatchMeta("anonymous", 0))
    assert not anonymous.close(timeout=2)  # no client certificate: no connection
    assert get_text(f"{serve.http}/api/sessions?format=jsonl") == flowscope(
        "sessions", str(incident), "-f", "jsonl")
    assert [c["collector_id"] for c in get_json(f"{serve.http}/api/collectors")["collectors"]] \
        == ["leaf-tls"]
    assert serve.stop() == 0
