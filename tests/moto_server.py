"""A moto server on loopback: the AWS endpoint of the ``aws`` tests.

Real HTTP on 127.0.0.1 (a free port): botocore serialises, signs, sends and parses exactly as
against AWS, and errors come back as the service's own error documents.  Not the in-process
mock decorators.  ``enforce_iam()`` switches moto's IAM authorisation on (its
``/moto-api/reset-auth``), so a permission error is a real AccessDenied from the server.

One fix to moto 5 is applied: CreateFlowLogs with an S3 destination checks
``arn:aws:s3:::bucket/prefix/`` by looking up the bucket named ``bucket/prefix/`` and reports
it missing; a bucket name cannot contain '/', so the lookup is given the part before it.

Test modules import the fixtures ``moto`` (a blank account, the environment pointed at the
server) and ``moto_server``: ``from .moto_server import moto_fixture, moto_server_fixture``.

Alone, for the README walk-through: ``python -m tests.moto_server --port 5000``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import urllib.request
from collections.abc import Iterator

import pytest

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def _fix_s3_destination_lookup() -> None:
    from moto.s3.models import S3Backend

    if getattr(S3Backend.get_bucket, "_flowscope_fixed", False):
        return
    original = S3Backend.get_bucket

    def get_bucket(self, bucket_name: str):  # type: ignore[no-untyped-def]
        return original(self, bucket_name.split("/", 1)[0])

    get_bucket._flowscope_fixed = True  # type: ignore[attr-defined]
    S3Backend.get_bucket = get_bucket  # type: ignore[method-assign]


class MotoServer:
    def __init__(self, port: int = 0) -> None:
        from moto.server import ThreadedMotoServer

        if not port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        _fix_s3_destination_lookup()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)

    def start(self) -> MotoServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def _post(self, path: str, body: bytes = b"") -> None:
        request = urllib.request.Request(self.url + path, data=body, method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=30).read()

    def reset(self) -> None:
        """Every backend emptied: each test starts from a blank account."""
        self._post("/moto-api/reset")

    @contextlib.contextmanager
    def enforce_iam(self) -> Iterator[None]:
        """Requests from now on are authorised against moto's IAM (the access key must be an
        IAM user's, its policies decide)."""
        self._post("/moto-api/reset-auth", b"0")
        try:
            yield
        finally:
            self._post("/moto-api/reset-auth", b"inf")

    def env(self) -> dict[str, str]:
        """Environment for a flowscope process talking to this server (nothing from ~/.aws)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return env | CREDENTIALS | {
            "AWS_ENDPOINT_URL": self.url, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true"}

    def client(self, service: str, **credentials: str):  # type: ignore[no-untyped-def]
        import boto3

        keys = credentials or {"aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                               "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}
        return boto3.client(service, region_name=REGION, endpoint_url=self.url, **keys)


@pytest.fixture(scope="session", name="moto_server")
def moto_server_fixture() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture(name="moto")
def moto_fixture(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """A blank account on the server, and this process's AWS environment pointed at it."""
    moto_server.reset()
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    for k, v in moto_server.env().items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)
    return moto_server


if __name__ == "__main__":
    import argparse
    import threading

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    server = MotoServer(args.port).start()
    print(f"moto server on {server.url} (Ctrl-C stops it)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
