"""AWS errors in the user's terms, each with the fix.

botocore raises ``ClientError`` (the service said no: a code and a message) and
``BotoCoreError`` (no credentials, no region, endpoint unreachable ...).  Flow logs add a third
kind: ``CreateFlowLogs`` succeeds but lists a resource as ``Unsuccessful`` with a message (bucket
policy, role trust, missing bucket).  All three become a :class:`AwsError` saying what went
wrong and what to do next; the CLI prints it without a traceback.

Codes: EC2 API reference "Error codes" (UnauthorizedOperation, FlowLogAlreadyExists,
FlowLogsLimitExceeded, InvalidNetworkInterfaceID.NotFound ...), CloudWatch Logs
(AccessDeniedException, ResourceNotFoundException), S3 (AccessDenied, NoSuchBucket).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flowscope.errors import FlowscopeError

POLICY_HINT = "`flowscope aws policy` prints the minimal IAM policy flowscope needs"
TRUST_HINT = ("the role's trust policy must allow the service principal "
              "vpc-flow-logs.amazonaws.com to sts:AssumeRole, and its permissions must allow "
              "logs:CreateLogGroup, logs:CreateLogStream, logs:PutLogEvents, "
              "logs:DescribeLogGroups and logs:DescribeLogStreams "
              "(`flowscope aws policy --delivery-role` prints both)")
BUCKET_HINT = ("the bucket policy must let delivery.logs.amazonaws.com s3:PutObject under "
               "AWSLogs/ and s3:GetBucketAcl; AWS adds it when the caller may "
               "s3:PutBucketPolicy, else add it yourself "
               "(`flowscope aws policy --bucket BUCKET` prints it)")
NOT_FOUND = {"InvalidNetworkInterfaceID": "network interface", "InvalidInstanceID": "instance",
             "InvalidSubnetID": "subnet", "InvalidVpcID": "VPC", "InvalidFlowLogId": "flow log"}


class AwsError(FlowscopeError):
    """An AWS call failed; the message says why in the user's terms and how to fix it."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def _action(operation: str | None, service: str | None) -> str | None:
    if not operation:
        return None
    prefix = service or ""
    if operation in ("ListObjectsV2", "ListObjects"):
        operation = "ListBucket"
    return f"{prefix}:{operation}" if prefix else operation


def explain(e: BaseException, doing: str = "", service: str | None = None) -> AwsError:
    """Any botocore exception -> an AwsError with the fix.  ``doing``: what flowscope was
    doing, in words ('creating the flow log for eni-0abc')."""
    import botocore.exceptions as be

    where = f"{doing}: " if doing else ""
    if isinstance(e, be.NoCredentialsError):
        return AwsError(f"{where}no AWS credentials found: run `aws configure` or "
                        f"`aws sso login`, pass --profile, or set AWS_ACCESS_KEY_ID/"
                        f"AWS_SECRET_ACCESS_KEY", "NoCredentials")
    if isinstance(e, be.ProfileNotFound):
        return AwsError(f"{where}{e}: check --profile against ~/.aws/config", "ProfileNotFound")
    if isinstance(e, be.NoRegionError):
        return AwsError(f"{where}no AWS region: pass --region (e.g. --region eu-west-1) or "
                        f"set AWS_REGION", "NoRegion")
    if isinstance(e, be.EndpointConnectionError | be.ConnectTimeoutError):
        url = getattr(e, "kwargs", {}).get("endpoint_url", "the endpoint")
        return AwsError(f"{where}cannot reach {url}: check the network, --region and "
                        f"--endpoint-url", "Unreachable")
    if isinstance(e, be.ClientError):
        err = e.response.get("Error", {})
        code = str(err.get("Code", ""))
        message = str(err.get("Message", "")).strip()
        operation = getattr(e, "operation_name", None)
        return explain_code(code, message, where, _action(operation, service))
    if isinstance(e, be.BotoCoreError):
        return AwsError(f"{where}{e}", type(e).__name__)
    return AwsError(f"{where}{e}", type(e).__name__)


