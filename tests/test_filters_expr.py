"""Filter expressions: the AST tcpdump's rules give, errors that point at the token, mirror
fields against the values handed to scapy, and parser properties (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.filters import Filter, FilterSyntaxError, Selector, parse_filter
from flowscope.filters.expr import And, Mirror, Net, Not, Or, Port, Protocol
from flowscope.pipeline import decode_files

from .filters_gen import plain_frames, tunnelled
from .test_filters_tcpdump import _expressions

A, B = int.from_bytes(bytes([10, 0, 0, 1]), "big"), int.from_bytes(bytes([10, 0, 0, 2]), "big")
FULL = 0xFFFFFFFF


def host(addr: int, direction: str = "src or dst") -> Net:
    return Net(None, direction, 4, addr, FULL, host=True)


@pytest.mark.parametrize(("text", "ast"), [
    ("host 10.0.0.1 or 10.0.0.2", Or(host(A), host(B))),
    ("src host 10.0.0.1 and not 10.0.0.2", And(host(A, "src"), Not(host(B, "src")))),
    # and/or share one precedence and group left to right (pcap-filter(7))
    ("tcp or udp and host 10.0.0.1", And(Or(Protocol("tcp"), Protocol("udp")), host(A))),
    ("tcp or (udp and host 10.0.0.1)", Or(Protocol("tcp"), And(Protocol("udp"), host(A)))),
    ("! tcp && port 80 || 443", Or(And(Not(Protocol("tcp")), Port(None, "src or dst", 80, 80)),
                                   Port(None, "src or dst", 443, 443))),
    ("tcp dst port 80 or 443", Or(Port("tcp", "dst", 80, 80), Port("tcp", "dst", 443, 443))),
    ("dst or src port 53", Port(None, "src or dst", 53, 53)),
    ("src and dst net 10.0.0.0/8", Net(None, "src and dst", 4, 0x0A000000, 0xFF000000)),
    ("net 10.1", Net(None, "src or dst", 4, 0x0A010000, 0xFFFF0000)),
    ("net 10.0.0.0 mask 255.0.255.0", Net(None, "src or dst", 4, 0x0A000000, 0xFF00FF00)),
    ("portrange 2000-1000", Port(None, "src or dst", 1000, 2000, True)),
    ("vni 5569041 or 7", Or(Mirror("vni", 5569041), Mirror("vni", 7))),
    ("vlan and erspan.session 42", And(Mirror("vlan", None), Mirror("erspan.session", 42))),
    ("direction ingress or egress", Or(Mirror("direction", 1), Mirror("direction", 2))),
    ("10.0.0.1", host(A)),
])
def test_expressions_parse_as_tcpdump_reads_them(text: str, ast: object) -> None:
    assert parse_filter(text) == ast


@pytest.mark.parametrize(("text", "ast"), [
    ("port http", "tcp port 80"),  # /etc/services knows http for TCP only, as tcpdump
    ("port domain", "port 53"),
    ("proto \\udp or ip6 proto 58", "(proto 17 or ip6 proto 58)"),
    ("net 2001:db8::/32", "net 2001:db8::/32"),
    ("not (tcp or udp)", "not (tcp or udp)"),
])
def test_canonical_spelling(text: str, ast: str) -> None:
    assert str(parse_filter(text)) == ast


@pytest.mark.parametrize(("text", "column", "problem", "width"), [
    ("tcp port foo", 10,
     "expected a port number (0-65535) or a service name after 'port', not 'foo'", 3),
    ("tcp port", 9, "expected a port number after 'port', not the end", 1),
    ("host 10.0.0.1 and", 18, "expected a primitive (host, net, port, tcp, udp, ...) at the end",
     1),
    ("tcp and (udp or icmp", 21, "expected ')' to match the '(' in column 9", 1),
    ("tcp)", 4, "unmatched ')'", 1),
    ("host 10.0.0.1 10.0.0.2", 15, "expected 'and' or 'or' before '10.0.0.2'", 8),
    ("tcp & udp", 5, "unexpected '&' (use 'and' or '&&')", 1),
    ("tcp host 10.0.0.1", 10, "'tcp' cannot qualify 'host' (use 'ip', 'ip6' or none)", 8),
    ("ip port 80", 9, "'ip' cannot qualify 'port' (use 'tcp', 'udp', 'sctp' or none)", 2),
    ("ip6 host 10.0.0.1", 10, "'ip6' does not go with an IPv4 address", 8),
    ("net 10.0.0.1/8", 5, "non-network bits set in '10.0.0.1/8'", 10),
    ("host example.com", 6,
     "expected an IP address after 'host', not 'example.com' (names are not resolved)", 11),
    ("portrange 80", 11,
     "expected a port range such as 1024-2047 (ports 0-65535), not '80'", 2),
    ("vni 16777216", 5, "16777216 is out of range 0-16777215", 8),
    ("direction sideways", 11, "expected 'ingress' or 'egress' after 'direction', not "
                               "'sideways'", 8),
    ("frobnicate", 1, "unknown primitive 'frobnicate' (expected host, net, port, portrange, "
                      "tcp, udp, icmp, ip, ip6, vlan, vni, ...)", 10),
    ("src and", 5, "expected host, net, port or a value after 'src', not 'and'", 3),
    ("   ", 4, "empty expression; write e.g. 'tcp port 443'", 1),
])
def test_bad_expressions_point_at_the_token(text: str, column: int, problem: str,
                                            width: int) -> None:
    with pytest.raises(FilterSyntaxError) as e:
        parse_filter(text)
    assert (e.value.problem, e.value.column) == (problem, column)
    caret = " " * (column - 1) + "^" + "~" * (width - 1)
    assert str(e.value) == f"filter: {problem} at column {column}\n  {text}\n  {caret}"


def test_the_message_shape() -> None:
    with pytest.raises(FilterSyntaxError) as e:
        parse_filter("tcp port foo")
    assert str(e.value).splitlines() == [
        "filter: expected a port number (0-65535) or a service name after 'port', not 'foo' "
        "at column 10",
        "  tcp port foo",
        "           ^~~",
    ]


# -- masks -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mirrored(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("mirror")
    truth = tunnelled(d, plain_frames(200, seed=3), seed=4)
    return truth, decode_files([str(truth.path)])


def _frames(rows: np.ndarray, expr: str) -> list[int]:
    return rows["frame"][Filter(expr).mask(rows)].tolist()


def _truth(values: list, want: object) -> list[int]:
    return [i + 1 for i, v in enumerate(values) if v == want]


def test_mirror_fields_select_the_frames_scapy_was_given(mirrored) -> None:  # type: ignore[no-untyped-def]
    truth, rows = mirrored
    assert _frames(rows, "erspan.session 42") == _truth(truth.erspan_session, 42)
    assert _frames(rows, "erspan.session 1 or 1023") == [
        i + 1 for i, s in enumerate(truth.erspan_session) if s in (1, 1023)]
    assert _frames(rows, "vni 5569041") == _truth(truth.vni, 5569041)
    assert _frames(rows, "not vni 7 and vni 100 or vni 5569041") == [
        i + 1 for i, v in enumerate(truth.vni) if v in (100, 5569041)]
    assert _frames(rows, "direction ingress") == _truth(truth.direction, "ingress")
    assert _frames(rows, "direction egress") == _truth(truth.direction, "egress")
    assert _frames(rows, "vlan") == [i + 1 for i, v in enumerate(truth.vlan) if v is not None]
    some = next(v for v in truth.vlan if v is not None)
    assert _frames(rows, f"vlan {some}") == _truth(truth.vlan, some)
    assert len(_frames(rows, "erspan.session 42")) > 10
    assert len(_frames(rows, "direction egress")) > 10


def test_counts_on_empty_rows() -> None:
    rows = decode_files([])
    assert Filter("tcp and host 10.0.0.1 and vni 5").mask(rows).tolist() == []


# -- parser properties ---------------------------------------------------------------------

VOCABULARY = ["host", "net", "port", "portrange", "src", "dst", "tcp", "udp", "icmp", "ip",
              "ip6", "and", "or", "not", "!", "&&", "||", "(", ")", "10.0.0.1", "::1", "80",
              "1-2", "10.0.0.0/8", "mask", "255.0.0.0", "vni", "vlan", "5", "erspan.session",
              "direction", "ingress", "proto", "\\tcp", "less", "greater", "&", "|", "x"]


def _parses_or_points(text: str) -> None:
    try:
        ast = parse_filter(text)
    except FilterSyntaxError as e:
        assert 1 <= e.column <= len(text) + 1
        assert e.kind == "filter"
    else:
        assert parse_filter(str(ast)) == ast


@given(st.text(max_size=60))
def test_any_text_parses_or_raises_a_pointed_error(text: str) -> None:
    _parses_or_points(text)


@settings(max_examples=300)
@given(st.lists(st.sampled_from(VOCABULARY), max_size=10))
def test_token_soup_parses_or_raises_a_pointed_error(words: list[str]) -> None:
    _parses_or_points(" ".join(words))


@settings(max_examples=200, deadline=None)
@given(expr=_expressions())
def test_canonical_spelling_round_trips_and_selects_the_same(mirrored, expr: str) -> None:  # type: ignore[no-untyped-def]
    _, rows = mirrored
    ast = parse_filter(expr)
    again = parse_filter(str(ast))
    assert again == ast
    assert (Filter(str(ast)).mask(rows) == Filter(expr).mask(rows)).all()


def test_an_empty_expression_selects_everything() -> None:
    assert Selector("  ").selects_all and Selector(None).describe() == "all frames"
