"""The IAM policies the commands need, and nothing more.

- the caller's policy: exactly the API actions the commands call (EC2 Create/Describe/Delete
  FlowLogs, CreateTags for the tags given at creation, DescribeInstances and
  DescribeNetworkInterfaces; ``logs:CreateLogDelivery``/``DeleteLogDelivery``, which EC2
  checks when a flow log delivers to S3; S3 List/Get; CloudWatch Logs reads; packet metrics;
  ``iam:PassRole`` of the delivery role, only to vpc-flow-logs.amazonaws.com);
- the delivery role for CloudWatch Logs: trusted by ``vpc-flow-logs.amazonaws.com``, allowed
  to write log groups (AWS VPC user guide, "IAM role for publishing flow logs to CloudWatch
  Logs");
- the bucket policy for S3 delivery: ``delivery.logs.amazonaws.com`` may PutObject under
  ``AWSLogs/`` and read the bucket ACL (AWS VPC user guide, "Amazon S3 bucket permissions for
  flow logs").
"""

from __future__ import annotations

from typing import Any

VERSION = "2012-10-17"


def caller(bucket: str | None = None, log_group: str | None = None,
           role_arn: str | None = None) -> dict[str, Any]:
    bucket_arns = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"] if bucket else ["*"]
    group_arn = f"arn:aws:logs:*:*:log-group:{log_group}:*" if log_group else "*"
    return {"Version": VERSION, "Statement": [
        {"Sid": "FlowLogsEnableListCleanup", "Effect": "Allow", "Action": [
            "ec2:CreateFlowLogs", "ec2:DescribeFlowLogs", "ec2:DeleteFlowLogs",
            "ec2:DescribeInstances", "ec2:DescribeNetworkInterfaces"], "Resource": "*"},
        {"Sid": "TagAtCreation", "Effect": "Allow", "Action": "ec2:CreateTags",
         "Resource": "arn:aws:ec2:*:*:vpc-flow-log/*",
         "Condition": {"StringEquals": {"ec2:CreateAction": "CreateFlowLogs"}}},
        {"Sid": "DeliverToS3", "Effect": "Allow",
         "Action": ["logs:CreateLogDelivery", "logs:DeleteLogDelivery"], "Resource": "*"},
        {"Sid": "FetchFromS3", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"],
         "Resource": bucket_arns},
        {"Sid": "FetchFromCloudWatchLogs", "Effect": "Allow",
         "Action": ["logs:DescribeLogStreams", "logs:FilterLogEvents"], "Resource": group_arn},
        {"Sid": "CostFromMetrics", "Effect": "Allow",
         "Action": "cloudwatch:GetMetricStatistics", "Resource": "*"},
        {"Sid": "PassDeliveryRole", "Effect": "Allow", "Action": "iam:PassRole",
         "Resource": role_arn or "arn:aws:iam::*:role/*",
         "Condition": {"StringEquals": {"iam:PassedToService": "vpc-flow-logs.amazonaws.com"}}},
    ]}


def delivery_role_trust() -> dict[str, Any]:
    return {"Version": VERSION, "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
        "Action": "sts:AssumeRole"}]}


def delivery_role_permissions(log_group: str | None = None) -> dict[str, Any]:
    return {"Version": VERSION, "Statement": [{
        "Effect": "Allow", "Action": [
            "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
            "logs:DescribeLogGroups", "logs:DescribeLogStreams"],
        "Resource": f"arn:aws:logs:*:*:log-group:{log_group}:*" if log_group else "*"}]}


def bucket(bucket: str, account: str = "ACCOUNT-ID") -> dict[str, Any]:
    source = {"StringEquals": {"aws:SourceAccount": account}}
    return {"Version": VERSION, "Statement": [
        {"Sid": "AWSLogDeliveryWrite", "Effect": "Allow",
         "Principal": {"Service": "delivery.logs.amazonaws.com"}, "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{bucket}/*",
         "Condition": {"StringEquals": {"aws:SourceAccount": account,
                                        "s3:x-amz-acl": "bucket-owner-full-control"}}},
        {"Sid": "AWSLogDeliveryAclCheck", "Effect": "Allow",
         "Principal": {"Service": "delivery.logs.amazonaws.com"}, "Action": "s3:GetBucketAcl",
         "Resource": f"arn:aws:s3:::{bucket}", "Condition": source},
    ]}
