"""GCP VPC Flow Logs and Azure VNet / NSG flow logs (JSON) -> normalised flow-log records.

Output columns are those of :func:`flowscope.flowlogs.connections.records` (``status``,
``src``, ``dst``, ``sport``, ``dport``, ``proto``, ``packets``, ``bytes``, ``start``, ``end``,
``action``, ``flags``, ``interface_id``, ``reject_reason``), so one analysis serves all clouds.

- GCP (cloud.google.com/vpc/docs/flow-logs, "Record format"): Cloud Logging ``LogEntry`` lines
  with ``jsonPayload``, or bare payloads: ``connection`` {src_ip, src_port, dest_ip, dest_port,
  protocol}, ``bytes_sent``, ``packets_sent``, ``start_time``/``end_time`` (RFC 3339),
  ``reporter`` (SRC/DEST: both ends may report the same direction, merged like two ENIs).
  GCP logs no denials and no TCP flags.
- CloudWatch Logs exports (JSON lines with ``message``, ``aws logs filter-log-events``
  output): the messages are AWS text records, read by :mod:`flowscope.flowlogs.aws_text`.
- Azure (learn.microsoft.com, "VNet flow logs" v4 / "NSG flow logs" v2): ``records`` (or one
  record per line) holding flow tuples ``"ts,src,dst,sport,dport,proto,dir,..."``; each tuple
  carries both directions' packets and bytes, so it becomes two records.  v4: ts in ms, proto
  6/17, ``state`` B/C/E/D (D = denied); NSG v2: ts in s, proto T/U, ``decision`` A/D.  Azure
  logs no TCP flags.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pyarrow as pa

PROTOCOLS = {"T": 6, "U": 17, "6": 6, "17": 17, "1": 1}
COLUMNS = {"status": pa.string(), "src": pa.string(), "dst": pa.string(), "sport": pa.int32(),
           "dport": pa.int32(), "proto": pa.int16(), "packets": pa.int64(), "bytes": pa.int64(),
           "start": pa.int64(), "end": pa.int64(), "action": pa.string(), "flags": pa.int32(),
           "interface_id": pa.string(), "reject_reason": pa.string()}


def sniff(head: bytes) -> str | None:
    """'gcp', 'azure' or None (not a JSON flow log) from the first bytes of a file."""
    text = head.lstrip()
    if not text.startswith((b"{", b"[")):
        return None
    if b"flowTuples" in head or b"flowRecords" in head or b'"records"' in head:
        return "azure"
    if b'"message"' in head:
        return "cloudwatch"
    if b"jsonPayload" in head or b'"connection"' in head:
        return "gcp"
    return None


def _epoch(text: str | None) -> int | None:
    if not text:
        return None
    # RFC 3339 with up to nanoseconds: keep the seconds
    return int(datetime.fromisoformat(text[:19] + "+00:00").timestamp())


def _documents(data: bytes) -> list[Any]:
    text = data.strip()
    try:
        doc = json.loads(text)
        return doc if isinstance(doc, list) else [doc]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def gcp_records(data: bytes, name: str, problems: list[str]) -> pa.Table:
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            p = doc.get("jsonPayload", doc)
            c = p["connection"]
            rows.append({
                "status": "OK", "src": c["src_ip"], "dst": c["dest_ip"],
                "sport": int(c.get("src_port", 0)), "dport": int(c.get("dest_port", 0)),
                "proto": int(c.get("protocol", 0)), "packets": int(p.get("packets_sent", 0)),
                "bytes": int(p.get("bytes_sent", 0)), "start": _epoch(p.get("start_time")),
                "end": _epoch(p.get("end_time")), "action": "ACCEPT", "flags": None,
                "interface_id": p.get("reporter"), "reject_reason": None})
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            problems.append(f"{name}:{n}: not a GCP flow-log entry ({type(e).__name__}: {e})")
    return pa.Table.from_pylist(rows, schema=pa.schema(COLUMNS))


def _azure_tuples(doc: Any) -> list[tuple[str, str]]:
    """(tuple, mac) for every flow tuple of a v4 or NSG v2 record."""
    out = []
    for rec in doc.get("records", [doc]):
        mac = rec.get("macAddress") or rec.get("properties", {}).get("macAddress")
        if "flowRecords" in rec:  # VNet v4
            for flow in rec["flowRecords"].get("flows", []):
                for group in flow.get("flowGroups", []):
                    out += [(t, mac) for t in group.get("flowTuples", [])]
        for flow in rec.get("properties", {}).get("flows", []):  # NSG v2
            for group in flow.get("flows", []):
                mac = group.get("mac", mac)
                out += [(t, mac) for t in group.get("flowTuples", [])]
    return out


def azure_records(data: bytes, name: str, problems: list[str]) -> pa.Table:
    rows: list[dict[str, Any]] = []
    try:
        docs = _documents(data)
    except json.JSONDecodeError as e:
        problems.append(f"{name}:{e.lineno}: not JSON ({e.msg})")
        return pa.Table.from_pylist([], schema=pa.schema(COLUMNS))
    for doc in docs:
        for k, (text, mac) in enumerate(_azure_tuples(doc), 1):
            f = text.split(",")
            try:
                ts = int(f[0])
                v4 = f[5] in ("6", "17", "1") or ts > 100_000_000_000
                ts = ts // 1000 if ts > 100_000_000_000 else ts
                if v4:
                    state, denied = f[7], f[7] == "D"
                else:
                    state, denied = f[8] if len(f) > 8 else "", f[7] == "D"
                del state
                counts = [int(x) if x else 0 for x in (f[-4:] if len(f) >= 12 else [0] * 4)]
                base = {"status": "OK", "proto": PROTOCOLS.get(f[5], 0), "start": ts, "end": ts,
                        "action": "REJECT" if denied else "ACCEPT", "flags": None,
                        "interface_id": mac, "reject_reason": None}
                rows.append(base | {"src": f[1], "dst": f[2], "sport": int(f[3]),
                                    "dport": int(f[4]), "packets": counts[0],
                                    "bytes": counts[1]})
                if counts[2] or counts[3]:
                    rows.append(base | {"src": f[2], "dst": f[1], "sport": int(f[4]),
                                        "dport": int(f[3]), "packets": counts[2],
                                        "bytes": counts[3]})
            except (ValueError, IndexError) as e:
                problems.append(f"{name}: flow tuple {k} {text!r}: {e}")
    return pa.Table.from_pylist(rows, schema=pa.schema(COLUMNS))


def cloudwatch_messages(data: bytes) -> bytes:
    """CloudWatch Logs exports: JSON lines with ``message`` (subscription/export), or the
    output of ``aws logs filter-log-events`` (``{"events": [{"message": ...}, ...]}``): the
    flow-log text lines, without header (the format comes from --log-format)."""
    lines: list[str] = []
    for doc in _documents(data):
        events = (doc.get("events", doc.get("logEvents", [doc])) or []) \
            if isinstance(doc, dict) else []
        lines += [e["message"].strip() for e in events
                  if isinstance(e, dict) and isinstance(e.get("message"), str)]
    return ("\n".join(lines) + "\n").encode()
