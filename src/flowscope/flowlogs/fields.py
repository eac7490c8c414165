"""AWS VPC Flow Logs fields: name, the version that introduced it, and its Arrow type.

Source: AWS VPC user guide, "Flow log records" (available fields, versions 2-8 and later:
``reject-reason``; ``encryption-status``, ``resource-id`` ...) and "Transit Gateway flow log
records" (version 6).  Columns are named as in AWS with ``-`` -> ``_``; a field not listed here
is kept as text.  ``-`` is null in every field.
"""

from __future__ import annotations

import pyarrow as pa

INT = pa.int64()
TEXT = pa.string()

# (name, version, type)
FIELDS: tuple[tuple[str, int, pa.DataType], ...] = (
    ("version", 2, pa.int16()), ("account-id", 2, TEXT), ("interface-id", 2, TEXT),
    ("srcaddr", 2, TEXT), ("dstaddr", 2, TEXT), ("srcport", 2, pa.int32()),
    ("dstport", 2, pa.int32()), ("protocol", 2, pa.int16()), ("packets", 2, INT),
    ("bytes", 2, INT), ("start", 2, INT), ("end", 2, INT), ("action", 2, TEXT),
    ("log-status", 2, TEXT),
    ("vpc-id", 3, TEXT), ("subnet-id", 3, TEXT), ("instance-id", 3, TEXT),
    ("tcp-flags", 3, pa.int32()), ("type", 3, TEXT), ("pkt-srcaddr", 3, TEXT),
    ("pkt-dstaddr", 3, TEXT),
    ("region", 4, TEXT), ("az-id", 4, TEXT), ("sublocation-type", 4, TEXT),
    ("sublocation-id", 4, TEXT),
    ("pkt-src-aws-service", 5, TEXT), ("pkt-dst-aws-service", 5, TEXT),
    ("flow-direction", 5, TEXT), ("traffic-path", 5, pa.int16()),
    ("resource-type", 6, TEXT), ("tgw-id", 6, TEXT), ("tgw-attachment-id", 6, TEXT),
    ("tgw-src-vpc-account-id", 6, TEXT), ("tgw-dst-vpc-account-id", 6, TEXT),
    ("tgw-src-vpc-id", 6, TEXT), ("tgw-dst-vpc-id", 6, TEXT), ("tgw-src-subnet-id", 6, TEXT),
    ("tgw-dst-subnet-id", 6, TEXT), ("tgw-src-eni", 6, TEXT), ("tgw-dst-eni", 6, TEXT),
    ("tgw-src-az-id", 6, TEXT), ("tgw-dst-az-id", 6, TEXT),
    ("tgw-pair-attachment-id", 6, TEXT), ("packets-lost-no-route", 6, INT),
    ("packets-lost-blackhole", 6, INT), ("packets-lost-mtu-exceeded", 6, INT),
    ("packets-lost-ttl-expired", 6, INT),
    ("ecs-cluster-arn", 7, TEXT), ("ecs-cluster-name", 7, TEXT),
    ("ecs-container-instance-arn", 7, TEXT), ("ecs-container-instance-id", 7, TEXT),
    ("ecs-container-id", 7, TEXT), ("ecs-second-container-id", 7, TEXT),
    ("ecs-service-name", 7, TEXT), ("ecs-task-definition-arn", 7, TEXT),
    ("ecs-task-arn", 7, TEXT), ("ecs-task-id", 7, TEXT),
    ("reject-reason", 8, TEXT), ("encryption-status", 9, pa.int16()),
    ("resource-id", 10, TEXT),
)
TYPES = {name: typ for name, _, typ in FIELDS}
VERSION = {name: version for name, version, _ in FIELDS}

# The default format (version 2), which AWS writes without naming it.
DEFAULT_FORMAT = tuple(name for name, version, _ in FIELDS if version == 2)

# What pairing records into connections needs at least (ports and times make it better).
REQUIRED = ("srcaddr", "dstaddr")

STATUS_OK, STATUS_NODATA, STATUS_SKIPDATA = "OK", "NODATA", "SKIPDATA"

# tcp-flags: only FIN 1, SYN 2, RST 4 and SYN-ACK 18 (SYN + bit 16) are recorded, OR-ed over
# the aggregation interval ("TCP flags sequence" in the user guide).
FIN, SYN, RST, SYN_ACK = 1, 2, 4, 18
ACK_BIT = 16

# The columns the connection analysis reads (:func:`flowscope.flowlogs.connections.records`);
# readers may skip the others.
ANALYSED = ("log_status", "srcaddr", "dstaddr", "pkt_srcaddr", "pkt_dstaddr", "srcport",
            "dstport", "protocol", "packets", "bytes", "start", "end", "action", "tcp_flags",
            "interface_id", "reject_reason")


def column(name: str) -> str:
    """The column name for an AWS field name."""
    return name.replace("-", "_")


def parse_format(text: str) -> tuple[str, ...]:
    """'${version} ${srcaddr} ...' (the LogFormat of CreateFlowLogs) or plain names."""
    names = [t.strip().removeprefix("${").removesuffix("}") for t in text.split()]
    if not names or any(not n for n in names):
        raise ValueError(f"not a flow-log format: {text!r}")
    return tuple(names)
