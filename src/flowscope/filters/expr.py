"""Filter expressions: tcpdump's common primitives on the mirrored packet, plus mirror fields.

The language is the subset of pcap-filter(7) that incident work uses, with its rules:

* primitives ``[ip|ip6|tcp|udp|sctp] [src|dst|src or dst|src and dst] host|net|port|portrange
  VALUE``; ``net`` takes ``A.B.C.D/LEN``, ``A.B.C.D mask M``, a partial ``10.1`` (classful, as
  tcpdump) or an IPv6 prefix; ``port`` a number or a service name; ``portrange LO-HI``;
* protocols ``ip ip6 tcp udp icmp icmp6 sctp arp``, ``[ip|ip6] proto N``, ``less N``,
  ``greater N`` (the mirrored packet's length on the wire);
* ``not``/``!``, ``and``/``&&``, ``or``/``||`` and parentheses.  As in tcpdump, ``and`` and
  ``or`` have the same precedence and group left to right; ``not`` binds tightest;
* tcpdump's shorthand: a bare value reuses the qualifiers of the primitive before it, so
  ``host 10.0.0.1 or 10.0.0.2`` and ``tcp dst port 80 or 443`` mean what they say.

Mirror fields (flowscope's own): ``erspan.session N``, ``vni N``, ``direction
ingress|egress``, ``vlan [N]`` (the ERSPAN VLAN when the header has one, else the mirrored
frame's 802.1Q VID).

Differences from tcpdump, on purpose: fields are read from the decoded mirrored packet, so
802.1Q tags and IPv6 extension headers are looked through (tcpdump's ``ip`` needs ``vlan and
ip`` on a tagged frame); ``host``/``net`` match IP packets only (not ARP); names are not
resolved to addresses.  An expression is parsed once (tokens, recursive descent, an AST
whose ``str`` is the canonical spelling) and evaluated as NumPy masks over decoded rows.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Literal

import numpy as np

from flowscope.decode import codes
from flowscope.filters.errors import FilterSyntaxError

PROTO_NUMBERS = {"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
                 "icmp6": 58, "sctp": 132}
PORT_PROTOS = {"tcp": (6,), "udp": (17,), "sctp": (132,), None: (6, 17, 132)}
PROTOCOLS = ("ip", "ip6", "tcp", "udp", "icmp", "icmp6", "sctp", "arp")
DIRECTIONS = ("src", "dst", "src or dst", "src and dst")
TYPES = ("host", "net", "port", "portrange")
MIRROR_FIELDS = {"erspan.session": 0x3FF, "vni": 0xFFFFFF, "vlan": 0xFFF}  # field: max value
DIRECTION_VALUES = {"ingress": 1, "egress": 2}
KEYWORDS = frozenset(PROTOCOLS + TYPES + ("src", "dst", "and", "or", "not", "proto", "mask",
                                          "less", "greater", "direction") + tuple(MIRROR_FIELDS))

Dir = Literal["src", "dst", "src or dst", "src and dst"]


class Columns:
    """Decoded rows plus the derived columns several primitives share (computed once)."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows
        self._addr: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def addr(self, side: str) -> np.ndarray:
        """``src``/``dst`` as (n, 2) big-endian uint64 (IPv4 in the first 4 bytes, zeros after)."""
        got = self._addr.get(side)
        if got is None:
            got = self._addr[side] = np.ascontiguousarray(self.rows[side]).view(">u8")
        return got


def _sides(direction: str) -> tuple[tuple[str, ...], bool]:
    """The address/port columns a direction looks at, and whether all must match."""
    if direction == "src":
        return ("src",), False
    if direction == "dst":
        return ("dst",), False
    return ("src", "dst"), direction == "src and dst"


# -- the AST -------------------------------------------------------------------------------

class Node:
    def mask(self, cols: Columns) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class And(Node):
    left: Node
    right: Node

    def __str__(self) -> str:
        return f"({self.left} and {self.right})"

    def mask(self, cols: Columns) -> np.ndarray:
        return self.left.mask(cols) & self.right.mask(cols)


