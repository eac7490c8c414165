"""Download a window of flow-log records so ``flowscope flowlogs analyze DIR`` works offline.

Sources:

- **S3** (``s3://bucket/prefix`` or a flow log delivering there).  AWS writes
  ``prefix/AWSLogs/<account>/vpcflowlogs/<region>/yyyy/mm/dd/[HH/]`` or, Hive-compatible,
  ``prefix/AWSLogs/aws-account-id=<account>/aws-service=vpcflowlogs/aws-region=<region>/
  year=yyyy/month=mm/day=dd/[hour=HH/]``, files named
  ``<account>_vpcflowlogs_<region>_<flow-log-id>_<yyyymmddTHHmmZ>_<hash>.log.gz`` (or
  ``.log.parquet``) (AWS VPC user guide, "Flow log files" for S3).  Only the day partitions
  of the window are listed, and only objects whose name time falls in the window (plus the
  delivery lag) are kept; with a flow-log id, only that flow log's objects.  Keys are kept as
  local paths, so the layout is the same offline.
- **CloudWatch Logs** (``cloudwatch:GROUP`` or a flow log delivering there): one stream per
  network interface (``eni-...-all``); ``FilterLogEvents`` per stream over the window, page
  by page (``nextToken``).  Events are the records without a header; they are written as
  ``cloudwatch/<group>/<stream>.log`` with the flow log's format as header line, which
  ``analyze`` reads like an S3 text file.

Resumable: a small manifest (``.flowscope-fetch.manifest``, JSON) records finished objects
(ETag, size) and, per stream, the window fetched, the last event saved and the file's size
then (a page written but not recorded is cut off again); an object interrupted midway
continues with a ranged GET (If-Match its ETag).  Running the same command again fetches only
what is missing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from flowscope.aws import listing
from flowscope.aws.errors import AwsError, calling
from flowscope.aws.session import Aws
from flowscope.errors import FlowscopeError

MANIFEST = ".flowscope-fetch.manifest"  # JSON; a suffix analyze does not read
OBJECT_NAME = re.compile(r"_vpcflowlogs_(?P<region>[a-z0-9-]+)_(?P<id>fl-[0-9a-f]+)_"
                         r"(?P<time>\d{8}T\d{4}Z)_")
# A file is delivered up to ~10 min after its records' window and named by a 5-minute slot:
# objects named up to LAG after --until may hold the window's last records.
LAG = timedelta(minutes=20)
SLOT = timedelta(minutes=5)
SUFFIXES = (".log", ".log.gz", ".gz", ".parquet", ".txt", ".json", ".jsonl")
CHUNK = 1 << 20
FLOW_LOG_ID = re.compile(r"^fl-[0-9a-f]{8,17}$")


class Progress(Protocol):
    def start(self, description: str, total: int | None, unit: str) -> None: ...
    def advance(self, n: int) -> None: ...


class _Silent:
    def start(self, description: str, total: int | None, unit: str) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


@dataclass
class Source:
    kind: str  # "s3" | "cloudwatch"
    bucket: str = ""
    prefix: str = ""
    group: str = ""
    flow_log: listing.FlowLog | None = None
    fields: tuple[str, ...] | None = None  # CloudWatch: the records' format
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"s3://{self.bucket}/{self.prefix}".rstrip("/") if self.kind == "s3"
                else f"cloudwatch:{self.group}")


@dataclass
class Fetched:
    out: Path
    source: Source
    files: int = 0  # objects or streams now complete in OUT
    downloaded: int = 0  # objects fetched (or resumed) by this run
    skipped: int = 0  # already complete from an earlier run
    bytes: int = 0
    events: int = 0
    streams: int = 0
    notes: list[str] = field(default_factory=list)


def resolve(aws: Aws, text: str) -> Source:
    """FLOWLOG_ID | s3://bucket/prefix | cloudwatch:GROUP -> where the records are."""
    if FLOW_LOG_ID.match(text):
        found = listing.describe(aws, [text])
        if not found:
            raise AwsError(f"flow log {text} not found in this account and region: check the "
                           f"id and --region (`flowscope aws flowlogs list` shows them)",
                           "InvalidFlowLogId.NotFound")
        fl = found[0]
        source = _destination(aws, fl.destination)
        source.flow_log, source.fields = fl, fl.fields
        return source
    if text.startswith("s3://") or text.startswith(("cloudwatch:", "logs:")):
        return _destination(aws, text)
    raise FlowscopeError(f"{text!r}: give a flow-log id (fl-...), s3://bucket/prefix or "
                         f"cloudwatch:LOG-GROUP")


