"""Named switch rules for the packets an incident is usually about.

RoCEv2 presets read the InfiniBand headers right after the UDP header (InfiniBand
Architecture Specification Vol. 1 Release 1.4; layouts in :mod:`flowscope.decode.roce`):

* §9.2 Base Transport Header, 12 bytes at l4+8: OpCode is its first byte, so the word at
  l4+8 masked 0xff00 is the opcode.  Annex A17: a Congestion Notification Packet is
  OpCode 0x81 (``rdma-cnp``); RC ACKNOWLEDGE is 0x11.
* §9.3.5 ACK Extended Transport Header right after the BTH, at l4+20: Syndrome is its first
  byte.  Bits 6-5 = 11 is a NAK, the low 5 bits the NAK code, 0 = PSN sequence error
  (table 42): 0x60/0xff00 is a PSN-sequence NAK (``rdma-nak-psn``), 0x60/0xe000 any NAK
  (``rdma-nak-any``: PSN sequence, invalid request, remote access, remote operational,
  invalid RD request; RNR NAKs are 001 and do not match).

TCP presets read the flags byte, the second byte of the word at l4+12 (RFC 9293 §3.1:
Data Offset (4) | reserved (3) | AE, then CWR ECE URG ACK PSH RST SYN FIN).
"""

from __future__ import annotations

from dataclasses import dataclass

from flowscope.errors import FlowscopeError


@dataclass(frozen=True)
class Preset:
    name: str
    expr: str | None  # the filter part (protocol, port), tcpdump syntax
    rules: tuple[str, ...]  # UDF rules, ANDed with it
    about: str


PRESETS = {p.name: p for p in (
    Preset("rdma-cnp", "udp dst port 4791", ("l4+8=0x8100/0xff00",),
           "RoCEv2 congestion notification packets (BTH OpCode 0x81)"),
    Preset("rdma-nak-psn", "udp dst port 4791", ("l4+8=0x1100/0xff00", "l4+20=0x6000/0xff00"),
           "RoCEv2 RC ACKNOWLEDGE carrying a PSN sequence error NAK (AETH syndrome 0x60)"),
    Preset("rdma-nak-any", "udp dst port 4791", ("l4+8=0x1100/0xff00", "l4+20=0x6000/0xe000"),
           "RoCEv2 RC ACKNOWLEDGE carrying any NAK (AETH syndrome 0x60-0x7f)"),
    Preset("tcp-syn", "tcp", ("l4+12=0x0002/0x0002",),
           "TCP segments with SYN set (connection attempts and their SYN-ACKs)"),
    Preset("tcp-rst", "tcp", ("l4+12=0x0004/0x0004",), "TCP segments with RST set"),
)}


def preset(name: str) -> Preset:
    found = PRESETS.get(name.strip().lower())
    if found is None:
        raise FlowscopeError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return found
