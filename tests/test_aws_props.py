"""Property tests for the small parsers of the aws package: --fields, --to, times, S3 object
names (as tests/aws_deliver.py writes them, AWS's layout), and the error explainer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowscope.aws import enable as en
from flowscope.aws import errors, formats, times
from flowscope.aws.fetch import OBJECT_NAME, _object_time
from flowscope.errors import FlowscopeError
from flowscope.flowlogs import fields as f

from . import aws_deliver as deliver

NAMES = st.lists(st.sampled_from([n for n, _, _ in f.FIELDS]), max_size=12)
SEGMENT = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)
MOMENTS = st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2100, 1, 1),
                       timezones=st.just(UTC))


@given(NAMES)
def test_fields_any_spelling_same_format(extra: list[str]) -> None:
    names = ["srcaddr", "dstaddr", *extra]
    want = tuple(dict.fromkeys(names))
    assert formats.parse_fields(",".join(names)) == want
    assert formats.parse_fields(formats.log_format(tuple(names))) == want
    assert formats.parse_fields(" ".join("+" + n for n in extra) or None)[:23] == \
        formats.TROUBLESHOOTING


@given(st.text(max_size=40))
def test_fields_garbage_is_a_clear_error(text: str) -> None:
    try:
        got = formats.parse_fields(text)
    except FlowscopeError as e:
        assert str(e)
    else:
        assert "srcaddr" in got and all(n in f.TYPES for n in got)


@given(SEGMENT.filter(lambda s: len(s) >= 3), st.lists(SEGMENT, max_size=4))
def test_s3_destination_round_trip(bucket: str, folders: list[str]) -> None:
    text = "s3://" + "/".join([bucket, *folders])
    if "AWSLogs" in folders:
        with pytest.raises(FlowscopeError, match="AWSLogs"):
            en.parse_destination(text)
        return
    dest = en.parse_destination(text)
    assert str(dest) == text.rstrip("/") and dest.bucket == bucket
    assert dest.arn == f"arn:aws:s3:::{bucket}" + (f"/{'/'.join(folders)}/" if folders else "")


def test_awslogs_folder_refused() -> None:
    with pytest.raises(FlowscopeError, match="cannot contain a folder named AWSLogs"):
        en.parse_destination("s3://bucket/x/AWSLogs")


@given(MOMENTS, st.integers(1, 10_000))
def test_times(t: datetime, minutes: int) -> None:
    t = t.replace(microsecond=0)
    assert times.moment(times.iso(t), t) == t
    assert times.moment(str(int(t.timestamp())), t) == t
    assert times.moment(f"{minutes}m", t) == t - timedelta(minutes=minutes)
    assert times.duration(f"{minutes}h") == timedelta(hours=minutes)


@given(MOMENTS, st.text("0123456789abcdef", min_size=17, max_size=17), st.booleans(),
       st.booleans(), st.booleans())
def test_object_names_in_aws_layout_give_their_time(t: datetime, hexid: str, hive: bool,
                                                    hourly: bool, parquet: bool) -> None:
    slot = t.replace(second=0, microsecond=0, minute=t.minute // 5 * 5)
    key = deliver.s3_key("p", "123456789012", "eu-west-1", f"fl-{hexid}", slot, hive, hourly,
                         ".log.parquet" if parquet else ".log.gz", b"x")
    m = OBJECT_NAME.search(key.rsplit("/", 1)[1])
    assert m and m.group("id") == f"fl-{hexid}" and m.group("region") == "eu-west-1"
    assert _object_time({"Key": key, "LastModified": None}) == slot


@given(st.text(max_size=30), st.text(max_size=200))
def test_every_error_is_explained(code: str, message: str) -> None:
    e = errors.explain_code(code, message)
    assert isinstance(e, errors.AwsError) and str(e)


def test_known_errors_say_the_fix() -> None:
    assert "permission ec2:CreateFlowLogs is missing" in str(errors.explain_code(
        "UnauthorizedOperation", "You are not authorized to perform this operation. "
        "Encoded authorization failure message: abc", action="ec2:CreateFlowLogs"))
    assert "vpc-flow-logs.amazonaws.com" in str(errors.explain_delivery(
        "Unable to assume given IAM role, DeliverLogsPermissionArn"))
    assert "delivery.logs.amazonaws.com" in str(errors.explain_delivery(
        "Access Denied for LogDestination: my-bucket. Please check LogDestination permission"))
    assert "quota" in str(errors.explain_code("FlowLogsLimitExceeded", "limit reached"))
