"""AF_PACKET capture through a TPACKET_V3 memory-mapped receive ring.

Kernel Documentation/networking/packet_mmap.rst: the ring is ``block_count`` blocks of
``block_size`` bytes shared with the kernel.  The kernel fills a block with a chain of
``tpacket3_hdr`` records (each followed by its frame at ``tp_mac``, the next one
``tp_next_offset`` further on) and hands the block over by setting ``TP_STATUS_USER`` in
the block descriptor — when the block is full, or ``timeout_ms`` after its first frame
(``tp_retire_blk_tov``).  We copy the frames of every handed-over block into one
PacketBatch with a compiled walk of those chains, then give the blocks back
(``TP_STATUS_KERNEL``).  While every block is ours, the kernel drops arriving frames and
counts them; ``PACKET_STATISTICS`` reports the count (and resets it, so we accumulate).

Layouts (include/uapi/linux/if_packet.h):

* ``tpacket_block_desc``: u32 version, u32 offset_to_priv, then ``tpacket_hdr_v1``:
  u32 block_status @8, u32 num_pkts @12, u32 offset_to_first_pkt @16, u32 blk_len @20,
  u64 seq_num @24, ts_first_pkt @32, ts_last_pkt @40.
* ``tpacket3_hdr``: u32 tp_next_offset @0, u32 tp_sec @4, u32 tp_nsec @8, u32 tp_snaplen
  @12, u32 tp_len @16, u32 tp_status @20, u16 tp_mac @24, u16 tp_net @26, then
  ``tpacket_hdr_variant1``: u32 tp_rxhash @28, u32 tp_vlan_tci @32, u16 tp_vlan_tpid @36;
  48 bytes, then (at ``TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`` = 48) a ``sockaddr_ll``
  whose ``sll_pkttype`` @10 (so @58) says how the frame passed the interface:
  ``PACKET_OUTGOING`` (4) for frames this host sent, else received (linux/if_packet.h).

A VLAN tag the NIC (or veth) stripped into ``tp_vlan_tci`` is put back into the frame, as
libpcap does, so the bytes are what the wire carried.
"""

from __future__ import annotations

import mmap
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator

import numpy as np

from flowscope.batch import PacketBatch
from flowscope.decode.codes import LINKTYPE_ETHERNET
from flowscope.errors import FlowscopeError
from flowscope.jit import njit

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_IGNORE_OUTGOING = 23  # Linux >= 4.20: frames this host sends are not captured
PACKET_MR_PROMISC = 1
TPACKET_V3 = 2
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
ETH_P_8021Q = 0x8100
SLL_PKTTYPE = 48 + 10  # tpacket3_hdr, aligned, then sockaddr_ll.sll_pkttype
PACKET_OUTGOING = 4

BLOCK_STATUS = 8  # byte offsets in tpacket_block_desc
BLOCK_NUM_PKTS = 12
BLOCK_FIRST_PKT = 16
MAX_BATCH_FRAMES = 1 << 16  # frames per PacketBatch (at least one whole block)
MAX_BATCH_BYTES = 1 << 26  # blocks per PacketBatch: at most this many bytes (at least one)


@njit(inline="always", cache=True)
def _u32(b, p):  # pragma: no cover - compiled; host (little-endian) order, as the kernel wrote
    return (np.int64(b[p]) | (np.int64(b[p + 1]) << 8) | (np.int64(b[p + 2]) << 16)
            | (np.int64(b[p + 3]) << 24))


@njit(inline="always", cache=True)
def _u16(b, p):  # pragma: no cover - compiled
    return np.int64(b[p]) | (np.int64(b[p + 1]) << 8)


@njit(cache=True)
def copy_blocks(ring, blocks, out, offset, caplen, wirelen, ts_ns, pkttype):  # pragma: no cover
    """Copy every frame of the given blocks (byte offsets into ``ring``) into ``out``;
    fill the columns (``pkttype``: each frame's sll_pkttype); return (frames, bytes used)."""
    n = 0
    p = 0
    for b in range(blocks.shape[0]):
        base = blocks[b]
        hdr = base + _u32(ring, base + BLOCK_FIRST_PKT)
        for _ in range(_u32(ring, base + BLOCK_NUM_PKTS)):
            snap = _u32(ring, hdr + 12)
            status = _u32(ring, hdr + 20)
            src = hdr + _u16(ring, hdr + 24)
            offset[n] = p
            ts_ns[n] = _u32(ring, hdr + 4) * 1_000_000_000 + _u32(ring, hdr + 8)
            length = _u32(ring, hdr + 16)
            pkttype[n] = ring[hdr + SLL_PKTTYPE]
            if status & TP_STATUS_VLAN_VALID and snap >= 12:
                # Re-insert the stripped 802.1Q tag after the two MAC addresses.
                tpid = _u16(ring, hdr + 36) if status & TP_STATUS_VLAN_TPID_VALID else 0
                if tpid == 0:
                    tpid = ETH_P_8021Q
                tci = _u32(ring, hdr + 32) & 0xFFFF
                out[p : p + 12] = ring[src : src + 12]
                out[p + 12] = tpid >> 8
                out[p + 13] = tpid & 0xFF
                out[p + 14] = tci >> 8
                out[p + 15] = tci & 0xFF
                out[p + 16 : p + 4 + snap] = ring[src + 12 : src + snap]
                snap += 4
                length += 4
            else:
                out[p : p + snap] = ring[src : src + snap]
            caplen[n] = snap
            wirelen[n] = length
            p += snap
            n += 1
            hdr += _u32(ring, hdr)
    return n, p


