"""``flowscope aws ...``: the command line of the AWS capture (thin: the work is in
:mod:`flowscope.aws`).  Results a script wants (flow-log ids, JSON) go to standard output;
what a person reads (what was created, expiry, next steps, progress) to standard error."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from flowscope.errors import FlowscopeError

err = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)

aws_app = typer.Typer(no_args_is_help=True, help="AWS: time-boxed VPC Flow Logs capture "
                                                 "(enable, fetch, cost, cleanup) and the IAM "
                                                 "policy it needs.")
flowlogs_app = typer.Typer(no_args_is_help=True, help="Enable a troubleshooting flow log for a "
                                                      "while, fetch its records, remove it.")
aws_app.add_typer(flowlogs_app, name="flowlogs")

Profile = Annotated[str | None, typer.Option("--profile", help="AWS profile (~/.aws/config)")]
Region = Annotated[str | None, typer.Option("--region", help="AWS region [default: the "
                                                             "profile's / AWS_REGION]")]
Endpoint = Annotated[str | None, typer.Option(
    "--endpoint-url", help="S3/EC2/CloudWatch Logs-compatible endpoint (e.g. a moto server)")]


class Traffic(StrEnum):
    ALL = "ALL"
    ACCEPT = "ACCEPT"
    REJECT = "REJECT"


class ListFormat(StrEnum):
    table = "table"
    jsonl = "jsonl"


class CostDestination(StrEnum):
    s3 = "s3"
    cloudwatch = "cloudwatch"


def _aws(profile: str | None, region: str | None, endpoint: str | None):  # type: ignore[no-untyped-def]
    from flowscope.aws.session import Aws

    return Aws(profile, region, endpoint)


def _run(work: Callable[[], Any]) -> Any:
    """Errors as one line with the fix, never a traceback."""
    import botocore.exceptions as be

    from flowscope.aws.errors import explain

    try:
        return work()
    except FlowscopeError as e:
        err.print(f"[red]error[/]: {e}")
        raise typer.Exit(e.exit_code) from None
    except (be.BotoCoreError, be.ClientError) as e:
        err.print(f"[red]error[/]: {explain(e)}")
        raise typer.Exit(1) from None


def _again(profile: str | None, region: str | None, endpoint: str | None) -> str:
    """The AWS options to repeat in the commands we suggest."""
    parts = []
    for flag, value in (("--profile", profile), ("--region", region),
                        ("--endpoint-url", endpoint)):
        if value:
            parts += [flag, shlex.quote(value)]
    return (" " + " ".join(parts)) if parts else ""


def _ago(t: datetime | None, now: datetime) -> str:
    if t is None:
        return "-"
    minutes = round((t - now).total_seconds() / 60)
    span = f"{abs(minutes)} min" if abs(minutes) < 120 else f"{abs(minutes) / 60:.1f} h"
    return f"in {span}" if minutes > 0 else f"expired {span} ago" if minutes < 0 else "now"


@flowlogs_app.command("enable")
def enable(
        eni: Annotated[list[str] | None, typer.Option("--eni", help="network interface id(s)")
                       ] = None,
        instance: Annotated[str | None, typer.Option(
            "--instance", help="an instance: all its network interfaces")] = None,
        subnet: Annotated[str | None, typer.Option("--subnet")] = None,
        vpc: Annotated[str | None, typer.Option("--vpc")] = None,
        to: Annotated[str, typer.Option(
            "--to", help="s3://bucket/prefix or cloudwatch:LOG-GROUP")] = "",
        role_arn: Annotated[str | None, typer.Option(
            "--role-arn", help="CloudWatch Logs: the delivery role (trusted by "
                               "vpc-flow-logs.amazonaws.com)")] = None,
        for_: Annotated[str, typer.Option("--for", help="how long before cleanup removes it "
                                                        "(the flowscope:expires tag)")] = "30m",
        fields: Annotated[str | None, typer.Option(
            "--fields", help="record fields (comma-separated, or '${a} ${b}'; '+name' adds to "
                             "the default) [default: every v2 field + tcp-flags, pkt-srcaddr, "
                             "pkt-dstaddr, flow-direction, traffic-path, pkt-src/dst-aws-service, "
                             "type, reject-reason]")] = None,
        traffic: Annotated[Traffic, typer.Option("--traffic")] = Traffic.ALL,
        parquet: Annotated[bool, typer.Option("--parquet", help="S3: Apache Parquet files")
                           ] = False,
        hive: Annotated[bool, typer.Option("--hive", help="S3: Hive-compatible partitions")
                        ] = False,
        per_hour: Annotated[bool, typer.Option("--per-hour", help="S3: hourly partitions")
                            ] = False,
        dry_run: Annotated[bool, typer.Option(
            "--dry-run", help="print the request and check the permission; create nothing")
                           ] = False,
        profile: Profile = None, region: Region = None, endpoint_url: Endpoint = None) -> None:
    """Create flow logs with the troubleshooting format, 60 s aggregation, and an expiry tag;
    print their ids (standard output) and the commands to read and remove them."""
    from flowscope.aws import enable as en
    from flowscope.aws import formats, times

    def work() -> None:
        chosen = [x for x in (eni, instance, subnet, vpc) if x]
        if len(chosen) != 1:
            raise FlowscopeError("give exactly one of --eni ENI..., --instance ID, --subnet ID, "
                                 "--vpc ID")
        if not to:
            raise FlowscopeError("give --to s3://bucket/prefix or --to cloudwatch:LOG-GROUP")
        aws = _aws(profile, region, endpoint_url)
        now = times.now()
        ids: list[str]
        if instance:
            kind, ids = "NetworkInterface", en.instance_interfaces(aws, instance)
            err.print(f"{instance}: network interfaces {', '.join(ids)}")
        elif eni:
            kind, ids = "NetworkInterface", list(dict.fromkeys(eni))
        else:
            kind, ids = ("Subnet", [str(subnet)]) if subnet else ("VPC", [str(vpc)])
        owner = aws.caller() if not dry_run else "(your ARN)"
        plan = en.Plan(kind, ids, en.parse_destination(to), now + times.duration(for_),
                       owner, formats.parse_fields(fields), traffic.value, role_arn, parquet,
                       hive, per_hour)
        if dry_run:
            print(json.dumps(plan.request(), indent=2))
        done = en.enable(aws, plan, now, dry_run)
        if dry_run:
            err.print("dry run: EC2 answered DryRunOperation, so the call is allowed; nothing "
                      "was created")
            return
        again = _again(profile, region, endpoint_url)
        for fid in done.flow_log_ids:
            print(fid)
        err.print(f"created {len(done.flow_log_ids)} flow log(s) for {', '.join(ids)} -> "
                  f"{plan.destination}: {len(plan.fields)} fields (tcp-flags, pkt-* ...), "
                  f"60 s aggregation, traffic {plan.traffic}")
        if done.dropped_fields:
            err.print(f"[yellow]note[/]: this region does not offer "
                      f"{', '.join(done.dropped_fields)}: created without it")
        for resource, why in done.failed:
            err.print(f"[yellow]not created[/] for {resource}: {why}")
        lo, hi = done.first_records
        err.print(f"expires {times.iso(plan.expires)} ({_ago(plan.expires, now)}); expiry is "
                  f"in its tags: `flowscope aws flowlogs cleanup --all-expired{again}` removes "
                  f"it from anywhere (cron: */10 * * * *)")
        err.print(f"first records expected between {lo:%H:%M} and {hi:%H:%M} UTC (AWS delivers "
                  f"5-10 min after the traffic)")
        source = done.flow_log_ids[0] if len(done.flow_log_ids) == 1 else str(plan.destination)
        window = times.duration(for_)
        since = f"{int(window.total_seconds() // 60) + 15}m"
        err.print("then:")
        err.print(f"  flowscope aws flowlogs fetch {source} --since {since} -o flows/{again}")
        err.print("  flowscope flowlogs analyze flows/ --problems")

    _run(work)


@flowlogs_app.command("list")
def list_(format: Annotated[ListFormat, typer.Option("--format", "-f")] = ListFormat.table,
          profile: Profile = None, region: Region = None, endpoint_url: Endpoint = None) -> None:
    """Flow logs of the account and region: flowscope's own with their expiry, others marked."""
    from flowscope.aws import listing, times

    def work() -> None:
        now = times.now()
        logs = listing.describe(_aws(profile, region, endpoint_url))
        if format is ListFormat.jsonl:
            for fl in logs:
                print(json.dumps({
                    "id": fl.id, "resource": fl.resource_id, "destination": fl.destination,
                    "traffic": fl.traffic, "owner": fl.owner, "flowscope": fl.owned,
                    "expires": times.iso(fl.expires) if fl.expires else None,
                    "expired": fl.expired(now), "interval": fl.interval,
                    "fields": list(fl.fields), "delivery": fl.delivery}))
            return
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for name in ("flow log", "resource", "destination", "traffic", "created by",
                     "expires", "delivery"):
            table.add_column(name)
        for fl in logs:
            table.add_row(fl.id, fl.resource_id, fl.destination, fl.traffic,
                          "flowscope" if fl.owned else "other (not touched by cleanup)",
                          (f"{times.iso(fl.expires)} ({_ago(fl.expires, now)})"
                           if fl.expires else "-"), fl.delivery or "-")
        Console(width=None if sys.stdout.isatty() else 200, highlight=False).print(table)
        if not logs:
            err.print("no flow logs in this account and region")

    _run(work)


