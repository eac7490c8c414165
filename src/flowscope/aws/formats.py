"""The flow-log format flowscope asks for: enough to diagnose a connection.

The default format (version 2) lacks what troubleshooting needs: ``tcp-flags`` (without it no
handshake verdict), ``pkt-srcaddr``/``pkt-dstaddr`` (the real peer behind a NAT gateway, a
transit gateway, a pod), ``flow-direction`` and ``traffic-path`` (which way, through what),
``pkt-src/dst-aws-service`` (which AWS service the peer is), ``type`` (IPv4/IPv6/EFA) and
``reject-reason`` (version 8: BPA rejections).  A flow log's format cannot be edited after
creation, so it is chosen here.  Source: AWS VPC user guide, "Flow log records" (available
fields, by version).

``reject-reason`` is the newest field; a region that does not offer it rejects the format,
and :func:`without_unsupported` drops the fields the error names so creation can be retried.
"""

from __future__ import annotations

import re

from flowscope.errors import FlowscopeError
from flowscope.flowlogs import fields as f

TROUBLESHOOTING = f.DEFAULT_FORMAT + (
    "tcp-flags", "pkt-srcaddr", "pkt-dstaddr", "flow-direction", "traffic-path",
    "pkt-src-aws-service", "pkt-dst-aws-service", "type", "reject-reason")
# Fields that some regions do not offer yet; dropped (and said so) when AWS refuses them.
OPTIONAL = ("reject-reason",)


def log_format(fields: tuple[str, ...]) -> str:
    """The LogFormat parameter of CreateFlowLogs: '${version} ${account-id} ...'."""
    return " ".join("${" + name + "}" for name in fields)


def parse_fields(text: str | None) -> tuple[str, ...]:
    """``--fields``: names separated by commas or spaces, or a '${...}' format; '+name ...'
    adds to the troubleshooting format.  Unknown names are refused (AWS would refuse them)."""
    if not text:
        return TROUBLESHOOTING
    names = [t.strip().removeprefix("${").removesuffix("}") for t in re.split(r"[,\s]+", text)]
    names = [n for n in names if n]
    if names and all(n.startswith("+") for n in names):
        names = list(TROUBLESHOOTING) + [n[1:] for n in names if n[1:] not in TROUBLESHOOTING]
    unknown = [n for n in names if n not in f.TYPES]
    if unknown:
        raise FlowscopeError(f"unknown flow-log field(s) {', '.join(unknown)}: the fields are "
                             f"listed in the AWS VPC user guide, 'Flow log records'")
    if not names:
        raise FlowscopeError("--fields is empty")
    for needed in ("srcaddr", "dstaddr"):
        if needed not in names:
            raise FlowscopeError(f"--fields must include {needed}: flowscope pairs records "
                                 f"into connections by address")
    return tuple(dict.fromkeys(names))


def without_unsupported(fields: tuple[str, ...], message: str) -> tuple[str, ...] | None:
    """The format without the optional fields AWS's error message names; None if it names
    none (then the error is something else)."""
    named = [n for n in OPTIONAL if n in fields and n in message]
    if not named:
        return None
    return tuple(n for n in fields if n not in named)