def _destination(aws: Aws, text: str) -> Source:
    if text.startswith("s3://"):
        bucket, _, prefix = text[5:].partition("/")
        if not bucket:
            raise FlowscopeError(f"{text!r}: no bucket; write s3://bucket/prefix")
        return Source("s3", bucket=bucket, prefix=prefix.strip("/"))
    group = text.split(":", 1)[1]
    source = Source("cloudwatch", group=group)
    # the records' format: from the flow logs that deliver to this group
    formats = {fl.fields for fl in listing.describe(aws)
               if fl.destination == f"cloudwatch:{group}"}
    if len(formats) == 1:
        source.fields = formats.pop()
    else:
        from flowscope.flowlogs.fields import DEFAULT_FORMAT

        source.fields = DEFAULT_FORMAT
        source.notes.append(
            f"no single flow log delivers to {group} now ({len(formats)} formats found): the "
            f"records are taken as the default (version 2) format; if they are not, analyze "
            f"with --log-format")
    return source


def fetch(aws: Aws, text: str, since: datetime | None, until: datetime | None, out: Path,
          progress: Progress | None = None, page_size: int | None = None) -> Fetched:
    """The records of ``text`` between ``since`` and ``until`` (None: unbounded) into ``out``."""
    source = resolve(aws, text)
    out.mkdir(parents=True, exist_ok=True)
    result = Fetched(out, source, notes=list(source.notes))
    manifest = Manifest(out / MANIFEST)
    progress = progress or _Silent()
    if source.kind == "s3":
        _fetch_s3(aws, source, since, until, result, manifest, progress)
    else:
        _fetch_cloudwatch(aws, source, since, until, result, manifest, progress, page_size)
    return result


# -- manifest ---------------------------------------------------------------------------------