@flowlogs_app.command("cleanup")
def cleanup(ids: Annotated[list[str] | None, typer.Argument(help="flow-log ids")] = None,
            all_expired: Annotated[bool, typer.Option(
                "--all-expired", help="flowscope's flow logs past their expiry")] = False,
            force: Annotated[bool, typer.Option(
                "--force", help="also delete named flow logs flowscope did not create")] = False,
            dry_run: Annotated[bool, typer.Option("--dry-run", help="say, do not delete")
                               ] = False,
            profile: Profile = None, region: Region = None, endpoint_url: Endpoint = None
            ) -> None:
    """Delete expired (or named) flow logs: idempotent and safe to run from cron."""
    from flowscope.aws import cleanup as cl
    from flowscope.aws import times

    def work() -> None:
        now = times.now()
        done = cl.cleanup(_aws(profile, region, endpoint_url), list(ids or []), all_expired,
                          force, now, dry_run)
        for fid in done.deleted:
            print(fid)
        verb = "would delete" if dry_run else "deleted"
        err.print(f"{verb} {len(done.deleted)} flow log(s)"
                  + (f"; {len(done.gone)} already gone ({', '.join(done.gone)})"
                     if done.gone else "")
                  + (f"; {len(done.kept)} of flowscope's not expired yet" if done.kept else ""))
        for fid in done.refused:
            err.print(f"[yellow]kept[/] {fid}: flowscope did not create it; add --force to "
                      f"delete it anyway")
        if done.refused:
            raise typer.Exit(1)

    _run(work)


