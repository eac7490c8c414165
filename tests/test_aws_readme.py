"""The README section "Capture flow logs for one ENI for 30 minutes" works as written: its
moto walk-through (the last ``sh`` block of the section) runs line by line in bash against
the test suite's moto server, from enable to a diagnosis table to cleanup.

The only change: the block starts its own server on port 5000; here the fixture's server is
already running, so that line is skipped and the port is the fixture's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from .moto_server import MotoServer, moto_fixture, moto_server_fixture  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
TITLE = "Capture flow logs for one ENI for 30 minutes"


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    heading = re.search(rf"^#{{2,4}} {re.escape(TITLE)}$", text, re.M)
    assert heading, f"README.md has no section {TITLE!r}"
    section = text[heading.end() - len(TITLE):]
    following = re.search(r"\n#{2,4} ", section[len(TITLE):])  # sh comments have one #
    if following:
        section = section[: len(TITLE) + following.start()]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert blocks, "the section has no sh block"
    return blocks[-1]


def test_readme_walkthrough_against_moto(moto: MotoServer, tmp_path: Path) -> None:
    block = walkthrough()
    lines = [ln for ln in block.splitlines() if not ln.startswith("python -m tests.moto_server")]
    script = "\n".join(lines).replace("http://127.0.0.1:5000", moto.url)
    env = moto.env() | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                        "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    for k in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
              "AWS_SECRET_ACCESS_KEY"):
        env.pop(k)  # the block exports them itself
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", f"cd {tmp_path}; set -x\n{script}"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    table = run.stdout
    for verdict in ("unanswered", "refused", "reset_by_orig", "reset_by_resp", "denied"):
        assert verdict in table
    assert "10.0.1.10" in table and " ok " not in table  # --problems: failures only
    assert re.search(r"created 1 flow log\(s\) for eni-\w+ -> s3://my-flow-logs/troubleshooting",
                     run.stderr)
    # records of two minutes: one or two 5-minute delivery files, by the clock
    assert re.search(r"([12]) objects for .*: \1 downloaded", run.stderr), run.stderr
    assert "deleted 1 flow log(s)" in run.stderr
    assert "warning:" not in run.stderr and "Traceback" not in run.stderr
    assert moto.client("ec2").describe_flow_logs()["FlowLogs"] == []
    assert (tmp_path / "flows" / ".flowscope-fetch.manifest").exists()
