"""``flowscope aws flowlogs enable / list / cleanup`` against a moto server on loopback
(tests/moto_server.py): the exact CreateFlowLogs request, tags and expiry as the server
stores them, ENI resolution, errors in user terms (from the server's real error documents,
including an IAM AccessDenied with moto's authorisation on), idempotent cleanup."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowscope.aws import cleanup as cl
from flowscope.aws import enable as en
from flowscope.aws import formats, listing
from flowscope.aws.errors import AwsError
from flowscope.aws.session import Aws
from flowscope.aws.times import iso
from flowscope.errors import FlowscopeError

from .moto_server import ACCOUNT, MotoServer, moto_fixture, moto_server_fixture  # noqa: F401

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CALLER = f"arn:aws:sts::{ACCOUNT}:user/moto"  # moto's GetCallerIdentity


def network(moto: MotoServer, bucket: str | None = "flow-bucket") -> dict[str, str]:
    ec2 = moto.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    eni = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]
    if bucket:
        moto.client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={
            "LocationConstraint": "eu-west-1"})
    return {"vpc": vpc, "subnet": subnet, "eni": eni}


def cli(moto: MotoServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowscope", "aws", *args],
                          capture_output=True, text=True, env=moto.env(), timeout=120)


def sent(aws: Aws, service: str, operation: str) -> list[dict[str, Any]]:
    """The parameters of every ``operation`` call this Aws's client makes (botocore hook)."""
    calls: list[dict[str, Any]] = []
    aws.client(service).meta.events.register(
        f"provide-client-params.{service}.{operation}",
        lambda params, **_: calls.append(json.loads(json.dumps(params))))
    return calls


def test_enable_eni_to_s3_exact_request_tags_and_expiry(moto: MotoServer) -> None:
    net = network(moto)
    aws = Aws()
    calls = sent(aws, "ec2", "CreateFlowLogs")
    plan = en.Plan("NetworkInterface", [net["eni"]], en.parse_destination("s3://flow-bucket/tb"),
                   NOW + timedelta(minutes=30), aws.caller(), parquet=True, hive=True,
                   per_hour=True)
    done = en.enable(aws, plan, NOW)
    assert len(done.flow_log_ids) == 1 and not done.failed
    assert calls[0]["DestinationOptions"] == {"FileFormat": "parquet",
                                              "HiveCompatiblePartitions": True,
                                              "PerHourPartition": True}
    stored = moto.client("ec2").describe_flow_logs()["FlowLogs"]
    assert len(stored) == 1
    d = stored[0]
    assert d["FlowLogId"] == done.flow_log_ids[0]
    assert (d["ResourceId"], d["TrafficType"], d["LogDestinationType"], d["LogDestination"],
            d["MaxAggregationInterval"]) == (net["eni"], "ALL", "s3",
                                             "arn:aws:s3:::flow-bucket/tb/", 60)
    assert d["LogFormat"] == (
        "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} "
        "${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status} ${tcp-flags} "
        "${pkt-srcaddr} ${pkt-dstaddr} ${flow-direction} ${traffic-path} "
        "${pkt-src-aws-service} ${pkt-dst-aws-service} ${type} ${reject-reason}")
    assert {t["Key"]: t["Value"] for t in d["Tags"]} == {
        "flowscope:expires": "2026-03-01T12:30:00Z", "flowscope:owner": CALLER,
        "Name": "flowscope until 2026-03-01T12:30:00Z"}
    fl = listing.describe(aws)[0]
    assert fl.owned and fl.expires == NOW + timedelta(minutes=30)
    assert fl.expired(NOW + timedelta(minutes=31)) and not fl.expired(NOW)
    assert fl.fields == formats.TROUBLESHOOTING and fl.destination == "s3://flow-bucket/tb"
    assert done.first_records == (NOW + timedelta(minutes=5), NOW + timedelta(minutes=10))


def test_enable_instance_resolves_its_interfaces_cli(moto: MotoServer) -> None:
    net = network(moto)
    ec2 = moto.client("ec2")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    inst = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=net["subnet"]
                             )["Instances"][0]
    ec2.attach_network_interface(NetworkInterfaceId=net["eni"], InstanceId=inst["InstanceId"],
                                 DeviceIndex=1)
    primary = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
    out = cli(moto, "flowlogs", "enable", "--instance", inst["InstanceId"], "--to",
              "s3://flow-bucket", "--for", "2h", "--traffic", "REJECT", "--fields",
              "+vpc-id")
    assert out.returncode == 0, out.stderr
    ids = out.stdout.split()
    assert len(ids) == 2 and all(i.startswith("fl-") for i in ids)
    stored = {d["ResourceId"]: d for d in ec2.describe_flow_logs()["FlowLogs"]}
    assert set(stored) == {primary, net["eni"]}
    d = stored[primary]
    assert d["TrafficType"] == "REJECT" and d["LogFormat"].endswith("${reject-reason} ${vpc-id}")
    expires = datetime.fromisoformat({t["Key"]: t["Value"] for t in d["Tags"]}
                                     ["flowscope:expires"].replace("Z", "+00:00"))
    assert timedelta(minutes=119) < expires - datetime.now(UTC) <= timedelta(hours=2)
    assert f"network interfaces {primary}, {net['eni']}" in out.stderr
    assert "first records expected between" in out.stderr
    assert "flowscope aws flowlogs fetch s3://flow-bucket --since 135m -o flows/" in out.stderr
    assert "flowscope flowlogs analyze flows/" in out.stderr


