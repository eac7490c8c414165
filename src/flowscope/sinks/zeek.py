"""Zeek conn.log (TSV with ``#fields``/``#types`` headers), readable by Zeek's own tools
(zeek-cut), ``zat`` and other Zeek log readers.

Format: Zeek's ASCII writer (``src/logging/writers/ascii/Ascii.cc``): ``#separator \\x09``,
``#set_separator ,``, ``#empty_field (empty)``, ``#unset_field -``; times and intervals with
6 decimals; fields and types of ``Conn::Info`` (``scripts/base/protocols/conn/main.zeek``).
RoCE sessions are written as the UDP connections Zeek would see.
"""

from __future__ import annotations

import time
from typing import TextIO

import pyarrow as pa

FIELDS = (
    ("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"),
    ("id.resp_h", "addr"), ("id.resp_p", "port"), ("proto", "enum"), ("service", "string"),
    ("duration", "interval"), ("orig_bytes", "count"), ("resp_bytes", "count"),
    ("conn_state", "string"), ("local_orig", "bool"), ("local_resp", "bool"),
    ("missed_bytes", "count"), ("history", "string"), ("orig_pkts", "count"),
    ("orig_ip_bytes", "count"), ("resp_pkts", "count"), ("resp_ip_bytes", "count"),
    ("tunnel_parents", "set[string]"),
)
UNSET = "-"
EMPTY = "(empty)"


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(t))


def _escape(v: str) -> str:
    """Ascii.cc escapes the separator and non-printables as \\xNN."""
    out = []
    for ch in v:
        if ch == "\t" or ch == "\\" or not ch.isprintable():
            out.append("".join(f"\\x{b:02x}" for b in ch.encode()))
        else:
            out.append(ch)
    return "".join(out)


def write_conn_log(table: pa.Table, out: TextIO) -> None:
    now = time.time()
    rows = table.sort_by("ts").to_pylist()
    out.write("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
              "#path\tconn\n")
    out.write(f"#open\t{_stamp(now)}\n")
    out.write("#fields\t" + "\t".join(name for name, _ in FIELDS) + "\n")
    out.write("#types\t" + "\t".join(typ for _, typ in FIELDS) + "\n")
    lines = []
    for r in rows:
        proto = "udp" if r["proto"] == "roce" else r["proto"]
        if proto not in ("tcp", "udp", "icmp"):
            proto = "unknown_transport"
        instant = r["duration"] == 0  # Zeek leaves these unset for a zero-length connection
        values = {
            "ts": f"{r['ts']:.6f}", "uid": r["uid"],
            "id.orig_h": r["orig_h"], "id.orig_p": r["orig_p"] if r["orig_p"] is not None else 0,
            "id.resp_h": r["resp_h"], "id.resp_p": r["resp_p"] if r["resp_p"] is not None else 0,
            "proto": proto, "service": None,
            "duration": None if instant else f"{r['duration']:.6f}",
            "orig_bytes": None if instant else r["orig_bytes"],
            "resp_bytes": None if instant else r["resp_bytes"],
            "conn_state": r["conn_state"] or "OTH", "local_orig": None, "local_resp": None,
            "missed_bytes": r["missed_bytes"] or 0, "history": r["history"] or None,
            "orig_pkts": r["orig_pkts"], "orig_ip_bytes": r["orig_ip_bytes"],
            "resp_pkts": r["resp_pkts"], "resp_ip_bytes": r["resp_ip_bytes"],
            "tunnel_parents": None,
        }
        cells = []
        for name, _ in FIELDS:
            v = values[name]
            cells.append(UNSET if v is None else _escape(str(v)) if str(v) else EMPTY)
        lines.append("\t".join(cells))
    if lines:
        out.write("\n".join(lines) + "\n")
    out.write(f"#close\t{_stamp(time.time())}\n")
