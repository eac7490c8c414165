"""The analysis server's end of the stream: authenticate, resume, hand batches to a sink, ack.

``start_server`` serves the Mirror service (proto/flowscope/v1/mirror.proto).  For each stream:

1. the bearer token (``authorization: Bearer <token>`` metadata) is checked when the server has
   tokens; a wrong or missing one ends the stream with UNAUTHENTICATED and a message saying so,
   logged with the peer's address;
2. the first message must be a Hello; the server answers with the highest sequence number the
   sink holds for that collector id (``BatchSink.last_seq``, -1 if none);
3. each FrameBatch is decoded (``flowscope.stream.codec``) and given to ``BatchSink.accept``,
   which returns once the batch is durable; only then is it acknowledged.  A batch whose seq
   is not above the last one held is acknowledged again and not passed on, so the sink never
   sees a duplicate.  Per collector id, batches are accepted one at a time, even when a
   reconnecting collector's new stream overlaps its old one.

Per-collector statistics (``StreamServer.collectors()``) feed the HTTP API's /api/collectors.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Collection, Iterator
from concurrent import futures
from dataclasses import asdict, dataclass, field
from typing import Protocol

import grpc

from flowscope.batch import PacketBatch
from flowscope.errors import FlowscopeError
from flowscope.stream.codec import FrameBatchError, decode
from flowscope.stream.meta import BatchMeta
from flowscope.stream.mirror_pb2 import Ack, Upload
from flowscope.stream.mirror_pb2_grpc import MirrorServicer, add_MirrorServicer_to_server
from flowscope.stream.uplink import channel_options

__all__ = ["BatchSink", "StreamServer", "start_server", "REFUSED_TOKEN"]

log = logging.getLogger("flowscope.stream")

REFUSED_TOKEN = "flowscope serve refused the stream: wrong bearer token (--token-file)"
REFUSED_NO_TOKEN = "flowscope serve refused the stream: no bearer token (--token-file)"
MAX_STREAMS = 64  # concurrent collector streams (one worker thread each)


class BatchSink(Protocol):
    """Where the server puts what collectors send (flowscope serve's store)."""

    def last_seq(self, collector_id: str) -> int:
        """The highest seq durably accepted from this collector, -1 if none."""
        ...

    def accept(self, meta: BatchMeta, batch: PacketBatch) -> None:
        """Store the batch; durable when this returns (the server acknowledges only then)."""
        ...


@dataclass
class _Collector:
    collector_id: str
    peer: str = ""
    software: str = ""
    streams: int = 0  # open streams (a reconnect can briefly overlap the old one)
    last_seen: float = 0.0  # wall clock, seconds
    last_seq: int = -1
    batches: int = 0  # accepted since the server started
    frames: int = 0
    duplicates: int = 0  # batches received again and not passed on
    meta: BatchMeta | None = None  # of the latest batch: the collector's counters
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class _Mirror(MirrorServicer):
    def __init__(self, sink: BatchSink, tokens: Collection[str] | None) -> None:
        self.sink = sink
        self.tokens = [t.encode() for t in tokens] if tokens is not None else None
        self.collectors: dict[str, _Collector] = {}
        self.lock = threading.Lock()

    def _authenticate(self, context: grpc.ServicerContext) -> None:
        if self.tokens is None:
            return
        header = dict(context.invocation_metadata()).get("authorization", "")
        scheme, _, token = str(header).partition(" ")
        if scheme.lower() != "bearer" or not token:
            message = REFUSED_NO_TOKEN
        elif any(hmac.compare_digest(token.strip().encode(), t) for t in self.tokens):
            return
        else:
            message = REFUSED_TOKEN
        log.warning("refused a collector stream from %s: %s", context.peer(), message)
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    def _collector(self, collector_id: str) -> _Collector:
        with self.lock:
            state = self.collectors.get(collector_id)
            if state is None:
                state = self.collectors[collector_id] = _Collector(collector_id)
                state.last_seq = self.sink.last_seq(collector_id)
            return state

    def Stream(self, request_iterator: Iterator[Upload],  # noqa: N802 (gRPC method name)
               context: grpc.ServicerContext) -> Iterator[Ack]:
        self._authenticate(context)
        peer = context.peer()
        first = next(request_iterator, None)
        hello = first.hello if first is not None and first.WhichOneof("kind") == "hello" else None
        if hello is None or not hello.collector_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "flowscope serve: a stream must start with a Hello naming the collector")
            return
        cid = hello.collector_id
        try:
            state = self._collector(cid)
        except Exception as e:
            log.exception("collector %r: the store cannot say what it holds", cid)
            context.abort(grpc.StatusCode.UNAVAILABLE,
                          f"flowscope serve cannot read its store: {e}")
            return
        with state.lock:
            state.peer, state.software = peer, hello.software
            state.streams += 1
            state.last_seen = time.time()
            held = state.last_seq
        log.info("collector %r connected from %s; resuming after seq %d", cid, peer, held)
        try:
            yield Ack(collector_id=cid, seq=held)
            for upload in request_iterator:
                if upload.WhichOneof("kind") != "batch":
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  "flowscope serve: only the first message may be a Hello")
                try:
                    meta, batch = decode(upload.batch)
                except FrameBatchError as e:
                    log.error("collector %r (%s): %s", cid, peer, e)
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"flowscope serve: {e}")
                if meta.collector_id != cid:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"flowscope serve: batch of collector {meta.collector_id!r} "
                                  f"on the stream of {cid!r}")
                try:
                    acked = self._accept(state, meta, batch)
                except Exception as e:  # the store failed: the collector keeps it and retries
                    log.exception("collector %r: could not store batch seq %d", cid, meta.seq)
                    context.abort(grpc.StatusCode.UNAVAILABLE,
                                  f"flowscope serve could not store batch {meta.seq}: {e}")
                yield Ack(collector_id=cid, seq=acked)
        finally:
            with state.lock:
                state.streams -= 1
                state.last_seen = time.time()
            log.info("collector %r (%s) stream ended", cid, peer)

    def _accept(self, state: _Collector, meta: BatchMeta, batch: PacketBatch) -> int:
        """Give the batch to the sink unless it is a duplicate; the seq to acknowledge."""
        with state.lock:
            state.last_seen = time.time()
            if meta.seq <= state.last_seq:
                state.duplicates += 1
                return state.last_seq
            self.sink.accept(meta, batch)
            state.last_seq = meta.seq
            state.batches += 1
            state.frames += len(batch)
            state.meta = meta
            return meta.seq


