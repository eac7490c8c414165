"""Sending tunnel payloads: many datagrams per system call with sendmmsg(2).

ERSPAN goes out of a raw IP socket of protocol 47 (``socket(AF_INET, SOCK_RAW,
IPPROTO_GRE)``, raw(7)): the kernel writes the outer IPv4 (or IPv6) header, picks the route
and source address, and fragments a copy larger than the path MTU (IP_PMTUDISC_DONT), so no
mirrored frame is refused for its size.  VXLAN goes out of a UDP socket to port 4789; the
kernel adds UDP and IP.  Both sockets are connected to the collector, so each message is
just an iovec over the TunnelBatch buffer: the headers array is built with NumPy, and one
sendmmsg call sends up to UIO_MAXIOV (1024) datagrams.

A failed datagram (ENOBUFS from a full queue, EMSGSIZE, ECONNREFUSED after an ICMP port
unreachable...) is counted by errno and skipped; sending goes on with the next one.  The
raw socket would also receive every GRE packet arriving at this host: a classic BPF
program that accepts nothing keeps its receive queue empty.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
from collections import Counter

import numpy as np

from flowscope.encap import VXLAN, TunnelBatch
from flowscope.encap.vxlan import PORT as VXLAN_PORT
from flowscope.errors import FlowscopeError

IPPROTO_GRE = 47
UIO_MAXIOV = 1024  # the most messages one sendmmsg call takes (include/uapi/linux/uio.h)
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_DONT = getattr(socket, "IP_PMTUDISC_DONT", 0)
IPV6_MTU_DISCOVER = getattr(socket, "IPV6_MTU_DISCOVER", 23)
IPV6_PMTUDISC_DONT = 0
SO_ATTACH_FILTER = 26
SNDBUF = 8 << 20

# struct iovec and struct mmsghdr (struct msghdr + unsigned msg_len) on LP64 Linux.
IOVEC = np.dtype([("base", np.uint64), ("len", np.uint64)])
MMSGHDR = np.dtype([
    ("name", np.uint64), ("namelen", np.uint32), ("_pad0", np.uint32),
    ("iov", np.uint64), ("iovlen", np.uint64),
    ("control", np.uint64), ("controllen", np.uint64),
    ("flags", np.int32), ("_pad1", np.uint32),  # sizeof(struct msghdr) = 56
    ("len", np.uint32), ("_pad2", np.uint32),
])
assert MMSGHDR.itemsize == 64 and IOVEC.itemsize == 16

_libc = ctypes.CDLL(None, use_errno=True)
_sendmmsg = _libc.sendmmsg
_sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
_sendmmsg.restype = ctypes.c_int


def resolve(host: str) -> tuple[socket.AddressFamily, str]:
    """The collector's address family and address (the first IPv4 or IPv6 one)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_UDP)
    except socket.gaierror as e:
        raise FlowscopeError(f"cannot resolve collector {host!r}: {e.strerror}") from None
    for family, _, _, _, addr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            return family, str(addr[0])
    raise FlowscopeError(f"collector {host!r} has no IPv4 or IPv6 address")


class TunnelSender:
    """A connected socket to the collector, sending TunnelBatches with sendmmsg.

    ``kind`` is the encapsulation (flowscope.encap kinds); ``port`` the VXLAN UDP port.
    Counters: ``sent`` datagrams, ``sent_bytes`` (tunnel payload bytes), ``errors`` by
    errno name.
    """

    def __init__(self, host: str, kind: str, *, port: int = VXLAN_PORT) -> None:
        self.family, self.address = resolve(host)
        self.kind = kind
        self.sent = 0
        self.sent_bytes = 0
        self.errors: Counter[str] = Counter()
        try:
            if kind == VXLAN:
                self.sock = socket.socket(self.family, socket.SOCK_DGRAM)
            else:
                self.sock = socket.socket(self.family, socket.SOCK_RAW, IPPROTO_GRE)
        except PermissionError:
            raise FlowscopeError("sending ERSPAN needs a raw IP socket: run as root (or "
                                 "with CAP_NET_RAW)") from None
        try:
            self._setup(port)
        except BaseException:
            self.sock.close()
            raise
        self._iov = np.zeros(0, IOVEC)
        self._msgs = np.zeros(0, MMSGHDR)

    def _setup(self, port: int) -> None:
        s = self.sock
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
        except OSError:
            pass  # the default buffer works, only with more ENOBUFS under load
        if self.kind != VXLAN:
            if self.family == socket.AF_INET:
                s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
            else:
                s.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DONT)
            # ret #0: accept nothing, so GRE arriving at this host never queues here
            self._drop_all = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))
            fprog = struct.pack("HxxxxxxP", 1, ctypes.addressof(self._drop_all))
            s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        try:
            s.connect((self.address, port if self.kind == VXLAN else 0))
        except OSError as e:
            raise FlowscopeError(f"cannot send to collector {self.address}: "
                                 f"{e.strerror}") from None

    def _headers(self, n: int) -> None:
        if self._msgs.shape[0] < n:
            self._iov = np.zeros(max(n, 1024), IOVEC)
            self._msgs = np.zeros(max(n, 1024), MMSGHDR)
            self._msgs["iov"] = self._iov.ctypes.data + IOVEC.itemsize * np.arange(
                self._iov.shape[0], dtype=np.uint64)
            self._msgs["iovlen"] = 1

    def send(self, tunnel: TunnelBatch) -> int:
        """Send every payload of ``tunnel``; return how many went out."""
        n = len(tunnel)
        if n == 0:
            return 0
        self._headers(n)
        self._iov["base"][:n] = tunnel.buf.ctypes.data + tunnel.offset.astype(np.uint64)
        self._iov["len"][:n] = tunnel.length
        self._msgs["len"][:n] = 0
        msgs = self._msgs.ctypes.data
        fd = self.sock.fileno()
        i = sent = 0
        while i < n:
            r = _sendmmsg(fd, msgs + i * MMSGHDR.itemsize, min(n - i, UIO_MAXIOV), 0)
            if r < 0:
                e = ctypes.get_errno()
                if e == errno.EINTR:
                    continue  # a signal: its handler has run; the caller checks for stop
                self.errors[errno.errorcode.get(e, str(e))] += 1
                i += 1  # the failed datagram is skipped, never retried
                continue
            sent += r
            i += r
        self.sent += sent
        self.sent_bytes += int(self._msgs["len"][:n].sum())  # the kernel's count per message
        return sent

    @property
    def send_errors(self) -> int:
        return sum(self.errors.values())

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> TunnelSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
