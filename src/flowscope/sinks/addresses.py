"""IP addresses as text, from the decoder's 16-byte address columns (IPv4 in bytes 0-3)."""

from __future__ import annotations

import ipaddress


def ip_text(ipver: int, addr: bytes) -> str | None:
    if ipver == 4:
        return str(ipaddress.IPv4Address(addr[:4]))
    if ipver == 6:
        return str(ipaddress.IPv6Address(addr[:16]))
    return None
