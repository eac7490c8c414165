"""Finished sessions as Arrow tables (schema.SESSIONS) and the time series (schema.TIMELINE).

Connections are converted column by column; RoCE queue pairs (few rows) from the merged
rows of :mod:`flowscope.analyse.qp_rows`.  Rows come out problems first: failures and
degradations, then the rest, each group in time order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowscope import schema
from flowscope.analyse import conn as c
from flowscope.analyse import verdicts
from flowscope.sinks.arrow import from_numpy, ip_strings, names, strings

UID_ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                             np.uint8)
TCP_ONLY = ("rtt_ms", "ack_rtt_ms", "retrans", "out_of_order", "dup_acks", "zero_window",
            "reset_by", "missed_bytes")
ROCE_ONLY = ("dest_qp", "opcodes", "messages", "psn_gaps", "duplicates", "gbn_bursts", "cnp",
             "nak", "ce_marked", "ect_pkts")


def uids(first_ts: np.ndarray, salt: np.ndarray) -> pa.Array:
    """Zeek-style connection ids: 'C' and 17 base-62 digits from a hash of time and key."""
    h1 = first_ts.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ salt.astype(np.uint64)
    h2 = (h1 ^ (h1 >> np.uint64(31))) * np.uint64(0xBF58476D1CE4E5B9)
    digits = np.empty((h1.shape[0], 18), np.uint8)
    digits[:, 0] = ord("C")
    for k in range(1, 18):
        h = h1 if k <= 10 else h2
        digits[:, k] = UID_ALPHABET[(h % np.uint64(62)).astype(np.int64)]
        if k <= 10:
            h1 = h1 // np.uint64(62)
        else:
            h2 = h2 // np.uint64(62)
    n = digits.shape[0]
    offsets = np.arange(0, 18 * (n + 1), 18, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(digits.tobytes()))


def _ms(later: np.ndarray, earlier: np.ndarray) -> pa.Array:
    ok = (later >= 0) & (earlier >= 0)
    return from_numpy(np.where(ok, (later - earlier) / 1e6, 0.0), pa.float64(), ~ok)


# vocabularies of the dictionary-coded columns
_PROTO_NAMES = strings(["", "tcp", "udp", "icmp", "", ""] + [str(p) for p in range(256)])
_STATE_NAMES = strings(verdicts.STATES)
_VERDICT_NAMES = strings(verdicts.VERDICTS)
_RESET_BY = strings(("orig", "resp"))


# Connections are converted this many at a time: the temporaries of one slice (a few MB)
# are reused by the allocator, where a million connections at once fault in ~1 GB of fresh
# pages, which costs more than computing the columns (flood capture: ~2.6 s -> ~2.0 s).
TABLE_ROWS = 1 << 16


def conn_table(state: np.ndarray) -> pa.Table:
    """Finished connections (conn.CONN_STATE rows) as a SESSIONS table."""
    n = state.shape[0]
    if n <= TABLE_ROWS:
        return _conn_slice(state)
    return pa.concat_tables([_conn_slice(state[i: i + TABLE_ROWS])
                             for i in range(0, n, TABLE_ROWS)])


def _conn_slice(state: np.ndarray) -> pa.Table:
    n = state.shape[0]
    st = c.Summary(state)
    history = verdicts.history_strings(st)
    states = verdicts.conn_state(st)
    verdict, evidence = verdicts.judge(st, states)
    kind = st["kind"]
    tcp = kind == c.KIND_TCP
    # proto: the kind's name, or the IP protocol number for others
    other = kind == c.KIND_OTHER
    proto_code = np.where(other, 5 + st["proto"], kind)
    ports = st["port"]
    has_port = ~other
    payload = np.where(tcp[:, None], st["size"], st["payload"])
    addr_words = st["addr"].view(np.uint64).reshape(n, 4)
    salt = (ports[:, 0].astype(np.uint64) << np.uint64(16)) ^ ports[:, 1].astype(np.uint64)
    salt = salt * np.uint64(0xBF58476D1CE4E5B9) ^ addr_words[:, 1] \
        ^ (addr_words[:, 3] << np.uint64(1))

    def tcp_col(pair: np.ndarray) -> pa.Array:
        return from_numpy(pair[:, 0] + pair[:, 1], pa.int64(), ~tcp)

    def int64(values: np.ndarray) -> pa.Array:
        return from_numpy(values, pa.int64())

    cols: dict[str, Any] = {
        "proto": names(proto_code, _PROTO_NAMES),
        "orig_h": ip_strings(st["ipver"], st["addr"][:, 0, :]),
        "orig_p": from_numpy(ports[:, 0], pa.int32(), ~has_port),
        "resp_h": ip_strings(st["ipver"], st["addr"][:, 1, :]),
        "resp_p": from_numpy(ports[:, 1], pa.int32(), ~has_port),
        "mirror_session": from_numpy(st["mirror_session"], pa.int64(),
                                     st["mirror_session"] < 0),
        "ts": from_numpy(st["first_ts"] / 1e9, pa.float64()),
        "duration": from_numpy((np.where(tcp, st["end_ts"], st["last_ts"]) - st["first_ts"])
                               / 1e9, pa.float64()),
        "orig_pkts": int64(st["pkts"][:, 0]),
        "resp_pkts": int64(st["pkts"][:, 1]),
        "orig_bytes": int64(payload[:, 0]),
        "resp_bytes": int64(payload[:, 1]),
        "conn_state": names(states, _STATE_NAMES),
        "history": history,
        "verdict": names(verdict, _VERDICT_NAMES),
        "evidence": evidence,
        "rtt_ms": _ms(st["synack_ts"], st["syn_ts"]),
        "ack_rtt_ms": _ms(st["ack_ts"], st["synack_ts"]),
        "retrans": tcp_col(st["retrans"]),
        "out_of_order": tcp_col(st["out_of_order"]),
        "dup_acks": tcp_col(st["dup_acks"]),
        "zero_window": tcp_col(st["zero_window"]),
        "reset_by": names(np.maximum(st["reset_by"], 0), _RESET_BY, st["reset_by"] < 0),
        "uid": uids(st["first_ts"], salt),
        "orig_ip_bytes": int64(st["ip_bytes"][:, 0]),
        "resp_ip_bytes": int64(st["ip_bytes"][:, 1]),
        "missed_bytes": tcp_col(st["missed"]),
        "mirror_copies": int64(st["copies"]),
        "problem": from_numpy(verdicts.IS_PROBLEM[verdict], pa.bool_()),
    }
    for name in ROCE_ONLY:
        cols[name] = pa.nulls(n, schema.SESSIONS.field(name).type)
    return pa.table(cols, schema=schema.SESSIONS)


def qp_table(rows: list[dict[str, Any]]) -> pa.Table:
    n = len(rows)
    ipver = np.array([r["ipver"] for r in rows], np.uint8)
    src = np.array([np.frombuffer(r["src"], np.uint8) for r in rows], np.uint8).reshape(n, 16)
    dst = np.array([np.frombuffer(r["dst"], np.uint8) for r in rows], np.uint8).reshape(n, 16)
    first = np.array([r["first_ts"] for r in rows], np.int64)
    cols: dict[str, Any] = {
        "proto": pa.array(["roce"] * n, pa.string()),
        "orig_h": ip_strings(ipver, src),
        "orig_p": pa.nulls(n, pa.int32()),
        "resp_h": ip_strings(ipver, dst),
        "resp_p": pa.array([4791] * n, pa.int32()),
        "mirror_session": pa.array([r["mirror_session"] if r["mirror_session"] >= 0 else None
                                    for r in rows], pa.int64()),
        "ts": pa.array(first / 1e9, pa.float64()),
        "duration": pa.array([(r["last_ts"] - r["first_ts"]) / 1e9 for r in rows], pa.float64()),
        "conn_state": pa.nulls(n, pa.string()),
        "history": pa.nulls(n, pa.string()),
        "uid": uids(first, np.array([r["_flow"] * 7919 + (r["dest_qp"] or 0) for r in rows],
                                    np.uint64)),
        "orig_ip_bytes": pa.array([0] * n, pa.int64()),
        "resp_ip_bytes": pa.array([0] * n, pa.int64()),
        "problem": pa.array([r["verdict"] in verdicts.PROBLEMS for r in rows], pa.bool_()),
    }
    for field in schema.SESSIONS:
        if field.name in cols:
            continue
        if field.name in TCP_ONLY and field.name != "rtt_ms":
            cols[field.name] = pa.nulls(n, field.type)
        else:
            cols[field.name] = pa.array([r.get(field.name) for r in rows], field.type)
    return pa.table(cols, schema=schema.SESSIONS)


def problems_first(table: pa.Table) -> pa.Table:
    """Problems first, then the rest; each group by start time."""
    if table.num_rows == 0:
        return table
    # a stable sort, as np.lexsort((ts, ~problem)) (Table.to_numpy would import pandas)
    return table.take(pc.sort_indices(table, sort_keys=[("problem", "descending"),
                                                       ("ts", "ascending")]))