def explain_code(code: str, message: str, where: str = "", action: str | None = None
                 ) -> AwsError:
    """An AWS error code and message -> what it means and the fix."""
    said = f" (AWS said: {message})" if message else ""
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                "UnauthorizedAccess", "Forbidden", "403") or "not authorized" in message:
        m = re.search(r"not authorized to perform:? ([\w-]+:[\w-]+)", message)
        named = m.group(1) if m else action
        what = f"permission {named} is missing" if named else "a permission is missing"
        decode = (" The encoded message decodes with `aws sts decode-authorization-message "
                  "--encoded-message ...`." if "Encoded authorization failure" in message else "")
        if named == "iam:PassRole" or "PassRole" in message:
            what = "permission iam:PassRole on the delivery role is missing"
        return AwsError(f"{where}{what}: add it to your IAM identity; {POLICY_HINT}.{decode}"
                        f"{said}", code)
    if code == "FlowLogAlreadyExists":
        return AwsError(f"{where}a flow log for this resource already delivers to this "
                        f"destination: reuse it (`flowscope aws flowlogs list`), delete it "
                        f"(`flowscope aws flowlogs cleanup ID`), or choose another prefix or "
                        f"log group{said}", code)
    if code in ("FlowLogsLimitExceeded", "LimitExceeded", "LimitExceededException") or \
            "limit" in message.lower() and "exceed" in message.lower():
        return AwsError(f"{where}the flow-log limit is reached (flow logs per resource or per "
                        f"account and region): remove unused ones (`flowscope aws flowlogs "
                        f"list`, then `cleanup`) or request a quota increase in Service "
                        f"Quotas{said}", code)
    base = code.split(".")[0]
    if code.endswith(".NotFound") and base in NOT_FOUND or code.endswith(".Malformed"):
        thing = NOT_FOUND.get(base, "resource")
        ident = re.search(r"'?((?:eni|i|subnet|vpc|fl)-[0-9a-zA-Z]+)'?", message)
        name = f" {ident.group(1)}" if ident else ""
        if code.endswith(".Malformed"):
            return AwsError(f"{where}{thing}{name} is not a valid id: ids look like "
                            f"eni-0123456789abcdef0, i-..., subnet-..., vpc-...{said}", code)
        return AwsError(f"{where}{thing}{name} not found in this account and region: check "
                        f"the id and --region (and --profile){said}", code)
    if code in ("NoSuchBucket",):
        return AwsError(f"{where}the S3 bucket does not exist (or is in another account): "
                        f"check the name in --to / the s3:// address{said}", code)
    if code == "ResourceNotFoundException":
        return AwsError(f"{where}the CloudWatch Logs log group or stream does not exist in "
                        f"this region: check the name and --region{said}", code)
    if code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired"):
        return AwsError(f"{where}the AWS credentials have expired: renew them (`aws sso "
                        f"login`, a new session){said}", code)
    if code in ("InvalidClientTokenId", "AuthFailure", "SignatureDoesNotMatch",
                "UnrecognizedClientException", "InvalidAccessKeyId"):
        return AwsError(f"{where}AWS does not accept these credentials: check the access "
                        f"key, --profile, and that the region is enabled for the account{said}",
                        code)
    if code in ("Throttling", "ThrottlingException", "RequestLimitExceeded", "SlowDown"):
        return AwsError(f"{where}AWS is throttling the requests: wait a minute and run the "
                        f"command again (it resumes){said}", code)
    return explain_delivery(message, where, code) or AwsError(
        f"{where}AWS error {code}: {message}", code)


def explain_delivery(message: str, where: str = "", code: str = "") -> AwsError | None:
    """The messages of CreateFlowLogs' Unsuccessful items and DeliverLogsErrorMessage."""
    low = message.lower()
    said = f" (AWS said: {message})"
    if "awslogs" in low and ("subfolder" in low or "reserved" in low or "prefix" in low):
        return AwsError(f"{where}the S3 prefix cannot contain a folder named AWSLogs (AWS "
                        f"adds AWSLogs/ itself): use e.g. s3://bucket/flow-logs{said}", code)
    if "assume" in low or "trust" in low or "deliverlogspermissionarn" in low:
        return AwsError(f"{where}the delivery role cannot be used by VPC Flow Logs: "
                        f"{TRUST_HINT}{said}", code)
    if "does not exist" in low and "logdestination" in low:
        return AwsError(f"{where}the destination bucket does not exist: create it, or check "
                        f"the name in --to{said}", code)
    if "access denied for logdestination" in low or ("logdestination" in low and
                                                     "permission" in low):
        return AwsError(f"{where}the bucket does not let VPC Flow Logs write: {BUCKET_HINT}"
                        f"{said}", code)
    if low == "access error":
        return AwsError(f"{where}delivery failed with 'Access error': {TRUST_HINT}{said}", code)
    if low == "rate limited":
        return AwsError(f"{where}delivery is 'Rate limited': CloudWatch Logs throttled it or "
                        f"the log-group limit is reached; S3 has no such limit (--to s3://){said}",
                        code)
    if "unsupported" in low or "unknown field" in low or "not supported" in low:
        return AwsError(f"{where}a field of the format is not available here: drop it with "
                        f"--fields{said}", code)
    return None


@contextmanager
def calling(doing: str, service: str | None = None) -> Iterator[None]:
    """Run AWS calls of ``service``; any botocore failure leaves as an explained AwsError
    (a missing permission is named ``service:Operation``)."""
    import botocore.exceptions as be

    try:
        yield
    except (be.ClientError, be.BotoCoreError) as e:
        raise explain(e, doing, service) from None


def code_of(e: Any) -> str:
    return str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))
