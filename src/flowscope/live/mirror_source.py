"""A software mirror source: capture an interface, select, encapsulate, send to a collector.

``flowscope mirror`` does what a switch's ERSPAN or VXLAN mirror session does, for hosts
whose switch cannot mirror and for testing collectors::

    AF_PACKET ring (both directions) -> drop our own tunnel packets -> Selector (filter,
    1-in-N sampling, slicing) -> Encapsulator (ERSPAN II/III or VXLAN, GRE sequence per
    session) -> TunnelSender (sendmmsg on a raw GRE or a UDP socket)

Every step works on whole batches.  Nothing is dropped without a count: frames our own
tunnel traffic made (``own``), frames the encapsulation cannot carry (``unsupported``),
frames the filter or the sampler left out (``filtered``), datagrams the kernel refused
(``send_errors``, by errno) and frames the ring had no room for (``kernel_drops``).

Our own packets: the copies leave through some interface; when that is the mirrored one,
the ring sees them too, and mirroring them would feed back without end.  So a frame that
is an IP packet to the collector carrying GRE (ERSPAN) or UDP to the VXLAN port is never
mirrored, whatever interface it is on; nor is an ICMP error quoting one (what a collector
with no GRE listener sends back for every copy).

Direction (ERSPAN III's D bit): on an interface, what the kernel says — a frame the ring
reports as PACKET_OUTGOING (sll_pkttype) left through the port (egress, also when a bridge
or a router forwards it with another source address); any other arrived (ingress).  Frames
from files have no such mark: there a frame whose Ethernet source is the interface's own
address counts as egress.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flowscope.batch import PacketBatch
from flowscope.decode import ethernet, ip, transport
from flowscope.decode.codes import LINKTYPE_ETHERNET, LINKTYPE_RAW
from flowscope.decode.layout import read
from flowscope.encap import KINDS, VXLAN, Encapsulator, MirrorSession
from flowscope.encap.vxlan import PORT as VXLAN_PORT
from flowscope.errors import FlowscopeError
from flowscope.jit import njit

INGRESS, EGRESS = 1, 2  # codes.DIRECTIONS


# ICMP errors that quote the packet they answer (RFC 792: destination unreachable, time
# exceeded, parameter problem; RFC 4443: the same four ICMPv6 errors).
ICMP_ERRORS = (3, 11, 12)
ICMPV6_ERRORS = (1, 2, 3, 4)


@njit(cache=True)
def own_tunnel_frames(buf, offset, caplen, linktype, collector, ipver, proto, port,
                      out):  # pragma: no cover - compiled
    """out[i] = True where frame i is one of our copies: an IP packet to ``collector`` (16
    bytes, IPv4 in the first 4) of protocol ``proto`` (47 GRE, or 17 UDP to ``port``), or an
    ICMP error quoting one (a collector with no GRE listener answers each copy with
    protocol-unreachable; mirroring those would feed back for ever)."""
    for i in range(offset.shape[0]):
        out[i] = False
        p = offset[i]
        end = p + caplen[i]
        if linktype[i] == LINKTYPE_ETHERNET:
            if p + ethernet.HEADER_LEN > end:
                continue
            et = read(buf, p, ethernet.ETHERTYPE)
            p += ethernet.HEADER_LEN
            while ((et == ethernet.TPID_8021Q or et == ethernet.TPID_8021AD
                    or et == ethernet.TPID_QINQ_OLD) and p + ethernet.VLAN_LEN <= end):
                et = read(buf, p, ethernet.VLAN_ETHERTYPE)
                p += ethernet.VLAN_LEN
            want = ethernet.ETHERTYPE_IPV4 if ipver == 4 else ethernet.ETHERTYPE_IPV6
            if et != want:
                continue
        elif linktype[i] != LINKTYPE_RAW:
            continue
        for quoted in range(2):  # the packet itself, then the one an ICMP error quotes
            if ipver == 4:
                if p + ip.IPV4_MIN_LEN > end or buf[p] >> 4 != 4:
                    break
                same = True
                for k in range(4):
                    same &= buf[p + ip.V4_DST_OFFSET + k] == collector[k]
                nh = read(buf, p, ip.V4_PROTOCOL)
                l4 = p + read(buf, p, ip.V4_IHL) * 4
            else:
                if p + ip.IPV6_LEN > end or buf[p] >> 4 != 6:
                    break
                same = True
                for k in range(16):
                    same &= buf[p + ip.V6_DST_OFFSET + k] == collector[k]
                nh = read(buf, p, ip.V6_NEXT_HEADER)
                l4 = p + ip.IPV6_LEN
            if same and nh == proto:
                if proto == ip.PROTO_UDP:
                    out[i] = (l4 + 4 <= end
                              and (np.int64(buf[l4 + 2]) << 8 | buf[l4 + 3]) == port)
                else:
                    out[i] = True
                break
            if quoted or l4 + transport.ICMP_HEADER_LEN > end:
                break
            icmp_type = read(buf, l4, transport.ICMP_TYPE)
            if not ((ipver == 4 and nh == ip.PROTO_ICMP and icmp_type in ICMP_ERRORS)
                    or (ipver == 6 and nh == ip.PROTO_ICMPV6 and icmp_type in ICMPV6_ERRORS)):
                break
            p = l4 + transport.ICMP_HEADER_LEN


def directions(batch: PacketBatch, own_mac: bytes | None) -> np.ndarray:
    """codes.DIRECTIONS per frame: egress where the Ethernet source is ``own_mac``."""
    n = len(batch)
    out = np.full(n, INGRESS, np.int8)
    if own_mac is None or n == 0:
        return out
    ether = (batch.linktype == LINKTYPE_ETHERNET) & (batch.caplen >= ethernet.HEADER_LEN)
    idx = np.flatnonzero(ether)
    src = batch.buf[batch.offset[idx, None] + np.arange(6, 12)]
    mine = (src == np.frombuffer(own_mac, np.uint8)).all(axis=1)
    out[idx[mine]] = EGRESS
    return out


@dataclass
class MirrorStats:
    """What the mirror did so far (all cumulative)."""

    packets: int = 0  # frames captured
    bytes: int = 0  # their bytes on the wire
    own: int = 0  # our own tunnel packets, never mirrored
    filtered: int = 0  # left out by --filter or --sample
    unsupported: int = 0  # link type the encapsulation cannot carry
    sent: int = 0  # tunnel datagrams the kernel took
    sent_bytes: int = 0  # their bytes (tunnel payload, without the outer IP/UDP header)
    send_errors: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # send errors by errno name
    kernel_drops: int = 0  # frames the capture ring had no room for

    def line(self) -> str:
        text = (f"{self.packets:,} packets, {self.bytes:,} bytes captured; {self.sent:,} sent "
                f"({self.sent_bytes:,} bytes); {self.send_errors:,} send errors; "
                f"{self.kernel_drops:,} kernel drops")
        extra = [f"{n:,} {what}" for n, what in ((self.filtered, "filtered"),
                                               (self.own, "own tunnel packets skipped"),
                                               (self.unsupported, "unsupported link type"))
                 if n]
        if self.errors:
            extra.append(", ".join(f"{k} {v:,}" for k, v in sorted(self.errors.items())))
        return text + (f" ({'; '.join(extra)})" if extra else "")


@dataclass(frozen=True)
class MirrorConfig:
    """``flowscope mirror``'s settings."""

    interface: str
    to: str  # the collector's host name or address
    kind: str = "erspan2"  # flowscope.encap kind: erspan2, erspan3, vxlan
    session: int = 1  # ERSPAN session id, or the VNI for VXLAN
    filter: str | None = None
    sample: int = 1
    snaplen: int = 0  # 0: whole frames
    port: int = VXLAN_PORT  # VXLAN destination port
    count: int | None = None  # stop after this many copies sent (or refused)
    duration: float | None = None  # stop after this many seconds


