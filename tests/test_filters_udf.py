"""UDF rules: the words each base and offset reach in scapy-encoded frames, exact values;
the rule parser's errors and its round trip (hypothesis)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.contrib.roce import AETH, BTH, CNPPadding
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from flowscope.errors import FlowscopeError
from flowscope.filters import FilterSyntaxError, FrameBases, Selector, UdfRule, parse_rule
from flowscope.filters.udf import parse_rules
from flowscope.pipeline import PacketRun

from .generated import MAC_A, MAC_B, Record, erspan3, vxlan, write_pcap

CNP = (Ether(src=MAC_A, dst=MAC_B) / IP(src="10.1.0.2", dst="10.1.0.1")
       / UDP(sport=50001, dport=4791) / BTH(opcode=0x81, becn=1, dqpn=0x456) / CNPPadding())
NAK = (Ether(src=MAC_A, dst=MAC_B) / IP(src="10.1.0.2", dst="10.1.0.1")
       / UDP(sport=50002, dport=4791) / BTH(opcode=0x11, dqpn=0x456, psn=7)
       / AETH(syndrome=0x60, msn=3))
TCP_GET = (Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.1", dst="10.0.0.2", tos=0)
           / TCP(sport=40000, dport=80, flags="PA", options=[("NOP", None)] * 8)
           / Raw(b"GET / HTTP/1.1\r\n"))
UDP6 = (Ether(src=MAC_A, dst=MAC_B) / IPv6(src="2001:db8::1", dst="2001:db8::2")
        / UDP(sport=5353, dport=53) / Raw(b"\x12\x34rest"))


def _bases(tmp_path: Path, packets: list[Packet], snaps: list[int | None] | None = None
           ) -> FrameBases:
    snaps = snaps or [None] * len(packets)
    path = write_pcap(tmp_path / "f.pcap", [Record(p, 10**18 + i, s)
                                           for i, (p, s) in enumerate(zip(packets, snaps,
                                                                          strict=True))])
    [(batch, rows)] = list(PacketRun([str(path)]).batches())
    return FrameBases(batch, rows)


def _words(bases: FrameBases, rule: str) -> list[int | None]:
    word, present = parse_rule(rule).words(bases)
    return [int(w) if p else None for w, p in zip(word, present, strict=True)]


def test_each_base_reaches_the_header_it_names(tmp_path: Path) -> None:
    b = _bases(tmp_path, [CNP, NAK, TCP_GET, UDP6])
    assert _words(b, "l2+12=0") == [0x0800, 0x0800, 0x0800, 0x86DD]  # EtherType
    assert _words(b, "l3+0=0") == [0x4500, 0x4500, 0x4500, 0x6000]  # version | IHL/TOS
    assert _words(b, "l3+8=0") == [0x4011, 0x4011, 0x4006, 0x2001]  # TTL | protocol; IPv6 src
    assert _words(b, "l4+2=0") == [4791, 4791, 80, 53]  # destination port
    assert _words(b, "l4+8=0") == [0x8100, 0x1100, 0x0000, 0x1234]  # BTH OpCode | SE..TVer
    assert _words(b, "l4+20=0") == [0x0000, 0x6000, 0x0101, None]  # AETH syndrome | MSN
    # l5: after UDP's 8 bytes; after TCP's Data Offset (20 + 8 NOPs = 28 bytes)
    assert _words(b, "l5+0=0") == [0x8100, 0x1100, 0x4745, 0x1234]  # "GE"
    assert _words(b, "l5+2=0") == [0xFFFF, 0xFFFF, 0x5420, 0x7265]  # BTH P_Key; "T ", "re"


def test_a_word_past_the_captured_bytes_does_not_match(tmp_path: Path) -> None:
    # NAK cut 1 byte into the AETH: its syndrome is there, the word at l4+20 is not whole
    cut = len(NAK) - 4 - 4 + 1  # minus ICRC, minus AETH, plus its first byte
    b = _bases(tmp_path, [NAK, NAK], [None, cut])
    assert _words(b, "l4+20=0") == [0x6000, None]
    assert _words(b, "l4+19=0") == [0x0760, 0x0760]  # last PSN byte | syndrome
    sel = Selector(udf=["l4+20=0x6000/0xff00"])
    assert sel.mask(_batch(tmp_path), _rows(tmp_path)).tolist() == [True, False]


def _run(tmp_path: Path) -> tuple:
    return next(PacketRun([str(tmp_path / "f.pcap")]).batches())


def _batch(tmp_path: Path):  # type: ignore[no-untyped-def]
    return _run(tmp_path)[0]


def _rows(tmp_path: Path) -> np.ndarray:
    return _run(tmp_path)[1]


def test_a_non_first_fragment_has_no_l4(tmp_path: Path) -> None:
    frag = Ether(bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.1", dst="10.0.0.2", frag=3)
                       / UDP(sport=1, dport=2) / Raw(b"x" * 16)))
    b = _bases(tmp_path, [frag])
    assert _words(b, "l3+6=0") == [0x0003]
    assert _words(b, "l4+0=0") == [None]
    assert _words(b, "l5+0=0") == [None]


def test_rules_read_the_mirrored_frame_not_the_tunnel(tmp_path: Path) -> None:
    inner_ip = IP(bytes(CNP[IP]))
    b = _bases(tmp_path, [vxlan(CNP, vni=7), erspan3(inner_ip, seq=1, session=5, ft=2)])
    assert _words(b, "l2+12=0") == [0x0800, None]  # a raw-IP copy has no l2
    assert _words(b, "l3+0=0") == [0x4500, 0x4500]
    assert _words(b, "l4+8=0") == [0x8100, 0x8100]


def test_rules_and_presets_and_together(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "f.pcap", [Record(p, 10**18 + i) for i, p in
                                            enumerate([CNP, NAK, TCP_GET, UDP6])])
    [(batch, rows)] = list(PacketRun([str(path)]).batches())

    def mask(**kw: object) -> list[bool]:
        return Selector(**kw).mask(batch, rows).tolist()  # type: ignore[arg-type]

    assert mask(preset="rdma-cnp") == [True, False, False, False]
    assert mask(preset="rdma-nak-psn") == [False, True, False, False]
    assert mask(preset="rdma-nak-any") == [False, True, False, False]
    assert mask(udf=["l4+2=4791", "l4+8=0x1100/0xff00"]) == [False, True, False, False]
    assert mask(udf=["l4+2=4791"], expr="host 10.1.0.2") == [True, True, False, False]
    assert mask(udf=["l4+12=0x0008/0x0008"], preset="tcp-syn") == [False, False, False, False]
    assert mask(udf=["l4+12=0x0008/0x0008"], expr="tcp") == [False, False, True, False]


# -- parsing -------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "rule"), [
    ("l4+8=0x8100/0xff00", UdfRule("l4", 8, 0x8100, 0xFF00)),
    ("L3 + 9 = 17 / 255", UdfRule("l3", 9, 17, 255)),
    ("l2+12=0x0800", UdfRule("l2", 12, 0x0800, 0xFFFF)),
    ("l5+126=0/0", UdfRule("l5", 126, 0, 0)),
])
def test_rules_parse(text: str, rule: UdfRule) -> None:
    assert parse_rule(text) == rule


@pytest.mark.parametrize(("text", "message"), [
    ("l6+1=2", "udf: unknown base 'l6' (use l2, l3, l4 or l5) at column 1\n  l6+1=2\n  ^~"),
    ("l4+127=1", "udf: offset 127 is out of range 0-126 at column 4\n  l4+127=1\n     ^~~"),
    ("l4+8=0x10000", "udf: 16-bit value 0x10000 is out of range 0-0xffff at column 6\n"
                     "  l4+8=0x10000\n       ^~~~~~~"),
    ("l4+8", "udf: expected '=' after the offset at column 5\n  l4+8\n      ^"),
    ("l4+8=0x8101/0xff00", "udf: value 0x8101 has bits outside mask 0xff00, so it can never "
                           "match at column 6\n  l4+8=0x8101/0xff00\n       ^~~~~~"),
    ("l4+x=1", "udf: expected an offset after '+' at column 4\n  l4+x=1\n     ^"),
    ("", "udf: empty rule; write BASE+OFFSET=VALUE/MASK, e.g. l4+8=0x8100/0xff00 at column 1"
         "\n  \n  ^"),
])
def test_bad_rules_point_at_the_problem(text: str, message: str) -> None:
    with pytest.raises(FilterSyntaxError) as e:
        parse_rule(text)
    assert str(e.value) == message
    assert isinstance(e.value, FlowscopeError)


def test_at_most_eight_rules() -> None:
    rules = [f"l4+{2 * i}=0/0" for i in range(9)]
    assert len(parse_rules(rules[:8])) == 8
    with pytest.raises(FilterSyntaxError, match="9 rules given; a switch ANDs at most 8"):
        parse_rules(rules)
    with pytest.raises(FlowscopeError, match="preset included"):
        Selector(preset="rdma-nak-psn", udf=rules[:7])


def _parses_or_points(text: str) -> None:
    try:
        rule = parse_rule(text)
    except FilterSyntaxError as e:
        assert 1 <= e.column <= len(text) + 1
    else:
        assert parse_rule(str(rule)) == rule


@given(st.text(max_size=40))
def test_any_text_parses_or_raises_a_pointed_error(text: str) -> None:
    _parses_or_points(text)


@given(st.lists(st.sampled_from(["l2", "l4", "L5", "+", "=", "/", "0x81", "8", "126", "127",
                                 " ", "0xffff", "65536", "x", "-"]), max_size=8))
def test_token_soup_parses_or_raises_a_pointed_error(parts: list[str]) -> None:
    _parses_or_points("".join(parts))


@given(base=st.sampled_from(["l2", "l3", "l4", "l5"]), offset=st.integers(0, 126),
       value=st.integers(0, 0xFFFF), mask=st.integers(0, 0xFFFF))
def test_rules_round_trip(base: str, offset: int, value: int, mask: int) -> None:
    rule = UdfRule(base, offset, value & mask, mask)
    assert parse_rule(str(rule)) == rule
    assert parse_rule(f"{base} + {offset} = {value & mask} / {mask}") == rule
