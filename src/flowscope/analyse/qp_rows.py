"""RoCE queue pairs as sessions: a request flow merged with its response flow, and a verdict.

The tracker (:mod:`flowscope.analyse.qp`) keeps one flow per direction and DestQP and pairs
a response flow with the request flow its ACK PSNs fall in.  Here each pair becomes one
session row: originator = the requester, ``dest_qp`` = the responder's QP, responses and
NAKs from the paired flow, and the CNPs addressed to the requester's QP (which travel on the
response flow's key) attributed to the flow they throttle.  A CNP-only flow with no pairing
evidence is attributed when exactly one request flow runs the opposite way.

Per queue pair there are few rows, so this runs in Python over rows, not packets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flowscope.analyse.qp import N_NAK
from flowscope.decode import roce

NAK_KEYS = ("psn_seq_err", "invalid_req", "remote_access", "remote_op", "invalid_rd", "rnr")
FATAL = (1, 2, 3)  # invalid request, remote access, remote operational: the QP goes to error


def _opcodes(bitmaps: list[np.ndarray]) -> list[str]:
    bits = np.bitwise_or.reduce(np.stack(bitmaps), axis=0)
    ops = [op for op in range(256) if bits[op >> 3] & (1 << (op & 7))]
    return [roce.opcode_name(op) for op in ops]


def _verdict(nak: np.ndarray, gaps: int, dups: int, cnp: int, ce: int, requests: int,
             sliced: int, pkts: int) -> tuple[str, list[str]]:
    why: list[str] = []
    if sliced:
        why.append(f"{sliced} copies end before the BTH: queue pair and PSN not visible")
    for k, name in enumerate(NAK_KEYS):
        if nak[k]:
            why.append(f"{nak[k]} NAK {name}")
    if gaps:
        why.append(f"{gaps} PSN gaps")
    if dups:
        why.append(f"{dups} duplicate PSNs (retransmitted)")
    if cnp:
        why.append(f"{cnp} CNPs: the receiver saw congestion")
    if ce:
        why.append(f"{ce} packets CE-marked by a switch")
    if sliced and sliced >= pkts:
        return "unknown", why
    if any(nak[k] for k in FATAL):
        return "error", why
    if gaps or dups or nak[0]:
        return "lossy", why
    if nak[4] or nak[5]:
        return "nak", why
    if cnp or ce:
        return "congested", why
    if requests == 0:
        why.append("no requests seen: responses or CNPs only")
        return "unknown", why
    return "healthy", why


def merge(flows: np.ndarray) -> list[dict[str, Any]]:
    """One row per queue-pair session from the finished direction flows."""
    index = {(int(h[0]), int(h[1])): i for i, h in enumerate(flows["key"])}
    used = np.zeros(flows.shape[0], bool)
    rows = []
    requesters = [i for i in range(flows.shape[0]) if flows[i]["requests"] > 0]
    for i in requesters:
        f = flows[i]
        j = index.get((int(f["peer"][0]), int(f["peer"][1]))) if f["paired"] else None
        rows.append(_row(flows, i, j, used, []))
    # CNP-only (or unpaired response) flows: attribute by address pair when unambiguous
    for j in range(flows.shape[0]):
        if used[j]:
            continue
        f = flows[j]
        opposite = [i for i in requesters if not flows[i]["paired"]
                    and bytes(flows[i]["src"]) == bytes(f["dst"])
                    and bytes(flows[i]["dst"]) == bytes(f["src"])
                    and flows[i]["mirror_session"] == f["mirror_session"]]
        if f["requests"] == 0 and len(opposite) == 1 and f["cnp"] > 0:
            row = next(r for r in rows if r["_flow"] == opposite[0])
            row["cnp"] += int(f["cnp"])
            row["evidence"].append(f"{int(f['cnp'])} CNPs attributed by address pair (no ACKs "
                                   f"seen to pair the queue pairs)")
            used[j] = True
            continue
        rows.append(_row(flows, j, None, used, []))
    for r in rows:
        verdict, why = _verdict(np.array([r["nak"][k] for k in NAK_KEYS]), r["psn_gaps"],
                                r["duplicates"], r["cnp"], r["ce_marked"],
                                r["_requests"], r["_sliced"], r["orig_pkts"] + r["resp_pkts"])
        r["verdict"] = verdict
        r["evidence"] = why + r["evidence"]
    return rows


def _row(flows: np.ndarray, i: int, j: int | None, used: np.ndarray,
         evidence: list[str]) -> dict[str, Any]:
    f = flows[i]
    used[i] = True
    p = flows[j] if j is not None else None
    if j is not None:
        used[j] = True
    nak = (p["nak"] if p is not None else f["nak"]).astype(np.int64)
    if p is None and f["requests"] > 0:
        nak = np.zeros(N_NAK, np.int64)
        evidence.append("no ACK/NAK flow paired: responses not seen")
    if f["missing"]:
        evidence.append(f"{int(f['missing'])} PSNs missing")
    if f["mirror_gap_psn_gaps"]:
        evidence.append(f"{int(f['mirror_gap_psn_gaps'])} PSN gaps while the mirror lost "
                        f"packets: may be mirror loss")
    if f["recovered"]:
        evidence.append(f"{int(f['recovered'])} missing PSNs retransmitted")
    copies = int(f["copies"] + (p["copies"] if p is not None else 0))
    if copies:
        evidence.append(f"{copies} duplicate mirror copies counted once")
    lat_n = int(f["lat_n"])
    if lat_n:
        evidence.append(f"request to ACK: mean {f['lat_sum'] / lat_n / 1e6:.3f} ms, "
                        f"max {f['lat_max'] / 1e6:.3f} ms over {lat_n} ACKs")
    first = min(int(f["first_ts"]), int(p["first_ts"])) if p is not None else int(f["first_ts"])
    last = max(int(f["last_ts"]), int(p["last_ts"])) if p is not None else int(f["last_ts"])
    bitmaps = [f["opcodes"]] + ([p["opcodes"]] if p is not None else [])
    return {
        "_flow": i, "_requests": int(f["requests"]), "_sliced": int(f["sliced"]),
        "ipver": int(f["ipver"]), "src": bytes(f["src"]), "dst": bytes(f["dst"]),
        "mirror_session": int(f["mirror_session"]),
        "first_ts": first, "last_ts": last,
        # CNPs travel on the response flow's key but are counted on their own (cnp)
        "orig_pkts": int(f["pkts"] - f["cnp"]),
        "resp_pkts": int(p["pkts"] - p["cnp"]) if p is not None else 0,
        "orig_bytes": int(f["bytes"]), "resp_bytes": int(p["bytes"]) if p is not None else 0,
        "dest_qp": int(f["dest_qp"]) if f["dest_qp"] >= 0 else None,
        "opcodes": _opcodes(bitmaps),
        "messages": int(f["messages"]), "psn_gaps": int(f["psn_gaps"]),
        "duplicates": int(f["duplicates"]), "gbn_bursts": int(f["gbn_bursts"]),
        "cnp": int(p["cnp"]) if p is not None else int(f["cnp"]),
        "nak": {k: int(nak[n]) for n, k in enumerate(NAK_KEYS)},
        "ce_marked": int(f["ce_marked"] + (p["ce_marked"] if p is not None else 0)),
        "ect_pkts": int(f["ect_pkts"] + (p["ect_pkts"] if p is not None else 0)),
        "rtt_ms": f["lat_sum"] / lat_n / 1e6 if lat_n else None,
        "mirror_copies": copies,
        "evidence": evidence,
    }