def test_enable_cloudwatch_needs_a_role_then_sends_it(moto: MotoServer) -> None:
    net = network(moto, bucket=None)
    role = "arn:aws:iam::123456789012:role/flow-logs-delivery"
    no_role = cli(moto, "flowlogs", "enable", "--subnet", net["subnet"], "--to", "cloudwatch:tb")
    assert no_role.returncode == 1 and "needs --role-arn" in no_role.stderr
    assert "flowscope aws policy --delivery-role" in no_role.stderr
    assert "Traceback" not in no_role.stderr
    ok = cli(moto, "flowlogs", "enable", "--subnet", net["subnet"], "--to", "cloudwatch:tb",
             "--role-arn", role)
    assert ok.returncode == 0, ok.stderr
    d = moto.client("ec2").describe_flow_logs()["FlowLogs"][0]
    assert (d["ResourceId"], d["LogDestinationType"], d["LogGroupName"],
            d["DeliverLogsPermissionArn"]) == (net["subnet"], "cloud-watch-logs", "tb", role)


def test_dry_run_prints_the_request_and_creates_nothing(moto: MotoServer) -> None:
    net = network(moto)
    out = cli(moto, "flowlogs", "enable", "--eni", net["eni"], "--to", "s3://flow-bucket/x",
              "--dry-run")
    assert out.returncode == 0, out.stderr
    request = json.loads(out.stdout)
    assert request["MaxAggregationInterval"] == 60 and request["ResourceIds"] == [net["eni"]]
    assert "DryRunOperation" in out.stderr
    assert moto.client("ec2").describe_flow_logs()["FlowLogs"] == []


@pytest.mark.parametrize(("args", "expected"), [
    (["--eni", "eni-0123456789abcdef0", "--to", "s3://flow-bucket"],
     "network interface eni-0123456789abcdef0 not found in this account and region"),
    (["--vpc", "vpc-0123456789abcdef0", "--to", "s3://flow-bucket"],
     "VPC vpc-0123456789abcdef0 not found"),
    (["--instance", "i-0123456789abcdef0", "--to", "s3://flow-bucket"],
     "instance i-0123456789abcdef0 not found"),
    (["--eni", "ENI", "--to", "s3://no-such-bucket/p"],
     "the destination bucket does not exist"),
    (["--eni", "ENI", "--to", "s3://flow-bucket/AWSLogs/x"],
     "cannot contain a folder named AWSLogs"),
    (["--eni", "ENI", "--to", "ftp://x"], "is not a destination"),
    (["--eni", "ENI", "--vpc", "VPC", "--to", "s3://flow-bucket"], "exactly one of"),
    (["--eni", "ENI", "--to", "s3://flow-bucket", "--fields", "srcaddr,dstaddr,tcpflags"],
     "unknown flow-log field(s) tcpflags"),
])
def test_errors_in_user_terms(moto: MotoServer, args: list[str], expected: str) -> None:
    net = network(moto)
    args = [net["eni"] if a == "ENI" else net["vpc"] if a == "VPC" else a for a in args]
    out = cli(moto, "flowlogs", "enable", *args)
    assert out.returncode == 1, out.stdout
    assert expected in out.stderr
    assert "Traceback" not in out.stderr


def test_flow_log_already_exists(moto: MotoServer) -> None:
    net = network(moto)
    first = cli(moto, "flowlogs", "enable", "--eni", net["eni"], "--to", "s3://flow-bucket")
    assert first.returncode == 0, first.stderr
    again = cli(moto, "flowlogs", "enable", "--eni", net["eni"], "--to", "s3://flow-bucket")
    assert again.returncode == 1
    assert "already delivers to this destination" in again.stderr
    assert "(AWS said: Error. There is an existing Flow Log" in again.stderr


