"""Delete flow logs whose window ended: idempotent, safe from cron.

``--all-expired`` deletes flowscope's own flow logs whose ``flowscope:expires`` tag is past;
ids named explicitly are deleted if flowscope created them, others only with ``--force``.
An id that no longer exists is "already gone", not an error, so a second run changes nothing
and exits 0.  The expiry is in the tags, so the machine that enabled a flow log need not be
the one that removes it (cron, EventBridge Scheduler + a container task, CI).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from flowscope.aws import listing
from flowscope.aws.errors import calling, code_of, explain
from flowscope.aws.session import Aws
from flowscope.errors import FlowscopeError


@dataclass
class Cleanup:
    deleted: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # named, but did not exist (already deleted)
    refused: list[str] = field(default_factory=list)  # named, not flowscope's, no --force
    kept: list[listing.FlowLog] = field(default_factory=list)  # own, not expired yet


def cleanup(aws: Aws, ids: list[str], all_expired: bool, force: bool, now: datetime,
            dry_run: bool = False) -> Cleanup:
    if not ids and not all_expired:
        raise FlowscopeError("name flow-log ids to delete, or --all-expired (flowscope's own "
                             "flow logs past their flowscope:expires time)")
    result = Cleanup()
    existing = {fl.id: fl for fl in listing.describe(aws)}
    targets: list[str] = []
    for fid in dict.fromkeys(ids):
        fl = existing.get(fid)
        if fl is None:
            result.gone.append(fid)
        elif fl.owned or force:
            targets.append(fid)
        else:
            result.refused.append(fid)
    if all_expired:
        for fl in existing.values():
            if fl.owned and fl.id not in targets:
                (targets.append(fl.id) if fl.expired(now) else result.kept.append(fl))
    if dry_run or not targets:
        result.deleted = targets if dry_run else []
        return result
    ec2 = aws.client("ec2")
    import botocore.exceptions as be

    for start in range(0, len(targets), 25):
        chunk = targets[start:start + 25]
        try:
            with calling("deleting flow logs", "ec2"):
                answer = ec2.delete_flow_logs(FlowLogIds=chunk)
        except FlowscopeError as e:
            if getattr(e, "code", "") != "InvalidFlowLogId.NotFound":
                raise
            answer = _one_by_one(ec2, chunk, be)
        failed = {u["ResourceId"]: u.get("Error", {}) for u in answer.get("Unsuccessful", [])}
        for fid in chunk:
            err = failed.get(fid)
            if err is None:
                result.deleted.append(fid)
            elif "NotFound" in str(err.get("Code", "")):
                result.gone.append(fid)  # deleted meanwhile (another cleanup, a person)
            else:
                raise explain(be.ClientError({"Error": err}, "DeleteFlowLogs"),
                              f"deleting {fid}", "ec2")
    return result


def _one_by_one(ec2, chunk: list[str], be) -> dict:  # type: ignore[no-untyped-def]
    """Some endpoints fail the whole call when one id is gone: delete each, gone ones noted."""
    unsuccessful = []
    for fid in chunk:
        try:
            ec2.delete_flow_logs(FlowLogIds=[fid])
        except be.ClientError as e:
            if code_of(e) != "InvalidFlowLogId.NotFound":
                raise explain(e, f"deleting {fid}", "ec2") from None
            unsuccessful.append({"ResourceId": fid, "Error": {"Code": code_of(e)}})
    return {"Unsuccessful": unsuccessful}