class StreamServer:
    """A running stream server: its port, its collectors, stop()."""

    def __init__(self, server: grpc.Server, port: int, mirror: _Mirror) -> None:
        self.server = server
        self.port = port
        self._mirror = mirror

    def collectors(self) -> list[dict]:
        """One dict per collector seen since the server started, for /api/collectors."""
        rows = []
        with self._mirror.lock:
            states = list(self._mirror.collectors.values())
        for s in states:
            with s.lock:
                rows.append({"collector_id": s.collector_id, "peer": s.peer,
                             "software": s.software, "connected": s.streams > 0,
                             "last_seen": s.last_seen, "last_seq": s.last_seq,
                             "batches": s.batches, "frames": s.frames,
                             "duplicates": s.duplicates,
                             "meta": asdict(s.meta) if s.meta is not None else None})
        return sorted(rows, key=lambda r: r["collector_id"])

    def stop(self, grace: float | None = None) -> None:
        self.server.stop(grace).wait()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self.server.wait_for_termination(timeout)


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise FlowscopeError(f"cannot read {what} {path}: {e.strerror}") from None


def start_server(address: str, sink: BatchSink, *, tls_cert: str | None = None,
                 tls_key: str | None = None, tls_client_ca: str | None = None,
                 tokens: Collection[str] | None = None) -> StreamServer:
    """Serve the Mirror stream on ``address`` (``host:port``; port 0 picks one: see ``.port``).

    TLS when ``tls_cert``/``tls_key`` are given; mutual TLS (client certificates signed by
    ``tls_client_ca`` required) when ``tls_client_ca`` is given too.  ``tokens``: the bearer
    tokens accepted (None: no token needed)."""
    mirror = _Mirror(sink, tokens)
    options = [*channel_options(), ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
               ("grpc.so_reuseport", 0)]
    server = grpc.server(futures.ThreadPoolExecutor(MAX_STREAMS, "flowscope-stream"),
                         options=options, maximum_concurrent_rpcs=MAX_STREAMS)
    add_MirrorServicer_to_server(mirror, server)
    try:
        if tls_cert or tls_key:
            if not (tls_cert and tls_key):
                raise FlowscopeError("TLS needs both a certificate and its key (--tls-cert, "
                                     "--tls-key)")
            creds = grpc.ssl_server_credentials(
                [(_read(tls_key, "--tls-key"), _read(tls_cert, "--tls-cert"))],
                root_certificates=_read(tls_client_ca, "--tls-client-ca") if tls_client_ca
                else None,
                require_client_auth=tls_client_ca is not None)
            port = server.add_secure_port(address, creds)
        elif tls_client_ca:
            raise FlowscopeError("mutual TLS (--tls-client-ca) needs --tls-cert and --tls-key")
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as e:
        raise FlowscopeError(f"cannot listen on {address} for collectors: {e}") from None
    if port == 0:
        raise FlowscopeError(f"cannot listen on {address} for collectors (address in use?)")
    server.start()
    log.info("listening for collectors on %s", address.rsplit(":", 1)[0] + f":{port}")
    return StreamServer(server, port, mirror)
