"""Capture files written by the tests themselves, with struct (independent of flowscope's
readers): classic pcap in both byte orders and resolutions, pcapng with chosen options."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

Frame = tuple[int, bytes, int]  # (timestamp ns, captured bytes, wire length)


def write_pcap(path: Path, frames: Sequence[Frame], linktype: int = 1, nanos: bool = False,
               big_endian: bool = False, snaplen: int = 65535) -> Path:
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for ts, data, wire in frames:
        sec, frac = divmod(ts, 1_000_000_000)
        if not nanos:
            frac //= 1000
        out.append(struct.pack(e + "IIII", sec, frac, len(data), wire) + data)
    path.write_bytes(b"".join(out))
    return path


def _opt(e: str, code: int, value: bytes) -> bytes:
    return struct.pack(e + "HH", code, len(value)) + value + b"\0" * ((-len(value)) % 4)


def _block(e: str, btype: int, body: bytes) -> bytes:
    n = 12 + len(body)
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def pcapng_section(big_endian: bool = False) -> tuple[str, bytes]:
    e = ">" if big_endian else "<"
    return e, _block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def pcapng_interface(e: str, linktype: int, tsresol: int | None = None) -> bytes:
    opts = _opt(e, 9, bytes([tsresol])) if tsresol is not None else b""
    return _block(e, 1, struct.pack(e + "HHI", linktype, 0, 0) + opts + _opt(e, 0, b""))


def pcapng_packet(e: str, iface: int, units: int, data: bytes, wire: int) -> bytes:
    body = struct.pack(e + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(data), wire)
    return _block(e, 6, body + data + b"\0" * ((-len(data)) % 4))
