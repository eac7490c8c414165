"""`flowscope sessions` outputs (CSV, Parquet, Zeek, --interval, --problems), mirror awareness
(loss hiding a reply, holes during mirror loss), and bad input."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from . import roce, tcp_cases
from .generated import MASK32, Record, erspan2, write_pcap

SYN_TIMES_NS = (0, 1_000_000_000, 3_000_000_000)


def flowscope(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowscope", "sessions", *args],
                          capture_output=True, text=True, check=check)


def jsonl(*args: str) -> list[dict]:
    return [json.loads(line) for line in flowscope(*args, "-f", "jsonl").stdout.splitlines()]


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, wrapped = tcp_cases.write_cases(tmp_path_factory.mktemp("cases"))
    return wrapped


@pytest.fixture(scope="module")
def congestion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return roce.congestion(tmp_path_factory.mktemp("roce")).path


def test_problems_first_and_problem_filter(cases: Path) -> None:
    rows = jsonl(str(cases))
    flags = [r["problem"] for r in rows]
    assert flags == sorted(flags, reverse=True)  # problems, then the rest
    only = jsonl(str(cases), "--problems")
    assert only == [r for r in rows if r["problem"]]


def test_csv_flattens_and_parquet_keeps_nesting(congestion: Path, tmp_path: Path) -> None:
    rows = jsonl(str(congestion))
    flowscope(str(congestion), "-f", "csv", "-o", str(tmp_path / "s.csv"))
    flowscope(str(congestion), "-f", "parquet", "-o", str(tmp_path / "s.parquet"))
    table = list(csv.DictReader(io.StringIO((tmp_path / "s.csv").read_text())))
    assert [int(r["nak.psn_seq_err"]) for r in table] == [r["nak"]["psn_seq_err"] for r in rows]
    assert [r["evidence"] for r in table] == ["; ".join(r["evidence"]) for r in rows]
    assert pq.read_table(tmp_path / "s.parquet").to_pylist() == rows


def test_interval_time_series_adds_up(cases: Path, congestion: Path) -> None:
    for capture in (cases, congestion):
        sessions = jsonl(str(capture))
        series = jsonl(str(capture), "--interval", "500ms")
        assert {s["interval"] for s in series} == {0.5}
        starts = [s["interval_start"] for s in series]
        assert starts == sorted(starts) and len(set(starts)) == len(starts)
        assert sum(s["new_sessions"] for s in series) == len(sessions)
        failures = sum(sum(dict(s["failures"]).values()) for s in series)
        assert failures == sum(r["problem"] for r in sessions)
        assert sum(s["cnp"] for s in series) == sum(r["cnp"] or 0 for r in sessions)
        assert sum(s["ce_marked"] for s in series) == sum(r["ce_marked"] or 0 for r in sessions)
        tcp = [r for r in sessions if r["proto"] == "tcp"]
        if tcp:
            assert sum(s["retrans"] for s in series) == sum(r["retrans"] for r in tcp)


def test_bad_interval_and_bad_input_are_clear(tmp_path: Path) -> None:
    out = flowscope("x.pcap", "--interval", "soon", check=False)
    assert out.returncode == 2 and "not a duration" in out.stderr
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture file at all")
    out = flowscope(str(junk), check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr and junk.name in out.stderr


def _syn(seq: int = 1000) -> Ether:
    return (Ether() / IP(src="10.9.0.1", dst="10.9.0.2", id=seq % 65536)
            / TCP(sport=45000, dport=443, flags="S", seq=seq))


def test_unanswered_during_mirror_loss_is_unknown(tmp_path: Path) -> None:
    """Three SYNs; the mirror's GRE sequence jumps by 5 between them: the SYN-ACK may have
    been among the packets the mirror lost, so flowscope does not say 'unanswered'."""
    records = [Record(erspan2(_syn(), seq=s, session=9), 1_700_000_000_000_000_000 + t)
               for s, t in zip((1, 6, 11), SYN_TIMES_NS, strict=True)]
    (row,) = jsonl(str(write_pcap(tmp_path / "lossy-mirror.pcap", records)))
    assert (row["conn_state"], row["verdict"]) == ("S0", "unknown")
    assert any("mirror lost packets" in e for e in row["evidence"])
    records = [Record(erspan2(_syn(), seq=s, session=9), 1_700_000_000_000_000_000 + t)
               for s, t in zip((1, 2, 3), SYN_TIMES_NS, strict=True)]
    (row,) = jsonl(str(write_pcap(tmp_path / "clean-mirror.pcap", records)))
    assert (row["conn_state"], row["verdict"]) == ("S0", "unanswered")


def test_hole_during_mirror_loss_is_mirror_loss(tmp_path: Path) -> None:
    """A data segment missing exactly where the mirror's sequence has a gap."""
    base = 1_700_000_000_000_000_000
    c, s = "10.9.0.1", "10.9.0.2"

    def seg(src: str, flags: str, seq: int, ack: int, data: bytes = b"") -> Ether:
        sport, dport = (45001, 443) if src == c else (443, 45001)
        dst = s if src == c else c
        return Ether() / IP(src=src, dst=dst, id=seq % 65536) / TCP(
            sport=sport, dport=dport, flags=flags, seq=seq, ack=ack) / data

    frames = [seg(c, "S", 100, 0), seg(s, "SA", 500, 101), seg(c, "A", 101, 501),
              seg(c, "PA", 101, 501, b"x" * 100), seg(c, "PA", 301, 501, b"y" * 100),
              seg(s, "A", 501, 401)]
    gre = [1, 2, 3, 4, 6, 7]  # GRE 5 (the segment at 201) lost by the mirror
    records = [Record(erspan2(f, seq=q & MASK32, session=9), base + k * 1_000_000)
               for k, (f, q) in enumerate(zip(frames, gre, strict=True))]
    (row,) = jsonl(str(write_pcap(tmp_path / "hole.pcap", records)))
    # Zeek records the content gap (G) when the responder ACKs past the hole, after its 'a'
    assert row["history"] == "ShADaG" and row["conn_state"] == "S1"
    assert row["missed_bytes"] == 100
    assert ("1 sequence holes while the mirror itself lost packets: mirror loss, not network "
            "loss") in row["evidence"]
    assert not any("not explained by mirror loss" in e for e in row["evidence"])