@flowlogs_app.command("fetch")
def fetch(source: Annotated[str, typer.Argument(
              help="a flow-log id (fl-...), s3://bucket/prefix or cloudwatch:LOG-GROUP")],
          output: Annotated[Path, typer.Option("--output", "-o", help="folder to write")],
          since: Annotated[str, typer.Option(
              "--since", help="start: 30m (ago), ISO-8601 or epoch seconds")] = "30m",
          until: Annotated[str | None, typer.Option("--until", help="end [default: now]")
                           ] = None,
          page_size: Annotated[int | None, typer.Option(
              "--page-size", min=1, max=10000, hidden=True,
              help="CloudWatch events per FilterLogEvents page")] = None,
          profile: Profile = None, region: Region = None, endpoint_url: Endpoint = None) -> None:
    """Download the window's records (S3 objects or CloudWatch events), resumably, so that
    `flowscope flowlogs analyze DIR` works offline."""
    from flowscope.aws import fetch as fe
    from flowscope.aws import times

    def work() -> None:
        now = times.now()
        lo = times.moment(since, now)
        hi = times.moment(until, now) if until else now
        if hi <= lo:
            raise FlowscopeError(f"--until ({times.iso(hi)}) is not after --since "
                                 f"({times.iso(lo)})")
        progress = None
        if err.is_terminal:
            from flowscope.aws.progress import RichProgress

            progress = RichProgress(err)
        try:
            done = fe.fetch(_aws(profile, region, endpoint_url), source, lo, hi, output,
                            progress, page_size)
        finally:
            if progress:
                progress.stop()
        for note in done.notes:
            err.print(f"[yellow]note[/]: {note}")
        if done.source.kind == "s3":
            err.print(f"{done.files} objects for {times.iso(lo)} .. {times.iso(hi)} in "
                      f"{output}: {done.downloaded} downloaded ({done.bytes:,} bytes), "
                      f"{done.skipped} already there")
        else:
            err.print(f"{done.streams} streams for {times.iso(lo)} .. {times.iso(hi)} in "
                      f"{output}: {done.events:,} new records, {done.skipped} streams already "
                      f"complete")
        err.print(f"next: flowscope flowlogs analyze {shlex.quote(str(output))} --problems")

    _run(work)


