"""The HTTP API's query parameters: parsed strictly, applied as Arrow compute filters.

``/api/sessions``: ``state`` (Zeek conn_state or verdict, comma-separated for several),
``host`` (either end), ``port`` (either end; TCP, UDP and RoCE sessions - an ICMP session's
"ports" are its type and code, as in Zeek), ``proto`` (``tcp``, ``udp``, ``icmp``, ``roce`` or
an IP protocol number), ``since``/``until`` (epoch seconds or ISO-8601, naive = UTC; a
session matches if it was active at some time in [since, until)), ``problems`` (true/false),
``limit`` (default 1000), ``format`` (``json`` or ``jsonl``).  ``/api/timeline``:
``interval`` (``1s``, ``10s``, ``1m`` ...), ``since``, ``until``, ``format``.

Anything else - an unknown parameter, a repeated one, a value that does not parse - is a
:class:`QueryError` (HTTP 400) that says what was expected.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from flowscope.analyse.verdicts import STATES, VERDICTS

DEFAULT_LIMIT = 1000
PROTO_NAMES = ("tcp", "udp", "icmp", "roce")
DURATION_UNITS = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
                  "h": 3_600_000_000_000}


class QueryError(ValueError):
    """A bad query parameter; the message is returned to the client with HTTP 400."""


def _single(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise QueryError(f"{name} given {len(values)} times; give it once")
    return values[0]


def _check_names(params: dict[str, list[str]], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise QueryError(f"unknown parameter {unknown[0]!r}; this endpoint takes "
                         + ", ".join(allowed))


def parse_time(name: str, text: str) -> float:
    """Epoch seconds (``1700000000.5``) or ISO-8601 (``2026-11-21T10:00:05Z``; naive = UTC)."""
    try:
        value = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise QueryError(f"{name}={text!r} is neither epoch seconds nor an ISO-8601 time "
                             "such as 2026-11-21T10:00:05Z") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    if not math.isfinite(value):
        raise QueryError(f"{name}={text!r} is not a finite time")
    return value


def parse_duration_ns(name: str, text: str) -> int:
    t = text.strip().lower()
    for unit in sorted(DURATION_UNITS, key=len, reverse=True):
        if t.endswith(unit):
            number, scale = t[: -len(unit)], DURATION_UNITS[unit]
            break
    else:
        number, scale = t, DURATION_UNITS["s"]
    try:
        value = float(number)
    except ValueError:
        raise QueryError(f"{name}={text!r} is not a duration such as 1s, 10s or 5m") from None
    if not (value > 0 and math.isfinite(value)):
        raise QueryError(f"{name} must be positive")
    return int(round(value * scale))


def _bool(name: str, text: str) -> bool:
    t = text.lower()
    if t in ("1", "true", "yes"):
        return True
    if t in ("0", "false", "no"):
        return False
    raise QueryError(f"{name}={text!r}: use true or false")


def _format(params: dict[str, list[str]]) -> str:
    fmt = _single(params, "format") or "json"
    if fmt not in ("json", "jsonl"):
        raise QueryError(f"format={fmt!r}: use json or jsonl")
    return fmt


@dataclass(frozen=True)
class SessionQuery:
    states: frozenset[str] = frozenset()
    host: str | None = None
    port: int | None = None
    proto: str | None = None
    since: float | None = None
    until: float | None = None
    problems: bool | None = None
    limit: int = DEFAULT_LIMIT
    format: str = "json"

    PARAMS = ("state", "host", "port", "proto", "since", "until", "problems", "limit", "format")

    @classmethod
    def parse(cls, params: dict[str, list[str]]) -> SessionQuery:
        _check_names(params, cls.PARAMS)
        states: set[str] = set()
        for value in params.get("state", []):
            for s in value.split(","):
                if s not in STATES and s not in VERDICTS:
                    raise QueryError(f"state={s!r} is neither a conn_state ({', '.join(STATES)})"
                                     f" nor a verdict ({', '.join(VERDICTS)})")
                states.add(s)
        host = _single(params, "host")
        if host is not None:
            try:
                host = str(ipaddress.ip_address(host))
            except ValueError:
                raise QueryError(f"host={host!r} is not an IPv4 or IPv6 address") from None
        port_text = _single(params, "port")
        port = None
        if port_text is not None:
            if not port_text.isdigit() or int(port_text) > 65535:
                raise QueryError(f"port={port_text!r} is not a port number (0-65535)")
            port = int(port_text)
        proto = _single(params, "proto")
        if proto is not None:
            proto = proto.lower()
            if proto not in PROTO_NAMES and not (proto.isdigit() and int(proto) <= 255):
                raise QueryError(f"proto={proto!r}: use tcp, udp, icmp, roce or an IP protocol "
                                 "number")
            if proto.isdigit():
                proto = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmp"}.get(
                    str(int(proto)), str(int(proto)))
        since_text, until_text = _single(params, "since"), _single(params, "until")
        since = parse_time("since", since_text) if since_text is not None else None
        until = parse_time("until", until_text) if until_text is not None else None
        if since is not None and until is not None and until < since:
            raise QueryError("until is before since")
        problems_text = _single(params, "problems")
        limit_text = _single(params, "limit")
        limit = DEFAULT_LIMIT
        if limit_text is not None:
            if not limit_text.isdigit():
                raise QueryError(f"limit={limit_text!r} is not a non-negative integer")
            limit = int(limit_text)
        return cls(frozenset(states), host, port, proto, since, until,
                   _bool("problems", problems_text) if problems_text is not None else None,
                   limit, _format(params))

    def apply(self, table: pa.Table) -> pa.Table:
        """The matching rows, in the table's order (problems first), before the limit."""
        mask = pa.array([True] * table.num_rows, pa.bool_())

        def both(expr: pa.Array) -> None:
            nonlocal mask
            mask = pc.and_(mask, pc.fill_null(expr, False))

        if self.states:
            wanted = pa.array(sorted(self.states), pa.string())
            both(pc.or_(pc.fill_null(pc.is_in(table["conn_state"], wanted), False),
                        pc.is_in(table["verdict"], wanted)))
        if self.host is not None:
            both(pc.or_(pc.equal(table["orig_h"], self.host),
                        pc.equal(table["resp_h"], self.host)))
        if self.port is not None:
            has_ports = pc.not_equal(table["proto"], "icmp")
            both(pc.and_(has_ports, pc.or_kleene(pc.equal(table["orig_p"], self.port),
                                                 pc.equal(table["resp_p"], self.port))))
        if self.proto is not None:
            both(pc.equal(table["proto"], self.proto))
        if self.since is not None:
            both(pc.greater_equal(pc.add(table["ts"], table["duration"]), self.since))
        if self.until is not None:
            both(pc.less(table["ts"], self.until))
        if self.problems is not None:
            both(pc.equal(table["problem"], self.problems))
        return table.filter(mask)


@dataclass(frozen=True)
class TimelineQuery:
    interval_ns: int | None = None  # None: the server's resolution
    since: float | None = None
    until: float | None = None
    format: str = "json"

    PARAMS = ("interval", "since", "until", "format")

    @classmethod
    def parse(cls, params: dict[str, list[str]]) -> TimelineQuery:
        _check_names(params, cls.PARAMS)
        interval = _single(params, "interval")
        since_text, until_text = _single(params, "since"), _single(params, "until")
        since = parse_time("since", since_text) if since_text is not None else None
        until = parse_time("until", until_text) if until_text is not None else None
        if since is not None and until is not None and until < since:
            raise QueryError("until is before since")
        return cls(parse_duration_ns("interval", interval) if interval is not None else None,
                   since, until, _format(params))

    def apply(self, table: pa.Table) -> pa.Table:
        """The intervals that overlap [since, until)."""
        mask = pa.array([True] * table.num_rows, pa.bool_())
        if self.since is not None:
            end = pc.add(table["interval_start"], table["interval"])
            mask = pc.and_(mask, pc.greater(end, self.since))
        if self.until is not None:
            mask = pc.and_(mask, pc.less(table["interval_start"], self.until))
        return table.filter(mask)