@dataclass(frozen=True)
class Or(Node):
    left: Node
    right: Node

    def __str__(self) -> str:
        return f"({self.left} or {self.right})"

    def mask(self, cols: Columns) -> np.ndarray:
        return self.left.mask(cols) | self.right.mask(cols)


@dataclass(frozen=True)
class Not(Node):
    operand: Node

    def __str__(self) -> str:
        return f"not {self.operand}"

    def mask(self, cols: Columns) -> np.ndarray:
        return ~self.operand.mask(cols)


def _qualified(proto: str | None, direction: str, rest: str) -> str:
    parts = [proto] if proto else []
    if direction != "src or dst":
        parts.append(direction)
    return " ".join(parts + [rest])


@dataclass(frozen=True)
class Net(Node):
    """``host`` (a full-length prefix) and ``net``: address AND mask equals network."""

    proto: str | None  # None, "ip" or "ip6"
    direction: str
    version: int  # 4 or 6
    network: int
    netmask: int
    host: bool = False

    def __str__(self) -> str:
        cls = ipaddress.IPv4Address if self.version == 4 else ipaddress.IPv6Address
        if self.host:
            return _qualified(self.proto, self.direction, f"host {cls(self.network)}")
        bits = 32 if self.version == 4 else 128
        full = (1 << bits) - 1
        length = bits - (~self.netmask & full).bit_length()
        if self.netmask == full ^ ((1 << (bits - length)) - 1):
            value = f"{cls(self.network)}/{length}"
        else:
            value = f"{cls(self.network)} mask {cls(self.netmask)}"
        return _qualified(self.proto, self.direction, f"net {value}")

    def mask(self, cols: Columns) -> np.ndarray:
        shift = 128 - (32 if self.version == 4 else 128)
        net, mask = self.network << shift, self.netmask << shift
        words = [(net >> 64, mask >> 64), (net & (2**64 - 1), mask & (2**64 - 1))]
        sides, both = _sides(self.direction)
        hits = []
        for side in sides:
            a = cols.addr(side)
            hit = np.ones(len(cols), bool)
            for k, (n, m) in enumerate(words):
                if m:
                    hit &= (a[:, k] & np.uint64(m)) == np.uint64(n)
            hits.append(hit)
        out = (hits[0] & hits[-1]) if both else (hits[0] | hits[-1])
        return out & (cols.rows["ipver"] == self.version)


@dataclass(frozen=True)
class Port(Node):
    proto: str | None  # None, "tcp", "udp" or "sctp"
    direction: str
    low: int
    high: int
    range: bool = False

    def __str__(self) -> str:
        value = f"portrange {self.low}-{self.high}" if self.range else f"port {self.low}"
        return _qualified(self.proto, self.direction, value)

    def mask(self, cols: Columns) -> np.ndarray:
        rows = cols.rows
        sides, both = _sides(self.direction)
        ports = [rows["sport" if side == "src" else "dport"] for side in sides]
        hits = [(p >= self.low) & (p <= self.high) for p in ports]
        out = (hits[0] & hits[-1]) if both else (hits[0] | hits[-1])
        return out & np.isin(rows["proto"], PORT_PROTOS[self.proto]) & (rows["ipver"] > 0)


@dataclass(frozen=True)
class Protocol(Node):
    name: str  # one of PROTOCOLS

    def __str__(self) -> str:
        return self.name

    def mask(self, cols: Columns) -> np.ndarray:
        rows = cols.rows
        ipver, proto = rows["ipver"], rows["proto"]
        if self.name == "ip":
            return ipver == 4
        if self.name == "ip6":
            return ipver == 6
        if self.name == "icmp":
            return (ipver == 4) & (proto == 1)
        if self.name == "icmp6":
            return (ipver == 6) & (proto == 58)
        if self.name == "arp":
            n = len(cols)
            last = rows["encap"][np.arange(n), np.maximum(rows["n_layers"].astype(np.int64) - 1, 0)]
            return (rows["n_layers"] > 0) & (last == codes.L_ARP)
        return (ipver > 0) & (proto == PROTO_NUMBERS[self.name])