def _bpf_snaplen(snaplen: int) -> bytes:
    """A one-instruction classic BPF program, ``ret #snaplen``: the kernel then copies at
    most snaplen bytes of each frame into the ring (as tcpdump -s does)."""
    insn = struct.pack("HBBI", 0x06, 0, 0, snaplen)  # BPF_RET | BPF_K
    return insn


class PacketRing:
    """Frames arriving on one interface, read through a TPACKET_V3 ring, as PacketBatches.

    ``direction="in"`` captures what the interface receives (a mirror port, a collector's
    NIC); ``"both"`` also what this host sends through it.  Needs CAP_NET_RAW.
    """

    def __init__(self, interface: str, *, snaplen: int = 65535, block_size: int = 1 << 22,
                 block_count: int = 64, timeout_ms: int = 100, direction: str = "in",
                 promisc: bool = True) -> None:
        if direction not in ("in", "both"):
            raise FlowscopeError(f"direction must be 'in' or 'both', not {direction!r}")
        if block_size % mmap.PAGESIZE or block_size & (block_size - 1):
            raise FlowscopeError(f"block size {block_size} must be a power-of-two multiple "
                                 f"of the page size ({mmap.PAGESIZE})")
        self.interface = interface
        self.block_size = block_size
        self.block_count = block_count
        self.timeout_ms = timeout_ms
        self._packets = 0
        self._drops = 0
        self._stats_lock = threading.Lock()
        self._spare: tuple[np.ndarray, ...] = (np.empty(0, np.uint8), np.empty(0, np.int64))
        self._next = 0  # the block the kernel hands over next (blocks are used in order)
        self._frames = 0  # frames yielded so far (1-based numbering of PacketBatch.frame)
        # per frame of the batch last yielded: did this host send it (PACKET_OUTGOING)?
        self.outgoing = np.zeros(0, np.bool_)
        try:
            # Protocol 0: no frame is queued before the ring exists and the socket is bound.
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise FlowscopeError("capturing on an interface needs root (or CAP_NET_RAW); "
                                 "run with sudo, or receive on sockets with --gre/--vxlan/"
                                 "--geneve instead") from None
        try:
            self._setup(snaplen, direction, promisc)
        except BaseException:
            self.sock.close()
            raise

    def _setup(self, snaplen: int, direction: str, promisc: bool) -> None:
        s = self.sock
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        if direction == "in":
            try:
                s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            except OSError:
                raise FlowscopeError("this kernel cannot leave outgoing frames out "
                                     "(PACKET_IGNORE_OUTGOING, Linux 4.20); use "
                                     "direction 'both'") from None
        if snaplen < 65535:
            prog = _bpf_snaplen(snaplen)
            buf = np.frombuffer(bytearray(prog), np.uint8)
            fprog = struct.pack("HxxxxxxP", 1, buf.ctypes.data)  # struct sock_fprog
            s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        frame_size = 2048  # TPACKET_V3 frames are variable length; only a sanity bound
        req = struct.pack("7I", self.block_size, self.block_count, frame_size,
                          self.block_size // frame_size * self.block_count, self.timeout_ms,
                          0, 0)  # tpacket_req3
        try:
            s.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        except OSError as e:
            raise FlowscopeError(f"cannot create a {self.block_count} x {self.block_size} "
                                 f"byte receive ring: {e.strerror}") from None
        size = self.block_size * self.block_count
        self._mm = mmap.mmap(s.fileno(), size, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)
        self._ring = np.frombuffer(self._mm, np.uint8)
        self._status = np.frombuffer(self._mm, np.uint32)  # block_status words by index
        self._status_index = (np.arange(self.block_count, dtype=np.int64) * self.block_size
                              + BLOCK_STATUS) // 4
        self._num_index = self._status_index + (BLOCK_NUM_PKTS - BLOCK_STATUS) // 4
        try:
            s.bind((self.interface, ETH_P_ALL))
        except OSError as e:
            raise FlowscopeError(f"cannot capture on {self.interface!r}: {e.strerror}"
                                 + (" (no such interface)" if e.errno == 19 else "")) from None
        if promisc:
            ifindex = socket.if_nametoindex(self.interface)
            mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")  # packet_mreq
            s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        self._poll = select.poll()
        self._poll.register(s.fileno(), select.POLLIN | select.POLLERR)

    def _ready(self) -> list[int]:
        """Consecutive handed-over blocks from the next one, up to MAX_BATCH_FRAMES frames."""
        blocks: list[int] = []
        frames = 0
        b = self._next
        limit = max(1, min(self.block_count, MAX_BATCH_BYTES // self.block_size))
        while len(blocks) < limit and self._status[self._status_index[b]] & TP_STATUS_USER:
            frames += int(self._status[self._num_index[b]])
            blocks.append(b)
            b = (b + 1) % self.block_count
            if frames >= MAX_BATCH_FRAMES:
                break
        return blocks

    def batches(self, stop: threading.Event, reuse: bool = False) -> Iterator[PacketBatch]:
        """One PacketBatch per handed-over block or run of blocks, until ``stop`` is set;
        then the frames still in the ring (the block being filled retires within
        ``timeout_ms``) and the end.  The ring blocks are given back before a batch is
        yielded; the batch owns its memory, unless ``reuse``: then its arrays are reused for
        the next batch (no fresh pages to fault in), and the caller must be done with it
        before asking for the next."""
        final = False
        while True:
            if not final and stop.is_set():
                final = True
                time.sleep(1.5 * self.timeout_ms / 1000)  # let the open block retire
            blocks = self._ready()
            if not blocks:
                if final:
                    return
                self._poll.poll(self.timeout_ms)
                continue
            batch = self._copy(blocks, reuse)
            if batch is not None:
                yield batch

    def _copy(self, blocks: list[int], reuse: bool) -> PacketBatch | None:
        frames = int(self._status[self._num_index[blocks]].sum())
        size = len(blocks) * self.block_size + 4 * frames
        spare = self._spare
        if not reuse or spare[0].shape[0] < size or spare[1].shape[0] < frames:
            if reuse:  # grow with room to spare, so this happens a few times at most
                size = max(size, 2 * spare[0].shape[0])
                frames = max(frames, 2 * spare[1].shape[0])
            spare = (np.empty(size, np.uint8), np.empty(frames, np.int64),
                     np.empty(frames, np.int32), np.empty(frames, np.int32),
                     np.empty(frames, np.int64), np.full(frames, LINKTYPE_ETHERNET, np.int32),
                     np.empty(frames, np.int64), np.empty(frames, np.uint8))
            if reuse:
                self._spare = spare
        out, offset, caplen, wirelen, ts_ns, linktype, frame, pkttype = spare
        n, used = copy_blocks(self._ring, np.asarray(blocks, np.int64) * self.block_size,
                              out, offset, caplen, wirelen, ts_ns, pkttype)
        # Only after the copy: hand the blocks back to the kernel.
        self._status[self._status_index[blocks]] = TP_STATUS_KERNEL
        self._next = (blocks[-1] + 1) % self.block_count
        if not n:
            return None
        frame[:n] = np.arange(self._frames + 1, self._frames + 1 + n, dtype=np.int64)
        self._frames += n
        self.outgoing = pkttype[:n] == PACKET_OUTGOING
        return PacketBatch(out[:used], offset[:n], caplen[:n], wirelen[:n], ts_ns[:n],
                           linktype[:n], frame[:n])

    def stats(self) -> tuple[int, int]:
        """(frames the kernel put into the ring, frames it dropped because the ring was
        full), cumulative since the ring was opened."""
        with self._stats_lock:  # reading resets the kernel's counters: one reader at a time
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)  # tpacket_stats_v3
            packets, drops, _freeze = struct.unpack("3I", raw)
            # af_packet.c: for TPACKET_V3, tp_packets already includes tp_drops.
            self._packets += packets - drops
            self._drops += drops
            return self._packets, self._drops

    def close(self) -> None:
        mm = self.__dict__.pop("_mm", None)
        if mm is not None:
            del self._ring, self._status
            try:
                mm.close()
            except BufferError:  # a view is still alive somewhere; unmapped when it dies
                pass
        self.sock.close()

    def __enter__(self) -> PacketRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
