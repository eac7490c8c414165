"""What a flow-log window costs: vended-log delivery per GB, by destination.

VPC Flow Logs are billed as CloudWatch "vended logs" per GB delivered, at a price that depends
on the destination: S3 about half of CloudWatch Logs (``prices.json``: the table, its source
and date; ``--prices FILE`` replaces it).  The volume comes from, in order:

1. ``--from-bytes N``: the user knows it;
2. records already delivered for the ENI by an existing flow log (CloudWatch events or S3
   objects over the last hour), as records x the size of a troubleshooting-format record;
3. the instance's ``AWS/EC2 NetworkPacketsIn/Out`` metrics: at most one record per packet,
   an upper bound (a record covers a flow's packets of one direction and minute).

Every estimate says which it used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from flowscope.aws import listing
from flowscope.aws.errors import calling
from flowscope.aws.session import Aws
from flowscope.errors import FlowscopeError

GB = 1024 ** 3  # AWS bills log data in GB of 2^30 bytes
# A troubleshooting-format text record (formats.TROUBLESHOOTING) is ~150 bytes:
# '5 123456789012 eni-0abc1234def567890 10.0.1.10 10.0.2.20 40001 443 6 10 840 1763000041
#  1763000101 ACCEPT OK 3 10.0.1.10 10.0.2.20 egress 1 - - IPv4 -'
RECORD_BYTES = 150
OBSERVE = timedelta(hours=1)


@dataclass
class Prices:
    table: dict[str, Any]
    path: str

    @classmethod
    def load(cls, path: str | Path | None = None) -> Prices:
        try:
            if path:
                text, where = Path(path).read_text(), str(path)
            else:
                text = resources.files("flowscope.aws").joinpath("prices.json").read_text()
                where = "flowscope/aws/prices.json"
            table = json.loads(text)
            table["regions"]  # noqa: B018 - the one key every table needs
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise FlowscopeError(f"{path}: not a price table ({e}); see "
                                 f"flowscope/aws/prices.json for the layout") from None
        return cls(table, where)

    def region(self, region: str) -> tuple[str, dict[str, float]]:
        regions = self.table["regions"]
        if region in regions:
            return region, regions[region]
        fallback = self.table.get("default_region", next(iter(regions)))
        return fallback, regions[fallback]


@dataclass
class Volume:
    bytes: int
    method: str  # what the figure came from, in words
    upper_bound: bool = False


@dataclass
class Estimate:
    volume: Volume
    region: str
    priced_region: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # destination, per_gb, gb, cost
    notes: list[str] = field(default_factory=list)


def estimate(volume: Volume, region: str, prices: Prices, destinations: list[str],
             parquet: bool = False) -> Estimate:
    priced, p = prices.region(region)
    result = Estimate(volume, region, priced)
    gb = volume.bytes / GB
    for dest in destinations:
        per_gb = p[dest] + (p.get("s3_parquet", 0.0) if dest == "s3" and parquet else 0.0)
        result.rows.append({"destination": dest, "per_gb": per_gb, "gb": gb,
                            "cost": per_gb * gb})
    if priced != region:
        result.notes.append(f"no prices for {region} in {prices.path}: {priced}'s used "
                            f"(override with --prices FILE)")
    if p["s3"] and p["cloudwatch"]:
        result.notes.append(f"S3 delivery costs {p['s3'] / p['cloudwatch']:.0%} of CloudWatch "
                            f"Logs per GB ({p['s3']:.3f} vs {p['cloudwatch']:.3f} "
                            f"{prices.table.get('currency', 'USD')}); storage is extra "
                            f"({p.get('s3_storage_month', '?')} vs "
                            f"{p.get('cloudwatch_storage_month', '?')} per GB-month)")
    result.notes.append(f"prices: {prices.table.get('source', '?')}, "
                        f"{prices.table.get('as_of', '?')}")
    return result


def observed_volume(aws: Aws, eni: str, window: timedelta, now: datetime) -> Volume:
    """The ENI's likely flow-log volume over ``window``: from records an existing flow log
    delivered in the last hour, else from the instance's packet metrics."""
    scale = window / OBSERVE
    for fl in listing.describe(aws):
        if fl.resource_id != eni:
            continue
        records = _records_last_hour(aws, fl, now)
        if records is None:
            continue
        finer = max(1, fl.interval // 60)  # 600 s aggregation -> up to 10x the records at 60 s
        n = records * scale * finer
        return Volume(int(n * RECORD_BYTES), (
            f"{records} records delivered by {fl.id} ({fl.destination}) in the last hour, "
            f"scaled to {_span(window)}" + (f" and x{finer} for a 60 s interval (its is "
                                            f"{fl.interval} s)" if finer > 1 else "")
            + f", {RECORD_BYTES} bytes per troubleshooting-format record"))
    packets = _packets_last_hour(aws, eni, now)
    if packets is not None:
        n = packets * scale
        return Volume(int(n * RECORD_BYTES), (
            f"{packets:,} packets in the last hour (AWS/EC2 NetworkPacketsIn+Out of the "
            f"instance), scaled to {_span(window)}; at most one record per packet, so an upper "
            f"bound: records are per flow, direction and minute"), upper_bound=True)
    raise FlowscopeError(f"nothing to estimate {eni}'s volume from: no flow log delivers its "
                         f"records and its instance has no packet metrics; give --from-bytes N "
                         f"(e.g. the size of an hour of its logs)")


def _span(window: timedelta) -> str:
    minutes = window.total_seconds() / 60
    return f"{minutes:g} min" if minutes < 120 else f"{minutes / 60:g} h"


def _records_last_hour(aws: Aws, fl: listing.FlowLog, now: datetime) -> int | None:
    since = now - OBSERVE
    if fl.destination_type == "cloud-watch-logs":
        logs = aws.client("logs")
        group = fl.destination.split(":", 1)[1]
        n = 0
        with calling(f"counting {fl.id}'s records in {group}", "logs"):
            streams = [s["logStreamName"] for page in logs.get_paginator(
                "describe_log_streams").paginate(logGroupName=group,
                                                 logStreamNamePrefix=fl.resource_id)
                       for s in page.get("logStreams", [])]
            for start in range(0, len(streams), 100):  # FilterLogEvents takes 100 names
                for page in logs.get_paginator("filter_log_events").paginate(
                        logGroupName=group, logStreamNames=streams[start:start + 100],
                        startTime=int(since.timestamp() * 1000),
                        endTime=int(now.timestamp() * 1000)):
                    n += len(page.get("events", []))
        return n
    if fl.destination_type == "s3":
        import gzip

        from flowscope.aws.fetch import s3_objects

        bucket, _, prefix = fl.destination[5:].partition("/")
        s3 = aws.client("s3")
        n = 0
        with calling(f"counting {fl.id}'s records in {fl.destination}", "s3"):
            for obj in s3_objects(s3, bucket, prefix, since, now, fl.id):
                if obj["Key"].endswith(".parquet"):
                    import io

                    import pyarrow.parquet as pq

                    data = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                    n += pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
                    continue
                data = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                if data[:2] == b"\x1f\x8b":
                    data = gzip.decompress(data)
                n += max(0, data.count(b"\n") - 1)  # minus the header line
        return n
    return None


def _packets_last_hour(aws: Aws, eni: str, now: datetime) -> int | None:
    with calling(f"looking up {eni}", "ec2"):
        nics = aws.client("ec2").describe_network_interfaces(
            NetworkInterfaceIds=[eni])["NetworkInterfaces"]
    instance = nics[0].get("Attachment", {}).get("InstanceId") if nics else None
    if not instance:
        return None
    cw = aws.client("cloudwatch")
    total, seen = 0, False
    with calling(f"reading {instance}'s packet metrics", "cloudwatch"):
        for metric in ("NetworkPacketsIn", "NetworkPacketsOut"):
            points = cw.get_metric_statistics(
                Namespace="AWS/EC2", MetricName=metric,
                Dimensions=[{"Name": "InstanceId", "Value": instance}],
                StartTime=now - OBSERVE, EndTime=now, Period=300,
                Statistics=["Sum"])["Datapoints"]
            seen |= bool(points)
            total += int(sum(p["Sum"] for p in points))
    return total if seen else None