@dataclass(frozen=True)
class IpProto(Node):
    version: int | None  # None: IPv4 or IPv6
    number: int

    def __str__(self) -> str:
        return ("ip " if self.version == 4 else "ip6 " if self.version == 6 else "") + \
            f"proto {self.number}"

    def mask(self, cols: Columns) -> np.ndarray:
        ipver = cols.rows["ipver"]
        version = (ipver > 0) if self.version is None else (ipver == self.version)
        return version & (cols.rows["proto"] == self.number)


@dataclass(frozen=True)
class Length(Node):
    op: str  # "less" (<=) or "greater" (>=), as tcpdump
    length: int

    def __str__(self) -> str:
        return f"{self.op} {self.length}"

    def mask(self, cols: Columns) -> np.ndarray:
        n = cols.rows["len"]
        return n <= self.length if self.op == "less" else n >= self.length


@dataclass(frozen=True)
class Mirror(Node):
    field: str  # "erspan.session", "vni", "vlan" or "direction"
    value: int | None  # None: "vlan" alone (any VLAN)

    def __str__(self) -> str:
        if self.field == "direction":
            return f"direction {'ingress' if self.value == 1 else 'egress'}"
        return self.field if self.value is None else f"{self.field} {self.value}"

    def mask(self, cols: Columns) -> np.ndarray:
        column = cols.rows["erspan_session" if self.field == "erspan.session" else self.field]
        return column >= 0 if self.value is None else column == self.value


# -- tokens --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Token:
    text: str
    column: int  # 1-based

    @property
    def word(self) -> str:
        return self.text.lower()


_TOKENS = re.compile(r"\s*(?:(&&|\|\||[()!])|([^\s()!&|]+)|(\S))")


def tokenize(text: str) -> list[Token]:
    tokens = []
    for m in _TOKENS.finditer(text):
        if m.group(3) is not None:
            c = m.group(3)
            hint = " (use 'and' or '&&')" if c == "&" else " (use 'or' or '||')" if c == "|" else ""
            raise FilterSyntaxError("filter", f"unexpected '{c}'{hint}", text, m.start(3) + 1)
        group = 1 if m.group(1) is not None else 2
        tokens.append(Token(m.group(group), m.start(group) + 1))
    return tokens


