"""Uplink: the collector's end of the stream — batches to the analysis server, acknowledged.

``send`` copies a batch (one vectorised gather, so the capture loop may reuse its buffers at
once) and hands it to an encoder thread, which compresses it and appends it to the spool; a
sender thread streams the spool to the server and forgets what the server acknowledges.  So
nothing is lost while the server is down, the link is slow or the collector restarts, and the
capture loop waits neither for the network nor for the disk — unless the disk falls behind by
more than ``queue_batches`` batches, when ``send`` waits (backpressure, never silent loss).

The stream (proto/flowscope/v1/mirror.proto): Hello with the collector id; the server answers
with the highest sequence number it holds; the Uplink resumes right after it, keeping at most
``window`` batches unacknowledged (flow control on top of HTTP/2's own).  A broken stream is
retried with exponential backoff (0.1 s doubling to 5 s, jittered).  A refusal that retrying
cannot cure (wrong token, a server that is not flowscope, a batch the server rejects) stops
the Uplink: ``error`` holds the server's message and ``send`` raises it.

Sequence numbers are the Uplink's: ``send`` ignores ``meta.seq`` and ``meta.collector_id``.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import numpy as np

from flowscope import __version__
from flowscope.batch import PacketBatch
from flowscope.errors import FlowscopeError
from flowscope.stream.codec import compact, encode
from flowscope.stream.meta import BatchMeta
from flowscope.stream.mirror_pb2 import Ack, FrameBatch, Hello, Upload
from flowscope.stream.mirror_pb2_grpc import MirrorStub
from flowscope.stream.spool import Spool

__all__ = ["Uplink", "UplinkError", "channel_options"]

log = logging.getLogger("flowscope.stream")

# Refusals no retry can cure: the user has to change something.
PERMANENT = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
             grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED,
             grpc.StatusCode.FAILED_PRECONDITION}
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0  # seconds
MAX_MESSAGE_BYTES = 64 << 20  # both ends' gRPC message limit
PART_BYTES = 8 << 20  # larger batches travel in several FrameBatches


def channel_options() -> list[tuple[str, int]]:
    """gRPC channel arguments both ends use: message size, keepalive to notice a dead peer."""
    return [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0)]


class UplinkError(FlowscopeError):
    """The server refused the stream in a way retrying cannot cure."""


def _read(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise FlowscopeError(f"cannot read {what} {path}: {e.strerror}") from None


@dataclass(slots=True)
class _Attempt:
    """One stream: resumed once the server answered the Hello; done once it ended."""

    resumed: bool = False
    done: bool = False
    cursor: int = -1  # highest local seq sent (or held by the server) on this stream


class Uplink:
    def __init__(self, target: str, collector_id: str, spool_dir: str | Path, *,
                 tls_ca: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None, token: str | None = None,
                 spool_limit_bytes: int = 1 << 30, compression: bool = True,
                 window: int = 16, queue_batches: int = 64, fsync_interval: float = 1.0) -> None:
        if not collector_id:
            raise FlowscopeError("a collector id is needed to stream upstream")
        self.target = target
        self.collector_id = collector_id
        self.window = window
        self.error: str | None = None  # the permanent refusal, once there is one
        self.last_error: str | None = None  # the latest transient failure, for status lines
        self.connected = False
        self._spool = Spool(spool_dir, spool_limit_bytes, collector_id=collector_id,
                            fsync_interval=fsync_interval)
        self._fsync_interval = fsync_interval
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._compress = compression  # zstd on the frame bytes, before spooling (codec.py)
        if tls_ca or tls_cert or tls_key:
            if bool(tls_cert) != bool(tls_key):
                raise FlowscopeError("--tls-cert and --tls-key go together (mutual TLS)")
            creds = grpc.ssl_channel_credentials(_read(tls_ca, "--tls-ca"),
                                                 _read(tls_key, "--tls-key"),
                                                 _read(tls_cert, "--tls-cert"))
            self._channel = grpc.secure_channel(target, creds, channel_options())
        else:
            self._channel = grpc.insecure_channel(target, channel_options())
        self._stub = MirrorStub(self._channel)
        self._cond = threading.Condition()
        self._closing = False  # close() called: end the stream once all is acknowledged
        self._stopped = False  # stop now
        self._call: grpc.Future | None = None
        self._handoff: queue.Queue[tuple[PacketBatch, BatchMeta] | None] = queue.Queue(
            queue_batches)
        self._queued = [0, 0]  # batches, bytes handed off and not yet spooled
        self._encoder = threading.Thread(target=self._encode_loop, name="flowscope-encode",
                                         daemon=True)
        self._sender = threading.Thread(target=self._run, name="flowscope-uplink", daemon=True)
        self._syncer = threading.Thread(target=self._sync_loop, name="flowscope-spool-sync",
                                        daemon=True)
        self._encoder.start()
        self._sender.start()
        self._syncer.start()

    # -- the capture loop's side ---------------------------------------------------------

    def send(self, batch: PacketBatch, meta: BatchMeta) -> None:
        """Queue a batch for the server; ``batch`` may be reused as soon as this returns."""
        if self._closing:
            raise UplinkError(self.error or "the uplink is closed")
        owned = _copy(batch)
        with self._cond:
            self._queued[0] += 1
            self._queued[1] += owned.buf.size
        self._handoff.put((owned, meta))
        if self.error is not None:
            raise UplinkError(self.error)  # spooled all the same: a restart sends it

    def backlog(self) -> tuple[int, int]:
        """(batches, bytes) not yet acknowledged by the server (bytes as spooled, compressed)."""
        batches, size = self._spool.backlog()
        with self._cond:
            return batches + self._queued[0], size + self._queued[1]

    def _pending(self) -> bool:
        with self._cond:
            return self._queued[0] > 0 or self._spool.backlog()[0] > 0

    @property
    def acked_seq(self) -> int:
        """The highest sequence number the server acknowledged (-1: none yet)."""
        base = self._spool.seq_base
        return -1 if base is None or self._spool.acked < 0 else self._spool.acked + base

    @property
    def spool_dropped(self) -> int:
        return self._spool.dropped

    def close(self, timeout: float = 10.0) -> bool:
        """Send what is left (waiting at most ``timeout`` seconds), then stop.

        True if the server acknowledged everything; otherwise the rest stays in the spool and
        the next Uplink on the same spool directory sends it."""
        with self._cond:
            if self._closing:  # closed before: nothing more to do
                return self._spool.backlog()[0] == 0
            self._closing = True
            self._cond.notify_all()
        self._handoff.put(None)
        with self._cond:
            self._cond.wait_for(lambda: self.error is not None or not self._pending(), timeout)
            self._stopped = True
            self._cond.notify_all()
            call = self._call
        if call is not None:
            call.cancel()
        self._encoder.join()  # the hand-off goes to the spool in any case
        self._sender.join()
        self._syncer.join()
        self._channel.close()
        self._spool.close()
        return self._spool.backlog()[0] == 0

    def __enter__(self) -> Uplink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the sender thread ---------------------------------------------------------------

    def _run(self) -> None:
        backoff = BACKOFF_FIRST
        while True:
            with self._cond:
                if self._stopped or (self._closing and not self._pending()):
                    return
            attempt = _Attempt()
            try:
                self._stream(attempt)
            except grpc.RpcError as e:
                code, details = e.code(), e.details() or ""
                if self._stopped:
                    return
                if code in PERMANENT:
                    self._fail(details or f"{self.target} refused the stream: {code.name}")
                    return
                failure = f"{code.name}: {details}"
                if self.last_error != failure:
                    log.warning("upstream %s: %s; retrying", self.target, failure)
                self.last_error = failure
            finally:
                with self._cond:
                    attempt.done = True
                    self.connected = False
                    self._call = None
                    self._cond.notify_all()
            if attempt.resumed:
                backoff = BACKOFF_FIRST
            with self._cond:
                self._cond.wait_for(lambda: self._stopped, backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _fail(self, message: str) -> None:
        log.error("upstream %s: %s", self.target, message)
        with self._cond:
            self.error = message
            self._cond.notify_all()

    def _stream(self, attempt: _Attempt) -> None:
        call = self._stub.Stream(self._uploads(attempt), metadata=self._metadata)
        with self._cond:
            self._call = call
            if self._stopped:
                call.cancel()
        for ack in call:
            if not attempt.resumed:
                self._resume(attempt, ack)
            else:
                self._acknowledged(ack)

    def _resume(self, attempt: _Attempt, ack: Ack) -> None:
        """The server holds everything up to ack.seq: carry on right after it."""
        spool, held = self._spool, ack.seq
        if spool.seq_base is None:  # a fresh spool: its 0 comes right after what the server holds
            spool.set_seq_base(held + 1)
        elif held > spool.seq_base + spool.next_seq - 1:
            log.warning("upstream %s already holds seq %d of %r, beyond the %d this collector "
                        "numbered: another collector with the same id?  Numbering on from %d",
                        self.target, held, self.collector_id,
                        spool.seq_base + spool.next_seq - 1, held + 1)
            spool.set_seq_base(held + 1 - spool.first_pending())
        cursor = held - spool.seq_base  # type: ignore[operator]
        if cursor < spool.acked:
            log.warning("upstream %s holds %r only up to seq %d, though it acknowledged more "
                        "before; resending what the spool still has", self.target,
                        self.collector_id, held)
        spool.ack(cursor)
        with self._cond:
            attempt.cursor = cursor
            attempt.resumed = True
            self.connected = True
            self.last_error = None
            self._cond.notify_all()
        log.info("upstream %s: connected, server holds %r up to seq %d", self.target,
                 self.collector_id, held)

    def _acknowledged(self, ack: Ack) -> None:
        assert self._spool.seq_base is not None
        self._spool.ack(ack.seq - self._spool.seq_base)
        with self._cond:
            self._cond.notify_all()

    def _uploads(self, attempt: _Attempt):  # -> Iterator[Upload], consumed by a gRPC thread
        yield Upload(hello=Hello(collector_id=self.collector_id,
                                 software=f"flowscope {__version__}"))
        with self._cond:
            self._cond.wait_for(lambda: attempt.resumed or attempt.done or self._stopped)
        while True:
            with self._cond:
                while True:
                    if attempt.done or self._stopped:
                        return
                    in_flight = attempt.cursor - self._spool.acked
                    if in_flight < self.window and self._spool.next_seq - 1 > attempt.cursor:
                        break
                    if self._closing and not self._pending():
                        return  # all acknowledged: end the stream
                    self._cond.wait(0.5)
                after = attempt.cursor
            record = self._spool.read_after(after)
            if record is None:
                continue
            seq, payload = record
            batch = FrameBatch.FromString(payload)
            batch.seq = seq + self._spool.seq_base  # type: ignore[operator]
            attempt.cursor = seq
            yield Upload(batch=batch)

    # -- the encoder thread --------------------------------------------------------------

    def _encode_loop(self) -> None:
        while (item := self._handoff.get()) is not None:
            batch, meta = item
            try:
                for part in _parts(batch):
                    numbered = replace(meta, collector_id=self.collector_id, seq=0,
                                       spool_dropped=self._spool.dropped)
                    self._spool.append(encode(part, numbered, self._compress).SerializeToString())
            except (OSError, FlowscopeError) as e:  # disk full, unwritable spool ...
                self._spool.lost(1)
                self.last_error = f"spool: {e}"
                log.error("upstream %s: a batch of %d frames is lost: cannot spool it: %s",
                          self.target, len(batch), e)
            with self._cond:
                self._queued[0] -= 1
                self._queued[1] -= batch.buf.size
                self._cond.notify_all()

    def _sync_loop(self) -> None:
        """Make the spool durable every fsync_interval, off the capture loop's thread."""
        while True:
            with self._cond:
                if self._cond.wait_for(lambda: self._stopped, self._fsync_interval or 1.0):
                    return
            if self._fsync_interval:
                self._spool.sync()


def _parts(batch: PacketBatch) -> list[PacketBatch]:
    """The batch cut into runs of frames of at most PART_BYTES captured bytes each."""
    n = len(batch)
    ends = np.cumsum(batch.caplen, dtype=np.int64)
    if n == 0 or ends[-1] <= PART_BYTES:
        return [batch]
    cuts = [0]
    while cuts[-1] < n:
        base = ends[cuts[-1] - 1] if cuts[-1] else 0
        cut = int(np.searchsorted(ends, base + PART_BYTES, side="right"))
        cuts.append(max(cut, cuts[-1] + 1))
    return [batch.take(np.arange(a, b)) for a, b in zip(cuts, cuts[1:], strict=False)]


def _copy(batch: PacketBatch) -> PacketBatch:
    """The batch's frames in a buffer of their own, back to back (the caller's may be reused)."""
    buf, start = compact(batch)
    if np.may_share_memory(buf, batch.buf):
        buf = buf.copy()
    return PacketBatch(buf, start, batch.caplen.copy(), batch.wirelen.copy(), batch.ts_ns.copy(),
                       batch.linktype.copy(), batch.frame.copy())
