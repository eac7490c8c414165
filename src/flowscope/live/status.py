"""The live status of ``flowscope listen``: what arrives, what the kernel and the mirror lost,
what is waiting to go upstream.

A :class:`Counters` object is updated by the receive loop; :class:`StatusReporter` reads it
from its own thread — a rich ``Live`` line on a terminal, a plain line every few seconds
otherwise (logs, systemd) — so a quiet network still gets a fresh status.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console

from flowscope.analyse.mirrors import MirrorTracker
from flowscope.decode import codes
from flowscope.sinks.addresses import ip_text


@dataclass
class Counters:
    """Cumulative since listen started; written by the receive loop only."""

    received: int = 0  # frames read from the ring or sockets
    received_bytes: int = 0  # their wire length
    kernel_drops: int = 0  # frames the kernel dropped before flowscope saw them
    decode_errors: int = 0
    filtered_out: int = 0
    sampled_out: int = 0
    kept: int = 0  # frames past filter and sampling
    written: int = 0  # frames written to pcapng
    files: int = 0
    batches_sent: int = 0
    backlog_batches: int = 0
    backlog_bytes: int = 0
    upstream: str | None = None  # "connected" / "reconnecting" / None when not streaming
    started_ns: int = field(default_factory=time.monotonic_ns)


def stream_lines(tracker: MirrorTracker, limit: int = 4) -> list[str]:
    """One short line per mirror stream, busiest first: kind, endpoints, id, packets, loss."""
    n = len(tracker)
    if not n:
        return []
    state, keys = tracker.state[:n], tracker.keys[:n]
    lines = []
    for s in np.argsort(-state["packets"], kind="stable")[:limit].tolist():
        k, st = keys[s], state[s]
        ident = (f" session {k['erspan_session']}" if k["erspan_session"] >= 0 else
                 f" vni {k['vni']}" if k["vni"] >= 0 else "")
        ends = (f"{ip_text(int(k['outer_ipver']), k['outer_src'].tobytes())}>"
                f"{ip_text(int(k['outer_ipver']), k['outer_dst'].tobytes())}")
        loss = (f", lost {int(st['lost']):,}" if st["advances"] > 0 else "")
        lines.append(f"{codes.TUNNELS.get(int(k['tunnel']), 'tunnel')} {ends}{ident}: "
                     f"{int(st['packets']):,} pkts{loss}")
    if n > limit:
        lines.append(f"... {n - limit} more mirror streams")
    return lines


def mirror_loss(tracker: MirrorTracker) -> int:
    """Frames lost by the mirror itself (GRE sequence gaps), all measurable streams."""
    n = len(tracker)
    st = tracker.state[:n]
    return int(st["lost"][st["advances"] > 0].sum()) if n else 0


def status_text(c: Counters, tracker: MirrorTracker, rate: tuple[float, float]) -> str:
    pps, bps = rate
    parts = [f"{pps:,.0f} pkts/s", f"{bps / 1e6:,.1f} Mbit/s",
             f"received {c.received:,}", f"kernel drops {c.kernel_drops:,}",
             f"mirror loss {mirror_loss(tracker):,}"]
    if c.filtered_out or c.sampled_out:
        parts.append(f"filtered {c.filtered_out:,} sampled out {c.sampled_out:,}")
    if c.files:
        parts.append(f"written {c.written:,} ({c.files} files)")
    if c.upstream is not None:
        parts.append(f"upstream {c.upstream}, sent {c.batches_sent:,} batches, backlog "
                     f"{c.backlog_batches:,} batches ({c.backlog_bytes / 1e6:,.1f} MB)")
    return " | ".join(parts)


class StatusReporter:
    """Shows the status every ``interval`` seconds (a live line on a terminal)."""

    def __init__(self, counters: Counters, tracker: MirrorTracker, console: Console, *,
                 interval: float = 10.0, refresh: Callable[[], None] | None = None) -> None:
        self.counters = counters
        self.tracker = tracker
        self.console = console
        self.live = console.is_terminal
        self.interval = 0.5 if self.live else interval
        self.refresh = refresh  # pulls fresh kernel/upstream counters before each render
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flowscope-status", daemon=True)
        self._last = (time.monotonic(), 0, 0)

    def start(self) -> StatusReporter:
        self._thread.start()
        return self

    def _rate(self) -> tuple[float, float]:
        now, c = time.monotonic(), self.counters
        t0, n0, b0 = self._last
        self._last = (now, c.received, c.received_bytes)
        dt = max(now - t0, 1e-9)
        return (c.received - n0) / dt, 8 * (c.received_bytes - b0) / dt

    def _render(self) -> str:
        if self.refresh is not None:
            self.refresh()
        text = status_text(self.counters, self.tracker, self._rate())
        if self.live:
            lines = stream_lines(self.tracker)
            text += "".join(f"\n  {line}" for line in lines)
        return text

    def _run(self) -> None:
        if self.live:
            from rich.live import Live
            from rich.text import Text

            with Live(Text(""), console=self.console, transient=True,
                      auto_refresh=False) as live:
                while not self._stop.wait(self.interval):
                    live.update(Text(self._render()), refresh=True)
            return
        while not self._stop.wait(self.interval):
            self.console.print(self._render())

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