@flowlogs_app.command("cost")
def cost(eni: Annotated[list[str] | None, typer.Option(
             "--eni", help="estimate from the ENI's observed records or packet metrics")] = None,
         from_bytes: Annotated[int | None, typer.Option(
             "--from-bytes", min=0, help="the window's log volume in bytes")] = None,
         to: Annotated[CostDestination | None, typer.Option(
             "--to", help="one destination [default: both]")] = None,
         for_: Annotated[str, typer.Option("--for", help="the capture window")] = "30m",
         parquet: Annotated[bool, typer.Option("--parquet", help="S3 in Parquet (conversion "
                                                                 "is priced extra)")] = False,
         prices: Annotated[Path | None, typer.Option(
             "--prices", help="a price table (JSON, the layout of flowscope/aws/prices.json)")
                           ] = None,
         profile: Profile = None, region: Region = None, endpoint_url: Endpoint = None) -> None:
    """Estimate the vended-log cost of a window, per destination (S3 ~ half of CloudWatch)."""
    from flowscope.aws import cost as co
    from flowscope.aws import times

    def work() -> None:
        if (eni is None) == (from_bytes is None):
            raise FlowscopeError("give --eni ENI... or --from-bytes N")
        table = co.Prices.load(prices)
        window = times.duration(for_)
        if from_bytes is not None:
            volume = co.Volume(from_bytes, "--from-bytes")
            where = region or "us-east-1"
        else:
            aws = _aws(profile, region, endpoint_url)
            where = aws.region_name
            now = times.now()
            parts = [co.observed_volume(aws, e, window, now) for e in dict.fromkeys(eni or [])]
            volume = co.Volume(sum(p.bytes for p in parts), "; ".join(
                f"{e}: {p.method}" for e, p in zip(dict.fromkeys(eni or []), parts,
                                                   strict=True)),
                any(p.upper_bound for p in parts))
        dests = [to.value] if to else ["s3", "cloudwatch"]
        est = co.estimate(volume, where, table, dests, parquet)
        currency = table.table.get("currency", "USD")
        bound = "at most " if volume.upper_bound else ""
        err.print(f"volume: {bound}{volume.bytes:,} bytes for {for_} ({volume.method})")
        for row in est.rows:
            money = f"{row['cost']:.4f}" if row["cost"] >= 1e-4 or not row["cost"] \
                else f"{row['cost']:.2e}"
            print(f"{row['destination']:<11} {row['gb']:.6f} GB x {row['per_gb']:.3f} "
                  f"{currency}/GB = {bound}{money} {currency}")
        for note in est.notes:
            err.print(f"note: {note}")

    _run(work)


@aws_app.command("policy")
def policy(bucket: Annotated[str | None, typer.Option("--bucket", help="scope S3 reads to it")
                             ] = None,
           log_group: Annotated[str | None, typer.Option(
               "--log-group", help="scope CloudWatch Logs reads to it")] = None,
           role_arn: Annotated[str | None, typer.Option(
               "--role-arn", help="the delivery role flowscope may pass")] = None,
           delivery_role: Annotated[bool, typer.Option(
               "--delivery-role", help="print the CloudWatch delivery role's trust and "
                                       "permissions policies instead")] = False,
           bucket_policy: Annotated[bool, typer.Option(
               "--bucket-policy", help="print the bucket policy S3 delivery needs instead "
                                       "(with --bucket)")] = False,
           account: Annotated[str, typer.Option("--account", help="for --bucket-policy")
                              ] = "ACCOUNT-ID") -> None:
    """Print the minimal IAM policy (JSON) for the calls the `aws` commands make."""
    from flowscope.aws import policy as po

    def work() -> None:
        if delivery_role:
            doc: dict[str, Any] = {"TrustPolicy": po.delivery_role_trust(),
                                   "PermissionsPolicy": po.delivery_role_permissions(log_group)}
        elif bucket_policy:
            if not bucket:
                raise FlowscopeError("--bucket-policy needs --bucket NAME")
            doc = po.bucket(bucket, account)
        else:
            doc = po.caller(bucket, log_group, role_arn)
        print(json.dumps(doc, indent=2))

    _run(work)
