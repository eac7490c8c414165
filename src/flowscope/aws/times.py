"""Durations (``30m``) and times (``30m`` ago, ISO-8601, epoch seconds) for the commands."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from flowscope.errors import FlowscopeError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)


def duration(text: str) -> timedelta:
    """'30m', '2h', '90s', '1d'; a bare number is seconds."""
    m = DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise FlowscopeError(f"{text!r} is not a duration such as 30m, 2h or 1d")
    return timedelta(seconds=float(m.group(1)) * UNITS[(m.group(2) or "s").lower()])


def moment(text: str, now: datetime) -> datetime:
    """A point in time: a duration before ``now`` ('30m'), ISO-8601 ('2025-11-13T02:14Z'),
    or epoch seconds; always UTC."""
    t = text.strip()
    if DURATION.match(t) and t[-1:].lower() in UNITS:
        return now - duration(t)
    if re.fullmatch(r"\d{9,11}(\.\d+)?", t):
        return datetime.fromtimestamp(float(t), UTC)
    try:
        value = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise FlowscopeError(f"{text!r} is not a time: give 30m (ago), an ISO-8601 time "
                             f"(2025-11-13T02:14:00Z) or epoch seconds") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso(t: datetime) -> str:
    """UTC, seconds, 'Z': the form of the flowscope:expires tag."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> datetime:
    return datetime.now(UTC)