def test_missing_permission_names_the_action(moto: MotoServer) -> None:
    """moto's IAM authorisation on: a user allowed only DescribeFlowLogs."""
    net = network(moto)
    iam = moto.client("iam")
    iam.create_user(UserName="reader")
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
            "ec2:DescribeFlowLogs", "sts:GetCallerIdentity"]}]}))
    env = moto.env() | {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    with moto.enforce_iam():
        listed = subprocess.run([sys.executable, "-m", "flowscope", "aws", "flowlogs", "list"],
                                capture_output=True, text=True, env=env, timeout=120)
        out = subprocess.run([sys.executable, "-m", "flowscope", "aws", "flowlogs", "enable",
                              "--eni", net["eni"], "--to", "s3://flow-bucket"],
                             capture_output=True, text=True, env=env, timeout=120)
        fetched = subprocess.run([sys.executable, "-m", "flowscope", "aws", "flowlogs", "fetch",
                                  "s3://flow-bucket", "-o", "/nonexistent-unused"],
                                 capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert out.returncode == 1
    assert "permission ec2:CreateFlowLogs is missing" in out.stderr
    assert "flowscope aws policy" in out.stderr and "Traceback" not in out.stderr
    assert fetched.returncode == 1
    assert "listing s3://flow-bucket/: permission s3:ListBucket is missing" in fetched.stderr


def test_list_marks_others_and_cleanup_is_idempotent(moto: MotoServer) -> None:
    net = network(moto)
    aws = Aws()
    NOW = datetime.now(UTC).replace(microsecond=0)  # cleanup from the CLI uses the clock
    dest = en.parse_destination("s3://flow-bucket")
    old = en.enable(aws, en.Plan("NetworkInterface", [net["eni"]], dest,
                                 NOW - timedelta(minutes=1), CALLER), NOW - timedelta(hours=1))
    fresh = en.enable(aws, en.Plan("Subnet", [net["subnet"]], dest, NOW + timedelta(hours=1),
                                   CALLER), NOW)
    other = moto.client("ec2").create_flow_logs(
        ResourceType="VPC", ResourceIds=[net["vpc"]], TrafficType="ALL",
        LogDestinationType="s3", LogDestination="arn:aws:s3:::flow-bucket")["FlowLogIds"][0]
    logs = {fl.id: fl for fl in listing.describe(aws)}
    assert [logs[i].owned for i in (old.flow_log_ids[0], fresh.flow_log_ids[0], other)] == \
        [True, True, False]
    listed = cli(moto, "flowlogs", "list", "-f", "jsonl")
    rows = {r["id"]: r for r in map(json.loads, listed.stdout.splitlines())}
    assert rows[old.flow_log_ids[0]]["expired"] is True
    assert rows[old.flow_log_ids[0]]["expires"] == iso(NOW - timedelta(minutes=1))
    assert rows[other]["flowscope"] is False and rows[other]["expires"] is None
    table = cli(moto, "flowlogs", "list")
    assert "other (not touched by cleanup)" in table.stdout and "expired" in table.stdout

    done = cl.cleanup(aws, [], True, False, NOW)
    assert done.deleted == old.flow_log_ids and [k.id for k in done.kept] == fresh.flow_log_ids
    again = cli(moto, "flowlogs", "cleanup", "--all-expired")  # cron: nothing left to do
    assert again.returncode == 0 and again.stdout == ""
    assert "deleted 0 flow log(s)" in again.stderr

    refused = cli(moto, "flowlogs", "cleanup", other)
    assert refused.returncode == 1 and "flowscope did not create it; add --force" in refused.stderr
    assert other in {d["FlowLogId"] for d in moto.client("ec2").describe_flow_logs()["FlowLogs"]}
    forced = cli(moto, "flowlogs", "cleanup", other, fresh.flow_log_ids[0], "--force")
    assert forced.returncode == 0 and forced.stdout.split() == [other, fresh.flow_log_ids[0]]
    gone = cli(moto, "flowlogs", "cleanup", other)
    assert gone.returncode == 0 and f"1 already gone ({other})" in gone.stderr
    assert moto.client("ec2").describe_flow_logs()["FlowLogs"] == []
    with pytest.raises(FlowscopeError, match="--all-expired"):
        cl.cleanup(aws, [], False, False, NOW)


def test_unsupported_field_is_dropped_by_name() -> None:
    fields = formats.TROUBLESHOOTING
    message = "Unknown fields provided: ${reject-reason}"  # the shape of a region's refusal
    assert formats.without_unsupported(fields, message) == fields[:-1]
    assert formats.without_unsupported(fields, "LogFormat too long") is None


def test_unsuccessful_item_explained_not_raised_when_others_succeed(moto: MotoServer) -> None:
    """CreateFlowLogs answers per resource; a resource that fails is reported, the rest kept."""
    net = network(moto)
    aws = Aws()
    with pytest.raises(AwsError, match="no flow log created for .*bucket does not exist"):
        en.enable(aws, en.Plan("NetworkInterface", [net["eni"]],
                               en.parse_destination("s3://missing-bucket"), NOW, CALLER), NOW)
