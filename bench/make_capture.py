"""Generate a classic pcap of ERSPAN Type II mirror traffic, fast, with known ground truth.

Every frame is  Ethernet / IPv4 10.0.0.1 > 10.0.0.2 / GRE (S bit, sequence number) /
ERSPAN II (session 100, 200 or 300, VLAN 10) / inner Ethernet / IPv4 / TCP / payload,
with inner frames of 60-200 bytes.  Two kinds of traffic (--traffic):

conversations (default)  whole TCP connections, as a mirror port sees them: handshake,
    1-4 request/response rounds with consistent sequence and acknowledgement numbers, FIN
    close from either side (SF), plus a minority of failures: SYN answered by RST-ACK (REJ),
    SYN retried without reply (S0), aborts by either side (RSTO, RSTR).  9-30 packets per
    completed connection, ~1 M packets per second of capture time, thousands of connections
    interleaved; every connection has its own client address and port.
flood    every frame a random template with a fresh client port: nearly every frame a new
    one-packet "connection" with random flags (a SYN-flood-like worst case for per-session
    work; the generator's original behaviour, kept byte for byte).

scapy is the independent encoder: it builds the template packets (flood: a few hundred,
varied addresses, ports, flags and payload sizes; conversations: one per mirror session,
direction, TCP flags and payload length).  The capture itself is then made with NumPy, a
chunk of frames at a time, with no Python loop over frames:

1. each frame picks a template; the template bytes (pcap record header included) are
   gathered into one flat buffer;
2. fields that do not change any length are patched in place, vectorised: the pcap
   timestamp, the outer and inner IPv4 identification, the GRE sequence number (counting
   per session), the inner addresses, ports, TCP sequence and acknowledgement numbers; the
   outer IPv4, inner IPv4 and TCP checksums are updated incrementally (RFC 1624) so they
   stay correct (flood: 1 us per frame from 2026-01-01T00:00:00Z, only the client port and
   sequence number change);
3. with --loss P, a random fraction P of the frames is dropped *after* sequence numbering,
   so a mirror-loss counter sees the gaps.

A sidecar PATH.truth.json gives, per mirror session: packets written; lost, the sequence
numbers missing between the first and the last packet written (what GRE sequence numbers
can reveal); and dropped, all the frames removed (lost plus any dropped before the first or
after the last written packet, which no receiver can notice).  For conversations it also
gives tcp_connections and conn_states, the Zeek conn_state of every connection as sent
(before any --loss).

    python bench/make_capture.py --frames 1000000 -o bench/out/erspan2-conv-1M.pcap
    python bench/make_capture.py --traffic flood --frames 1000000 -o bench/out/erspan2-flood-1M.pcap
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from pathlib import Path

import numpy as np

SESSIONS = (100, 200, 300)  # ERSPAN session ids (10 bits)
ERSPAN_VLAN = 10
ERSPAN_EN_DOT1Q = 0b10  # En: the source port was 802.1Q; the tag is stripped, VLAN kept here
TEMPLATES = 384  # distinct scapy-built packets
CHUNK = 1 << 16  # frames generated per NumPy pass (bounds memory for multi-million captures)
EPOCH_2026 = 1_767_225_600  # 2026-01-01T00:00:00Z in Unix seconds
INNER_MIN, INNER_MAX = 60, 200  # inner frame length bounds, bytes

# Byte offsets inside a frame; fixed because no template carries IP or TCP options (checked).
OUTER_IP = 14
OUTER_IP_ID = OUTER_IP + 4
OUTER_IP_SUM = OUTER_IP + 10
OUTER_GRE = OUTER_IP + 20
GRE_SEQ = OUTER_GRE + 4  # after flags/version (2) and protocol (2); no checksum or key word
ERSPAN = OUTER_GRE + 8
INNER_ETH = ERSPAN + 8
INNER_IP = INNER_ETH + 14
INNER_IP_ID = INNER_IP + 4
INNER_IP_SUM = INNER_IP + 10
INNER_TCP = INNER_IP + 20
TCP_SPORT = INNER_TCP
TCP_DPORT = INNER_TCP + 2
TCP_SEQ = INNER_TCP + 4
TCP_SUM = INNER_TCP + 16
RECORD_HEADER = 16  # pcap record header: ts_sec, ts_usec, incl_len, orig_len (little-endian)

TCP_FLAGS = ("S", "SA", "A", "PA", "FA", "R", "RA")
SERVICE_PORTS = (22, 53, 80, 443, 3306, 5432, 6379, 8080, 8443, 9092)


def build_templates(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Pcap records (header + frame) built by scapy, returned flat.  Returns the bytes, each
    record's start (one more for the end), session id, and the offset of its client port."""
    from scapy.contrib.erspan import ERSPAN_II
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import GRE, Ether

    records, sessions, client_port = [], [], []
    for k in range(TEMPLATES):
        session = SESSIONS[k % len(SESSIONS)]
        inner_len = int(rng.integers(INNER_MIN, INNER_MAX + 1))
        client = f"192.168.{rng.integers(0, 8)}.{rng.integers(1, 255)}"
        server = f"172.16.{rng.integers(0, 4)}.{rng.integers(1, 255)}"
        sport = int(rng.integers(1024, 65536))
        dport = int(rng.choice(SERVICE_PORTS))
        client_port.append(TCP_SPORT)
        if k % 2:  # half the templates are server-to-client
            client, server, sport, dport = server, client, dport, sport
            client_port[-1] = TCP_DPORT
        inner = (Ether(src=f"02:00:00:00:{k >> 8:02x}:{k & 0xFF:02x}", dst="02:00:00:00:ff:01")
                 / IP(src=client, dst=server, ttl=int(rng.integers(32, 129)))
                 / TCP(sport=sport, dport=dport, flags=TCP_FLAGS[k % len(TCP_FLAGS)],
                       seq=int(rng.integers(0, 1 << 32)), window=int(rng.integers(1024, 65536))))
        inner = inner / bytes(rng.integers(0, 256, inner_len - len(inner), dtype=np.uint8))
        frame = bytes(Ether(src="00:00:5e:00:53:01", dst="00:00:5e:00:53:02")
                      / IP(src="10.0.0.1", dst="10.0.0.2", ttl=64)
                      / GRE(seqnum_present=1, sequence_number=0)
                      / ERSPAN_II(vlan=ERSPAN_VLAN, en=ERSPAN_EN_DOT1Q, session_id=session,
                                  index=k & 0xFFFFF)
                      / inner)
        # The fixed offsets above hold only without options, and lengths must add up.
        assert len(frame) == INNER_ETH + inner_len and frame[OUTER_IP] == 0x45
        assert frame[INNER_IP] == 0x45 and frame[INNER_TCP + 12] >> 4 == 5
        records.append(struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame)
        sessions.append(session)
    starts = np.cumsum([0] + [len(r) for r in records])
    flat = np.frombuffer(b"".join(records), np.uint8)
    return (flat, starts.astype(np.int64), np.array(sessions, np.int64),
            np.array(client_port, np.int64))


