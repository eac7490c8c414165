"""Generate a classic pcap of ERSPAN Type II mirror traffic, fast, with known ground truth.

Every frame is  Ethernet / IPv4 10.0.0.1 > 10.0.0.2 / GRE (S bit, sequence number) /
ERSPAN II (session 100, 200 or 300, VLAN 10) / inner Ethernet / IPv4 / TCP / payload,
with inner frames of 60-200 bytes.

scapy is the independent encoder: it builds a few hundred distinct template packets (varied
inner addresses, ports, TCP flags and payload sizes).  The capture itself is then made with
NumPy, a chunk of frames at a time, with no Python loop over frames:

1. each frame picks a template; the template bytes (pcap record header included) are
   gathered into one flat buffer;
2. fields that do not change any length are patched in place, vectorised: the pcap
   timestamp (1 us apart from 2026-01-01T00:00:00Z), the outer and inner IPv4
   identification, the GRE sequence number (counting per session), the inner TCP source
   port and sequence number;  the outer IPv4, inner IPv4 and TCP checksums are updated
   incrementally (RFC 1624) so they stay correct;
3. with --loss P, a random fraction P of the frames is dropped *after* sequence numbering,
   so a mirror-loss counter sees the gaps.

A sidecar PATH.truth.json gives, per session: packets written; lost, the sequence numbers
missing between the first and the last packet written (what GRE sequence numbers can
reveal); and dropped, all the frames removed (lost plus any dropped before the first or after
the last written packet, which no receiver can notice).

    python bench/make_capture.py --frames 1000000 -o bench/out/erspan2-1M.pcap
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


def generate(path: Path, frames: int, loss: float, seed: int) -> dict[int, dict[str, int]]:
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000,
                    help="frames generated before any loss (default 1000000)")
    ap.add_argument("-o", "--output", type=Path, required=True, help="pcap file to write")
    ap.add_argument("--loss", type=float, default=0.0,
                    help="fraction of frames dropped at random after sequence numbering")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = ap.parse_args(argv)
    if args.frames < 0 or not 0 <= args.loss < 1:
        ap.error("--frames must be >= 0 and --loss in [0, 1)")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    truth = generate(args.output, args.frames, args.loss, args.seed)
    elapsed = time.perf_counter() - t0
    sidecar = args.output.with_name(args.output.name + ".truth.json")
    sidecar.write_text(json.dumps(list(truth.values()), indent=1) + "\n")
    written = sum(t["packets"] for t in truth.values())
    lost = sum(t["lost"] for t in truth.values())
    print(f"{args.output}: {written:,} frames ({lost:,} lost in sequence), "
          f"{args.output.stat().st_size / 1e6:.1f} MB in {elapsed:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
