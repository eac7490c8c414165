"""``flowscope aws flowlogs fetch`` and ``flowscope flowlogs analyze s3://... | fl-...``
against a moto server: generated records (tests/flowlog_gen.py, known verdicts) delivered
in every S3 layout AWS writes and as CloudWatch Logs streams, fetched back exactly (window,
flow-log id, pagination, resume), then analysed end to end to the expected verdicts."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowscope.aws import enable as en
from flowscope.aws.fetch import MANIFEST, fetch
from flowscope.aws.session import Aws
from flowscope.flowlogs.analyze import analyze

from . import aws_deliver as deliver
from . import flowlog_gen as gen
from .moto_server import ACCOUNT, REGION, MotoServer, moto_fixture, moto_server_fixture  # noqa: F401
from .test_aws_enable import CALLER, network

T0 = datetime(2026, 3, 1, 12, 3, tzinfo=UTC)  # records start here, end in two 5-min slots
EXPECTED = {c.client: c.expected for c in gen.scenarios()}


def verdicts(folder: Path) -> dict[tuple[str, int], str]:
    result = analyze([str(folder)])
    assert result.problems == []  # every fetched file read cleanly, the manifest not read
    return {(r["orig_h"], r["orig_p"]): r["verdict"] for r in result.table.to_pylist()}


def local_files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
            and p.name != MANIFEST}


def s3_flow_log(moto: MotoServer, prefix: str = "tb") -> tuple[Aws, str, str]:
    net = network(moto)
    aws = Aws()
    done = en.enable(aws, en.Plan("NetworkInterface", [net["eni"]],
                                  en.parse_destination(f"s3://flow-bucket/{prefix}"),
                                  T0 + timedelta(minutes=30), CALLER), T0)
    return aws, done.flow_log_ids[0], net["eni"]


@pytest.mark.parametrize("layout", ["default", "hive", "hourly", "parquet"])
def test_s3_layouts_fetched_by_flow_log_id_and_window(moto: MotoServer, tmp_path: Path,
                                                      layout: str) -> None:
    aws, fid, eni = s3_flow_log(moto)
    s3 = moto.client("s3")
    fields = en.formats.TROUBLESHOOTING
    recs = deliver.shifted(gen.records(gen.scenarios()), int(T0.timestamp()), eni, fields)
    opts = {"hive": layout == "hive", "per_hour": layout == "hourly",
            "as_parquet": layout == "parquet"}
    keys = deliver.deliver_s3(s3, "flow-bucket", "tb", ACCOUNT, REGION, fid, recs, fields,
                              **opts)
    assert len(keys) == 2  # records end in two 5-minute slots
    # not this window, not this flow log, not a flow-log file: left alone
    day_before = deliver.shifted(gen.records(gen.scenarios()),
                                 int((T0 - timedelta(days=1)).timestamp()), eni, fields)
    deliver.deliver_s3(s3, "flow-bucket", "tb", ACCOUNT, REGION, fid, day_before, fields, **opts)
    deliver.deliver_s3(s3, "flow-bucket", "tb", ACCOUNT, REGION, "fl-0000000000000000a", recs,
                       fields, **opts)
    s3.put_object(Bucket="flow-bucket", Key="tb/AWSLogs/README.md", Body=b"notes")

    out = tmp_path / "flows"
    got = fetch(aws, fid, T0 - timedelta(minutes=5), T0 + timedelta(minutes=10), out)
    assert local_files(out) == set(keys)
    assert (got.files, got.downloaded, got.skipped) == (2, 2, 0)
    for key in keys:
        assert (out / key).read_bytes() == s3.get_object(Bucket="flow-bucket", Key=key
                                                         )["Body"].read()
    assert verdicts(out) == EXPECTED

    again = fetch(aws, fid, T0 - timedelta(minutes=5), T0 + timedelta(minutes=10), out)
    assert (again.downloaded, again.skipped, again.bytes) == (0, 2, 0)


def test_s3_prefix_fetches_every_flow_log_and_resumes_a_cut_download(moto: MotoServer,
                                                                      tmp_path: Path) -> None:
    aws, fid, eni = s3_flow_log(moto, prefix="deep/er")
    s3 = moto.client("s3")
    fields = en.formats.TROUBLESHOOTING
    recs = deliver.shifted(gen.records(gen.scenarios()), int(T0.timestamp()), eni, fields)
    keys = deliver.deliver_s3(s3, "flow-bucket", "deep/er", ACCOUNT, REGION, fid, recs, fields)
    other = deliver.deliver_s3(s3, "flow-bucket", "deep/er", ACCOUNT, REGION,
                               "fl-0000000000000000a", recs[:3], fields)
    out = tmp_path / "flows"
    window = (T0 - timedelta(minutes=5), T0 + timedelta(minutes=10))
    first = fetch(aws, "s3://flow-bucket/deep/er", *window, out)
    assert local_files(out) == set(keys + other) and first.downloaded == 3

    # an interrupted download: a .part of the same ETag, not yet recorded as done
    key = keys[0]
    whole = (out / key).read_bytes()
    manifest = json.loads((out / MANIFEST).read_text())
    etag = manifest["s3"].pop(f"flow-bucket/{key}")["etag"]
    manifest["partial"][f"flow-bucket/{key}"] = etag
    (out / MANIFEST).write_text(json.dumps(manifest))
    (out / key).unlink()
    (out / (key + ".part")).write_bytes(whole[:10])
    resumed = fetch(aws, "s3://flow-bucket/deep/er", *window, out)
    assert (resumed.downloaded, resumed.skipped, resumed.bytes) == (1, 2, len(whole) - 10)
    assert (out / key).read_bytes() == whole and not (out / (key + ".part")).exists()


# CloudWatch Logs refuses events older than 14 days: these records are from half an hour ago
CW_T0 = datetime.fromtimestamp(int(datetime.now(UTC).timestamp()) // 300 * 300 - 1800 + 180, UTC)


def _cloudwatch(moto: MotoServer) -> tuple[Aws, str, str, str, dict[str, int]]:
    net = network(moto, bucket=None)
    ec2 = moto.client("ec2")
    other_eni = ec2.create_network_interface(SubnetId=net["subnet"]
                                             )["NetworkInterface"]["NetworkInterfaceId"]
    aws = Aws()
    done = en.enable(aws, en.Plan("NetworkInterface", [net["eni"]],
                                  en.parse_destination("cloudwatch:tb-flows"),
                                  CW_T0 + timedelta(minutes=30), CALLER,
                                  role_arn="arn:aws:iam::123456789012:role/delivery"), CW_T0)
    fields = en.formats.TROUBLESHOOTING
    recs = deliver.shifted(gen.records(gen.scenarios(), both_enis=True), int(CW_T0.timestamp()),
                           net["eni"], fields)
    for r in recs:
        if r["interface-id"] == "eni-0def":  # the server's side of every connection
            r["interface-id"] = other_eni
    counts = deliver.deliver_cloudwatch(moto.client("logs"), "tb-flows", recs, fields)
    return aws, done.flow_log_ids[0], net["eni"], other_eni, counts


def test_cloudwatch_streams_paginated_per_eni(moto: MotoServer, tmp_path: Path) -> None:
    aws, fid, eni, other_eni, counts = _cloudwatch(moto)
    pages: list[str] = []
    aws.client("logs").meta.events.register(
        "provide-client-params.logs.FilterLogEvents",
        lambda params, **_: pages.append(params["logStreamNames"][0]))
    window = (CW_T0 - timedelta(minutes=5), CW_T0 + timedelta(minutes=10))

    by_id = fetch(aws, fid, *window, tmp_path / "eni", page_size=3)
    n = counts[f"{eni}-all"]
    assert (by_id.streams, by_id.events) == (1, n)  # the flow log's ENI only
    assert pages == [f"{eni}-all"] * math.ceil(n / 3)  # every page followed, none extra
    text = (tmp_path / "eni" / "cloudwatch" / "tb-flows" / f"{eni}-all.log").read_text()
    assert text.splitlines()[0] == " ".join(en.formats.TROUBLESHOOTING)
    assert len(text.splitlines()) == n + 1

    out = tmp_path / "group"
    whole = fetch(aws, "cloudwatch:tb-flows", *window, out, page_size=4)
    assert (whole.streams, whole.events) == (2, sum(counts.values()))
    assert verdicts(out) == EXPECTED  # both ENIs' views of each connection merged
    again = fetch(aws, "cloudwatch:tb-flows", *window, out, page_size=4)
    assert (again.events, again.skipped) == (0, 2)


def test_cloudwatch_fetch_interrupted_midway_resumes_without_duplicates(
        moto: MotoServer, tmp_path: Path) -> None:
    aws, fid, eni, _, counts = _cloudwatch(moto)

    class Stop(Exception):
        pass

    class CutAfterTwoPages:
        seen = 0

        def start(self, description: str, total: int | None, unit: str) -> None:
            pass

        def advance(self, n: int) -> None:
            self.seen += 1
            if self.seen == 2:
                raise Stop

    window = (CW_T0 - timedelta(minutes=5), CW_T0 + timedelta(minutes=10))
    with pytest.raises(Stop):
        fetch(aws, fid, *window, tmp_path, CutAfterTwoPages(), page_size=2)
    path = tmp_path / "cloudwatch" / "tb-flows" / f"{eni}-all.log"
    assert len(path.read_text().splitlines()) == 1 + 4
    done = fetch(aws, fid, *window, tmp_path, page_size=2)
    assert done.events == counts[f"{eni}-all"] - 4
    lines = path.read_text().splitlines()[1:]
    assert len(lines) == len(set(lines)) == counts[f"{eni}-all"]

    # later records arrive; a later --until appends only them
    later = deliver.shifted(gen.records(gen.scenarios())[:1],
                            int((CW_T0 + timedelta(minutes=20)).timestamp()), eni,
                            en.formats.TROUBLESHOOTING)
    msg = " ".join(str(later[0][f]) for f in en.formats.TROUBLESHOOTING)
    moto.client("logs").put_log_events(logGroupName="tb-flows", logStreamName=f"{eni}-all",
                                       logEvents=[{"timestamp": int(later[0]["start"]) * 1000,
                                                   "message": msg}])
    more = fetch(aws, fid, window[0], CW_T0 + timedelta(minutes=30), tmp_path, page_size=2)
    assert more.events == 1 and path.read_text().splitlines()[-1] == msg


def _analyze_cli(moto: MotoServer, target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowscope", "flowlogs", "analyze", target,
                           "-f", "jsonl"], capture_output=True, text=True, env=moto.env(),
                          timeout=300)


def test_analyze_reads_s3_prefix_and_flow_log_id(moto: MotoServer) -> None:
    aws, fid, eni = s3_flow_log(moto)
    fields = en.formats.TROUBLESHOOTING
    recs = deliver.shifted(gen.records(gen.scenarios()), int(T0.timestamp()), eni, fields)
    deliver.deliver_s3(moto.client("s3"), "flow-bucket", "tb", ACCOUNT, REGION, fid, recs,
                       fields, hive=True)
    for target in ("s3://flow-bucket/tb", fid):
        out = _analyze_cli(moto, target)
        assert out.returncode == 0, out.stderr
        got = {(r["orig_h"], r["orig_p"]): r["verdict"] for r in map(json.loads,
                                                                      out.stdout.splitlines())}
        assert got == EXPECTED
        assert f"read {target}: 2 objects" in out.stderr
    missing = _analyze_cli(moto, "fl-0123456789abcdef0")
    assert missing.returncode == 1 and "flow log fl-0123456789abcdef0 not found" in missing.stderr
    nobucket = _analyze_cli(moto, "s3://no-such-bucket/x")
    assert nobucket.returncode == 1 and "the S3 bucket does not exist" in nobucket.stderr
    assert "Traceback" not in missing.stderr + nobucket.stderr


def test_fetch_cli_reports_and_points_to_analyze(moto: MotoServer, tmp_path: Path) -> None:
    aws, fid, eni = s3_flow_log(moto)
    del aws
    recs = deliver.shifted(gen.records(gen.scenarios()), int(T0.timestamp()), eni,
                           en.formats.TROUBLESHOOTING)
    deliver.deliver_s3(moto.client("s3"), "flow-bucket", "tb", ACCOUNT, REGION, fid, recs,
                       en.formats.TROUBLESHOOTING)
    out = subprocess.run([sys.executable, "-m", "flowscope", "aws", "flowlogs", "fetch", fid,
                          "--since", "2026-03-01T11:58:00Z", "--until", "2026-03-01T12:13:00Z",
                          "-o", str(tmp_path / "f")], capture_output=True, text=True,
                         env=moto.env(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert "2 objects for 2026-03-01T11:58:00Z .. 2026-03-01T12:13:00Z" in out.stderr
    assert f"next: flowscope flowlogs analyze {tmp_path / 'f'} --problems" in out.stderr
    empty = subprocess.run([sys.executable, "-m", "flowscope", "aws", "flowlogs", "fetch", fid,
                            "--since", "30m", "-o", str(tmp_path / "g")], capture_output=True,
                           text=True, env=moto.env(), timeout=120)
    assert empty.returncode == 0 and "AWS delivers the first files 5-10 minutes" in empty.stderr
