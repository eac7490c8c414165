"""``flowscope listen``: the live collector loop, batch by batch.

    receive (AF_PACKET ring, or GRE/VXLAN/Geneve sockets)
      -> decode (flowscope.decode) -> mirror accounting (analyse.mirrors.MirrorTracker,
         on every frame received, before any filter: the mirror's own loss needs them all)
      -> filter, UDF rules, 1-in-N sampling, slicing (flowscope.filters.Selector)
      -> rotating pcapng (live.rotate) and/or the upstream stream (flowscope.stream.Uplink),
         each batch with its BatchMeta counters.

Every frame is accounted for: ``received`` (read by flowscope) + ``kernel_drops`` (dropped
by the kernel because flowscope was too slow: ring or socket buffer full) is everything
that reached the capture point; ``filtered_out`` + ``sampled_out`` + what was kept is
``received``.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from flowscope.analyse.mirrors import MirrorTracker
from flowscope.batch import PacketBatch
from flowscope.decode import DecodeConfig, decode
from flowscope.decode.codes import ERRORS
from flowscope.errors import FlowscopeError
from flowscope.live.rotate import RotatingPcapng, Rotation
from flowscope.live.sockets import Endpoint
from flowscope.live.status import Counters


class Source(Protocol):
    def batches(self, stop: threading.Event, reuse: bool = False) -> Iterator[PacketBatch]: ...
    def stats(self) -> tuple[int, int]: ...
    def close(self) -> None: ...


@dataclass
class ListenOptions:
    """Everything ``flowscope listen`` was asked to do (the CLI fills it in)."""

    interface: str | None = None  # AF_PACKET on this interface, else the endpoints
    endpoints: list[Endpoint] = field(default_factory=list)
    direction: str = "in"
    buffer_bytes: int = 256 << 20  # kernel buffering: the ring, or each socket's buffer
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    filter: str | None = None
    udf: tuple[str, ...] = ()
    preset: str | None = None
    sample: int = 1
    snaplen: int = 0
    directory: Path | None = None
    rotation: Rotation = field(default_factory=Rotation)
    upstream: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    token_file: Path | None = None
    collector_id: str = field(default_factory=socket.gethostname)
    spool_dir: Path | None = None
    count: int | None = None  # stop after this many frames received
    duration_s: float | None = None  # stop after this many seconds

    def selecting(self) -> bool:
        return bool(self.filter or self.udf or self.preset or self.sample > 1 or self.snaplen)


def open_source(opts: ListenOptions) -> Source:
    if opts.interface:
        if opts.endpoints:
            raise FlowscopeError("--interface captures everything on the interface; do not "
                                 "combine it with --gre/--vxlan/--geneve")
        from flowscope.live.afpacket import PacketRing

        block = 1 << 22 if opts.buffer_bytes >= 8 << 22 else 1 << 16
        return PacketRing(opts.interface, direction=opts.direction, block_size=block,
                          block_count=max(2, opts.buffer_bytes // block))
    from flowscope.live.sockets import SocketSource

    return SocketSource(opts.endpoints, rcvbuf=opts.buffer_bytes)


def open_selector(opts: ListenOptions) -> Any:
    if not opts.selecting():
        return None
    try:
        from flowscope.filters import Selector
    except ImportError:
        raise FlowscopeError("filters, UDF rules, sampling and slicing are not available in "
                             "this build (flowscope.filters is missing)") from None
    return Selector(expr=opts.filter, udf=opts.udf, preset=opts.preset, sample=opts.sample,
                    snaplen=opts.snaplen, config=opts.decode)


def open_uplink(opts: ListenOptions) -> Any:
    if not opts.upstream:
        return None
    try:
        from flowscope.stream.uplink import Uplink
    except ImportError:
        raise FlowscopeError("--upstream is not available in this build (flowscope.stream "
                             "has no Uplink)") from None
    token = None
    if opts.token_file:
        try:
            token = Path(opts.token_file).read_text().strip()
        except OSError as e:
            raise FlowscopeError(f"{opts.token_file}: cannot read the token: "
                                 f"{e.strerror}") from None
    spool = opts.spool_dir or Path(os.environ.get("TMPDIR", "/var/tmp")) / \
        f"flowscope-spool-{opts.collector_id}"
    def text(path: Path | None) -> str | None:
        return str(path) if path is not None else None

    return Uplink(opts.upstream, opts.collector_id, spool, tls_ca=text(opts.tls_ca),
                  tls_cert=text(opts.tls_cert), tls_key=text(opts.tls_key), token=token)


class Listener:
    """The receive loop over one source; sinks are optional (none: count and account only,
    as the benchmark runs it)."""

    def __init__(self, source: Source, opts: ListenOptions, *, selector: Any = None,
                 writer: RotatingPcapng | None = None, uplink: Any = None) -> None:
        self.source = source
        self.opts = opts
        self.selector = selector
        self.writer = writer
        self.uplink = uplink
        self.tracker = MirrorTracker()
        self.counters = Counters(upstream="connecting" if uplink is not None else None)
        self.error_counts = np.zeros(len(ERRORS), np.int64)
        self.seq = 0
        self.started = time.monotonic()
        self.elapsed_s = 0.0

    def refresh(self) -> None:
        """Kernel and upstream counters, read fresh (the status thread calls this too)."""
        self.counters.kernel_drops = self.source.stats()[1]
        self.refresh_upstream()

    def refresh_upstream(self) -> None:
        c = self.counters
        if self.uplink is not None:
            c.backlog_batches, c.backlog_bytes = self.uplink.backlog()
            c.upstream = "connected" if self.uplink.connected else "reconnecting"

    def run(self, stop: threading.Event) -> Counters:
        opts, c = self.opts, self.counters
        deadline = None if opts.duration_s is None else self.started + opts.duration_s
        spare: np.ndarray | None = None
        timer = None
        if deadline is not None:
            timer = threading.Timer(opts.duration_s, stop.set)  # type: ignore[arg-type]
            timer.daemon = True
            timer.start()
        try:
            # Each batch is finished with (written, or encoded by the Uplink) before the
            # next is asked for, so the source may reuse its buffers.
            for batch in self.source.batches(stop, reuse=True):
                if opts.count is not None and c.received + len(batch) >= opts.count:
                    batch = batch.take(np.arange(opts.count - c.received))
                    stop.set()
                rows = decode(batch, opts.decode, spare)
                if spare is None or spare.shape[0] < rows.shape[0]:
                    spare = rows
                self.tracker.update(rows)
                c.received += len(batch)
                c.received_bytes += int(batch.wirelen.sum(dtype=np.int64))
                errors = np.bincount(rows["error"], minlength=len(ERRORS))
                self.error_counts += errors
                c.decode_errors += int(errors[1:].sum())
                self._deliver(batch, rows)
                if opts.count is not None and c.received >= opts.count:
                    break
        finally:
            if timer is not None:
                timer.cancel()
            self.elapsed_s = time.monotonic() - self.started
            self.refresh()
        return c

    def _deliver(self, batch: PacketBatch, rows: np.ndarray) -> None:
        c = self.counters
        if self.selector is not None:
            batch, rows = self.selector.apply(batch, rows)
            c.filtered_out = int(self.selector.filtered_out)
            c.sampled_out = int(self.selector.sampled_out)
        c.kept += int(rows.shape[0])
        if self.writer is not None:
            self.writer.write(batch, rows, self.tracker)
            c.written, c.files = self.writer.written, len(self.writer.files)
        if self.uplink is not None and rows.shape[0]:
            self.refresh()
            self.uplink.send(batch, self._meta())
            self.seq += 1
            c.batches_sent = self.seq

    def _meta(self) -> Any:
        from flowscope.stream.meta import BatchMeta

        c, o = self.counters, self.opts
        rules = ([o.filter] if o.filter else []) + [f"udf {r}" for r in o.udf] \
            + ([f"preset {o.preset}"] if o.preset else [])
        return BatchMeta(collector_id=o.collector_id, seq=self.seq, sample_rate=o.sample,
                         snaplen=o.snaplen, filter="; ".join(rules), received=c.received,
                         kernel_drops=c.kernel_drops, filtered_out=c.filtered_out,
                         sampled_out=c.sampled_out, sent_ns=time.time_ns())

    def close(self) -> None:
        try:
            if self.writer is not None:
                self.writer.close()
            if self.uplink is not None:
                self.uplink.close(timeout=5.0)
                self.refresh_upstream()
        finally:
            self.source.close()

    def error_summary(self) -> dict[str, int]:
        return {str(ERRORS[i]): int(n) for i, n in enumerate(self.error_counts) if i and n}


def summary_lines(listener: Listener) -> list[str]:
    """The final accounting, for stderr."""
    from flowscope.live.status import mirror_loss, stream_lines

    c = listener.counters
    secs = max(listener.elapsed_s, 1e-9)
    lines = [f"received {c.received:,} frames ({c.received_bytes / 1e6:,.1f} MB) in "
             f"{listener.elapsed_s:.1f} s ({c.received / secs:,.0f} frames/s); kernel drops "
             f"{c.kernel_drops:,}; received + kernel drops = {c.received + c.kernel_drops:,}"]
    if listener.selector is not None:
        lines.append(f"filtered out {c.filtered_out:,}, sampled out {c.sampled_out:,}, kept "
                     f"{c.kept:,}")
    errors = listener.error_summary()
    if errors:
        detail = ", ".join(f"{k} {v}" for k, v in sorted(errors.items(), key=lambda kv: -kv[1]))
        lines.append(f"{c.decode_errors:,} frames with decode errors ({detail})")
    if listener.writer is not None:
        w = listener.writer
        lines.append(f"wrote {w.written:,} frames to {len(w.files)} files in {w.directory}"
                     + (f"; {w.skipped:,} frames had no mirror encapsulation" if w.skipped
                        else ""))
    if listener.uplink is not None:
        lines.append(f"sent {c.batches_sent:,} batches upstream; backlog "
                     f"{c.backlog_batches:,} batches ({c.backlog_bytes / 1e6:,.1f} MB)")
    lines.append(f"mirror loss {mirror_loss(listener.tracker):,} (GRE sequence gaps)")
    lines.extend(f"  {line}" for line in stream_lines(listener.tracker, limit=16))
    return lines


def stop_on_signals(stop: threading.Event) -> None:
    """SIGINT and SIGTERM end the loop cleanly (main thread only)."""
    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def start(opts: ListenOptions) -> Listener:
    """Open the source and the sinks the options ask for."""
    if opts.directory is None and (opts.rotation.max_bytes or opts.rotation.max_ns):
        raise FlowscopeError("--rotate needs -w DIR")
    selector = open_selector(opts)  # before the sockets: a bad expression fails fast
    source = open_source(opts)
    try:
        note = f"; collector kept {selector.describe()}" if selector is not None else ""
        writer = (RotatingPcapng(opts.directory, opts.rotation, note=note)
                  if opts.directory is not None else None)
        uplink = open_uplink(opts)
    except BaseException:
        source.close()
        raise
    return Listener(source, opts, selector=selector, writer=writer, uplink=uplink)


def run(listener: Listener, stop: threading.Event, console: Any,
        status_interval: float = 10.0) -> Counters:
    """Run until stopped, with the status line; close everything."""
    from flowscope.live.status import StatusReporter

    status = StatusReporter(listener.counters, listener.tracker, console,
                            interval=status_interval, refresh=listener.refresh).start()
    try:
        return listener.run(stop)
    finally:
        status.close()
        listener.close()
