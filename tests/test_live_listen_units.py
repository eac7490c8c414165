"""The parts of ``flowscope listen`` that need no privileges: the TPACKET_V3 block walk, the
datagram packer (synthesised IPv4/UDP headers, control messages), ``--rotate`` parsing and
the rotating pcapng writer.

Ring blocks and control messages are laid out here with ``struct`` from the kernel's
headers (include/uapi/linux/if_packet.h, cmsg(3)); synthesised headers are read back with
scapy; pcapng files are walked by :func:`pcapng_packets`, which shares no code with
flowscope's writer.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw

from flowscope.analyse.mirrors import MirrorTracker
from flowscope.decode import decode
from flowscope.errors import FlowscopeError
from flowscope.live.afpacket import TP_STATUS_VLAN_TPID_VALID, TP_STATUS_VLAN_VALID, copy_blocks
from flowscope.live.rotate import RotatingPcapng, Rotation, file_name
from flowscope.live.sockets import (
    CONTROL_SIZE,
    UDP_HEADER_ROOM,
    control_messages,
    pack_datagrams,
)
from flowscope.pipeline import PacketRun
from flowscope.sinks.pcapng import PcapngWriter

from .generated import Record, decap_mix, erspan2, tcp_frame, ts, write_pcap

# -- an independent pcapng reader -------------------------------------------------------------

def pcapng_packets(path: Path) -> list[tuple[str, bytes, int, bytes]]:
    """(interface name, frame bytes, original length, options) of every Enhanced Packet
    Block, walking the blocks with struct (draft-ietf-opsawg-pcapng §4.2, §4.3)."""
    data = path.read_bytes()
    names: list[str] = []
    packets = []
    p = 0
    while p < len(data):
        btype, blen = struct.unpack_from("<II", data, p)
        if btype == 0x0A0D0D0A:
            names = []  # a new section numbers its interfaces from 0
        elif btype == 1:
            q, name = p + 16, ""
            while q < p + blen - 4:
                code, olen = struct.unpack_from("<HH", data, q)
                if code == 2:
                    name = data[q + 4 : q + 4 + olen].decode()
                if code == 0:
                    break
                q += 4 + (olen + 3) // 4 * 4
            names.append(name)
        elif btype == 6:
            ifid, _, _, caplen, orig = struct.unpack_from("<IIIII", data, p + 8)
            body = p + 28
            packets.append((names[ifid], data[body : body + caplen], orig,
                            data[body + (caplen + 3) // 4 * 4 : p + blen - 4]))
        p += blen
    return packets


# -- TPACKET_V3 blocks ------------------------------------------------------------------------

BLOCK_SIZE = 1 << 14
HDR_LEN = 48  # TPACKET_ALIGN(sizeof(struct tpacket3_hdr))
MAC_OFF = HDR_LEN + 20  # where the frame starts after the header (room for sockaddr_ll)
PKTTYPES = (0, 1, 2, 3, 4)  # sll_pkttype: HOST, BROADCAST, MULTICAST, OTHERHOST, OUTGOING

frames_st = st.lists(
    st.tuples(st.binary(min_size=14, max_size=300),
              st.none() | st.tuples(st.integers(0, 0xFFFF), st.sampled_from([0, 0x88A8])),
              st.integers(0, 40)),  # bytes the capture cut off (tp_len - tp_snaplen)
    min_size=0, max_size=20)


def ring_block(frames: list[tuple[bytes, tuple[int, int] | None, int]], start_ns: int) -> bytes:
    """One block as the kernel fills it: tpacket_block_desc, then tpacket3_hdr chains."""
    block = bytearray(BLOCK_SIZE)
    first = 64
    p = first
    for k, (frame, vlan, cut) in enumerate(frames):
        status = 1  # TP_STATUS_USER
        tci = tpid = 0
        if vlan is not None:
            tci, tpid = vlan
            status |= TP_STATUS_VLAN_VALID | (TP_STATUS_VLAN_TPID_VALID if tpid else 0)
        size = (MAC_OFF + len(frame) + 15) // 16 * 16
        # sockaddr_ll after the header: family, protocol, ifindex, hatype, pkttype @10
        struct.pack_into("<HHiHB", block, p + HDR_LEN, 17, 0x0300, 7, 1,
                         PKTTYPES[k % len(PKTTYPES)])
        nxt = size if k < len(frames) - 1 else 0
        t = start_ns + k * 1001
        struct.pack_into("<IIIIIIHHIIHH", block, p, nxt, t // 10**9, t % 10**9, len(frame),
                         len(frame) + cut, status, MAC_OFF, MAC_OFF + 14, 0, tci, tpid, 0)
        block[p + MAC_OFF : p + MAC_OFF + len(frame)] = frame
        p += size
    struct.pack_into("<IIIIII", block, 0, 3, 0, 1, len(frames), first, p)
    return bytes(block)


def expected_frame(frame: bytes, vlan: tuple[int, int] | None) -> bytes:
    if vlan is None:
        return frame
    tci, tpid = vlan
    return frame[:12] + struct.pack("!HH", tpid or 0x8100, tci) + frame[12:]


@settings(max_examples=60, deadline=None)
@given(st.lists(frames_st, min_size=1, max_size=3))
def test_block_walk_copies_every_frame_and_restores_vlan_tags(blocks):
    ring = np.frombuffer(b"".join(ring_block(f, 1_700_000_000_123_456_789 + 10**6 * b)
                                  for b, f in enumerate(blocks)), np.uint8).copy()
    total = sum(len(f) for f in blocks)
    out = np.zeros(len(blocks) * BLOCK_SIZE + 4 * total, np.uint8)
    offset, ts_ns = np.zeros(total, np.int64), np.zeros(total, np.int64)
    caplen, wirelen = np.zeros(total, np.int32), np.zeros(total, np.int32)
    pkttype = np.zeros(total, np.uint8)
    n, used = copy_blocks(ring, np.arange(len(blocks), dtype=np.int64) * BLOCK_SIZE, out,
                          offset, caplen, wirelen, ts_ns, pkttype)
    assert n == total
    k = 0
    for b, frames in enumerate(blocks):
        for j, (frame, vlan, cut) in enumerate(frames):
            want = expected_frame(frame, vlan)
            got = out[offset[k] : offset[k] + caplen[k]].tobytes()
            assert got == want
            assert wirelen[k] == len(want) + cut
            assert ts_ns[k] == 1_700_000_000_123_456_789 + 10**6 * b + j * 1001
            assert pkttype[k] == PKTTYPES[j % len(PKTTYPES)]
            k += 1
    assert used == sum(len(expected_frame(f, v)) for fs in blocks for f, v, _ in fs)


# -- datagrams --------------------------------------------------------------------------------

def control(ts_ns: int | None, dst: str | None) -> bytes:
    """cmsg(3) buffer: SCM_TIMESTAMPNS (struct timespec) and IP_PKTINFO (struct in_pktinfo),
    each header {size_t len; int level; int type}, data padded to 8 bytes."""
    out = b""
    if ts_ns is not None:
        out += struct.pack("<qii", 32, 1, 35) + struct.pack("<qq", ts_ns // 10**9, ts_ns % 10**9)
    if dst is not None:
        out += struct.pack("<qii", 28, 0, 8) + struct.pack("<i4s4s", 2, b"\0" * 4,
                                                           socket.inet_aton(dst)) + b"\0" * 4
    return out


datagram_st = st.tuples(st.binary(min_size=0, max_size=400), st.ip_addresses(v=4),
                        st.integers(1, 65535), st.ip_addresses(v=4),
                        st.integers(1_600_000_000 * 10**9, 1_900_000_000 * 10**9))


@settings(max_examples=60, deadline=None)
@given(st.lists(datagram_st, min_size=1, max_size=8), st.integers(1, 65535))
def test_udp_datagrams_become_ipv4_udp_packets(datagrams, local_port):
    slot = 512
    count = len(datagrams)
    slots = np.zeros(count * slot, np.uint8)
    names = np.zeros((count, 16), np.uint8)
    ctrl = np.zeros((count, CONTROL_SIZE), np.uint8)
    msg_len = np.zeros(count, np.uint32)
    ctrl_len = np.zeros(count, np.uint64)
    for i, (payload, peer, port, dst, t) in enumerate(datagrams):
        base = i * slot + UDP_HEADER_ROOM
        kept = payload[: slot - UDP_HEADER_ROOM]
        slots[base : base + len(kept)] = np.frombuffer(kept, np.uint8)
        names[i] = np.frombuffer(struct.pack("<H", 2) + struct.pack("!H", port)
                                 + peer.packed + b"\0" * 8, np.uint8)
        c = control(t, str(dst))
        ctrl[i, : len(c)] = np.frombuffer(c, np.uint8)
        ctrl_len[i] = len(c)
        msg_len[i] = len(payload)
    out = np.zeros(count * (slot + 64), np.uint8)
    offset, ts_ns = np.zeros(count, np.int64), np.zeros(count, np.int64)
    caplen, wirelen = np.zeros(count, np.int32), np.zeros(count, np.int32)
    n, _ = pack_datagrams(slots, slot, UDP_HEADER_ROOM, count, msg_len, names, ctrl, ctrl_len,
                          local_port, 7, out, 0, offset, caplen, wirelen, ts_ns, 0)
    assert n == count
    for i, (payload, peer, port, dst, t) in enumerate(datagrams):
        raw = out[offset[i] : offset[i] + caplen[i]].tobytes()
        pkt = IP(raw)
        assert (pkt.src, pkt.dst, pkt.proto, pkt.len) == (str(peer), str(dst), 17,
                                                            28 + len(payload))
        assert _valid_ipv4_checksum(raw)
        assert (pkt[UDP].sport, pkt[UDP].dport, pkt[UDP].len) == (port, local_port,
                                                                  8 + len(payload))
        assert raw[28:] == payload[: slot - UDP_HEADER_ROOM]
        assert wirelen[i] == 28 + len(payload)
        assert ts_ns[i] == t


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=CONTROL_SIZE), st.booleans(), st.booleans())
def test_control_messages_survive_any_bytes(noise, with_ts, with_dst):
    """Well-formed messages first, then arbitrary bytes (a cut or garbled tail): the walk
    finds the well-formed ones and never reads past the length it was given."""
    good = control(1_800_000_000_000_000_123 if with_ts else None,
                   "203.0.113.9" if with_dst else None)
    data = (good + noise)[:CONTROL_SIZE]
    buf = np.zeros(CONTROL_SIZE, np.uint8)
    buf[: len(data)] = np.frombuffer(data, np.uint8)
    dst = np.zeros(4, np.uint8)
    ts_ns = control_messages(buf, len(data), 5, dst)
    if len(noise) < 16:  # too short to hold another message header: exact results
        assert ts_ns == (1_800_000_000_000_000_123 if with_ts else 5)
        assert dst.tobytes() == (socket.inet_aton("203.0.113.9") if with_dst else b"\0" * 4)


def _valid_ipv4_checksum(raw: bytes) -> bool:
    s = sum(struct.unpack("!10H", raw[:20]))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


def test_synthesised_ipv4_header_checksum_is_valid():
    datagrams = np.frombuffer(b"\x08" + b"\0" * 7, np.uint8)
    slots = np.zeros(64, np.uint8)
    slots[UDP_HEADER_ROOM : UDP_HEADER_ROOM + 8] = datagrams
    names = np.frombuffer(struct.pack("<H", 2) + struct.pack("!H", 50000)
                          + socket.inet_aton("198.51.100.1") + b"\0" * 8, np.uint8).reshape(1, 16)
    c = control(None, "198.51.100.101")
    ctrl = np.zeros((1, CONTROL_SIZE), np.uint8)
    ctrl[0, : len(c)] = np.frombuffer(c, np.uint8)
    out = np.zeros(128, np.uint8)
    cols = [np.zeros(1, np.int64), np.zeros(1, np.int32), np.zeros(1, np.int32),
            np.zeros(1, np.int64)]
    n, used = pack_datagrams(slots, 64, UDP_HEADER_ROOM, 1, np.array([8], np.uint32), names,
                             ctrl, np.array([len(c)], np.uint64), 4789, 42, out, 0, *cols, 0)
    raw = out[:used].tobytes()
    assert (n, used) == (1, 36)
    assert _valid_ipv4_checksum(raw)
    assert cols[3][0] == 42  # no SCM_TIMESTAMPNS: the time the batch was read
    assert raw == bytes(IP(src="198.51.100.1", dst="198.51.100.101", id=0, ttl=64)
                        / UDP(sport=50000, dport=4789, chksum=0) / Raw(datagrams.tobytes()))


# -- --rotate ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "rotation"), [
    ("100MB", Rotation(max_bytes=100_000_000)), ("1GiB", Rotation(max_bytes=1 << 30)),
    ("500k", Rotation(max_bytes=500_000)), ("60s", Rotation(max_ns=60 * 10**9)),
    ("60", Rotation(max_ns=60 * 10**9)), ("5m", Rotation(max_ns=300 * 10**9)),
    ("1h", Rotation(max_ns=3600 * 10**9)), ("0.5s", Rotation(max_ns=500_000_000)),
])
def test_rotate_sizes_and_times(text, rotation):
    assert Rotation.parse(text) == rotation


@pytest.mark.parametrize("text", ["", "x", "0", "0s", "-1s", "5q", "MB"])
def test_rotate_rejects_what_is_neither(text):
    with pytest.raises(FlowscopeError, match="give a size"):
        Rotation.parse(text)


def test_file_names_sort_by_capture_time():
    assert file_name(1_700_000_000_123_456_789) == "flowscope-20231114T221320.123456Z.pcapng"


def _decoded(path: Path):
    run = PacketRun([str(path)])
    return [(b, r) for b, r in run.batches()], run.mirrors


def test_rotation_by_time_cuts_on_capture_time_and_keeps_every_frame(tmp_path):
    records = [Record(erspan2(tcp_frame(i), seq=i + 1, session=3), ts(0) + i * 10**9 // 4)
               for i in range(10)]  # 250 ms apart: 0, .25 ... 2.25 s
    path = write_pcap(tmp_path / "in.pcap", records)
    whole = tmp_path / "whole.pcapng"
    batches, tracker = _decoded(path)
    with open(whole, "wb") as out:
        writer = PcapngWriter(out)
        for b, r in batches:
            writer.write(b, r, tracker)
    rotating = RotatingPcapng(tmp_path / "out", Rotation.parse("1s"), note="; test note")
    for b, r in batches:
        rotating.write(b, r, tracker)
    rotating.close()
    assert [p.name for p in rotating.files] == [
        file_name(ts(0)), file_name(ts(0) + 10**9), file_name(ts(0) + 2 * 10**9)]
    parts = [pcapng_packets(p) for p in rotating.files]
    assert [len(p) for p in parts] == [4, 4, 2]
    assert [x for p in parts for x in p] == pcapng_packets(whole)
    assert b"test note" in rotating.files[0].read_bytes()
    assert rotating.written == 10


def test_rotation_by_size_starts_a_new_file_after_the_batch_that_filled_it(tmp_path):
    capture = decap_mix(tmp_path)
    batches, tracker = _decoded(capture.path)
    rotating = RotatingPcapng(tmp_path / "out", Rotation(max_bytes=1))
    for b, r in batches:
        for i in range(len(b)):  # one frame per write: every write fills a file
            rotating.write(b, r[i : i + 1], tracker)
    rotating.close()
    assert len(rotating.files) == 4
    assert [len(pcapng_packets(p)) for p in rotating.files] == [1, 1, 1, 1]
    assert [pcapng_packets(p)[0][2] for p in rotating.files] == [f["len"] for f in
                                                                 capture.frames]


def test_decode_of_batches_is_unchanged_by_the_ring_copy():
    """A PacketBatch built the way the ring builds it decodes like the file's frames."""
    frame = bytes(erspan2(tcp_frame(1), seq=9, session=4))
    ring = np.frombuffer(ring_block([(frame, None, 0)], ts(0)), np.uint8).copy()
    out = np.zeros(BLOCK_SIZE, np.uint8)
    cols = [np.zeros(1, np.int64), np.zeros(1, np.int32), np.zeros(1, np.int32),
            np.zeros(1, np.int64)]
    copy_blocks(ring, np.zeros(1, np.int64), out, *cols, np.zeros(1, np.uint8))
    from flowscope.batch import PacketBatch

    batch = PacketBatch(out, cols[0], cols[1], cols[2], cols[3], np.ones(1, np.int32),
                        np.ones(1, np.int64))
    rows = decode(batch)
    MirrorTracker().update(rows)
    assert (rows["erspan_session"][0], rows["gre_seq"][0], rows["error"][0]) == (4, 9, 0)
