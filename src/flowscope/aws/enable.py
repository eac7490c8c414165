"""Create time-boxed flow logs with the troubleshooting format.

One ``CreateFlowLogs`` call (EC2 API reference) with:

- ``LogFormat``: :data:`flowscope.aws.formats.TROUBLESHOOTING` unless ``--fields``;
- ``MaxAggregationInterval`` 60: one record per direction per minute, not per ten;
- ``TagSpecifications`` (resource type ``vpc-flow-log``): ``flowscope:expires`` (ISO-8601
  UTC), ``flowscope:owner`` (the caller's ARN) and a ``Name`` a person reads in the console;
- S3: ``LogDestination`` = the bucket ARN with the prefix as subfolder (``AWSLogs`` is
  reserved there), ``DestinationOptions`` (FileFormat plain-text | parquet,
  HiveCompatiblePartitions, PerHourPartition); CloudWatch Logs: ``LogGroupName`` and the
  delivery role ``DeliverLogsPermissionArn``.

``--instance`` is resolved to the instance's network interfaces first (DescribeInstances).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flowscope.aws import formats
from flowscope.aws.errors import AwsError, calling, code_of, explain, explain_delivery
from flowscope.aws.listing import TAG_EXPIRES, TAG_OWNER
from flowscope.aws.session import Aws
from flowscope.aws.times import iso
from flowscope.errors import FlowscopeError

RESOURCE_TYPES = {"eni": "NetworkInterface", "subnet": "Subnet", "vpc": "VPC"}
DELIVERY_LAG = (timedelta(minutes=5), timedelta(minutes=10))  # AWS: records within ~10 min
TRAFFIC = ("ALL", "ACCEPT", "REJECT")


@dataclass(frozen=True)
class Destination:
    kind: str  # "s3" | "cloud-watch-logs"
    bucket: str = ""
    prefix: str = ""  # no leading or trailing '/'
    group: str = ""

    @property
    def arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket}" + (f"/{self.prefix}/" if self.prefix else "")

    def __str__(self) -> str:
        if self.kind == "s3":
            return f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        return f"cloudwatch:{self.group}"


def parse_destination(text: str) -> Destination:
    """``s3://bucket/prefix`` or ``cloudwatch:GROUP``."""
    if text.startswith("s3://"):
        bucket, _, prefix = text[5:].partition("/")
        prefix = prefix.strip("/")
        if not bucket:
            raise FlowscopeError(f"{text!r}: no bucket; write s3://bucket/prefix")
        if "AWSLogs" in prefix.split("/"):
            raise FlowscopeError(f"{text!r}: the prefix cannot contain a folder named AWSLogs "
                                 f"(AWS reserves it and adds AWSLogs/ itself); use e.g. "
                                 f"s3://{bucket}/flow-logs")
        return Destination("s3", bucket=bucket, prefix=prefix)
    for scheme in ("cloudwatch:", "logs:", "cw:"):
        if text.startswith(scheme) and text[len(scheme):]:
            return Destination("cloud-watch-logs", group=text[len(scheme):])
    raise FlowscopeError(f"{text!r} is not a destination: give s3://bucket/prefix or "
                         f"cloudwatch:LOG-GROUP")


