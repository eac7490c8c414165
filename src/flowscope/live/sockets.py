"""Tunnel endpoints on ordinary sockets: a raw IPv4 socket for GRE (ERSPAN), UDP sockets for
VXLAN and Geneve — mirror traffic addressed to this host, no AF_PACKET needed.

Each socket is drained with ``recvmmsg(2)`` (many datagrams per system call) into
preallocated slots; a compiled kernel then packs the datagrams into one PacketBatch of
raw IPv4 packets (LINKTYPE_IPV4, 228), so the decoder sees whole tunnel packets:

* the raw socket (``raw(7)``: "the IPv4 header is included in the received packet")
  already gives IPv4 header + GRE + ERSPAN + frame;
* a UDP socket gives only the payload (the VXLAN or Geneve header and what follows), so
  an IPv4 header (RFC 791) and a UDP header (RFC 768) are synthesised in front of it from
  the sender's address (``msg_name``), the address the datagram was sent to
  (``IP_PKTINFO``'s ``ipi_addr``) and the socket's port — the mirror stream keeps its
  outer source and destination.  IP id, TTL and the UDP checksum of the original are not
  known and are written as 0, 64 and 0 (no checksum, RFC 768).

Per-datagram control messages (``cmsg(3)``) carry the kernel receive time
(``SO_TIMESTAMPNS``) and ``IP_PKTINFO``.  Kernel drops — datagrams discarded because the
receive buffer was full — come from the socket's ``sk_drops`` counter (``SO_MEMINFO``,
``SK_MEMINFO_DROPS``; the same counter as the ``drops`` column of /proc/net/{raw,udp}).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from flowscope.batch import PacketBatch
from flowscope.decode.codes import LINKTYPE_IPV4
from flowscope.errors import FlowscopeError
from flowscope.jit import njit

IPPROTO_GRE = 47
VXLAN_PORT = 4789  # RFC 7348 §5
GENEVE_PORT = 6081  # RFC 8926 §3.3
SO_TIMESTAMPNS = 35  # SO_TIMESTAMPNS_OLD: struct timespec of two 64-bit words
SO_RCVBUFFORCE = 33
SO_MEMINFO = 55
SK_MEMINFO_DROPS = 8
SK_MEMINFO_VARS = 9
IP_PKTINFO = 8
SOL_SOCKET, IPPROTO_IP = 1, 0
MSG_DONTWAIT, MSG_TRUNC = 0x40, 0x20
UDP_HEADER_ROOM = 28  # synthesised IPv4 (20) + UDP (8)
CONTROL_SIZE = 128  # CMSG_SPACE(timespec) + CMSG_SPACE(in_pktinfo) = 64, with room to spare

# struct mmsghdr (x86-64/arm64 LP64): struct msghdr (56 bytes) then unsigned int msg_len.
MMSGHDR = np.dtype({
    "names": ["name", "namelen", "iov", "iovlen", "control", "controllen", "flags", "msg_len"],
    "formats": [np.uint64, np.uint32, np.uint64, np.uint64, np.uint64, np.uint64, np.int32,
                np.uint32],
    "offsets": [0, 8, 16, 24, 32, 40, 48, 56],
    "itemsize": 64,
})

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_recvmmsg = _libc.recvmmsg
_recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                      ctypes.c_void_p]
_recvmmsg.restype = ctypes.c_int


@dataclass(frozen=True)
class Endpoint:
    """One tunnel endpoint to receive on: ``gre`` (IP protocol 47), ``vxlan`` or ``geneve``
    (a UDP port), on ``address`` (all local addresses by default)."""

    kind: str
    port: int = 0
    address: str = "0.0.0.0"

    def __str__(self) -> str:
        return "gre (IP protocol 47)" if self.kind == "gre" else f"{self.kind} udp/{self.port}"


@njit(inline="always", cache=True)
def _le(b, p, size):  # pragma: no cover - compiled; host order (little-endian)
    v = np.int64(0)
    for k in range(size - 1, -1, -1):
        v = (v << 8) | np.int64(b[p + k])
    return v


@njit(cache=True)
def control_messages(ctrl, length, now_ns, dst):  # pragma: no cover - compiled
    """Walk one datagram's control messages (cmsghdr: size_t len, int level, int type,
    data 8-aligned): the receive time in ns, and the header destination into ``dst``."""
    ts = now_ns
    q = 0
    while q + 16 <= length:
        clen = _le(ctrl, q, 8)
        if clen < 16 or q + clen > length:  # malformed or cut (MSG_CTRUNC): stop here
            break
        level = _le(ctrl, q + 8, 4)
        kind = _le(ctrl, q + 12, 4)
        if level == SOL_SOCKET and kind == SO_TIMESTAMPNS and clen >= 32:
            ts = _le(ctrl, q + 16, 8) * 1_000_000_000 + _le(ctrl, q + 24, 8)
        elif level == IPPROTO_IP and kind == IP_PKTINFO and clen >= 28:
            dst[:] = ctrl[q + 24 : q + 28]  # in_pktinfo.ipi_addr
        q += (clen + 7) & ~7
    return ts


@njit(cache=True)
def pack_datagrams(slots, slot_size, room, count, msg_len, names, control, controllen,
                   local_port, now_ns, out, p, offset, caplen, wirelen, ts_ns,
                   n):  # pragma: no cover - compiled
    """Append ``count`` received datagrams to the batch arrays as IPv4 packets; with
    ``room`` (UDP) synthesise the IPv4 and UDP headers.  Returns (frames, bytes used)."""
    dst = np.zeros(4, np.uint8)
    for i in range(count):
        length = np.int64(msg_len[i])  # MSG_TRUNC: the datagram's real length
        base = i * slot_size
        got = min(length, slot_size - room)
        ts_ns[n] = control_messages(control[i], controllen[i], now_ns, dst)
        offset[n] = p
        if room:
            total = UDP_HEADER_ROOM + length
            h = out[p : p + UDP_HEADER_ROOM]
            h[0] = 0x45  # version 4, IHL 5
            h[1] = 0
            h[2] = total >> 8
            h[3] = total & 0xFF
            h[4:8] = 0  # id 0; flags and fragment offset 0
            h[8] = 64  # TTL
            h[9] = 17  # UDP
            h[10] = 0
            h[11] = 0
            h[12:16] = names[i, 4:8]  # sockaddr_in.sin_addr: the sender
            h[16:20] = dst
            s = 0
            for k in range(0, 20, 2):  # RFC 1071 header checksum
                s += (np.int64(h[k]) << 8) | np.int64(h[k + 1])
            while s >> 16:
                s = (s & 0xFFFF) + (s >> 16)
            s = ~s & 0xFFFF
            h[10] = s >> 8
            h[11] = s & 0xFF
            h[20:22] = names[i, 2:4]  # sin_port, already in network order
            h[22] = local_port >> 8
            h[23] = local_port & 0xFF
            h[24] = (length + 8) >> 8
            h[25] = (length + 8) & 0xFF
            h[26] = 0
            h[27] = 0
            out[p + room : p + room + got] = slots[base + room : base + room + got]
        else:
            out[p : p + got] = slots[base : base + got]
        caplen[n] = room + got
        wirelen[n] = room + length
        p += room + got
        n += 1
    return n, p


class _Receiver:
    """One socket, its recvmmsg slots and control buffers."""

    def __init__(self, endpoint: Endpoint, vlen: int, slot_size: int, rcvbuf: int) -> None:
        self.endpoint = endpoint
        if endpoint.kind == "gre":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_GRE)
            self.room = 0
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.setsockopt(IPPROTO_IP, IP_PKTINFO, 1)
            self.room = UDP_HEADER_ROOM
        s = self.sock
        s.setsockopt(SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            s.setsockopt(SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)  # beyond rmem_max: root only
        except PermissionError:
            s.setsockopt(SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            s.bind((endpoint.address, endpoint.port))
        except OSError as e:
            s.close()
            raise FlowscopeError(f"cannot receive {endpoint} on {endpoint.address}: "
                                 f"{e.strerror}") from None
        self.port = s.getsockname()[1] if self.room else 0
        self.vlen = vlen
        self.slot_size = slot_size
        self.slots = np.zeros(vlen * slot_size, np.uint8)
        self.names = np.zeros((vlen, 16), np.uint8)
        self.control = np.zeros((vlen, CONTROL_SIZE), np.uint8)
        self.iov = np.zeros((vlen, 2), np.uint64)  # struct iovec {void *base; size_t len}
        self.iov[:, 0] = self.slots.ctypes.data + np.arange(vlen, dtype=np.uint64) \
            * np.uint64(slot_size) + np.uint64(self.room)
        self.iov[:, 1] = slot_size - self.room
        self.hdrs = np.zeros(vlen, MMSGHDR)
        self.hdrs["name"] = self.names.ctypes.data + np.arange(vlen, dtype=np.uint64) * 16
        self.hdrs["iov"] = self.iov.ctypes.data + np.arange(vlen, dtype=np.uint64) * 16
        self.hdrs["iovlen"] = 1
        self.hdrs["control"] = self.control.ctypes.data + np.arange(
            vlen, dtype=np.uint64) * CONTROL_SIZE

    def receive(self, vlen: int) -> int:
        """Up to ``vlen`` datagrams into the slots without blocking; 0 when none wait."""
        self.hdrs["namelen"][:vlen] = 16
        self.hdrs["controllen"][:vlen] = CONTROL_SIZE
        got = _recvmmsg(self.sock.fileno(), self.hdrs.ctypes.data, vlen,
                        MSG_DONTWAIT | MSG_TRUNC, None)
        if got < 0:
            e = ctypes.get_errno()
            if e in (errno.EAGAIN, errno.EINTR):
                return 0
            raise FlowscopeError(f"receiving {self.endpoint}: {errno.errorcode.get(e, e)}")
        return got

    def drops(self) -> int:
        info = self.sock.getsockopt(SOL_SOCKET, SO_MEMINFO, 4 * SK_MEMINFO_VARS)
        return struct.unpack(f"{len(info) // 4}I", info)[SK_MEMINFO_DROPS]


class SocketSource:
    """Mirror traffic from one or more tunnel endpoints, as PacketBatches of IPv4 packets.

    A batch is cut when it holds ``max_frames`` frames, or ``flush_ms`` after its first
    frame arrived, whichever comes first.  Datagrams longer than ``slot_size`` keep their
    first ``slot_size`` bytes (caplen < wirelen, as a capture's snaplen would).
    """

    def __init__(self, endpoints: list[Endpoint], *, vlen: int = 1024, slot_size: int = 9216,
                 rcvbuf: int = 64 << 20, max_frames: int = 1 << 16, flush_ms: int = 50,
                 timeout_ms: int = 100) -> None:
        if not endpoints:
            raise FlowscopeError("no endpoint to receive on")
        self.max_frames = max_frames
        self.flush_ns = flush_ms * 1_000_000
        self.timeout_ms = timeout_ms
        self.capacity = max(max_frames * 256, 4 * vlen * slot_size)
        self.receivers: list[_Receiver] = []
        self._frames = 0
        try:
            for ep in endpoints:
                try:
                    self.receivers.append(_Receiver(ep, vlen, slot_size, rcvbuf))
                except PermissionError:
                    raise FlowscopeError(f"receiving {ep} needs root (or CAP_NET_RAW)") \
                        from None
        except BaseException:
            self.close()
            raise
        self._poll = select.poll()
        for r in self.receivers:
            self._poll.register(r.sock.fileno(), select.POLLIN)
        self._by_fd = {r.sock.fileno(): r for r in self.receivers}

    @property
    def endpoints(self) -> list[Endpoint]:
        return [r.endpoint for r in self.receivers]

    def batches(self, stop: threading.Event, reuse: bool = False) -> Iterator[PacketBatch]:
        """PacketBatches until ``stop`` is set, then what the sockets still hold, then the
        end.  Each batch owns its memory, unless ``reuse``: then its arrays are reused for
        the next batch, and the caller must be done with it before asking for the next."""
        spare = None
        while True:
            final = stop.is_set()
            if spare is None:
                m = self.max_frames
                spare = (np.empty(self.capacity, np.uint8), np.empty(m, np.int64),
                         np.empty(m, np.int32), np.empty(m, np.int32), np.empty(m, np.int64),
                         np.full(m, LINKTYPE_IPV4, np.int32), np.empty(m, np.int64))
            batch = self._fill(stop, spare)
            if batch is not None:
                if not reuse:
                    spare = None
                yield batch
            elif final:
                return

    def _fill(self, stop: threading.Event, spare: tuple[np.ndarray, ...]) -> PacketBatch | None:
        out, offset, caplen, wirelen, ts_ns, linktype, frame = spare
        m = self.max_frames
        n = used = 0
        first_ns = 0
        while True:
            ready = self._poll.poll(0 if stop.is_set() else self._wait_ms(n, first_ns))
            for fd, _ in ready:
                r = self._by_fd[fd]
                while True:
                    room = min(r.vlen, m - n, (self.capacity - used) // r.slot_size)
                    if room <= 0:
                        break
                    got = r.receive(room)
                    if not got:
                        break
                    now = time.time_ns()
                    if not n:
                        first_ns = time.monotonic_ns()
                    n, used = pack_datagrams(r.slots, r.slot_size, r.room, got,
                                             r.hdrs["msg_len"], r.names, r.control,
                                             r.hdrs["controllen"], r.port, now, out, used,
                                             offset, caplen, wirelen, ts_ns, n)
            full = n >= m or self.capacity - used < max(r.slot_size for r in self.receivers)
            due = n and time.monotonic_ns() - first_ns >= self.flush_ns
            if full or due or (n and stop.is_set()):
                break
            if not n and stop.is_set():
                return None
            if not ready and not n:
                return None  # a quiet interval: let the caller look at its stop flag
        frame[:n] = np.arange(self._frames + 1, self._frames + 1 + n, dtype=np.int64)
        self._frames += n
        return PacketBatch(out[:used], offset[:n], caplen[:n], wirelen[:n], ts_ns[:n],
                           linktype[:n], frame[:n])

    def _wait_ms(self, n: int, first_ns: int) -> int:
        if not n:
            return self.timeout_ms
        left = self.flush_ns - (time.monotonic_ns() - first_ns)
        return max(0, left // 1_000_000)

    def stats(self) -> tuple[int, int]:
        """(datagrams received, datagrams the kernel dropped on these sockets' full receive
        buffers), cumulative since the sockets were opened."""
        return self._frames, sum(r.drops() for r in self.receivers)

    def close(self) -> None:
        for r in self.receivers:
            r.sock.close()

    def __enter__(self) -> SocketSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
