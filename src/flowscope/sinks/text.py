"""Human output: aligned text tables (like tcpdump -r) and JSON lines, from Arrow tables."""

from __future__ import annotations

import json
import math
from typing import TextIO

import pyarrow as pa
from rich.console import Console
from rich.table import Table


def _json_value(v: object) -> object:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_jsonl(table: pa.Table, out: TextIO) -> None:
    maps = {f.name for f in table.schema if pa.types.is_map(f.type)}  # JSON objects
    lines = []
    for row in table.to_pylist():
        for name in maps:
            if row[name] is not None:
                row[name] = dict(row[name])
        lines.append(json.dumps({k: _json_value(v) for k, v in row.items()},
                                separators=(",", ":")))
    if lines:
        out.write("\n".join(lines) + "\n")


def _cell(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, list):
        return "/".join(str(x) for x in v) if v else "-"
    if isinstance(v, float):
        return f"{v:.6f}"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


PACKET_COLUMNS = ("frame", "ts", "encap", "erspan_session", "gre_seq", "vni", "direction",
                  "vlan", "src", "sport", "dst", "dport", "proto", "tcp_flags", "len", "error")


def write_packet_lines(table: pa.Table, out: TextIO, header: bool) -> None:
    """One line per frame, fixed columns, like tcpdump -r."""
    cols = {name: table.column(name).to_pylist() for name in PACKET_COLUMNS}
    lines = []
    if header:
        lines.append(f"{'frame':>7} {'time':>17} {'session/vni':>11} {'seq':>10} {'dir':>7} "
                     f"{'vlan':>4}  {'inner':<47} {'proto':>5} {'flags':>5} {'len':>5}  "
                     "encap / error")
    for i in range(table.num_rows):
        ident = cols["erspan_session"][i] if cols["erspan_session"][i] is not None else cols[
            "vni"][i]
        src, dst = cols["src"][i], cols["dst"][i]
        inner = "-"
        if src is not None:
            sp, dp = cols["sport"][i], cols["dport"][i]
            inner = f"{src}{'' if sp is None else ':' + str(sp)} > " \
                    f"{dst}{'' if dp is None else ':' + str(dp)}"
        tail = _cell(cols["encap"][i])
        if cols["error"][i]:
            tail += f"  ERROR {cols['error'][i]}"
        lines.append(
            f"{cols['frame'][i]:>7} {cols['ts'][i]:>17.6f} {_cell(ident):>11} "
            f"{_cell(cols['gre_seq'][i]):>10} {_cell(cols['direction'][i]):>7} "
            f"{_cell(cols['vlan'][i]):>4}  {inner:<47} {_cell(cols['proto'][i]):>5} "
            f"{_cell(cols['tcp_flags'][i]):>5} {cols['len'][i]:>5}  {tail}")
    if lines:
        out.write("\n".join(lines) + "\n")


def print_mirrors(table: pa.Table, console: Console) -> None:
    """The mirror streams, one line each, loss first-class."""
    t = Table(title=f"{table.num_rows} mirror streams", header_style="bold")
    for name, justify in (("mirror source > collector", "left"), ("encap", "left"),
                          ("session/vni", "right"), ("dir", "left"), ("packets", "right"),
                          ("bytes", "right"), ("seconds", "right"), ("lost", "right"),
                          ("dup", "right"), ("reord", "right"), ("resets", "right"),
                          ("quirks", "left")):
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in table.to_pylist():
        ident = r["session"] if r["session"] is not None else r["vni"]
        if r["loss_measurable"]:
            loss = [str(r[k]) for k in ("lost", "duplicates", "reordered", "seq_resets")]
            if r["lost"]:
                loss[0] = f"[bold red]{loss[0]}[/]"
        else:
            loss = ["n/a", "", "", ""]
        t.add_row(f"{r['outer_src']} > {r['outer_dst']}", r["encap"], _cell(ident),
                  _cell(r["direction"]), f"{r['packets']:,}", f"{r['bytes']:,}",
                  f"{r['last_ts'] - r['first_ts']:.3f}", *loss, _cell(r["quirks"]))
    console.print(t)
    console.print("lost/dup/reord/resets come from GRE sequence numbers; n/a = the stream has "
                  "none (ERSPAN I, VXLAN, Geneve) or they never advance")


VERDICT_STYLE = {"ok": "green", "open": "green", "midstream": "dim", "healthy": "green",
                 "unknown": "yellow", "lossy": "yellow", "congested": "yellow"}


def print_sessions(table: pa.Table, console: Console, limit: int | None = None) -> None:
    """Problems first, one line each with the verdict and its first piece of evidence."""
    t = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("verdict", "proto", "originator", "responder", "state", "history", "pkts",
                 "duration", "mirror", "evidence"):
        t.add_column(name, justify="right" if name in ("pkts", "duration", "mirror") else "left",
                     overflow="fold" if name == "evidence" else "ellipsis")
    rows = table.slice(0, limit).to_pylist() if limit is not None else table.to_pylist()
    for r in rows:
        style = VERDICT_STYLE.get(r["verdict"], "red")
        orig = r["orig_h"] + ("" if r["orig_p"] is None else f":{r['orig_p']}")
        resp = r["resp_h"] + ("" if r["resp_p"] is None else f":{r['resp_p']}")
        if r["proto"] == "roce" and r["dest_qp"] is not None:
            resp += f" qp 0x{r['dest_qp']:06x}"
        extra = ""
        if r["proto"] == "tcp" and r["retrans"]:
            extra = f"retrans {r['retrans']}"
        evidence = "; ".join(([extra] if extra and not r["evidence"] else []) + r["evidence"][:3])
        t.add_row(f"[{style}]{r['verdict']}[/]", r["proto"], orig, resp,
                  r["conn_state"] or "-", r["history"] or "-",
                  f"{r['orig_pkts']}/{r['resp_pkts']}", f"{r['duration']:.3f}",
                  _cell(r["mirror_session"]), evidence or "-")
    console.print(t)
    problems = sum(table.column("problem").to_pylist())
    shown = "" if limit is None or limit >= table.num_rows else f", first {limit} shown"
    console.print(f"{table.num_rows} sessions, {problems} with problems{shown}")


def print_flow_connections(table: pa.Table, console: Console, limit: int | None = None) -> None:
    """Flow-log connections, failures first, one line each."""
    t = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("verdict", "proto", "originator", "responder", "state", "flags o/r", "pkts",
                 "action", "evidence"):
        t.add_column(name, overflow="fold" if name == "evidence" else "ellipsis")
    rows = table.slice(0, limit).to_pylist() if limit is not None else table.to_pylist()
    for r in rows:
        style = VERDICT_STYLE.get(r["verdict"], "red")
        orig = r["orig_h"] + ("" if r["orig_p"] is None else f":{r['orig_p']}")
        resp = r["resp_h"] + ("" if r["resp_p"] is None else f":{r['resp_p']}")
        flags = f"{r['tcp_flags_orig'] or '-'}/{r['tcp_flags_resp'] or '-'}"
        t.add_row(f"[{style}]{r['verdict']}[/]", r["proto"], orig, resp, r["conn_state"] or "-",
                  flags, f"{r['orig_pkts']}/{r['resp_pkts']}", r["action"],
                  "; ".join(r["evidence"]) or "-")
    console.print(t)
    problems = sum(table.column("problem").to_pylist())
    console.print(f"{table.num_rows} connections, {problems} failing")