def put(buf: np.ndarray, pos: np.ndarray, value: np.ndarray, size: int, big: bool = True) -> None:
    """Store unsigned integers of `size` bytes at positions `pos` of a uint8 buffer."""
    value = value.astype(np.uint64)
    for b in range(size):
        shift = 8 * (size - 1 - b if big else b)
        buf[pos + b] = (value >> np.uint64(shift)) & np.uint64(0xFF)


def get16(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Big-endian 16-bit words at positions `pos`."""
    return (buf[pos].astype(np.int64) << 8) | buf[pos + 1]


def patch16(buf: np.ndarray, words: list[tuple[np.ndarray, np.ndarray]],
            checksum: np.ndarray) -> None:
    """Overwrite big-endian 16-bit words (positions, new values) and fix the Internet checksum
    stored at `checksum` incrementally (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m'))."""
    acc = (~get16(buf, checksum)) & 0xFFFF
    for pos, new in words:
        acc = acc + ((~get16(buf, pos)) & 0xFFFF) + (new & 0xFFFF)
        put(buf, pos, new & 0xFFFF, 2)
    while True:  # fold carries (a handful of passes at most)
        high = acc >> 16
        if not high.any():
            break
        acc = (acc & 0xFFFF) + high
    put(buf, checksum, (~acc) & 0xFFFF, 2)


def flood(path: Path, frames: int, loss: float, seed: int) -> dict[int, dict[str, int]]:
    """--traffic flood: every frame a random template with a fresh client port."""
    rng = np.random.default_rng(seed)
    flat, starts, template_session, client_port = build_templates(rng)
    lengths = np.diff(starts)
    session_slot = np.searchsorted(SESSIONS, template_session)  # session id -> 0..n-1
    next_seq = np.ones(len(SESSIONS), np.int64)  # GRE sequence numbers start at 1, per session
    first_kept = np.full(len(SESSIONS), -1, np.int64)
    last_kept = np.full(len(SESSIONS), -1, np.int64)
    kept = np.zeros(len(SESSIONS), np.int64)
    numbered = np.zeros(len(SESSIONS), np.int64)

    with open(path, "wb") as out:
        # Global header: microsecond magic, version 2.4, snaplen 65535, linktype 1 (Ethernet).
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for first in range(0, frames, CHUNK):
            n = min(CHUNK, frames - first)
            index = np.arange(first, first + n, dtype=np.int64)  # global frame number
            tmpl = rng.integers(0, TEMPLATES, n)
            slot = session_slot[tmpl]

            # GRE sequence numbers count per session, in frame order, across chunks.
            seq = np.empty(n, np.int64)
            for s in range(len(SESSIONS)):  # a loop over sessions, not frames
                mine = np.flatnonzero(slot == s)
                seq[mine] = next_seq[s] + np.arange(mine.size)
                next_seq[s] += mine.size
                numbered[s] += mine.size

            # Drop after numbering, so the survivors carry sequence gaps.
            if loss > 0:
                keep = rng.random(n) >= loss
                index, tmpl, slot, seq = index[keep], tmpl[keep], slot[keep], seq[keep]
            m = index.size
            if not m:
                continue
            for s in range(len(SESSIONS)):
                mine = seq[slot == s]
                if mine.size:
                    if first_kept[s] < 0:
                        first_kept[s] = mine[0]
                    last_kept[s] = mine[-1]
                    kept[s] += mine.size

            # Gather the chosen templates into one buffer: byte j of record i comes from
            # flat[starts[tmpl[i]] + j].
            size = lengths[tmpl]
            dest = np.zeros(m + 1, np.int64)
            np.cumsum(size, out=dest[1:])
            src = np.repeat(starts[tmpl] - dest[:-1], size) + np.arange(dest[-1])
            buf = flat[src]
            rec = dest[:-1]  # record starts
            pkt = rec + RECORD_HEADER  # frame starts

            # Pcap timestamps: 1 us per frame number (dropped frames leave a gap in time).
            put(buf, rec, EPOCH_2026 + index // 1_000_000, 4, big=False)
            put(buf, rec + 4, index % 1_000_000, 4, big=False)
            put(buf, pkt + GRE_SEQ, seq, 4)  # GRE has no checksum here (C bit clear)
            patch16(buf, [(pkt + OUTER_IP_ID, index)], pkt + OUTER_IP_SUM)
            patch16(buf, [(pkt + INNER_IP_ID, rng.integers(0, 1 << 16, m))], pkt + INNER_IP_SUM)
            # A fresh ephemeral client port and TCP sequence number per frame; the TCP
            # checksum covers both (and not the IP identification).
            tcp_seq = rng.integers(0, 1 << 32, m)
            patch16(buf, [(pkt + client_port[tmpl], rng.integers(32768, 61000, m)),
                          (pkt + TCP_SEQ, tcp_seq >> 16), (pkt + TCP_SEQ + 2, tcp_seq)],
                    pkt + TCP_SUM)
            out.write(buf.tobytes())

    truth = {}
    for s, session in enumerate(SESSIONS):
        span = int(last_kept[s] - first_kept[s] + 1) if kept[s] else 0
        truth[session] = {"session": session, "packets": int(kept[s]),
                          "lost": span - int(kept[s]), "dropped": int(numbered[s] - kept[s])}
    return truth


# --------------------------------------------------------------- --traffic conversations

# Connection kinds: what client and server do, and the Zeek conn_state that results
# (scripts/base/protocols/conn/main.zeek, conn_state()).  Most connections complete; a
# realistic minority fail: refused, unanswered (SYN retried), aborted by either side.
SF_CLIENT_CLOSE, SF_SERVER_CLOSE, REJ, S0, RSTO, RSTR = range(6)
KIND_STATE = ("SF", "SF", "REJ", "S0", "RSTO", "RSTR")
KIND_SHARE = (0.46, 0.42, 0.04, 0.03, 0.025, 0.025)

# Segments (one scapy template per mirror session, direction and segment): TCP flags, and
# for data segments (PA) a payload length from DATA_LENGTHS.
SEGMENT_FLAGS = ("S", "SA", "A", "FA", "RA", "PA")
SYN, SYN_ACK, ACK, FIN_ACK, RST_ACK, DATA = range(6)
DATA_LENGTHS = (16, 24, 40, 56, 72, 88, 100, 112, 128, 146)  # payload bytes (inner frame <= 200)
CLIENT, SERVER = 0, 1

# The scripted start and end of each kind, (direction, segment) pairs.  In between, the
# established kinds run 1-4 rounds of: a client request (PA), 1-4 response segments (server
# PA), a client ACK; so a completed connection has 9-30 packets.  S0 is a SYN sent 1-3 times
# (Linux retries after 1 s, then 2 s more: same sequence number, tcp_retries / RFC 6298).
HANDSHAKE = ((CLIENT, SYN), (SERVER, SYN_ACK), (CLIENT, ACK))
PREFIX = {SF_CLIENT_CLOSE: HANDSHAKE, SF_SERVER_CLOSE: HANDSHAKE,
          REJ: ((CLIENT, SYN), (SERVER, RST_ACK)),  # RFC 9293 3.10.7.1: RST seq 0, ACK
          S0: ((CLIENT, SYN),), RSTO: HANDSHAKE, RSTR: HANDSHAKE}
SUFFIX: dict[int, tuple[tuple[int, int], ...]] = {
    SF_CLIENT_CLOSE: ((CLIENT, FIN_ACK), (SERVER, FIN_ACK), (CLIENT, ACK)),
    SF_SERVER_CLOSE: ((SERVER, FIN_ACK), (CLIENT, FIN_ACK), (SERVER, ACK)),
    REJ: (), S0: (), RSTO: ((CLIENT, RST_ACK),), RSTR: ((SERVER, RST_ACK),)}
MAX_ROUNDS = MAX_RESPONSE = 4
SYN_RETRY_US = 1_000_000  # the first SYN retransmission timeout (RFC 6298 2.1), doubling
PACKET_GAP_US = 150  # mean gap between a connection's packets (a data-centre round trip)
THINK_US = 1_000  # mean extra gap before the next request of a connection

# Unique client (address, port) per connection, so no two connections share a 4-tuple (as
# tshark's conversations and flowscope's sessions both key on it): connection i gets
# combination (start + i * STRIDE) mod the number of combinations, STRIDE coprime with it.
CLIENT_HOSTS = 8 * 254  # 192.168.0-7.1-254
CLIENT_PORTS = 61000 - 32768  # Linux ip_local_port_range
STRIDE = 1_000_003
SERVER_HOSTS = 4 * 254  # 172.16.0-3.1-254

INNER_SRC = INNER_IP + 12
INNER_DST = INNER_IP + 16
TCP_ACK = INNER_TCP + 8


def table(rows: dict[int, tuple[tuple[int, int], ...]], column: int) -> np.ndarray:
    """PREFIX/SUFFIX as a [kind, position] array of one column (-1 past the end)."""
    out = np.full((len(KIND_STATE), 3), -1, np.int64)
    for kind, steps in rows.items():
        out[kind, : len(steps)] = [step[column] for step in steps]
    return out


def build_conversation_templates(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Pcap records built by scapy, one per (session, direction, segment, payload length);
    addresses, ports and sequence numbers are placeholders, patched per frame.  Returns the
    flat bytes, each record's start (one more for the end) and the [session slot, direction,
    segment, length index] -> record table."""
    from scapy.contrib.erspan import ERSPAN_II
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import GRE, Ether
    from scapy.packet import Padding

    records: list[bytes] = []
    index = np.full((len(SESSIONS), 2, len(SEGMENT_FLAGS), len(DATA_LENGTHS)), -1, np.int64)
    for slot, session in enumerate(SESSIONS):
        for direction in (CLIENT, SERVER):
            macs = ("02:00:00:00:00:01", "02:00:00:00:ff:01")[:: 1 - 2 * direction]
            for segment, flags in enumerate(SEGMENT_FLAGS):
                for li, length in enumerate(DATA_LENGTHS if segment == DATA else (0,)):
                    inner = (Ether(src=macs[0], dst=macs[1])
                             / IP(src="192.168.0.1", dst="172.16.0.1", ttl=64 - direction)
                             / TCP(sport=40000, dport=80, flags=flags, window=64240))
                    if length:
                        inner = inner / bytes(rng.integers(0, 256, length, dtype=np.uint8))
                    else:  # Ethernet minimum frame (60 bytes without FCS): padding
                        inner = inner / Padding(b"\0" * (60 - len(inner)))
                    frame = bytes(Ether(src="00:00:5e:00:53:01", dst="00:00:5e:00:53:02")
                                  / IP(src="10.0.0.1", dst="10.0.0.2", ttl=64)
                                  / GRE(seqnum_present=1, sequence_number=0)
                                  / ERSPAN_II(vlan=ERSPAN_VLAN, en=ERSPAN_EN_DOT1Q,
                                              session_id=session, index=slot)
                                  / inner)
                    assert frame[OUTER_IP] == 0x45 and frame[INNER_IP] == 0x45
                    assert frame[INNER_TCP + 12] >> 4 == 5 and len(frame) <= INNER_ETH + 200
                    index[slot, direction, segment, li] = len(records)
                    records.append(struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame)
    starts = np.cumsum([0] + [len(r) for r in records]).astype(np.int64)
    return np.frombuffer(b"".join(records), np.uint8), starts, index


def sample_connections(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """n connections: kind, rounds, response segments per round, SYN retries."""
    kind = rng.choice(len(KIND_STATE), n, p=KIND_SHARE)
    established = (kind != REJ) & (kind != S0)
    rounds = np.where(established, rng.integers(1, MAX_ROUNDS + 1, n), 0)
    response = rng.integers(1, MAX_RESPONSE + 1, n)
    retries = np.where(kind == S0, rng.integers(0, 3, n), 0)
    return {"kind": kind, "rounds": rounds, "response": response, "retries": retries}


def packet_count(c: dict[str, np.ndarray]) -> np.ndarray:
    plen = np.array([len(PREFIX[k]) for k in range(len(KIND_STATE))])
    slen = np.array([len(SUFFIX[k]) for k in range(len(KIND_STATE))])
    kind = c["kind"]
    return plen[kind] + c["rounds"] * (2 + c["response"]) + slen[kind] + c["retries"]


def plan_connections(rng: np.random.Generator, frames: int) -> dict[str, np.ndarray]:
    """Connections with exactly `frames` packets: whole connections while they fit, then
    the remainder as REJ (2 packets) and S0 (1 packet) connections."""
    n = frames // 12 + 32
    while True:
        c = sample_connections(rng, n)
        count = packet_count(c)
        if count[:-16].sum() >= frames:
            break
        n *= 2
    total = np.cumsum(count)
    k = int(np.searchsorted(total, frames, side="right"))  # whole connections that fit
    rest = frames - (int(total[k - 1]) if k else 0)
    filler = [REJ] * (rest // 2) + [S0] * (rest % 2)
    m = k + len(filler)
    c = {name: col[:m].copy() for name, col in c.items()}
    c["kind"][k:] = filler
    c["rounds"][k:] = 0
    c["retries"][k:] = 0
    return c


def conversation_packets(rng: np.random.Generator, frames: int
                         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every packet of every connection (connection-major order), as columns."""
    c = plan_connections(rng, frames)
    n = c["kind"].size
    count = packet_count(c)
    # per-connection constants
    combo = (int(rng.integers(0, CLIENT_HOSTS * CLIENT_PORTS))
             + np.arange(n, dtype=np.int64) * STRIDE) % (CLIENT_HOSTS * CLIENT_PORTS)
    host = combo // CLIENT_PORTS
    c["client_ip"] = (192 << 24) | (168 << 16) | ((host // 254) << 8) | (host % 254 + 1)
    c["client_port"] = 32768 + combo % CLIENT_PORTS
    server = rng.integers(0, SERVER_HOSTS, n)
    c["server_ip"] = (172 << 24) | (16 << 16) | ((server // 254) << 8) | (server % 254 + 1)
    c["server_port"] = np.asarray(SERVICE_PORTS)[rng.integers(0, len(SERVICE_PORTS), n)]
    c["session"] = rng.integers(0, len(SESSIONS), n)  # slot into SESSIONS
    c["isn"] = rng.integers(0, 1 << 32, (n, 2))  # [client, server]
    c["isn"][c["kind"] == REJ, SERVER] = 0  # a RST answering a SYN has sequence number 0
    start_us = rng.integers(0, max(frames, 1), n)  # ~1 M packets per second of capture

    # per packet: its connection and position in it
    conn = np.repeat(np.arange(n), count)
    first = np.zeros(n, np.int64)
    np.cumsum(count[:-1], out=first[1:])
    pos = np.arange(conn.size) - first[conn]
    kind = c["kind"][conn]
    plen = np.array([len(PREFIX[k]) for k in range(len(KIND_STATE))])[kind]
    slen = np.array([len(SUFFIX[k]) for k in range(len(KIND_STATE))])[kind]
    tail = pos - (count[conn] - slen)  # position in the suffix, if >= 0
    k = pos - plen  # position in the request/response rounds
    per_round = 2 + c["response"][conn]
    w = np.where(k >= 0, k % per_round, 0)
    rounds_dir = np.where((w == 0) | (w == per_round - 1), CLIENT, SERVER)
    rounds_seg = np.where(w == per_round - 1, ACK, DATA)
    retry = kind == S0  # S0: every packet is the (same) SYN
    direction = np.select([pos < plen, tail >= 0, retry],
                          [table(PREFIX, 0)[kind, np.minimum(pos, 2)],
                           table(SUFFIX, 0)[kind, np.clip(tail, 0, 2)], CLIENT], rounds_dir)
    segment = np.select([pos < plen, tail >= 0, retry],
                        [table(PREFIX, 1)[kind, np.minimum(pos, 2)],
                         table(SUFFIX, 1)[kind, np.clip(tail, 0, 2)], SYN], rounds_seg)
    # payload: requests from the shorter half of DATA_LENGTHS, responses from all
    data = segment == DATA
    request = data & (direction == CLIENT)
    length_index = np.where(data, rng.integers(0, len(DATA_LENGTHS), conn.size), 0)
    length_index = np.where(request, length_index // 2, length_index)
    length = np.where(data, np.asarray(DATA_LENGTHS)[length_index], 0)

    # Sequence numbers: each side's ISN plus the sequence space it used before this packet
    # (payload, SYN and FIN count one each; a retried SYN reuses its number); the ACK
    # number is the peer's ISN plus all the peer sent before (every connection is in order).
    used = length + np.isin(segment, (SYN, SYN_ACK)) * ~retry + (segment == FIN_ACK)
    sent = np.zeros((conn.size, 2), np.int64)
    for d in (CLIENT, SERVER):
        mine = np.where(direction == d, used, 0)
        before = np.cumsum(mine) - mine
        sent[:, d] = before - before[first][conn]
    isn = c["isn"][conn]
    rows = np.arange(conn.size)
    seq = (isn[rows, direction] + sent[rows, direction]) & 0xFFFFFFFF
    ack = (isn[rows, 1 - direction] + sent[rows, 1 - direction]) & 0xFFFFFFFF
    ack = np.where(segment == SYN, 0, ack)

    # Capture time: the connection's start plus its gaps (round trips, think time before
    # a request, SYN retransmission timeouts); strictly increasing within a connection.
    gap = 1 + rng.exponential(PACKET_GAP_US, conn.size).astype(np.int64)
    gap += np.where(request & (k > 0), rng.exponential(THINK_US, conn.size).astype(np.int64), 0)
    gap = np.where(retry, SYN_RETRY_US << np.maximum(pos - 1, 0), gap)
    gap[first] = 0
    elapsed = np.cumsum(gap)
    ts_us = start_us[conn] + elapsed - elapsed[first][conn]

    client = direction == CLIENT
    packets = {
        "ts_us": ts_us, "session": c["session"][conn], "direction": direction,
        "segment": segment, "length_index": length_index,
        "src": np.where(client, c["client_ip"][conn], c["server_ip"][conn]),
        "dst": np.where(client, c["server_ip"][conn], c["client_ip"][conn]),
        "sport": np.where(client, c["client_port"][conn], c["server_port"][conn]),
        "dport": np.where(client, c["server_port"][conn], c["client_port"][conn]),
        "seq": seq, "ack": ack,
    }
    return packets, c


def checksum_delta(buf: np.ndarray, checksum: np.ndarray,
                   words: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Fix the Internet checksum at `checksum` for 16-bit words about to be overwritten
    (RFC 1624, eqn. 3), without writing them: several checksums can cover one word."""
    acc = (~get16(buf, checksum)) & 0xFFFF
    for pos, new in words:
        acc = acc + ((~get16(buf, pos)) & 0xFFFF) + (new & 0xFFFF)
    while (acc >> 16).any():
        acc = (acc & 0xFFFF) + (acc >> 16)
    put(buf, checksum, (~acc) & 0xFFFF, 2)


def conversations(path: Path, frames: int, loss: float, seed: int
                  ) -> tuple[dict[int, dict[str, int]], dict[str, object]]:
    """--traffic conversations: whole TCP connections, interleaved in time."""
    rng = np.random.default_rng(seed)
    flat, starts, template = build_conversation_templates(rng)
    lengths = np.diff(starts)
    p, c = conversation_packets(rng, frames)
    order = np.argsort(p["ts_us"], kind="stable")  # ties: connection order, then position
    p = {name: col[order] for name, col in p.items()}

    # GRE sequence numbers count per mirror session in capture order, from 1
    gre_seq = np.zeros(frames, np.int64)
    for s in range(len(SESSIONS)):
        mine = np.flatnonzero(p["session"] == s)
        gre_seq[mine] = 1 + np.arange(mine.size)
    index = np.arange(frames, dtype=np.int64)
    keep = rng.random(frames) >= loss if loss > 0 else np.ones(frames, bool)

    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for first in range(0, frames, CHUNK):
            pick = np.flatnonzero(keep[first: first + CHUNK]) + first
            if not pick.size:
                continue
            f = {name: col[pick] for name, col in p.items()}
            tmpl = template[f["session"], f["direction"], f["segment"], f["length_index"]]
            size = lengths[tmpl]
            dest = np.zeros(pick.size + 1, np.int64)
            np.cumsum(size, out=dest[1:])
            buf = flat[np.repeat(starts[tmpl] - dest[:-1], size) + np.arange(dest[-1])]
            rec = dest[:-1]
            pkt = rec + RECORD_HEADER
            ts = EPOCH_2026 * 1_000_000 + f["ts_us"]
            put(buf, rec, ts // 1_000_000, 4, big=False)
            put(buf, rec + 4, ts % 1_000_000, 4, big=False)
            put(buf, pkt + GRE_SEQ, gre_seq[pick], 4)
            patch16(buf, [(pkt + OUTER_IP_ID, index[pick])], pkt + OUTER_IP_SUM)
            address = [(pkt + INNER_SRC, f["src"] >> 16), (pkt + INNER_SRC + 2, f["src"]),
                       (pkt + INNER_DST, f["dst"] >> 16), (pkt + INNER_DST + 2, f["dst"])]
            ip = [*address, (pkt + INNER_IP_ID, rng.integers(0, 1 << 16, pick.size))]
            tcp = [*address, (pkt + TCP_SPORT, f["sport"]), (pkt + TCP_DPORT, f["dport"]),
                   (pkt + TCP_SEQ, f["seq"] >> 16), (pkt + TCP_SEQ + 2, f["seq"]),
                   (pkt + TCP_ACK, f["ack"] >> 16), (pkt + TCP_ACK + 2, f["ack"])]
            checksum_delta(buf, pkt + INNER_IP_SUM, ip)  # the TCP pseudo-header has the
            checksum_delta(buf, pkt + TCP_SUM, tcp)  # addresses too: both before writing
            for pos, new in ip + tcp:
                put(buf, pos, new & 0xFFFF, 2)
            out.write(buf.tobytes())

    truth = {}
    for s, session in enumerate(SESSIONS):
        mine = gre_seq[(p["session"] == s) & keep]
        numbered = int((p["session"] == s).sum())
        span = int(mine[-1] - mine[0] + 1) if mine.size else 0
        truth[session] = {"session": session, "packets": int(mine.size),
                          "lost": span - int(mine.size), "dropped": numbered - int(mine.size)}
    states = np.asarray(KIND_STATE)[c["kind"]]
    names, counts = np.unique(states, return_counts=True)
    return truth, {"tcp_connections": int(c["kind"].size),
                   "conn_states": {str(k): int(v) for k, v in zip(names, counts, strict=True)}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000,
                    help="frames generated before any loss (default 1000000)")
    ap.add_argument("-o", "--output", type=Path, required=True, help="pcap file to write")
    ap.add_argument("--loss", type=float, default=0.0,
                    help="fraction of frames dropped at random after sequence numbering")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--traffic", choices=("conversations", "flood"), default="conversations",
                    help="conversations: whole TCP connections (default); flood: a random "
                         "template and a fresh client port per frame")
    args = ap.parse_args(argv)
    if args.frames < 0 or not 0 <= args.loss < 1:
        ap.error("--frames must be >= 0 and --loss in [0, 1)")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    extra: dict[str, object] = {}
    if args.traffic == "flood":
        truth = flood(args.output, args.frames, args.loss, args.seed)
    else:
        truth, extra = conversations(args.output, args.frames, args.loss, args.seed)
        if args.loss:
            extra["note"] = "connections as sent, before the mirror lost --loss of the frames"
    elapsed = time.perf_counter() - t0
    sidecar = args.output.with_name(args.output.name + ".truth.json")
    sidecar.write_text(json.dumps({"traffic": args.traffic, "frames": args.frames,
                                   "mirror_sessions": list(truth.values()), **extra},
                                  indent=1) + "\n")
    written = sum(t["packets"] for t in truth.values())
    lost = sum(t["lost"] for t in truth.values())
    print(f"{args.output}: {written:,} frames ({lost:,} lost in sequence), "
          f"{args.output.stat().st_size / 1e6:.1f} MB in {elapsed:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