def test_tcp_mirror_copies_count_once(tmp_path: Path) -> None:
    """Every packet of the Wireshark cases mirrored twice, 3 us apart, the second copy with
    its own GRE sequence number (as a second mirror port would send it): identical sessions,
    no retransmissions invented, the copies counted."""
    records = tcp_cases.case_records()
    single = tcp_cases.wrap_erspan2(records)
    doubled = []
    for k, rec in enumerate(records):
        doubled.append(Record(erspan2(rec.packet, seq=2 * k + 1, session=5), rec.ts_ns))
        doubled.append(Record(erspan2(rec.packet, seq=2 * k + 2, session=5), rec.ts_ns + 3_000))
    one = jsonl(str(write_pcap(tmp_path / "single.pcap", single)))
    two = jsonl(str(write_pcap(tmp_path / "doubled.pcap", doubled)))
    same = ("orig_h", "orig_p", "orig_pkts", "resp_pkts", "conn_state", "history", "retrans",
            "out_of_order", "dup_acks", "zero_window", "orig_bytes", "resp_bytes")
    assert [{k: r[k] for k in same} for r in two] == [{k: r[k] for k in same} for r in one]
    assert sum(r["mirror_copies"] for r in two) == len(records)


def test_table_view_and_limit(cases: Path) -> None:
    rows = jsonl(str(cases))
    out = flowscope(str(cases), "--limit", "2").stdout.splitlines()
    assert out[0].split()[:4] == ["verdict", "proto", "originator", "responder"]
    assert out[1].split()[0] == rows[0]["verdict"]  # problems first, as in jsonl
    assert out[-1] == (f"{len(rows)} sessions, {sum(r['problem'] for r in rows)} with problems, "
                       "first 2 shown")


def test_mirror_session_icmp_and_unreachable() -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "captures"
    if not shared.exists():
        pytest.skip("../shared/captures not present")
    rows = jsonl(str(shared / "zeek__tunnels_gre-sample.pcap"))
    icmp = {(r["orig_p"], r["resp_p"]): r for r in rows if r["proto"] == "icmp"}
    assert icmp[(3, 3)]["verdict"] == "unreachable" and icmp[(8, 0)]["verdict"] == "ok"
    assert {r["mirror_session"] for r in rows} == {None}  # plain GRE: no session id
    vxlan = [r for r in jsonl(str(shared / "zeek__tunnels_vxlan-encapsulated-http.pcap"))
             if r["proto"] == "tcp"]
    assert [r["mirror_session"] for r in vxlan] == [1]  # the VNI
