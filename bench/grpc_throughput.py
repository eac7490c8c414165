"""gRPC throughput, collector to analysis server over loopback: frames/s, acknowledged.

The server (``flowscope.stream.start_server``) runs in its own process with a sink that decodes
each batch and counts its frames (transport, not storage, is measured).  This process reads an
ERSPAN capture (bench/make_capture.py; generated if missing) into batches of --batch frames
first, untimed, then times ``Uplink.send`` of every batch plus ``Uplink.close`` — which returns
once the server acknowledged the last batch — so the figure is end to end: encode, spool on
disk, TLS, gRPC, decode, acknowledge.  TLS with a throwaway CA and server certificate for
127.0.0.1, and a bearer token, as ``flowscope listen --upstream`` would run; once with the
frame bytes zstd-compressed (the default) and once without.

    .venv/bin/python bench/grpc_throughput.py                 # 1M frames, batches of 4096
    .venv/bin/python bench/grpc_throughput.py --frames 200000 --no-tls
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
TOKEN = "bench-token"


class CountingSink:
    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.frames = 0

    def last_seq(self, collector_id: str) -> int:
        return self.last.get(collector_id, -1)

    def accept(self, meta, batch) -> None:  # noqa: ANN001
        self.last[meta.collector_id] = meta.seq
        self.frames += len(batch)


def serve(tls_dir: str | None) -> None:
    """Server process: print the port, serve until stdin closes, print the frames accepted."""
    from flowscope.stream.server import start_server

    sink = CountingSink()
    tls = {} if tls_dir is None else {"tls_cert": f"{tls_dir}/server.crt",
                                      "tls_key": f"{tls_dir}/server.key"}
    srv = start_server("127.0.0.1:0", sink, tokens=[TOKEN], **tls)
    print(srv.port, flush=True)
    sys.stdin.read()
    print(sink.frames, flush=True)
    srv.stop()


def make_pki(out: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(name: str, key, issuer_name, issuer_key, ca: bool):  # noqa: ANN001, ANN202
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
             .issuer_name(issuer_name).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-ca")])
    ca = cert("bench-ca", ca_key, ca_name, ca_key, True)
    server = cert("127.0.0.1", key, ca_name, ca_key, False)
    (out / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (out / "server.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (out / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


def run(batches: list, tls_dir: Path | None, compression: bool, spool: Path) -> float:
    from flowscope.stream.meta import BatchMeta
    from flowscope.stream.uplink import Uplink

    cmd = [sys.executable, __file__, "--serve"] + (["--tls-dir", str(tls_dir)] if tls_dir else [])
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    port = int(proc.stdout.readline())
    up = Uplink(f"127.0.0.1:{port}", "bench", spool, token=TOKEN, compression=compression,
                tls_ca=str(tls_dir / "ca.crt") if tls_dir else None)
    frames = 0
    start = time.perf_counter()
    for b in batches:
        frames += len(b)
        up.send(b, BatchMeta("bench", 0, received=frames, sent_ns=time.time_ns()))
    ok = up.close(timeout=600)
    elapsed = time.perf_counter() - start
    proc.stdin.close()
    accepted = int(proc.stdout.readline())
    proc.wait()
    if not ok or accepted != frames:
        sys.exit(f"the server acknowledged {accepted} of {frames} frames")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=4096, help="frames per batch")
    parser.add_argument("--capture", help="ERSPAN capture (default: generated in bench/out)")
    parser.add_argument("--no-tls", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="runs each; the best is reported")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tls-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.tls_dir)

    from flowscope.sources import read_captures

    name = (f"erspan2-{args.frames // 10**6}M.pcap" if args.frames % 10**6 == 0
            else f"erspan2-{args.frames // 1000}k.pcap")  # the names bench/run.py uses
    capture = Path(args.capture or BENCH / "out" / name)
    if not capture.exists():
        capture.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(BENCH / "make_capture.py"), "--frames",
                        str(args.frames), "--traffic", "flood", "-o", str(capture)], check=True)
    batches = list(read_captures([str(capture)], batch_frames=args.batch))
    n = sum(len(b) for b in batches)
    size = sum(int(b.caplen.sum()) for b in batches)
    print(f"{capture.name}: {n:,} frames, {size / n:.0f} bytes each on average, "
          f"{len(batches)} batches of {args.batch}")
    with tempfile.TemporaryDirectory() as tmp:
        tls_dir = None if args.no_tls else Path(tmp)
        if tls_dir:
            make_pki(tls_dir)
        for compression in (True, False):
            times = [run(batches, tls_dir, compression, Path(tmp) / f"spool-{compression}-{i}")
                     for i in range(args.repeat)]
            best = min(times)
            print(f"{'TLS' if tls_dir else 'plaintext'}, "
                  f"{'zstd' if compression else 'no compression'}: {n / best:,.0f} frames/s "
                  f"({size * 8 / best / 1e9:.2f} Gbit/s of captured bytes; runs of "
                  f"{', '.join(f'{t:.2f}' for t in times)} s, the best taken)")


if __name__ == "__main__":
    main()
