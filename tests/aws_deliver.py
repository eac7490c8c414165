"""What AWS would deliver: generated flow-log records (tests/flowlog_gen.py, known verdicts)
written into a moto server the way VPC Flow Logs writes them.

- S3: gzip text with a header (or Parquet) objects named
  ``<account>_vpcflowlogs_<region>_<fl-id>_<yyyymmddTHHmmZ>_<hash>.log.gz`` under
  ``AWSLogs/<account>/vpcflowlogs/<region>/yyyy/mm/dd/[HH/]`` or the Hive-compatible
  ``AWSLogs/aws-account-id=.../aws-service=vpcflowlogs/aws-region=.../year=.../month=.../
  day=.../[hour=.../]``, one object per 5-minute delivery slot (AWS VPC user guide, "Flow log
  files");
- CloudWatch Logs: one stream per network interface (``eni-...-all``), one event per record,
  no header, event timestamp = the record's start (AWS VPC user guide, "Publish flow logs to
  CloudWatch Logs").

For the README walk-through against ``python -m tests.moto_server``:
``python -m tests.aws_deliver setup BUCKET`` (a VPC, subnet, ENI and bucket; prints the ENI)
and ``python -m tests.aws_deliver deliver FLOW-LOG-ID`` (records of the last minutes).
"""

from __future__ import annotations

import gzip
import hashlib
import io
from datetime import UTC, datetime
from typing import Any

from . import flowlog_gen as gen

SLOT = 300


def shifted(recs: list[dict[str, Any]], t0: int, eni: str, fields: tuple[str, ...]
            ) -> list[dict[str, Any]]:
    """Records moved from gen.T0 to t0, on this ENI, with every field of ``fields``."""
    filler = {"type": "IPv4", "traffic-path": "-", "pkt-src-aws-service": "-",
              "pkt-dst-aws-service": "-", "reject-reason": "-", "vpc-id": "-",
              "subnet-id": "-", "instance-id": "-"}
    out = []
    for r in recs:
        moved = dict(r) | {"start": int(r["start"]) - gen.T0 + t0,
                           "end": int(r["end"]) - gen.T0 + t0}
        if r["interface-id"] == "eni-0abc":
            moved["interface-id"] = eni
        out.append({f: moved.get(f, filler.get(f, "-")) for f in fields})
    return out


def text(recs: list[dict[str, Any]], fields: tuple[str, ...]) -> bytes:
    lines = [" ".join(fields)] + [" ".join(str(r[f]) for f in fields) for r in recs]
    return ("\n".join(lines) + "\n").encode()


def parquet(recs: list[dict[str, Any]], fields: tuple[str, ...]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from flowscope.flowlogs import fields as f

    cols = {}
    for name in fields:
        typ = f.TYPES.get(name, pa.string())
        values = [None if r[name] in ("-", None) else r[name] for r in recs]
        cols[name.replace("-", "_")] = pa.array(
            [None if v is None else (str(v) if typ == pa.string() else int(v)) for v in values],
            typ)
    sink = io.BytesIO()
    pq.write_table(pa.table(cols), sink)
    return sink.getvalue()


def s3_key(prefix: str, account: str, region: str, flow_log_id: str, slot: datetime,
           hive: bool, per_hour: bool, suffix: str, body: bytes) -> str:
    if hive:
        folder = (f"AWSLogs/aws-account-id={account}/aws-service=vpcflowlogs/"
                  f"aws-region={region}/year={slot:%Y}/month={slot:%m}/day={slot:%d}/"
                  + (f"hour={slot:%H}/" if per_hour else ""))
    else:
        folder = (f"AWSLogs/{account}/vpcflowlogs/{region}/{slot:%Y/%m/%d}/"
                  + (f"{slot:%H}/" if per_hour else ""))
    digest = hashlib.sha1(body).hexdigest()[:8]
    name = f"{account}_vpcflowlogs_{region}_{flow_log_id}_{slot:%Y%m%dT%H%MZ}_{digest}{suffix}"
    return (f"{prefix.strip('/')}/" if prefix.strip("/") else "") + folder + name


def deliver_s3(s3: Any, bucket: str, prefix: str, account: str, region: str,
               flow_log_id: str, recs: list[dict[str, Any]], fields: tuple[str, ...],
               hive: bool = False, per_hour: bool = False, as_parquet: bool = False
               ) -> list[str]:
    """One object per 5-minute slot (by record end, delivered at the slot's end)."""
    slots: dict[int, list[dict[str, Any]]] = {}
    for r in recs:
        slots.setdefault((int(r["end"]) // SLOT + 1) * SLOT, []).append(r)
    keys = []
    for t, group in sorted(slots.items()):
        body = parquet(group, fields) if as_parquet else gzip.compress(text(group, fields))
        key = s3_key(prefix, account, region, flow_log_id, datetime.fromtimestamp(t, UTC),
                     hive, per_hour, ".log.parquet" if as_parquet else ".log.gz", body)
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        keys.append(key)
    return keys


def deliver_cloudwatch(logs: Any, group: str, recs: list[dict[str, Any]],
                       fields: tuple[str, ...]) -> dict[str, int]:
    """Events per ENI stream; returns events per stream."""
    try:
        logs.create_log_group(logGroupName=group)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    streams: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        streams.setdefault(f"{r['interface-id']}-all", []).append(r)
    for stream, group_recs in streams.items():
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        events = sorted(({"timestamp": int(r["start"]) * 1000,
                          "message": " ".join(str(r[f]) for f in fields)} for r in group_recs),
                        key=lambda e: e["timestamp"])
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
    return {s: len(v) for s, v in streams.items()}


def _main() -> None:
    import sys

    from flowscope.aws.listing import describe
    from flowscope.aws.session import Aws

    command, arg = sys.argv[1], sys.argv[2]
    aws = Aws()
    if command == "setup":
        ec2, s3 = aws.client("ec2"), aws.client("s3")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        eni = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]
        s3.create_bucket(Bucket=arg, CreateBucketConfiguration={
            "LocationConstraint": s3.meta.region_name})
        print(eni["NetworkInterfaceId"])
        return
    fl = describe(aws, [arg])[0]
    t0 = int(datetime.now(UTC).timestamp()) // 60 * 60 - 20 * 60
    recs = shifted(gen.records(gen.scenarios()), t0, fl.resource_id, fl.fields)
    account = aws.client("sts").get_caller_identity()["Account"]
    if fl.destination.startswith("s3://"):
        bucket, _, prefix = fl.destination[5:].partition("/")
        keys = deliver_s3(aws.client("s3"), bucket, prefix, account, aws.region_name, fl.id,
                          recs, fl.fields)
        print(f"delivered {len(recs)} records in {len(keys)} objects to {fl.destination}")
    else:
        n = deliver_cloudwatch(aws.client("logs"), fl.destination.split(":", 1)[1], recs,
                               fl.fields)
        print(f"delivered {sum(n.values())} records to {fl.destination}")


if __name__ == "__main__":
    _main()