class Manifest:
    """What earlier runs finished; rewritten atomically after every object or page."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, dict[str, Any]] = {"s3": {}, "cloudwatch": {}, "partial": {}}
        if path.exists():
            try:
                loaded = json.loads(path.read_text())
                for k in self.data:
                    self.data[k] = dict(loaded.get(k, {}))
            except (ValueError, AttributeError):
                pass  # a damaged manifest: fetch everything again

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


# -- S3 ---------------------------------------------------------------------------------------

def _list(s3: Any, bucket: str, prefix: str, delimiter: bool = False) -> Iterator[dict]:
    kwargs = {"Bucket": bucket, "Prefix": prefix} | ({"Delimiter": "/"} if delimiter else {})
    for page in s3.get_paginator("list_objects_v2").paginate(**kwargs):
        if delimiter:
            yield from page.get("CommonPrefixes", [])
        else:
            yield from page.get("Contents", [])


def _roots(s3: Any, bucket: str, base: str) -> list[tuple[str, bool]]:
    """The region folders under base/AWSLogs/: (prefix, hive-compatible)."""
    roots = []
    for account in _list(s3, bucket, f"{base}AWSLogs/", delimiter=True):
        for service in _list(s3, bucket, account["Prefix"], delimiter=True):
            name = service["Prefix"].rstrip("/").rsplit("/", 1)[-1]
            if name in ("vpcflowlogs", "aws-service=vpcflowlogs"):
                for region in _list(s3, bucket, service["Prefix"], delimiter=True):
                    roots.append((region["Prefix"], name.startswith("aws-service=")))
    return roots


def _day(day: datetime, hive: bool) -> str:
    if hive:
        return f"year={day:%Y}/month={day:%m}/day={day:%d}/"
    return f"{day:%Y/%m/%d}/"


def _object_time(obj: dict) -> datetime:
    m = OBJECT_NAME.search(obj["Key"].rsplit("/", 1)[-1])
    if m:
        return datetime.strptime(m.group("time"), "%Y%m%dT%H%MZ").replace(tzinfo=UTC)
    modified: datetime = obj["LastModified"]
    return modified if modified.tzinfo else modified.replace(tzinfo=UTC)


def s3_objects(s3: Any, bucket: str, prefix: str, since: datetime | None,
               until: datetime | None, flow_log_id: str | None = None) -> list[dict]:
    """The flow-log objects of the window: listed by day partition in AWS's layouts, else
    everything under the prefix; kept by the time in their name and the flow-log id."""
    base = f"{prefix}/" if prefix else ""
    roots = _roots(s3, bucket, base)
    candidates: list[dict] = []
    if roots and since is not None:
        last = (until or datetime.now(UTC)) + LAG
        for root, hive in roots:
            day = datetime(since.year, since.month, since.day, tzinfo=UTC)
            while day <= last:
                candidates += _list(s3, bucket, root + _day(day, hive))
                day += timedelta(days=1)
    else:
        candidates = list(_list(s3, bucket, base))
    keep = []
    for obj in candidates:
        name = obj["Key"].rsplit("/", 1)[-1]
        if not name.endswith(SUFFIXES) or obj["Key"].endswith("/"):
            continue
        if flow_log_id:
            m = OBJECT_NAME.search(name)
            if not m or m.group("id") != flow_log_id:
                continue
        t = _object_time(obj)
        if since is not None and t < since - SLOT:
            continue
        if until is not None and t > until + LAG:
            continue
        keep.append(obj)
    return sorted(keep, key=lambda o: o["Key"])


def _fetch_s3(aws: Aws, source: Source, since: datetime | None, until: datetime | None,
              result: Fetched, manifest: Manifest, progress: Progress) -> None:
    s3 = aws.client("s3")
    fid = source.flow_log.id if source.flow_log else None
    with calling(f"listing s3://{source.bucket}/{source.prefix}", "s3"):
        objects = s3_objects(s3, source.bucket, source.prefix, since, until, fid)
    if not objects:
        result.notes.append(f"no flow-log objects in {source} for this window"
                            + (f" from {fid}" if fid else "")
                            + ": AWS delivers the first files 5-10 minutes after enabling")
    done = manifest.data["s3"]
    todo = []
    for obj in objects:
        key = f"{source.bucket}/{obj['Key']}"
        path = result.out / obj["Key"]
        entry = done.get(key)
        if entry and entry.get("etag") == obj["ETag"] and path.exists() and \
                path.stat().st_size == obj["Size"]:
            result.skipped += 1
        else:
            todo.append(obj)
    progress.start(f"s3://{source.bucket}", sum(o["Size"] for o in todo), "bytes")
    for obj in todo:
        with calling(f"downloading s3://{source.bucket}/{obj['Key']}", "s3"):
            result.bytes += _download(s3, source.bucket, obj, result.out, manifest, progress)
        result.downloaded += 1
    result.files = len(objects)


def _download(s3: Any, bucket: str, obj: dict, out: Path, manifest: Manifest,
              progress: Progress) -> int:
    """One object to out/<key>, through <key>.part; a .part of the same ETag continues."""
    key, etag = obj["Key"], obj["ETag"]
    path = out / key
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    name = f"{bucket}/{key}"
    have = part.stat().st_size if part.exists() else 0
    if manifest.data["partial"].get(name) != etag or have > obj["Size"]:
        have = 0
    manifest.data["partial"][name] = etag
    manifest.save()
    got = 0
    if have < obj["Size"] or obj["Size"] == 0:
        extra = {"Range": f"bytes={have}-", "IfMatch": etag} if have else {}
        body = s3.get_object(Bucket=bucket, Key=key, **extra)["Body"]
        progress.advance(have)
        with open(part, "ab" if have else "wb") as fh:
            for chunk in iter(lambda: body.read(CHUNK), b""):
                fh.write(chunk)
                got += len(chunk)
                progress.advance(len(chunk))
    os.replace(part, path)
    manifest.data["partial"].pop(name, None)
    manifest.data["s3"][name] = {"etag": etag, "size": obj["Size"]}
    manifest.save()
    return got


# -- CloudWatch Logs --------------------------------------------------------------------------

def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name).strip("_") or "_"


def _fetch_cloudwatch(aws: Aws, source: Source, since: datetime | None,
                      until: datetime | None, result: Fetched, manifest: Manifest,
                      progress: Progress, page_size: int | None) -> None:
    logs = aws.client("logs")
    group = source.group
    fl = source.flow_log
    # streams are named after the network interface: only the ENI's for an ENI flow log
    prefix = fl.resource_id if fl and fl.resource_id.startswith("eni-") else None
    with calling(f"listing the streams of log group {group}", "logs"):
        kwargs = {"logGroupName": group} | ({"logStreamNamePrefix": prefix} if prefix else {})
        streams = [s["logStreamName"] for page in
                   logs.get_paginator("describe_log_streams").paginate(**kwargs)
                   for s in page.get("logStreams", [])]
    if not streams:
        result.notes.append(f"log group {group} has no streams yet: AWS delivers the first "
                            f"records 5-10 minutes after enabling")
    lo = _ms(since) if since else 0
    hi = _ms(until or datetime.now(UTC))
    fields = source.fields or ()
    folder = result.out / "cloudwatch" / _safe(group)
    folder.mkdir(parents=True, exist_ok=True)
    progress.start(f"cloudwatch:{group}", None, "events")
    for stream in streams:
        key = f"{group}/{stream}"
        path = folder / f"{_safe(stream)}.log"
        state = manifest.data["cloudwatch"].get(key)
        fresh = not (state and path.exists() and state.get("since", 0) <= lo
                     and tuple(state.get("fields", ())) == fields)
        if fresh:
            header = (" ".join(fields) + "\n").encode()
            state = {"since": lo, "until": lo - 1, "last_ts": None, "last_ids": [],
                     "complete": False, "fields": list(fields), "size": len(header)}
            path.write_bytes(header)
        assert state is not None
        with open(path, "r+b") as fh:  # what a page written but not recorded added: undone
            fh.truncate(state["size"])
        if state["complete"] and state["until"] >= hi:
            result.skipped += 1
            result.streams += 1
            continue
        if state["complete"]:
            start, skip_ts, skip_ids = state["until"] + 1, None, set()
        elif state["last_ts"] is not None:  # interrupted: from the last event saved
            start, skip_ts, skip_ids = state["last_ts"], state["last_ts"], set(state["last_ids"])
        else:
            start, skip_ts, skip_ids = max(lo, state["since"]), None, set()
        state["complete"] = False
        manifest.data["cloudwatch"][key] = state
        token = None
        with calling(f"reading stream {stream} of {group}", "logs"), open(path, "ab") as fh:
            while True:
                ask = {"logGroupName": group, "logStreamNames": [stream], "startTime": start,
                       "endTime": hi} | ({"limit": page_size} if page_size else {}) \
                    | ({"nextToken": token} if token else {})
                page = logs.filter_log_events(**ask)
                events = [e for e in page.get("events", [])
                          if not (e["timestamp"] == skip_ts and e["eventId"] in skip_ids)]
                fh.write("".join(e["message"].rstrip("\n") + "\n" for e in events).encode())
                fh.flush()
                if events:
                    last = max(e["timestamp"] for e in events)
                    ids = [e["eventId"] for e in events if e["timestamp"] == last]
                    if last == state["last_ts"]:
                        ids += state["last_ids"]
                    state["last_ts"], state["last_ids"] = last, ids
                    skip_ts, skip_ids = last, set(ids)
                    result.events += len(events)
                state["size"] = fh.tell()
                manifest.save()
                progress.advance(len(events))
                token = page.get("nextToken")
                if not token:
                    break
        state["complete"], state["until"] = True, hi
        manifest.save()
        result.streams += 1
        result.downloaded += 1
    result.files = result.streams
