"""``flowscope serve`` wired: the store replayed, the gRPC receiver, the HTTP API, Parquet
snapshots, and a clean stop on SIGINT/SIGTERM.

Start order: open the store and replay it into the analysis (so ``last_seq`` and the
sessions are complete before any collector connects), then the HTTP API, then the gRPC
receiver.  Stop order: gRPC first (no new batches), then the HTTP API, then a last Parquet
snapshot, then the store is closed.  Both listeners bind to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowscope.decode import DecodeConfig
from flowscope.errors import FlowscopeError
from flowscope.serve.http import ApiServer
from flowscope.serve.sink import StoreSink
from flowscope.stream.server import StreamServer, start_server

DEFAULT_GRPC = "127.0.0.1:50051"
DEFAULT_HTTP = "127.0.0.1:8080"
DEFAULT_STORE = "flowscope-store"
PERSIST_EVERY_S = 60.0


def parse_address(text: str, what: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (host 127.0.0.1) -> (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise FlowscopeError(f"{what} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080 or "
                             "[::1]:8080")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_tokens(path: str) -> list[str]:
    """Bearer tokens, one per line (blank lines and ``#`` comments ignored)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise FlowscopeError(f"{path}: cannot read the token file: {e.strerror}") from None
    tokens = [t.strip() for t in text.splitlines() if t.strip() and not t.startswith("#")]
    if not tokens:
        raise FlowscopeError(f"{path}: no tokens in the token file (one per line)")
    return tokens


@dataclass
class ServeOptions:
    grpc: str | None = DEFAULT_GRPC  # None: no gRPC receiver (browse a store)
    http: str = DEFAULT_HTTP
    store: str = DEFAULT_STORE
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    token_file: str | None = None
    config: DecodeConfig | None = None
    persist_every: float = PERSIST_EVERY_S


class Server:
    """A running ``flowscope serve``; :meth:`start`, then :meth:`stop` (idempotent)."""

    def __init__(self, options: ServeOptions, log: Callable[[str], None] = print) -> None:
        self.options = options
        self.log = log
        self.sink: StoreSink | None = None
        self.http: ApiServer | None = None
        self.grpc: StreamServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._stopped = False

    def start(self) -> None:
        o = self.options
        if (o.tls_cert is None) != (o.tls_key is None):
            raise FlowscopeError("--tls-cert and --tls-key go together")
        if o.tls_client_ca and not o.tls_cert:
            raise FlowscopeError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
        tokens = read_tokens(o.token_file) if o.token_file else None
        http_addr = parse_address(o.http, "--http")
        grpc_addr = parse_address(o.grpc, "--grpc") if o.grpc else None

        began = time.monotonic()
        self.sink = StoreSink.open(o.store, o.config)
        for note in self.sink.store.torn:
            self.log(f"store: {note}")
        store = self.sink.store
        batches = sum(log.batches for log in store.logs.values())
        self.log(f"store {Path(o.store).resolve()}: replayed {batches} batches from "
                 f"{len(store.logs)} collectors in {time.monotonic() - began:.1f} s")

        try:
            self.http = ApiServer(http_addr, self.sink, self._transport_collectors, self.log)
        except OSError as e:
            raise FlowscopeError(f"--http {o.http}: cannot listen: {e.strerror}") from None
        self._thread(self.http.serve_forever, "http")
        self.log(f"HTTP API on {self.http.url} (/api/sessions, /api/timeline, /api/mirrors, "
                 "/api/collectors, /healthz)")
        if not is_loopback(http_addr[0]):
            self.log(f"warning: the HTTP API on {http_addr[0]} is reachable from the network "
                     "and has no authentication")

        if grpc_addr is not None:
            self.grpc = self._start_grpc(grpc_addr, tokens)
        if o.persist_every > 0:
            self._thread(self._persist_loop, "persist")

    def _start_grpc(self, address: tuple[str, int], tokens: list[str] | None) -> StreamServer:
        o = self.options
        assert self.sink is not None
        host, port = address
        text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        server = start_server(text, self.sink, tls_cert=o.tls_cert, tls_key=o.tls_key,
                              tls_client_ca=o.tls_client_ca, tokens=tokens)
        security = ("mutual TLS" if o.tls_client_ca else "TLS") if o.tls_cert else "plaintext"
        text = f"[{host}]:{server.port}" if ":" in host else f"{host}:{server.port}"
        self.log(f"gRPC receiver on {text} ({security}, "
                 + (f"{len(tokens)} bearer token{'s' if len(tokens) > 1 else ''})" if tokens
                    else "no token required)"))
        if not is_loopback(host) and not (o.tls_cert and tokens):
            self.log(f"warning: gRPC on {host} is reachable from the network without TLS and "
                     "a token: anyone there can send batches")
        return server

    def _transport_collectors(self) -> dict[str, dict[str, Any]]:
        """Per-collector connection state from the transport (peer, connected, duplicates)."""
        if self.grpc is None:
            return {}
        return {row["collector_id"]: row for row in self.grpc.collectors()}

    def _thread(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=f"serve-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def _persist_loop(self) -> None:
        while not self._stopping.wait(self.options.persist_every):
            try:
                if self.sink is not None:
                    self.sink.persist()
            except Exception as e:  # a full disk must not stop the server
                self.log(f"warning: Parquet snapshot failed: {type(e).__name__}: {e}")

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        if self.grpc is not None:
            self.grpc.stop(5)  # streams in flight get 5 s; unacknowledged batches are resent
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        for t in self._threads:
            t.join(timeout=10)
        if self.sink is not None:
            if self.sink.persist(force=True):
                self.log(f"sessions, timeline and mirrors written to "
                         f"{self.sink.store.root / 'analysis'}")
            self.sink.close()


class _LogLines(logging.Handler):
    """The transport's log records (connections, refused tokens) as serve's own lines."""

    def __init__(self, log: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        level = "" if record.levelno <= logging.INFO else f"{record.levelname.lower()}: "
        self.log(f"{level}{record.getMessage()}")


def run(options: ServeOptions, log: Callable[[str], None] = print) -> None:
    """Serve until SIGINT or SIGTERM, then stop cleanly."""
    done = threading.Event()
    transport = logging.getLogger("flowscope.stream")
    handler = _LogLines(log)
    transport.addHandler(handler)
    transport.setLevel(logging.INFO)

    def on_signal(signum: int, _frame: object) -> None:
        log(f"{signal.Signals(signum).name}: stopping")
        done.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    server = Server(options, log)
    try:
        server.start()
        while not done.wait(1.0):
            pass
    finally:
        server.stop()
        transport.removeHandler(handler)
        for s, previous_handler in previous.items():
            signal.signal(s, previous_handler)