# -- the parser ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Qualifiers:
    """What a bare value inherits from the primitive before it (tcpdump's shorthand)."""

    proto: str | None
    direction: str
    kind: str  # "host", "net", "port", "portrange", or a mirror field


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.last: _Qualifiers | None = None

    # token helpers
    def peek(self, k: int = 0) -> Token | None:
        j = self.i + k
        return self.tokens[j] if j < len(self.tokens) else None

    def next(self) -> Token | None:
        tok = self.peek()
        if tok is not None:
            self.i += 1
        return tok

    def fail(self, problem: str, tok: Token | None) -> FilterSyntaxError:
        if tok is None:
            return FilterSyntaxError("filter", problem, self.text, len(self.text) + 1)
        return FilterSyntaxError("filter", problem, self.text, tok.column, len(tok.text))

    def fail_near(self, problem: str, tok: Token | None) -> FilterSyntaxError:
        """A problem with a token, or with the end when it is missing."""
        where = f"'{tok.text}'" if tok is not None else "the end"
        return self.fail(problem.replace("{where}", where), tok)

    # grammar
    def parse(self) -> Node:
        if not self.tokens:
            raise self.fail("empty expression; write e.g. 'tcp port 443'", None)
        node = self.expression()
        tok = self.peek()
        if tok is not None:
            if tok.text == ")":
                raise self.fail("unmatched ')'", tok)
            raise self.fail(f"expected 'and' or 'or' before '{tok.text}'", tok)
        return node

    def expression(self) -> Node:
        node = self.unary()
        while (tok := self.peek()) is not None and tok.word in ("and", "&&", "or", "||"):
            self.next()
            right = self.unary()
            node = And(node, right) if tok.word in ("and", "&&") else Or(node, right)
        return node

    def unary(self) -> Node:
        tok = self.peek()
        if tok is not None and tok.word in ("not", "!"):
            self.next()
            return Not(self.unary())
        if tok is not None and tok.text == "(":
            self.next()
            node = self.expression()
            close = self.next()
            if close is None or close.text != ")":
                raise self.fail(f"expected ')' to match the '(' in column {tok.column}", close)
            return node
        return self.primitive()

    def _operator(self, tok: Token | None) -> bool:
        return tok is None or tok.word in ("and", "&&", "or", "||", ")", "not", "!", "(")

    def primitive(self) -> Node:
        tok = self.next()
        if tok is None or tok.text in (")", "&&", "||") or tok.word in ("and", "or"):
            raise self.fail_near("expected a primitive (host, net, port, tcp, udp, ...) "
                                 "at {where}", tok)
        w = tok.word
        if w in ("less", "greater"):
            return Length(w, self.integer(tok, "a length", 0xFFFFFFFF))
        if w == "direction":
            v = self.next()
            if v is None or v.word not in DIRECTION_VALUES:
                raise self.fail_near("expected 'ingress' or 'egress' after 'direction', "
                                     "not {where}", v)
            self.last = _Qualifiers(None, "src or dst", "direction")
            return Mirror("direction", DIRECTION_VALUES[v.word])
        if w in MIRROR_FIELDS:
            if w == "vlan" and not self._value_follows():
                return Mirror("vlan", None)
            self.last = _Qualifiers(None, "src or dst", w)
            return Mirror(w, self.integer(tok, f"a {w} number", MIRROR_FIELDS[w]))
        if w == "proto":
            return IpProto(None, self.proto_number(tok))

        proto: str | None = None
        if w in PROTOCOLS:
            proto = w
            nxt = self.peek()
            if nxt is not None and nxt.word == "proto" and w in ("ip", "ip6"):
                self.next()
                return IpProto(4 if w == "ip" else 6, self.proto_number(nxt))
            if self._operator(nxt):
                return Protocol(w)
            tok = self.next()
            assert tok is not None
            w = tok.word
        direction = "src or dst"
        if w in ("src", "dst"):
            direction = w
            a, b = self.peek(), self.peek(1)
            if (a is not None and b is not None and a.word in ("or", "and")
                    and b.word in ("src", "dst") and b.word != w):
                self.i += 2
                direction = f"src {a.word} dst"
            tok = self.next()
            if tok is None:
                raise self.fail(f"expected host, net, port or a value after '{direction}'", None)
            w = tok.word
        qualified = proto is not None or direction != "src or dst"
        if w in TYPES:
            kind = w
            value = self.next()
            if value is None or self._operator(value) or value.word in KEYWORDS:
                raise self.fail_near(f"expected {self._what(kind)} after '{tok.text}', "
                                     "not {where}", value)
        elif self._operator(tok) or w in KEYWORDS:
            if not qualified:
                raise self.fail(f"unexpected '{tok.text}'", tok)
            after = direction if direction != "src or dst" else proto
            raise self.fail(f"expected host, net, port or a value after '{after}', "
                            f"not '{tok.text}'", tok)
        elif qualified:
            kind, value = "host", tok
        elif self.last is not None:  # tcpdump's shorthand: `host a or b`
            proto, direction, kind, value = (self.last.proto, self.last.direction,
                                             self.last.kind, tok)
            if kind in MIRROR_FIELDS or kind == "direction":
                return self._inherit_mirror(kind, tok)
        elif self._address(tok.text) is not None:
            kind, value = "host", tok
        else:
            raise self.fail(f"unknown primitive '{tok.text}' (expected host, net, port, "
                            "portrange, tcp, udp, icmp, ip, ip6, vlan, vni, ...)", tok)
        self.last = _Qualifiers(proto, direction, kind)
        return self.typed(proto, direction, kind, value)

    def _inherit_mirror(self, kind: str, tok: Token) -> Node:
        if kind == "direction":
            if tok.word not in DIRECTION_VALUES:
                raise self.fail(f"expected 'ingress' or 'egress', not '{tok.text}'", tok)
            return Mirror("direction", DIRECTION_VALUES[tok.word])
        return Mirror(kind, self._int_value(tok, f"a {kind} number", MIRROR_FIELDS[kind]))

    def _value_follows(self) -> bool:
        nxt = self.peek()
        return nxt is not None and not self._operator(nxt) and nxt.word not in KEYWORDS

    @staticmethod
    def _what(kind: str) -> str:
        return {"host": "an IP address", "net": "a network (e.g. 10.0.0.0/8)",
                "port": "a port number", "portrange": "a port range (e.g. 1024-2047)"}[kind]

    def integer(self, after: Token, what: str, limit: int) -> int:
        tok = self.next()
        if tok is None or self._operator(tok):
            raise self.fail_near(f"expected {what} after '{after.text}', not {{where}}", tok)
        return self._int_value(tok, what, limit, after)

    def _int_value(self, tok: Token, what: str, limit: int, after: Token | None = None) -> int:
        value = _parse_int(tok.text)
        if value is None:
            tail = f" after '{after.text}'" if after is not None else ""
            raise self.fail(f"expected {what}{tail}", tok)
        if value > limit:
            raise self.fail(f"{tok.text} is out of range 0-{limit}", tok)
        return value

    def proto_number(self, after: Token) -> int:
        tok = self.next()
        if tok is None or self._operator(tok):
            raise self.fail_near(f"expected a protocol number or name after '{after.text}', "
                                 "not {where}", tok)
        name = tok.word.lstrip("\\")
        if name in PROTO_NUMBERS:
            return PROTO_NUMBERS[name]
        return self._int_value(tok, "a protocol number (0-255) or name", 255, after)

    @staticmethod
    def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            return None

    def typed(self, proto: str | None, direction: str, kind: str, value: Token) -> Node:
        if kind in ("host", "net") and proto not in (None, "ip", "ip6"):
            raise self.fail(f"'{proto}' cannot qualify '{kind}' (use 'ip', 'ip6' or none)", value)
        if kind in ("port", "portrange") and proto not in PORT_PROTOS:
            raise self.fail(f"'{proto}' cannot qualify '{kind}' (use 'tcp', 'udp', 'sctp' "
                            "or none)", value)
        if kind == "host":
            return self.host(proto, direction, value)
        if kind == "net":
            return self.net(proto, direction, value)
        if kind == "port":
            port, proto = self.port_number(value.text, proto)
            if port is None:
                raise self.fail("expected a port number (0-65535) or a service name after "
                                f"'port', not '{value.text}'", value)
            return Port(proto, direction, port, port)
        m = re.fullmatch(r"(\d+)-(\d+)", value.text)
        low, high = (int(m.group(1)), int(m.group(2))) if m else (-1, -1)
        if not m or max(low, high) > 0xFFFF:
            raise self.fail("expected a port range such as 1024-2047 (ports 0-65535), not "
                            f"'{value.text}'", value)
        return Port(proto, direction, min(low, high), max(low, high), True)

    def _check_version(self, proto: str | None, version: int, value: Token) -> None:
        if (proto == "ip" and version == 6) or (proto == "ip6" and version == 4):
            raise self.fail(f"'{proto}' does not go with an IPv{version} address", value)

    def host(self, proto: str | None, direction: str, value: Token) -> Node:
        addr = self._address(value.text)
        if addr is None:
            raise self.fail(f"expected an IP address after 'host', not '{value.text}' "
                            "(names are not resolved)", value)
        self._check_version(proto, addr.version, value)
        full = (1 << addr.max_prefixlen) - 1
        return Net(proto, direction, addr.version, int(addr), full, host=True)

    def net(self, proto: str | None, direction: str, value: Token) -> Node:
        text = value.text
        nxt = self.peek()
        if nxt is not None and nxt.word == "mask":
            self.next()
            mask_tok = self.next()
            if mask_tok is None:
                raise self.fail("expected a netmask after 'mask'", None)
            addr, mask = _ipv4(text, partial=True), _ipv4(mask_tok.text)
            if addr is None:
                raise self.fail(f"expected an IPv4 network before 'mask', not '{text}'", value)
            if mask is None:
                raise self.fail(f"expected an IPv4 netmask, not '{mask_tok.text}'", mask_tok)
            self._check_version(proto, 4, value)
            if addr & ~mask & 0xFFFFFFFF:
                raise self.fail(f"non-network bits set in '{text} mask {mask_tok.text}'", value)
            return Net(proto, direction, 4, addr, mask)
        address, _, length_text = text.partition("/")
        version, bits = (6, 128) if ":" in address else (4, 32)
        if version == 4:
            network = _ipv4(address, partial=True)
            octets = address.count(".") + 1
        else:
            a6 = self._address(address)
            network = int(a6) if a6 is not None else None
            octets = 16
        if network is None:
            raise self.fail(f"expected a network such as 10.0.0.0/8 or 2001:db8::/32, not "
                            f"'{text}'", value)
        if length_text:
            length = _parse_int(length_text) if length_text.isdigit() else None
            if length is None or length > bits:
                raise self.fail(f"expected a prefix length 0-{bits} after '/', not "
                                f"'{length_text}'", value)
        else:
            length = min(bits, octets * 8)  # tcpdump: `net 10.1` is 10.1.0.0/16
        self._check_version(proto, version, value)
        full = (1 << bits) - 1
        mask = full ^ ((1 << (bits - length)) - 1)
        if network & ~mask & full:
            raise self.fail(f"non-network bits set in '{text}'", value)
        return Net(proto, direction, version, network, mask)

    @staticmethod
    def port_number(text: str, proto: str | None) -> tuple[int | None, str | None]:
        """A port number, or a service name (/etc/services); as tcpdump, a name known for
        one protocol only means that protocol (``port http`` is ``tcp port 80``)."""
        value = _parse_int(text)
        if value is not None:
            return (value if value <= 0xFFFF else None), proto
        if not re.fullmatch(r"[a-z][a-z0-9-]*", text.lower()):
            return None, proto
        found: dict[str, int] = {}
        for p in ((proto,) if proto in ("tcp", "udp") else ("tcp", "udp")):
            try:
                found[p] = socket.getservbyname(text.lower(), p)
            except OSError:
                continue
        if not found:
            return None, proto
        if proto is None and len(found) == 1:
            proto = next(iter(found))
        return next(iter(found.values())), proto


def _parse_int(text: str) -> int | None:
    t = text.lower()
    if re.fullmatch(r"[0-9]+", t):
        return int(t)
    if re.fullmatch(r"0x[0-9a-f]+", t):
        return int(t, 16)
    return None


def _ipv4(text: str, partial: bool = False) -> int | None:
    """Dotted IPv4; with ``partial``, 1-3 octets too (the missing ones are zero)."""
    parts = text.split(".")
    if not (len(parts) == 4 or (partial and 1 <= len(parts) <= 4)):
        return None
    if not all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        return None
    value = 0
    for p in parts + ["0"] * (4 - len(parts)):
        value = (value << 8) | int(p)
    return value


def parse_filter(text: str) -> Node:
    """The AST of an expression; :class:`FilterSyntaxError` pointing at the problem."""
    return _Parser(text).parse()


class Filter:
    """A parsed expression, ready to evaluate over decoded rows."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.ast = parse_filter(text)

    def __str__(self) -> str:
        return self.text

    def mask(self, rows: np.ndarray, cols: Columns | None = None) -> np.ndarray:
        return np.asarray(self.ast.mask(cols if cols is not None else Columns(rows)), bool)