@dataclass
class Plan:
    """What to create: the CreateFlowLogs request, before it is sent."""

    resource_type: str  # NetworkInterface | Subnet | VPC
    resource_ids: list[str]
    destination: Destination
    expires: datetime
    owner: str
    fields: tuple[str, ...] = formats.TROUBLESHOOTING
    traffic: str = "ALL"
    role_arn: str | None = None
    parquet: bool = False
    hive: bool = False
    per_hour: bool = False

    def request(self) -> dict[str, Any]:
        tags = [{"Key": TAG_EXPIRES, "Value": iso(self.expires)},
                {"Key": TAG_OWNER, "Value": self.owner},
                {"Key": "Name", "Value": f"flowscope until {iso(self.expires)}"}]
        params: dict[str, Any] = {
            "ResourceType": self.resource_type, "ResourceIds": list(self.resource_ids),
            "TrafficType": self.traffic, "LogFormat": formats.log_format(self.fields),
            "MaxAggregationInterval": 60,
            "TagSpecifications": [{"ResourceType": "vpc-flow-log", "Tags": tags}]}
        if self.destination.kind == "s3":
            params |= {"LogDestinationType": "s3", "LogDestination": self.destination.arn,
                       "DestinationOptions": {
                           "FileFormat": "parquet" if self.parquet else "plain-text",
                           "HiveCompatiblePartitions": self.hive,
                           "PerHourPartition": self.per_hour}}
        else:
            params |= {"LogDestinationType": "cloud-watch-logs",
                       "LogGroupName": self.destination.group,
                       "DeliverLogsPermissionArn": self.role_arn}
        return params

    def check(self) -> None:
        if self.traffic not in TRAFFIC:
            raise FlowscopeError(f"--traffic {self.traffic}: choose ALL, ACCEPT or REJECT")
        if not self.resource_ids:
            raise FlowscopeError("nothing to log: give --eni, --instance, --subnet or --vpc")
        if self.destination.kind == "cloud-watch-logs":
            if not self.role_arn:
                raise FlowscopeError(
                    "CloudWatch Logs delivery needs --role-arn: a role that "
                    "vpc-flow-logs.amazonaws.com may assume, allowed to write the log group "
                    "(`flowscope aws policy --delivery-role` prints its trust and permissions "
                    "policies); or deliver to S3, about half the price (--to s3://bucket/prefix)")
            if self.parquet or self.hive or self.per_hour:
                raise FlowscopeError("--parquet, --hive and --per-hour are S3 options; "
                                     "CloudWatch Logs stores events, not files")
        elif self.role_arn:
            raise FlowscopeError("--role-arn is for CloudWatch Logs; S3 delivery uses the "
                                 "bucket policy instead")


@dataclass
class Enabled:
    plan: Plan
    flow_log_ids: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (resource, explained reason)
    dropped_fields: tuple[str, ...] = ()  # refused by the region
    dry_run: bool = False
    permitted: bool | None = None  # dry run: DryRunOperation (the call would be allowed)
    created_at: datetime | None = None

    @property
    def first_records(self) -> tuple[datetime, datetime]:
        at = self.created_at or self.plan.expires
        return at + DELIVERY_LAG[0], at + DELIVERY_LAG[1]


def instance_interfaces(aws: Aws, instance_id: str) -> list[str]:
    """The network interfaces attached to an instance (primary first)."""
    with calling(f"looking up instance {instance_id}", "ec2"):
        reservations = aws.client("ec2").describe_instances(
            InstanceIds=[instance_id])["Reservations"]
    enis = []
    for r in reservations:
        for inst in r.get("Instances", []):
            attached = sorted(inst.get("NetworkInterfaces", []),
                              key=lambda n: n.get("Attachment", {}).get("DeviceIndex", 0))
            enis += [n["NetworkInterfaceId"] for n in attached]
    if not enis:
        raise FlowscopeError(f"instance {instance_id} has no network interfaces (terminated?)")
    return enis


def enable(aws: Aws, plan: Plan, now: datetime, dry_run: bool = False) -> Enabled:
    """Send the request (or, dry run, ask EC2 whether it would be allowed)."""
    plan.check()
    result = Enabled(plan, dry_run=dry_run, created_at=now)
    ec2 = aws.client("ec2")
    import botocore.exceptions as be

    if dry_run:
        try:
            ec2.create_flow_logs(DryRun=True, **plan.request())
        except be.ClientError as e:
            if code_of(e) != "DryRunOperation":
                raise explain(e, "checking permission to create the flow log", "ec2") from None
            result.permitted = True
        return result
    doing = f"creating the flow log for {', '.join(plan.resource_ids)}"
    for _ in range(len(formats.OPTIONAL) + 1):
        try:
            answer = ec2.create_flow_logs(**plan.request())
            break
        except be.ClientError as e:
            message = str(e.response.get("Error", {}).get("Message", ""))
            fewer = formats.without_unsupported(plan.fields, message) \
                if code_of(e).startswith("InvalidParameter") else None
            if fewer is None:
                raise explain(e, doing, "ec2") from None
            result.dropped_fields += tuple(n for n in plan.fields if n not in fewer)
            plan.fields = fewer
        except be.BotoCoreError as e:
            raise explain(e, doing, "ec2") from None
    result.flow_log_ids = list(answer.get("FlowLogIds", []))
    for item in answer.get("Unsuccessful", []):
        err = item.get("Error", {})
        message = str(err.get("Message", ""))
        why = str(explain_delivery(message) or f"{message} ({err.get('Code', '')})")
        result.failed.append((str(item.get("ResourceId", "")), why))
    if not result.flow_log_ids and result.failed:
        resource, why = result.failed[0]
        raise AwsError(f"no flow log created for {resource}: {why}")
    return result