def interface_info(name: str) -> tuple[int, bytes | None]:
    """(ifindex, Ethernet address or None) of a local interface."""
    try:
        index = socket.if_nametoindex(name)
    except OSError:
        raise FlowscopeError(f"no interface {name!r} here (see `ip link`)") from None
    mac: bytes | None = None
    try:
        text = Path("/sys/class/net", name, "address").read_text().strip()
        raw = bytes.fromhex(text.replace(":", ""))
        mac = raw if len(raw) == 6 and any(raw) else None
    except (OSError, ValueError):
        pass
    return index, mac


class Mirror:
    """Selection, encapsulation and sending for batches from any source (a capture ring,
    or capture files in tests and replays)."""

    def __init__(self, config: MirrorConfig, sender, *, port_index: int = 0,  # type: ignore[no-untyped-def]
                 own_mac: bytes | None = None) -> None:
        self.config = config
        self.sender = sender  # TunnelSender, or anything with send(TunnelBatch) and counters
        self.own_mac = own_mac
        self.session = MirrorSession(config.kind, config.session, port_index=port_index)
        self.encapsulator = Encapsulator(self.session)
        self.selector = _selector(config)
        self.stats = MirrorStats()
        family = getattr(sender, "family", socket.AF_INET)
        self._ipver = 4 if family == socket.AF_INET else 6
        packed = socket.inet_pton(family, getattr(sender, "address", "0.0.0.0"))
        self._collector = np.frombuffer(packed.ljust(16, b"\0"), np.uint8)
        self._proto = ip.PROTO_UDP if config.kind == VXLAN else ip.PROTO_GRE

    @property
    def done(self) -> bool:
        c = self.config.count
        return c is not None and self.stats.sent + self.stats.send_errors >= c

    def process(self, batch: PacketBatch, direction: np.ndarray | None = None) -> None:
        """Mirror one batch of captured frames (``direction``: codes.DIRECTIONS per frame;
        by default from the Ethernet source address)."""
        st = self.stats
        st.packets += len(batch)
        st.bytes += int(batch.wirelen.sum())
        if direction is None:
            direction = directions(batch, self.own_mac)
        own = np.empty(len(batch), np.bool_)
        own_tunnel_frames(batch.buf, batch.offset, batch.caplen, batch.linktype,
                          self._collector, self._ipver, self._proto, self.config.port, own)
        if own.any():
            st.own += int(own.sum())
            keep = np.flatnonzero(~own)
            batch, direction = batch.take(keep), direction[keep]
        if self.selector is not None and len(batch):
            batch, direction = self._select(batch, direction)
        if self.config.count is not None:
            room = self.config.count - st.sent - st.send_errors
            if room < len(batch):
                batch, direction = batch.take(np.arange(max(0, room))), direction[:max(0, room)]
        if not len(batch):
            return
        tunnel = self.encapsulator.encapsulate(batch, direction)
        st.unsupported = self.encapsulator.unsupported
        self.sender.send(tunnel)
        st.sent = self.sender.sent
        st.sent_bytes = self.sender.sent_bytes
        st.errors = dict(self.sender.errors)
        st.send_errors = sum(st.errors.values())

    def run(self, batches: Iterable[PacketBatch], stop: threading.Event,
            direction_of: Callable[[PacketBatch], np.ndarray] | None = None) -> MirrorStats:
        """Mirror every batch until the input ends, ``stop`` is set, or --count is reached;
        ``direction_of(batch)`` gives the frames' directions where the source knows them."""
        for batch in batches:
            self.process(batch, None if direction_of is None else direction_of(batch))
            if self.done:
                stop.set()
            if stop.is_set():
                break
        return self.stats

    def _select(self, batch: PacketBatch,
                direction: np.ndarray) -> tuple[PacketBatch, np.ndarray]:
        """--filter, --sample, --snaplen: the filters' Selector on the decoded frames, with
        the capture direction in the rows (so ``direction egress`` filters work)."""
        from flowscope.decode import decode

        rows = decode(batch)
        rows["direction"] = direction
        kept, _ = self.selector.apply(batch, rows)
        # each kept frame's direction, found by its frame number
        order = np.argsort(batch.frame, kind="stable")
        where = order[np.searchsorted(batch.frame, kept.frame, sorter=order)]
        sel = self.selector
        self.stats.filtered = sel.filtered_out + sel.sampled_out
        return kept, direction[where]


