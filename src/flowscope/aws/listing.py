"""Flow logs as flowscope sees them: its own (tagged ``flowscope:owner``) with their expiry,
and the others, marked, which it never deletes unless named with ``--force``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowscope.aws.errors import calling
from flowscope.aws.session import Aws

TAG_EXPIRES = "flowscope:expires"  # ISO-8601 UTC: when cleanup may delete it
TAG_OWNER = "flowscope:owner"  # who enabled it (the caller's ARN): marks flowscope's own


@dataclass
class FlowLog:
    id: str
    resource_id: str
    traffic: str
    destination: str  # s3://bucket/prefix or cloudwatch:GROUP
    destination_type: str  # s3 | cloud-watch-logs | kinesis-data-firehose
    fields: tuple[str, ...]
    interval: int
    status: str  # FlowLogStatus (ACTIVE)
    delivery: str  # DeliverLogsStatus, with its error message when FAILED
    created: datetime | None
    expires: datetime | None
    owner: str | None
    tags: dict[str, str]
    file_format: str = "plain-text"

    @property
    def owned(self) -> bool:
        """Created by flowscope (it carries the owner tag)."""
        return self.owner is not None

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and self.expires <= now


def destination_of(d: dict[str, Any]) -> str:
    if d.get("LogDestinationType") == "s3":
        arn = str(d.get("LogDestination", ""))
        return "s3://" + arn.split(":::", 1)[-1].rstrip("/")
    if d.get("LogDestinationType", "cloud-watch-logs") == "cloud-watch-logs":
        group = d.get("LogGroupName") or str(d.get("LogDestination", "")).split(":log-group:")[-1]
        return f"cloudwatch:{group.removesuffix(':*')}"
    return str(d.get("LogDestination", ""))


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    from flowscope.aws.times import moment, now
    from flowscope.errors import FlowscopeError

    try:
        return moment(text, now())
    except FlowscopeError:  # a tag value someone else wrote: no expiry
        return None


def from_description(d: dict[str, Any]) -> FlowLog:
    tags = {t["Key"]: t["Value"] for t in d.get("Tags", [])}
    fmt = str(d.get("LogFormat", ""))
    from flowscope.flowlogs.fields import DEFAULT_FORMAT, parse_format

    delivery = str(d.get("DeliverLogsStatus", ""))
    if d.get("DeliverLogsErrorMessage"):
        delivery += f": {d['DeliverLogsErrorMessage']}"
    return FlowLog(
        id=d["FlowLogId"], resource_id=str(d.get("ResourceId", "")),
        traffic=str(d.get("TrafficType", "")), destination=destination_of(d),
        destination_type=str(d.get("LogDestinationType", "cloud-watch-logs")),
        fields=parse_format(fmt) if fmt.strip() else DEFAULT_FORMAT,
        interval=int(d.get("MaxAggregationInterval", 600)),
        status=str(d.get("FlowLogStatus", "")), delivery=delivery,
        created=d.get("CreationTime"), expires=_time(tags.get(TAG_EXPIRES)),
        owner=tags.get(TAG_OWNER), tags=tags,
        file_format=str(d.get("DestinationOptions", {}).get("FileFormat", "plain-text")))


def describe(aws: Aws, ids: list[str] | None = None) -> list[FlowLog]:
    """Flow logs of the account and region (or the ids given, those that exist)."""
    ec2 = aws.client("ec2")
    out: list[FlowLog] = []
    with calling("listing flow logs", "ec2"):
        pages = ec2.get_paginator("describe_flow_logs").paginate(
            **({"Filters": [{"Name": "flow-log-id", "Values": ids}]} if ids else {}))
        for page in pages:
            out += [from_description(d) for d in page.get("FlowLogs", [])]
    return sorted(out, key=lambda fl: (not fl.owned, fl.expires is None, fl.expires or 0,
                                       fl.id))  # type: ignore[operator]
