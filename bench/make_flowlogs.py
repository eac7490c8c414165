"""Generate a large AWS VPC Flow Logs file (custom format with header), fast, for bench/.

Connections between 2,000 clients and 200 servers, each logged the way AWS aggregates: one
record per direction per 60 s window with packets, bytes and OR-ed tcp-flags (FIN 1, SYN 2,
RST 4, SYN-ACK 18).  Most connections complete (SF); some are unanswered, refused, reset or
rejected.  About 1.6M records (~200 MB) by default.  Records are shuffled within each block.

    python bench/make_flowlogs.py --records 1600000 -o bench/out/flowlogs-1.6M.log
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

FIELDS = ("version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport",
          "protocol", "packets", "bytes", "start", "end", "action", "log-status", "vpc-id",
          "subnet-id", "instance-id", "tcp-flags", "type", "pkt-srcaddr", "pkt-dstaddr",
          "flow-direction", "traffic-path")
T0 = 1_763_000_000
BLOCK = 200_000  # connections per generated block

# kind: (client flags, server flags, server replies?, action)
KINDS = (("SF", 3, 19, True, "ACCEPT"), ("S1", 2, 18, True, "ACCEPT"),
         ("S0", 2, 0, False, "ACCEPT"), ("REJ", 2, 4, True, "ACCEPT"),
         ("RSTR", 2, 22, True, "ACCEPT"), ("DENIED", 2, 0, False, "REJECT"))
WEIGHTS = (0.86, 0.04, 0.03, 0.03, 0.02, 0.02)


def block(rng: np.random.Generator, n: int, first_id: int) -> list[str]:
    kind = rng.choice(len(KINDS), n, p=WEIGHTS)
    client = rng.integers(0, 2000, n)
    server = rng.integers(0, 200, n)
    sport = 32768 + (first_id + np.arange(n)) % 28000
    dport = np.array([443, 8443, 5432, 6379, 9092])[server % 5]
    start = T0 + rng.integers(0, 3600, n)
    windows = np.where(rng.random(n) < 0.2, 2, 1)  # some connections span two windows
    lines = []
    for i in range(n):
        k = KINDS[kind[i]]
        c = f"10.1.{client[i] // 250}.{client[i] % 250 + 1}"
        s = f"10.2.0.{server[i] + 1}"
        for w in range(windows[i]):
            t = int(start[i]) + 60 * w
            cf = k[1] if w == 0 else (k[1] & 1)
            sf = k[2] if w == 0 else (k[2] & 1)
            pk = int(rng.integers(3, 40))
            lines.append(f"5 123456789012 eni-0abc 10.1.0.0 {s} {sport[i]} {dport[i]} 6 {pk} "
                         f"{pk * 90} {t} {t + 59} {k[4]} OK vpc-0a subnet-0b i-0c {cf} IPv4 {c} "
                         f"{s} egress 1")
            if k[3]:
                lines.append(f"5 123456789012 eni-0abc {s} 10.1.0.0 {dport[i]} {sport[i]} 6 "
                             f"{pk} {pk * 700} {t} {t + 59} ACCEPT OK vpc-0a subnet-0b i-0c {sf} "
                             f"IPv4 {s} {c} ingress -")
    order = rng.permutation(len(lines))
    return [lines[j] for j in order]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_600_000)
    ap.add_argument("-o", "--output", type=Path, default=Path("bench/out/flowlogs.log"))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    t = time.time()
    written = 0
    with open(args.output, "w") as out:
        out.write(" ".join(FIELDS) + "\n")
        conn = 0
        while written < args.records:
            lines = block(rng, BLOCK, conn)[: args.records - written]
            out.write("\n".join(lines) + "\n")
            written += len(lines)
            conn += BLOCK
    size = args.output.stat().st_size / 1e6
    print(f"{args.output}: {written:,} records, {size:.0f} MB in {time.time() - t:.1f}s")


if __name__ == "__main__":
    main()
