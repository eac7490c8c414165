"""The pure-Python baseline for `flowscope decap`: a plain dpkt loop over an ERSPAN capture.

Reads a pcap with dpkt.pcap.Reader, parses Ethernet / IPv4 / GRE with dpkt (which consumes
the GRE flags, protocol and sequence number), skips the 8-byte ERSPAN Type II header and
writes the inner frame with dpkt.pcapng.Writer (one Ethernet interface, microsecond
timestamps, one Enhanced Packet Block per frame via writepkt).  Frames that are not ERSPAN
Type II over IPv4 are skipped, as flowscope skips frames without a mirror encapsulation.

    python bench/dpkt_decap.py IN.pcap -o OUT.pcapng
"""

from __future__ import annotations

import argparse
import sys

import dpkt

GRE_PROTO = 47
ETH_P_ERSPAN = 0x88BE  # ERSPAN Type I/II; Type II has the S bit and an 8-byte header
GRE_FLAG_S = 0x1000
ERSPAN_II_LEN = 8


def decap(src: str, dst: str) -> tuple[int, int]:
    read = written = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        writer = dpkt.pcapng.Writer(fout, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, buf in dpkt.pcap.Reader(fin):
            read += 1
            try:
                eth = dpkt.ethernet.Ethernet(buf)
            except dpkt.UnpackError:
                continue
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP) or ip.p != GRE_PROTO:
                continue
            gre = ip.data
            if not isinstance(gre, dpkt.gre.GRE) or gre.p != ETH_P_ERSPAN:
                continue
            if not gre.flags & GRE_FLAG_S:  # Type I: no ERSPAN header, not this benchmark
                continue
            inner = gre.data[ERSPAN_II_LEN:]  # bytes: dpkt has no ERSPAN dissector
            writer.writepkt(inner, ts=ts)
            written += 1
    return read, written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="pcap file")
    ap.add_argument("-o", "--output", required=True, help="pcapng file to write")
    args = ap.parse_args()
    read, written = decap(args.input, args.output)
    print(f"dpkt: read {read} frames, wrote {written} frames to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