def _selector(config: MirrorConfig):  # type: ignore[no-untyped-def]
    """The filters' Selector for --filter/--sample/--snaplen, or None when none is asked."""
    if config.filter is None and config.sample == 1 and config.snaplen == 0:
        return None
    from flowscope.filters import Selector

    return Selector(expr=config.filter, sample=config.sample, snaplen=config.snaplen)


def run_live(config: MirrorConfig, stop: threading.Event,
             status: Callable[[MirrorStats], None] | None = None,
             status_interval: float = 0.5,
             ready: Callable[[], None] | None = None) -> MirrorStats:
    """Capture ``config.interface`` and mirror it until ``stop`` is set (or --count /
    --duration is reached).  ``ready`` is called once the capture ring and the socket are
    open (frames from then on are mirrored); ``status`` with the counters about every
    ``status_interval`` seconds and once at the end."""
    from flowscope.live.afpacket import PacketRing
    from flowscope.live.tunnel_sender import TunnelSender

    if config.kind not in KINDS.values():
        raise FlowscopeError(f"unknown mirror type {config.kind!r}")
    MirrorSession(config.kind, config.session)  # bad settings fail before anything opens
    _selector(config)
    ifindex, mac = interface_info(config.interface)
    with TunnelSender(config.to, config.kind, port=config.port) as sender, \
            PacketRing(config.interface, direction="both", timeout_ms=50) as ring:
        mirror = Mirror(config, sender, port_index=ifindex, own_mac=mac)

        def report() -> None:
            mirror.stats.kernel_drops = ring.stats()[1]
            if status is not None:
                status(mirror.stats)

        def reporter() -> None:
            while not stop.wait(status_interval):
                report()

        timer = (threading.Timer(config.duration, stop.set) if config.duration is not None
                 else None)
        thread = threading.Thread(target=reporter, name="mirror-status", daemon=True)
        if timer is not None:
            timer.start()
        thread.start()
        if ready is not None:
            ready()
        try:
            # the kernel says which frames this host sent (sll_pkttype PACKET_OUTGOING):
            # egress even when forwarded or bridged with another source address
            mirror.run(ring.batches(stop), stop,
                       lambda _: np.where(ring.outgoing, EGRESS, INGRESS).astype(np.int8))
        finally:
            stop.set()
            thread.join()
            if timer is not None:
                timer.cancel()
        report()
    return mirror.stats
