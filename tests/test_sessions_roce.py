"""RoCEv2 queue-pair sessions against captures scapy encoded (tests/roce.py): every counter,
NAK type, CNP attribution and verdict exact, PSN wrap, sliced copies, mirror copies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from . import roce
from .generated import Record, write_pcap

COMPARED = ("orig_h", "resp_h", "dest_qp", "orig_pkts", "resp_pkts", "messages", "psn_gaps",
            "duplicates", "gbn_bursts", "cnp", "nak", "ce_marked", "ect_pkts", "verdict")
# The generator counts every *_ONLY/*_LAST packet, resends included (20); flowscope counts
# messages once (12 distinct): a go-back-N resend of a message is not a new message.
OVERRIDES = {"gap_gbn": {"messages": 12}}


def roce_rows(path: Path) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "flowscope", "sessions", str(path), "-f",
                          "jsonl"], capture_output=True, text=True, check=True)
    return [r for r in map(json.loads, out.stdout.splitlines()) if r["proto"] == "roce"]


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, roce.RoceCapture]:
    return roce.roce_all(tmp_path_factory.mktemp("roce"))


@pytest.mark.parametrize("name", [n for n in roce.BUILDERS if n != "sliced"])
def test_queue_pair_sessions(captures: dict[str, roce.RoceCapture], name: str) -> None:
    cap = captures[name]
    rows = sorted(roce_rows(cap.path), key=lambda r: r["dest_qp"])
    truth = sorted(cap.sessions, key=lambda t: t["dest_qp"])
    expected = [{k: t[k] for k in COMPARED} | OVERRIDES.get(name, {}) for t in truth]
    assert [{k: r[k] for k in COMPARED} for r in rows] == expected
    for r in rows:
        assert r["resp_p"] == 4791 and r["orig_p"] is None
        assert r["conn_state"] is None and r["problem"] == (r["verdict"] != "healthy")
        assert r["rtt_ms"] is not None and r["rtt_ms"] > 0  # request-to-ACK latency


def test_cnp_goes_to_the_flow_it_throttles(captures: dict[str, roce.RoceCapture]) -> None:
    rows = {r["dest_qp"]: r for r in roce_rows(captures["two_qps"].path)}
    assert (rows[0x789]["cnp"], rows[0x123]["cnp"]) == (1, 0)


def test_opcodes_and_nak_evidence(captures: dict[str, roce.RoceCapture]) -> None:
    (row,) = roce_rows(captures["gap_gbn"].path)
    assert "RC_ACKNOWLEDGE" in row["opcodes"]
    assert row["evidence"][:3] == ["1 NAK psn_seq_err", "1 PSN gaps",
                                   "14 duplicate PSNs (retransmitted)"]
    assert "2 PSNs missing" in row["evidence"]


def test_sliced_copies_are_unknown_not_healthy(captures: dict[str, roce.RoceCapture]) -> None:
    rows = roce_rows(captures["sliced"].path)
    assert {r["verdict"] for r in rows} == {"unknown"}
    assert {r["dest_qp"] for r in rows} == {None}
    assert sum(r["orig_pkts"] for r in rows) == len(captures["sliced"].records)
    assert all("queue pair and PSN not visible" in r["evidence"][0] for r in rows)


def test_mirror_copies_count_once(captures: dict[str, roce.RoceCapture], tmp_path: Path) -> None:
    """Every packet mirrored twice (ingress and egress ports, 2 us apart): same session."""
    cap = captures["congestion"]
    doubled = []
    for rec in cap.records:
        doubled.append(rec)
        doubled.append(Record(rec.packet.copy(), rec.ts_ns + 2_000, rec.snap))
    path = write_pcap(tmp_path / "doubled.pcap", doubled)
    (row,) = roce_rows(path)
    (single,) = roce_rows(cap.path)
    assert {k: row[k] for k in COMPARED} == {k: single[k] for k in COMPARED}
    assert row["mirror_copies"] == len(cap.records)
