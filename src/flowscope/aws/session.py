"""boto3 clients for one profile, region and endpoint (``--profile``, ``--region``,
``--endpoint-url``).

Credentials come from the standard chain (environment, shared files, SSO, instance role);
``AWS_ENDPOINT_URL``, ``AWS_PROFILE`` and ``AWS_DEFAULT_REGION`` work too, as boto3 reads them
itself; ``AWS_REGION`` (the other SDKs' name) as well.  The endpoint
serves S3, EC2 and CloudWatch Logs alike (a moto server, LocalStack, a private endpoint).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from flowscope.aws.errors import explain


@dataclass
class Aws:
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _session: Any = field(default=None, repr=False)

    @property
    def session(self) -> Any:
        if self._session is None:
            import boto3
            import botocore.exceptions as be

            try:
                self._session = boto3.Session(profile_name=self.profile,
                                              region_name=self.region)
            except be.BotoCoreError as e:
                raise explain(e) from None
        return self._session

    @property
    def region_name(self) -> str:
        # AWS_REGION: what the other SDKs and AWS CLI v2 read; botocore reads AWS_DEFAULT_REGION
        region = self.session.region_name or os.environ.get("AWS_REGION")
        if not region:
            from flowscope.errors import FlowscopeError

            raise FlowscopeError("no AWS region: pass --region (e.g. --region eu-west-1) or set "
                                 "AWS_REGION / a region in your profile")
        return str(region)

    def client(self, service: str) -> Any:
        """A client for ``ec2``, ``s3``, ``logs``, ``cloudwatch`` or ``sts``."""
        if service not in self._clients:
            from botocore.config import Config

            config = Config(retries={"mode": "standard", "max_attempts": 5},
                            user_agent_extra="flowscope")
            self._clients[service] = self.session.client(
                service, region_name=self.region_name, endpoint_url=self.endpoint_url,
                config=config)
        return self._clients[service]

    def caller(self) -> str:
        """The principal's ARN (sts:GetCallerIdentity needs no permission), else 'unknown'."""
        import botocore.exceptions as be

        try:
            return str(self.client("sts").get_caller_identity()["Arn"])
        except (be.BotoCoreError, be.ClientError, KeyError):
            return "unknown"
