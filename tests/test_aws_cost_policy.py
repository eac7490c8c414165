"""``flowscope aws flowlogs cost`` (price table, observed records, packet metrics) and
``flowscope aws policy`` (every API call the code makes is allowed, nothing else)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowscope.aws import cost as co
from flowscope.aws import enable as en
from flowscope.aws import policy as po
from flowscope.aws.session import Aws
from flowscope.errors import FlowscopeError

from . import aws_deliver as deliver
from . import flowlog_gen as gen
from .moto_server import MotoServer, moto_fixture, moto_server_fixture  # noqa: F401
from .test_aws_enable import CALLER, network

SRC = Path(__file__).resolve().parents[1] / "src" / "flowscope" / "aws"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowscope", "aws", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_cost_from_bytes_s3_half_of_cloudwatch() -> None:
    out = run("flowlogs", "cost", "--from-bytes", str(3 * co.GB), "--region", "us-east-1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "s3          3.000000 GB x 0.250 USD/GB = 0.7500 USD",
        "cloudwatch  3.000000 GB x 0.500 USD/GB = 1.5000 USD"]
    assert "S3 delivery costs 50% of CloudWatch Logs per GB" in out.stderr
    assert "https://aws.amazon.com/cloudwatch/pricing/" in out.stderr


def test_cost_price_table_overridable_and_region_fallback(tmp_path: Path) -> None:
    table = tmp_path / "prices.json"
    table.write_text(json.dumps({"source": "our contract", "as_of": "2026-01", "currency": "EUR",
                                 "regions": {"eu-west-1": {"cloudwatch": 0.6, "s3": 0.3}}}))
    out = run("flowlogs", "cost", "--from-bytes", str(co.GB), "--to", "s3", "--region",
              "eu-west-1", "--prices", str(table))
    assert out.stdout == "s3          1.000000 GB x 0.300 EUR/GB = 0.3000 EUR\n"
    assert "prices: our contract, 2026-01" in out.stderr
    prices = co.Prices.load()
    est = co.estimate(co.Volume(co.GB, "test"), "sa-east-1", prices, ["s3"])
    assert est.priced_region == "us-east-1"
    assert "no prices for sa-east-1" in est.notes[0]
    bad = run("flowlogs", "cost", "--from-bytes", "1", "--prices", str(tmp_path / "none.json"))
    assert bad.returncode == 1 and "not a price table" in bad.stderr


def test_cost_from_records_an_existing_flow_log_delivered(moto: MotoServer) -> None:
    net = network(moto, bucket=None)
    aws = Aws()
    now = datetime.now(UTC)
    done = en.enable(aws, en.Plan("NetworkInterface", [net["eni"]],
                                  en.parse_destination("cloudwatch:busy"), now, CALLER,
                                  role_arn="arn:aws:iam::123456789012:role/d"), now)
    recs = deliver.shifted(gen.records(gen.scenarios()), int(now.timestamp()) // 60 * 60 - 1200,
                           net["eni"], en.formats.TROUBLESHOOTING)
    deliver.deliver_cloudwatch(moto.client("logs"), "busy", recs, en.formats.TROUBLESHOOTING)
    volume = co.observed_volume(aws, net["eni"], timedelta(minutes=30), now)
    assert volume.bytes == len(recs) * co.RECORD_BYTES // 2 and not volume.upper_bound
    assert volume.method.startswith(f"{len(recs)} records delivered by {done.flow_log_ids[0]} "
                                    f"(cloudwatch:busy) in the last hour, scaled to 30 min")


def test_cost_from_packet_metrics_is_an_upper_bound(moto: MotoServer) -> None:
    net = network(moto, bucket=None)
    ec2 = moto.client("ec2")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    inst = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=net["subnet"]
                             )["Instances"][0]
    eni = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
    now = datetime.now(UTC)
    cw = moto.client("cloudwatch")
    for name, value in (("NetworkPacketsIn", 30000), ("NetworkPacketsOut", 10000)):
        cw.put_metric_data(Namespace="AWS/EC2", MetricData=[{
            "MetricName": name, "Value": value, "Timestamp": now - timedelta(minutes=10),
            "Dimensions": [{"Name": "InstanceId", "Value": inst["InstanceId"]}]}])
    volume = co.observed_volume(Aws(), eni, timedelta(minutes=30), now)
    assert volume.upper_bound and volume.bytes == 20000 * co.RECORD_BYTES
    assert volume.method.startswith("40,000 packets in the last hour")
    out = run("flowlogs", "cost", "--eni", eni, env=moto.env())
    assert out.returncode == 0, out.stderr
    assert "= at most 0.0007 USD" in out.stdout and "volume: at most 3,000,000 bytes" in out.stderr
    with pytest.raises(FlowscopeError, match="give --from-bytes N"):
        co.observed_volume(Aws(), net["eni"], timedelta(minutes=30), now)


# IAM actions whose API names differ from the client method (S3's ListObjectsV2 is
# s3:ListBucket); sts:GetCallerIdentity needs no permission.
SPECIAL = {"s3:ListObjectsV2": "s3:ListBucket", "sts:GetCallerIdentity": None}


def _called_actions() -> set[str]:
    """service:Operation for every boto3 client method the aws package calls."""
    import boto3

    session = boto3.Session(region_name="us-east-1")
    source = "\n".join(p.read_text() for p in SRC.glob("*.py"))
    actions: set[str] = set()
    for service in ("ec2", "s3", "logs", "cloudwatch", "sts"):
        model = session.client(service, aws_access_key_id="x", aws_secret_access_key="x")
        for operation in model.meta.service_model.operation_names:
            snake = model.meta.method_to_api_mapping and next(
                (k for k, v in model.meta.method_to_api_mapping.items() if v == operation), None)
            if snake and re.search(rf"[.\"]{snake}[(\"]", source):
                action = SPECIAL.get(f"{service}:{operation}", f"{service}:{operation}")
                if action:
                    actions.add(action)
    return actions


def test_policy_allows_exactly_the_calls_made() -> None:
    out = run("policy")
    doc = json.loads(out.stdout)
    allowed: set[str] = set()
    for statement in doc["Statement"]:
        act = statement["Action"]
        allowed |= {act} if isinstance(act, str) else set(act)
    called = _called_actions()
    assert called >= {"ec2:CreateFlowLogs", "ec2:DeleteFlowLogs", "ec2:DescribeFlowLogs",
                      "s3:ListBucket", "s3:GetObject", "logs:FilterLogEvents"}
    # what the calls need, plus what AWS checks behind them (tags at creation, log delivery
    # to S3, passing the CloudWatch delivery role)
    assert allowed == called | {"ec2:CreateTags", "logs:CreateLogDelivery",
                                "logs:DeleteLogDelivery", "iam:PassRole"}


def test_policy_documents() -> None:
    role = json.loads(run("policy", "--delivery-role", "--log-group", "tb").stdout)
    assert role["TrustPolicy"]["Statement"][0]["Principal"] == {
        "Service": "vpc-flow-logs.amazonaws.com"}
    assert role["PermissionsPolicy"]["Statement"][0]["Resource"] == \
        "arn:aws:logs:*:*:log-group:tb:*"
    bucket = json.loads(run("policy", "--bucket-policy", "--bucket", "b1x",
                            "--account", "111122223333").stdout)
    assert bucket == po.bucket("b1x", "111122223333")
    assert bucket["Statement"][0]["Principal"] == {"Service": "delivery.logs.amazonaws.com"}
    scoped = po.caller(bucket="b1x")
    fetch = next(s for s in scoped["Statement"] if s["Sid"] == "FetchFromS3")
    assert fetch["Resource"] == ["arn:aws:s3:::b1x", "arn:aws:s3:::b1x/*"]
